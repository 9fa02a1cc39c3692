"""`attnbench profile`: which points, which tool, where the run goes; then the runner, then a table.

Points come from a sweep config (its plan, optionally narrowed by --workload and --phase) or from
one case given by the flags of `attnbench run`. In one-case mode each backend gets the KV form it
consumes: with --block-size, paged backends read the paged pool and contiguous-only backends the
same problem with contiguous KV (as a sweep pairs them). Bad input, a missing tool or no GPU: one
line and exit 2. Exit 1 when any point failed or was incorrect, 0 otherwise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from attnbench.case_flags import RUN_DEFAULTS, FlagError, case_from_flags, check_backend_names
from attnbench.profile.runner import Point, Row, Setup, run_profile, timer_name

CASE_FLAGS = tuple(RUN_DEFAULTS)
TOOLS = ("ncu", "torch")


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def choose_tool(requested: str | None, ncu_path: str | None) -> str:
    if requested is None:
        return "ncu" if ncu_path else "torch"
    if requested not in TOOLS:
        raise FlagError(f"--tool {requested!r} is not one of {', '.join(TOOLS)}")
    return requested


def choose_device(requested: str, tool: str, gpu: bool) -> str:
    """cuda, or cpu only when asked for with --tool torch; raises FlagError otherwise."""
    if requested not in ("auto", "cpu", "cuda"):
        raise FlagError(f"--device {requested!r} is not one of auto, cpu, cuda")
    if requested == "cpu":
        if tool == "ncu":
            raise FlagError("--tool ncu profiles CUDA kernels: it needs a GPU, not --device cpu")
        return "cpu"
    if not gpu:
        raise FlagError("no CUDA GPU visible (torch.cuda.is_available() is False): profiling needs one "
                        "(--tool torch --device cpu profiles the CPU backends)")
    return "cuda"


def one_case_points(a: dict[str, Any], names: list[str], device: str) -> tuple[list[Point], list[Row], Any]:
    from attnbench.backends import all_backends
    from attnbench.point import base_row, skipped

    flags = {k: (a[k] if a.get(k) is not None else RUN_DEFAULTS[k]) for k in CASE_FLAGS}
    case = case_from_flags(**flags)
    every = all_backends()
    check_backend_names(names, every)
    points, skips = [], []
    for name in names or list(every):
        b = every[name]
        own = case if b.wants(case) else case.without_paging() if b.wants(case.without_paging()) else None
        if own is None:
            skips.append(skipped(base_row(case, b, device), "needs --block-size (a paged backend)"))
            continue
        ok, why = b.available(device)
        why = f"unavailable: {why}" if not ok else why
        if ok:
            ok, why = b.supports(own)
            why = f"unsupported: {why}" if not ok else why
        if ok:
            points.append(Point(own, name))
        else:
            skips.append(skipped(base_row(own, b, device), why))
    return points, skips, case


def config_points(a: dict[str, Any], names: list[str], device: str):
    from attnbench.backends import backend_names, get_backend
    from attnbench.config.sweep_config import load_config
    from attnbench.point import base_row, skipped
    from attnbench.runner.plan import build_plan

    cfg = load_config(a["config"], backend_names())
    wanted, phases = a.get("workload") or [], _csv(a.get("phase"))
    known = [w.name for w in cfg.workloads]
    for w in wanted:
        if w not in known:
            raise FlagError(f"--workload {w!r} is not in {a['config']}; its workloads: {', '.join(known)}")
    bad = [p for p in phases if p not in ("prefill", "decode", "mixed")]
    if bad:
        raise FlagError(f"--phase {bad[0]!r} is not one of prefill, decode, mixed")
    workloads = tuple(w for w in cfg.workloads
                      if (not wanted or w.name in wanted) and (not phases or w.phase in phases))
    if not workloads:
        raise FlagError("--workload/--phase leave no workload of the config to profile")
    cfg = replace(cfg, workloads=workloads)
    plan = build_plan(cfg, device, names or None)
    points = [Point(pc.case, n) for pc in plan.cases for n in pc.run]
    skips = [skipped(base_row(pc.case, get_backend(n), device), why)
             for pc in plan.cases for n, why in pc.skip.items()]
    return points, skips, cfg, plan


def run_command(a: dict[str, Any]) -> int:
    """The profile command; `a` holds the CLI's arguments by name."""
    import torch

    from attnbench.console import err as err_console
    from attnbench.console import fail
    from attnbench.console import out as console
    from attnbench.profile import ncu as ncu_mod
    from attnbench.runner.results import RunDir, load_run, new_run_id
    from attnbench.sysinfo import device_tag, environment

    names = list(a.get("backend") or []) + _csv(a.get("backends"))
    given = [k for k in CASE_FLAGS if a.get(k) is not None]
    try:
        if a.get("config") is not None:
            extra = [_flag(k) for k in given if k != "phase"]
            if extra:
                raise FlagError(f"{', '.join(extra)} describe one case; with a CONFIG choose its cases with "
                                "--workload and --phase")
        elif a.get("workload"):
            raise FlagError("--workload needs a CONFIG")
        ncu_path = ncu_mod.find_ncu()
        tool = choose_tool(a.get("tool"), ncu_path)
        if tool == "ncu" and not ncu_path:
            raise FlagError("--tool ncu: Nsight Compute (ncu) is not on the PATH (or set ATTNBENCH_NCU); "
                            "--tool torch uses the PyTorch profiler instead")
        device = choose_device(a.get("device") or "auto", tool, torch.cuda.is_available())
        if a.get("config") is not None:
            points, skips, cfg, plan = config_points(a, names, device)
        else:
            points, skips, case = one_case_points(a, names, device)
            cfg = plan = None
        sweep_rows = load_run(a["sweep"])[1] if a.get("sweep") else None
    except (FlagError, KeyError, ValueError, FileNotFoundError) as e:
        fail(str(e).strip("'\""))
    env = environment(device)
    setup = Setup(tool, device, max(1, int(a.get("calls") or 5)), float(a.get("timeout") or 600), ncu_path)
    if tool == "ncu":
        assert ncu_path is not None  # --tool ncu without an ncu failed above
        setup.metrics = ncu_mod.choose_metrics(ncu_mod.query_metric_names(ncu_path))
    label = cfg.name if cfg else "cli"
    run_id = new_run_id(f"{label}-profile-{tool}", device_tag(env))
    run = RunDir(Path(a["out"]) if a.get("out") else Path("results") / run_id)
    if run.manifest_path.exists():
        fail(f"{run.path} already holds a run; choose another --out")
    manifest = _manifest(a, env, setup, run.path.name, cfg, plan, points, skips,
                         None if cfg else case)
    transform = None
    if sweep_rows is not None:
        from attnbench.profile.rows import Index, with_sweep

        manifest["merged_sweep"] = str(a["sweep"])
        sweep_index = Index(sweep_rows)
        transform = lambda row: with_sweep(row, sweep_index)
    console.print(f"profile with {tool} on {env.get('gpu_name') or 'CPU'}: {len(points)} points to "
                  f"profile, {len(skips)} skipped -> {run.path}", markup=False, highlight=False)

    def progress(row: Row, i: int, n: int) -> None:
        status = row.get("profile_status", row["status"])  # merged rows keep the sweep's status
        if status != "skipped":
            why = row.get("profile_reason", row.get("reason")) or ""
            err_console.print(f"[{i}/{n}] {row['backend']} {row['case_id']}: {status} {why}",
                              highlight=False, markup=False)

    rows = run_profile(points, skips, run, manifest, setup, progress, transform)
    console.print(summary_table(rows, tool))
    console.print(f"results: {run.rows_path}", markup=False, highlight=False)
    return 1 if any(r.get("profile_status", r["status"]) in ("failed", "incorrect") for r in rows) else 0


