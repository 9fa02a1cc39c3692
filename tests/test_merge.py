"""attnbench merge: shards back into one run; refusals, the duplicate rule, coverage; and the recipes
(Slurm array script, GitHub Actions matrix) that shard a sweep and merge it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from attnbench.backends import get_backend
from attnbench.cli import app
from attnbench.config.sweep_config import parse_config
from attnbench.point import base_row, skipped
from attnbench.runner.merge import MergeError, load_sources, merge
from attnbench.runner.plan import build_plan
from attnbench.runner.results import RunDir
from attnbench.runner.shard import shard_plan
from attnbench.runner.sweep import manifest_for
from attnbench.sysinfo import environment

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

CONFIG = """
name: merge-test
workloads:
  - name: p
    phase: prefill
    batch: [1, 2, 4]
    lengths: ["fixed:64", "uniform:10-300"]
    q_heads: [4]
    kv_heads: [4, 1]
    head_dim: [64]
    dtype: [fp32]
  - name: d
    phase: decode
    batch: [8]
    lengths: ["uniform:1-500"]
    q_heads: [8]
    kv_heads: [2]
    head_dim: [64]
    dtype: [fp32]
    block_size: [16]
"""


def fake_run(path: Path, shard: tuple[int, int] | None, config: str = CONFIG, n_samples: int = 10,
             status: str = "complete", ended_at: str = "2026-01-01T00:00:00+00:00",
             **manifest: Any) -> RunDir:
    """A run directory as a sweep would write it, without measuring: ok rows with fake samples."""
    cfg = parse_config(config, "merge-test.yaml")
    plan = build_plan(cfg, "cpu")
    extra = {}
    if shard is not None:
        s = shard_plan(plan, cfg.timing_policy("cpu"), "cpu", *shard)
        plan, extra = s.plan, s.manifest_fields()
    run = RunDir(path)
    run.create()
    env = {**environment("cpu"), "gpu_name": "NVIDIA H100 80GB HBM3", "attnbench_version": "0.1.0"}
    base = manifest_for(cfg, env, cfg.timing_policy("cpu"), path.name, None, plan)
    run.write_manifest({**base, **extra, "status": status, "ended_at": ended_at,
                        "calibration": {"copy_gbps": 1.0}, **manifest})
    for pc in plan.cases:
        for name in pc.run:
            row = base_row(pc.case, get_backend(name), "cpu")
            run.append_row({**row, "status": "ok", "reason": "", "n_samples": n_samples,
                            "samples_ms": [1.0] * n_samples, "latency_ms_p50": 1.0})
        for name, reason in pc.skip.items():
            run.append_row(skipped(base_row(pc.case, get_backend(name), "cpu"), reason))
    return run


def all_keys() -> set[tuple[str, str]]:
    plan = build_plan(parse_config(CONFIG, "merge-test.yaml"), "cpu")
    return {(pc.case.case_id, b) for pc in plan.cases for b in [*pc.run, *pc.skip]}


def merged_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_three_shards_merge_into_the_whole_plan(tmp_path):
    paths = [fake_run(tmp_path / f"s{k}", (k, 3)).path for k in (3, 1, 2)]
    result = runner.invoke(app, ["merge", *map(str, paths), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "complete:" in result.output
    rows = merged_rows(tmp_path / "m")
    keys = [(r["case_id"], r["backend"]) for r in rows]
    assert len(keys) == len(set(keys)) and set(keys) == all_keys()
    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert m["status"] == "complete" and m["coverage"]["complete"] is True
    assert m["coverage"]["shards_present"] == [1, 2, 3] and m["coverage"]["missing_shards"] == []
    assert sorted(s["shard"] for s in m["merged_from"]) == ["1/3", "2/3", "3/3"]
    assert {s["path"] for s in m["merged_from"]} == set(map(str, paths))
    assert m["planned_points"] == len(all_keys()) and "shard" not in m and m["run_id"] == "m"
    assert m["config_hash"] == parse_config(CONFIG, "x").hash and m["duplicates_dropped"] == 0
    assert {r["source_run"] for r in rows} == {"s1", "s2", "s3"}


def test_a_missing_shard_is_named_and_require_complete_fails(tmp_path):
    paths = [str(fake_run(tmp_path / f"s{k}", (k, 3)).path) for k in (1, 3)]
    result = runner.invoke(app, ["merge", *paths, "--out", str(tmp_path / "m")])
    assert result.exit_code == 0
    assert "missing shards 2/3" in result.output
    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert m["status"] == "incomplete" and m["coverage"]["missing_shards"] == ["2/3"]
    assert m["coverage"]["missing_points"] == len(all_keys()) - len(merged_rows(tmp_path / "m")) > 0
    result = runner.invoke(app, ["merge", *paths, "--out", str(tmp_path / "m2"), "--require-complete"])
    assert result.exit_code == 1 and "2/3" in result.output


@pytest.mark.parametrize(("field", "value", "label"), [
    ("config_hash", "0123456789abcdef", "config differs"),
    ("gpu_name", "NVIDIA A100-SXM4-80GB", "GPU model differs"),
    ("attnbench_version", "9.9.9", "attnbench version differs"),
])
def test_mismatched_shards_are_refused_unless_forced(tmp_path, field, value, label):
    a = fake_run(tmp_path / "a", (1, 2))
    b = fake_run(tmp_path / "b", (2, 2), **{field: value})
    result = runner.invoke(app, ["merge", str(a.path), str(b.path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and label in result.output and "--force" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m").exists()
    result = runner.invoke(app, ["merge", str(a.path), str(b.path), "--out", str(tmp_path / "m"), "--force"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert any(label in p for p in m["merge_forced"])


def test_shards_of_different_counts_or_partitions_are_refused(tmp_path):
    a = fake_run(tmp_path / "a", (1, 2))
    b = fake_run(tmp_path / "b", (2, 3))
    with pytest.raises(MergeError, match="shard counts differ"):
        merge(load_sources([a.path, b.path]), tmp_path / "m")
    c = fake_run(tmp_path / "c", (2, 2))
    m = c.read_manifest()
    m["shard_plan"]["partition"] = "something-else"
    c.write_manifest(m)
    with pytest.raises(MergeError, match="different plans"):
        merge(load_sources([a.path, c.path]), tmp_path / "m")


def test_bad_paths_and_outputs_are_one_line_errors(tmp_path):
    a = fake_run(tmp_path / "a", (1, 2))
    result = runner.invoke(app, ["merge", str(tmp_path / "nope"), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "not a run directory" in result.output
    result = runner.invoke(app, ["merge", str(a.path), "--out", str(a.path)])
    assert result.exit_code == 2 and "already holds a run" in result.output
    result = runner.invoke(app, ["merge", str(a.path), str(a.path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "named twice" in result.output


def _one_point(run: RunDir) -> dict[str, Any]:
    return next(r for r in run.rows() if r["status"] == "ok")


def _rewrite(run: RunDir, key: tuple[str, str], **changes: Any) -> None:
    rows = run.rows()
    run.rows_path.unlink()
    for r in rows:
        run.append_row({**r, **changes} if (r["case_id"], r["backend"]) == key else r)


def test_duplicates_keep_ok_then_more_samples_then_the_later_run(tmp_path):
    early = "2026-01-01T00:00:00+00:00"
    late = "2026-01-02T00:00:00+00:00"
    # the same whole-plan run three times over, differing in one point
    a = fake_run(tmp_path / "a", None, ended_at=late)
    b = fake_run(tmp_path / "b", None, ended_at=early)
    key = (_one_point(a)["case_id"], _one_point(a)["backend"])

    def kept(*runs: RunDir, out: str) -> tuple[dict[str, Any], list[str]]:
        result = runner.invoke(app, ["merge", *(str(r.path) for r in runs), "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        row = next(r for r in merged_rows(tmp_path / out) if (r["case_id"], r["backend"]) == key)
        return row, [line for line in result.output.splitlines() if line.startswith("dropped")]

    # 1. ok beats failed, whichever run is later and whatever the samples
    _rewrite(a, key, status="failed", reason="boom", n_samples=0)
    row, dropped = kept(a, b, out="m1")
    assert row["status"] == "ok" and row["source_run"] == "b"
    # every other point is in both runs too: all but one duplicate go to the later run a
    assert len(dropped) == len(all_keys())
    assert any("failed from a" in d and "status ok" in d for d in dropped)
    # 2. both ok: more samples wins over the later run
    _rewrite(a, key, status="ok", reason="", n_samples=5)
    _rewrite(b, key, n_samples=50)
    row, dropped = kept(a, b, out="m2")
    assert row["source_run"] == "b" and row["n_samples"] == 50
    assert any("more samples (50 > 5)" in d for d in dropped)
    # 3. same samples: the later run (ended_at) wins, wherever it is on the command line
    _rewrite(a, key, n_samples=50)
    assert kept(a, b, out="m3")[0]["source_run"] == "a"
    assert kept(b, a, out="m4")[0]["source_run"] == "a"
    # 4. same end time too: the one named later on the command line
    c = fake_run(tmp_path / "c", None, ended_at=late, n_samples=50)
    _rewrite(c, key, n_samples=50)
    _rewrite(a, key, n_samples=50)
    assert kept(a, c, out="m5")[0]["source_run"] == "c"
    assert kept(c, a, out="m6")[0]["source_run"] == "a"
    m = json.loads((tmp_path / "m6" / "manifest.json").read_text())
    assert m["duplicates_dropped"] == len(all_keys()) and "status ok beats" in m["merge_rule"]
    assert m["coverage"]["whole_plan_run_included"] and m["coverage"]["complete"]


def test_merge_of_real_cpu_shards_equals_the_plan(tmp_path):
    """End to end: two shards swept on the CPU by the CLI, merged by the CLI."""
    cfg = tmp_path / "tiny.yaml"
    timing = "timing: {max_time_s: 0.02, min_samples: 3, max_samples: 5, warmup_ms: 1}"
    cfg.write_text(CONFIG.replace("name: merge-test", "name: tiny\n" + timing))
    outs = []
    for k in (1, 2):
        out = tmp_path / f"shard{k}"
        result = runner.invoke(app, ["sweep", str(cfg), "--device", "cpu", "--backends", "naive,sdpa-flash",
                                     "--no-isolate", "--shard", f"{k}/2", "--out", str(out)])
        assert result.exit_code == 0, result.output
        outs.append(str(out))
    result = runner.invoke(app, ["merge", *outs, "--out", str(tmp_path / "m"), "--require-complete"])
    assert result.exit_code == 0, result.output
    rows = merged_rows(tmp_path / "m")
    plan = build_plan(parse_config(cfg.read_text(), str(cfg)), "cpu", ["naive", "sdpa-flash"])
    assert sorted((r["case_id"], r["backend"]) for r in rows) == sorted(
        (pc.case.case_id, b) for pc in plan.cases for b in [*pc.run, *pc.skip])
    assert {r["status"] for r in rows} == {"ok", "skipped"}


# ---- the recipes ---------------------------------------------------------------------------------
WORKFLOW = ROOT / ".github" / "workflows" / "sharded-sweep.yml"
SBATCH = ROOT / "scripts" / "slurm" / "sweep-array.sbatch"
MERGE_SBATCH = ROOT / "scripts" / "slurm" / "merge.sbatch"


def _runs(step: dict[str, Any]) -> str:
    return " ".join(str(step.get("run", "")).split())


def _plan_step_outputs(tmp_path: Path, n: str) -> tuple[int, dict[str, str]]:
    """Run the plan job's shell with inputs.shards = n; its exit code and $GITHUB_OUTPUT."""
    step = yaml.safe_load(WORKFLOW.read_text())["jobs"]["plan"]["steps"][0]
    out = tmp_path / f"github-output-{n or 'empty'}"
    out.write_text("")
    proc = subprocess.run(["bash", "-e", "-c", step["run"]], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "N": n, "GITHUB_OUTPUT": str(out)})
    pairs = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    return proc.returncode, pairs


def test_workflow_plan_job_turns_n_into_the_shard_matrix(tmp_path):
    doc = yaml.safe_load(WORKFLOW.read_text())
    plan_job = doc["jobs"]["plan"]
    assert plan_job["steps"][0]["env"]["N"] == "${{ inputs.shards }}"
    assert set(plan_job["outputs"]) == {"shards", "count"}
    code, out = _plan_step_outputs(tmp_path, "3")
    assert code == 0 and out == {"count": "3", "shards": "[1,2,3]"}
    assert json.loads(out["shards"]) == [1, 2, 3]
    assert _plan_step_outputs(tmp_path, "1")[1]["shards"] == "[1]"
    for bad in ("0", "abc", "", "65"):
        assert _plan_step_outputs(tmp_path, bad)[0] != 0, bad


def test_workflow_is_a_shard_matrix_whose_artifacts_one_job_merges():
    doc = yaml.safe_load(WORKFLOW.read_text())
    on = doc.get("on", doc.get(True))
    assert "workflow_dispatch" in on and {"config", "shards"} <= set(on["workflow_dispatch"]["inputs"])
    assert doc["permissions"] == {"contents": "read"}
    sweep_job, merge_job = doc["jobs"]["sweep"], doc["jobs"]["merge"]
    assert sweep_job["needs"] == "plan"
    assert str(sweep_job["strategy"]["matrix"]["shard"]) == "${{ fromJSON(needs.plan.outputs.shards) }}"
    assert sweep_job["strategy"]["fail-fast"] is False  # one failed shard must not cancel the others
    sweep_steps = sweep_job["steps"]
    sweep_cmd = next(_runs(s) for s in sweep_steps if "attnbench sweep" in _runs(s))
    assert '--shard "${{ matrix.shard }}/${{ needs.plan.outputs.count }}"' in sweep_cmd
    assert '--out "results/shard-${{ matrix.shard }}"' in sweep_cmd
    upload = next(s for s in sweep_steps if str(s.get("uses", "")).startswith("actions/upload-artifact@v4"))
    assert upload["with"]["name"] == "shard-${{ matrix.shard }}-of-${{ needs.plan.outputs.count }}"
    assert upload["with"]["path"].rstrip("/") == "results/shard-${{ matrix.shard }}"
    assert upload["if"] == "${{ !cancelled() }}"  # a failed sweep still uploads what it measured
    # the merge job waits for every shard, downloads every shard's artifact and merges them
    assert set(merge_job["needs"]) == {"plan", "sweep"} and "always()" in merge_job["if"]
    msteps = merge_job["steps"]
    uses = [str(s.get("uses", "")) for s in msteps]
    download = next(i for i, u in enumerate(uses) if u.startswith("actions/download-artifact@v4"))
    merge_i = next(i for i, s in enumerate(msteps) if "attnbench merge" in _runs(s))
    upload_i = max(i for i, u in enumerate(uses) if u.startswith("actions/upload-artifact@v4"))
    install = next(i for i, s in enumerate(msteps) if "make install" in _runs(s))
    assert install < download < merge_i < upload_i
    got = msteps[download]["with"]
    assert got["pattern"] == "shard-*-of-${{ needs.plan.outputs.count }}"
    assert "merge-multiple" not in got  # one folder per shard: each is a run directory
    merge_cmd = _runs(msteps[merge_i])
    assert merge_cmd.startswith(f"attnbench merge {got['path']}/* --out results/merged")
    assert msteps[upload_i]["with"]["path"].rstrip("/") == "results/merged"