def _manifest(a, env, setup: Setup, run_id: str, cfg, plan, points, skips, case) -> dict[str, Any]:
    from attnbench.config.sweep_config import TimingPolicy
    from attnbench.profile import ncu as ncu_mod
    from attnbench.runner.results import now_iso
    from attnbench.runner.sweep import manifest_for

    if cfg is not None:
        m = manifest_for(cfg, env, TimingPolicy.for_device(setup.device), run_id, str(a["config"]), plan)
    else:
        text = json.dumps(case.to_json(), sort_keys=True)
        m = {"run_id": run_id, **env, "config_name": "cli", "config_path": None, "config_text": text,
             "config_hash": hashlib.sha256(text.encode()).hexdigest()[:16], "started_at": now_iso(),
             "ended_at": None, "status": "running",
             "backends": sorted({p.backend for p in points} | {r["backend"] for r in skips}),
             "dtypes": [case.dtype]}
    m.update(
        kind="profile",
        tool=setup.tool,
        tool_version=ncu_mod.version(setup.ncu) if setup.tool == "ncu" and setup.ncu else env.get("torch"),
        ncu_metrics=setup.metrics or None,
        timer=timer_name(setup.tool, setup.device),
        profile_calls=setup.calls if setup.tool == "torch" else 1,
        planned_points=len(points) + len(skips),
    )
    return m


def summary_table(rows: list[Row], tool: str):
    from rich.table import Table

    def num(v, fmt="{:.3g}"):
        return "-" if v is None else fmt.format(v)

    t = Table(title=f"profile ({tool})")
    cols = ["backend", "case", "status", "time ms", "kernels"]
    cols += ["DRAM read MB", "min read MB", "read/min", "L2 hit %", "main kernel"] if tool == "ncu" else \
        ["idle share", "max gap us", "main kernel"]
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        if r.get("profile_status", r["status"]) == "skipped":
            continue
        status = r.get("profile_status", r["status"])
        why = str(r.get("profile_reason", r.get("reason")) or "")[:60]
        base = [r["backend"], r["case_id"], status if status == "ok" else f"{status}: {why}"]
        if tool == "ncu":
            mb = lambda v: None if v is None else v / 1e6
            t.add_row(*base, num(r.get("ncu_duration_ms"), "{:.4f}"), num(r.get("ncu_kernel_count"), "{}"),
                      num(mb(r.get("dram_read_bytes")), "{:.1f}"), num(mb(r.get("min_read_bytes")), "{:.1f}"),
                      num(r.get("dram_read_ratio"), "{:.2f}"), num(r.get("ncu_l2_hit_pct"), "{:.0f}"),
                      r.get("ncu_main_kernel") or "-")
        else:
            t.add_row(*base, num(r.get("latency_ms_p50"), "{:.4f}"),
                      num(r.get("torch_kernels_per_call"), "{:.0f}"),
                      num(r.get("torch_idle_share"), "{:.2f}"), num(r.get("torch_gap_us_max"), "{:.1f}"),
                      r.get("torch_main_kernel") or "-")
    return t