def test_workflow_passes_actionlint_when_available():
    tool = shutil.which("actionlint")
    if tool is None:
        pytest.skip("actionlint not installed")
    proc = subprocess.run([tool, str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", [SBATCH, MERGE_SBATCH])
def test_slurm_scripts_parse_and_shard_by_the_array_index(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    assert text.startswith("#!/bin/bash") and "#SBATCH" in text
    if script == SBATCH:
        assert "#SBATCH --array=" in text and "SLURM_ARRAY_TASK_ID" in text
        assert '--shard "${K}/${N}"' in text
    else:
        assert "attnbench merge" in text


def _stub_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    stub = tmp_path / "bin" / "attnbench"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/bash\necho "attnbench $*" >> "$STUB_LOG"\n')
    stub.chmod(0o755)
    return {"PATH": f"{stub.parent}:/usr/bin:/bin", "STUB_LOG": str(tmp_path / "log"), "HOME": str(tmp_path),
            "RESULTS": str(tmp_path / "res"), **extra}


def test_slurm_array_script_runs_its_shard_with_a_stub_attnbench(tmp_path):
    """The script's shell logic: which shard it asks for and where it writes, with `attnbench` stubbed."""
    env = _stub_env(tmp_path, SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_TASK_COUNT="4", SLURM_ARRAY_JOB_ID="77",
                    SLURM_ARRAY_TASK_MIN="1")
    proc = subprocess.run(["bash", str(SBATCH), "configs/h100.yaml"], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = f"{tmp_path}/res/77/shard-2-of-4"
    assert (tmp_path / "log").read_text().splitlines() == [
        f"attnbench sweep configs/h100.yaml --shard 2/4 --out {out}"]
    # an array counted from 0 gives the same shards; a requeued task resumes; DEVICES adds --devices
    Path(out).mkdir(parents=True)
    (Path(out) / "manifest.json").write_text("{}")
    env.update(SLURM_ARRAY_TASK_ID="1", SLURM_ARRAY_TASK_MIN="0", DEVICES="all")
    proc = subprocess.run(["bash", str(SBATCH), "configs/h100.yaml"], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "log").read_text().splitlines()[-1] == (
        f"attnbench sweep configs/h100.yaml --shard 2/4 --out {out} --resume --devices all")
    # outside an array: a one-line error
    del env["SLURM_ARRAY_TASK_ID"]
    proc = subprocess.run(["bash", str(SBATCH)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode != 0 and "sbatch --array" in proc.stderr


def test_slurm_merge_script_merges_every_shard_of_the_job(tmp_path):
    env = _stub_env(tmp_path, REQUIRE_COMPLETE="1")
    for k in (1, 2, 3):
        (tmp_path / "res" / "77" / f"shard-{k}-of-3").mkdir(parents=True)
    proc = subprocess.run(["bash", str(MERGE_SBATCH), "77"], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    shards = " ".join(f"{tmp_path}/res/77/shard-{k}-of-3" for k in (1, 2, 3))
    assert (tmp_path / "log").read_text().splitlines() == [
        f"attnbench merge {shards} --out {tmp_path}/res/77/merged --require-complete"]
    proc = subprocess.run(["bash", str(MERGE_SBATCH), "78"], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    assert proc.returncode == 2 and "no shard runs" in proc.stderr
