"""The `attnbench sweep` command: config -> plan -> (shard, devices) -> run directory, with output."""

from __future__ import annotations

import os
from pathlib import Path

import typer

RESULTS_DIR = Path("results")


def resolve_or_fail(requested: str) -> str:
    """The device to use ('auto' resolved), or a one-line error and exit 2."""
    from attnbench.console import fail
    from attnbench.sysinfo import resolve_device

    try:
        return resolve_device(requested)
    except ValueError as err:
        fail(str(err))


def csv_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def default_config(device: str) -> tuple[Path, str]:
    """The embedded default and why: a CPU-sized sweep without a GPU, else the full sweep for the GPU
    present (attnbench.gpu_default: h200.yaml on an H200 or a > 100 GB Hopper card)."""
    from attnbench.paths import configs_dir

    if device == "cpu":
        return configs_dir() / "smoke.yaml", "no GPU"
    import torch

    from attnbench.gpu_default import pick_gpu_config

    props = torch.cuda.get_device_properties(0)
    name, why = pick_gpu_config(props.name, props.total_memory, (props.major, props.minor))
    return configs_dir() / name, why


def workers_expected(devices: str | None, isolate: bool) -> int:
    """How many worker processes the sweep will start, guessed before torch is imported so that
    they can be spawned ahead (attnbench.runner.child.prestart): none without isolation, one per entry of
    --devices, the GPUs NVML sees (within CUDA_VISIBLE_DEVICES) for `all`, else one. A wrong guess
    costs nothing: spare children are stopped, missing ones spawned when needed."""
    if not isolate:
        return 0
    if devices is None:
        return 1
    items = [s for s in devices.split(",") if s.strip()]
    if [s.strip() for s in items] != ["all"]:
        return len(items)
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:  # noqa: BLE001 - no NVML: spawn them when the count is known
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return count if visible is None else min(count, len([v for v in visible.split(",") if v.strip()]))


def sweep_command(
    config: Path | None,
    out: Path | None,
    backends: str | None,
    dry_run: bool,
    resume: bool,
    device: str,
    isolate: bool,
    shard: str | None,
    devices: str | None,
    allow_failures: bool = False,
    max_points: int | None = None,
    sets: list[str] | None = None,
    workloads: list[str] | None = None,
    profile: bool = False,
) -> None:
    """Plan, run and summarise a sweep (the CLI's `sweep`); with `profile`, then the ncu profile of
    its main points (attnbench.runner.profile_phase). Exit codes: 0 every point ok or
    skipped; 1 a point failed or was incorrect (0 with allow_failures), or the sweep could not go
    on (a full disk, a crash: the manifest says `failed`); 2 bad input; 130 Ctrl-C, 143 SIGTERM
    (both resumable)."""
    if not dry_run:
        from attnbench.runner.child import prestart

        # the workers import torch (seconds) while this process imports it and plans
        prestart(workers_expected(devices, isolate))
    config, cfg, dev, plan, study = plan_sweep(config, device, backends, max_points, sets, workloads)
    # every point of the whole plan (before sharding), kept in the manifest so that `merge` can check
    # coverage without re-planning (which loads the backends and torch)
    whole_plan = sorted([pc.case.case_id, b] for pc in plan.cases for b in [*pc.run, *pc.skip])
    sharding, workers = scale_out(plan, cfg, dev, shard, devices, isolate)
    if sharding is not None:
        plan = sharding.plan
    if dry_run:
        show_plan(plan, sharding)
        return
    from attnbench.memory.in_sweep import write_study
    from attnbench.sysinfo import environment

    env = environment(dev)
    run, lock = open_run_dir(cfg, plan, env, out, resume, sharding)
    try:
        if lock.note:
            from attnbench.console import warn

            warn(lock.note)
        outcome = _run(cfg, plan, run, dev, env, workers, isolate, resume, config, sharding, whole_plan)
        if study is not None and not outcome.interrupted:
            write_study(study, run.path)
        if cfg.layout_pairs is not None and not outcome.interrupted:
            _layout_pairs(cfg, plan, run, dev, isolate)
    finally:
        lock.release()
    if profile and not outcome.interrupted:
        _profile(config, cfg, run, dev)
    finish(outcome, run, plan, resume_hint(config, run.path, backends, shard, devices), allow_failures)


def _layout_pairs(cfg, plan, run, dev: str, isolate: bool) -> None:
    """The config's `layout_pairs:` post-step (attnbench.runner.layout_pairs) into the run directory,
    timed as the points were (the L2 flushed or not) and limited like them (point_timeout_s plus
    twice its own timing budget per job)."""
    from attnbench.runner.layout_pairs import write_layout_pairs

    policy = cfg.timing_policy(dev)
    write_layout_pairs(cfg.layout_pairs, [pc.case for pc in plan.cases], run.path, dev, policy.l2_flush,
                       isolate, policy.point_timeout_s + 2 * cfg.layout_pairs.max_time_s)


def _profile(config: Path, cfg, run, dev: str) -> None:
    """sweep --profile: the main points under ncu into RUN/profile, or one line saying why not."""
    from attnbench.console import note, warn
    from attnbench.runner.profile_phase import run_profile

    if dev != "cuda":
        warn("--profile: Nsight Compute profiles CUDA kernels; this sweep ran on the CPU: no profile taken")
        return
    ran = {str(r.get("backend")) for r in run.rows() if r.get("status") == "ok"}
    code, line = run_profile(config, cfg, run.path, ran)
    (warn if code else note)(line)


def plan_sweep(config: Path | None, device: str, backends: str | None, max_points: int | None,
               sets: list[str] | None, workloads: list[str] | None):
    """(config path, SweepConfig, resolved device, Plan, the KV-cache study it names or None), or a
    one-line error and exit 2. Without a config: the embedded default for the device."""
    from attnbench.backends import backend_names
    from attnbench.config.overrides import load_sweep_config
    from attnbench.config.sweep_config import ConfigError
    from attnbench.console import fail, note
    from attnbench.memory.in_sweep import resolve_study
    from attnbench.paths import find_config, shipped_configs
    from attnbench.runner.plan import PlanSizeError, build_plan

    try:
        cfg_device = "auto"
        if config is not None:
            config = find_config(config)
            if not config.exists():
                shipped = ", ".join(shipped_configs())
                raise ConfigError(f"{config}: no such config file; shipped configs: {shipped}")
            cfg = load_sweep_config(config, sets, workloads, backend_names())
            cfg_device = cfg.device
        dev = resolve_or_fail(device if device != "auto" else cfg_device)
        if config is None:
            config, why = default_config(dev)
            note(f"using the embedded default config {config} ({why})")
            cfg = load_sweep_config(config, sets, workloads, backend_names())
        plan = build_plan(cfg, dev, parse_backends(backends), max_points=max_points)
        study = resolve_study(cfg)  # the KV-cache study a config names runs into the run directory
    except PlanSizeError as err:
        fail(str(err))
    except (ConfigError, KeyError) as err:
        fail(str(err).strip("'\""))
    if plan.n_points == 0:
        fail(f"{cfg.source}: the plan has no points ({plan.excluded_points} excluded by the config, "
             "no backend takes the cases); nothing to run")
    return config, cfg, dev, plan, study


def show_plan(plan, sharding) -> None:
    """--dry-run: the plan's table and counts (this shard's, with the estimated load of each)."""
    from attnbench.console import note, plain, plan_table
    from attnbench.console import out as console

    if sharding is not None:
        note(
            f"shard {sharding.spec}: {plan.n_points} of the plan's {sharding.plan_points} "
            "points; estimated seconds per shard: " + ", ".join(f"{x:.1f}" for x in sharding.loads_s)
        )
    console.print(plan_table(plan))
    console.print(
        f"{plan.n_points} points: {plan.n_run} to measure, {plan.n_skip} skipped, "
        f"{plan.excluded_points} excluded by the config"
    )
    for name, why in plan.unavailable.items():
        console.print(f"  [dim]{plain(name)}: {plain(why)}[/]", highlight=False)


def parse_backends(text: str | None) -> list[str] | None:
    """--backends as a list; None when not given. Given but naming nothing (",", " ") is an error,
    not `every backend`."""
    if text is None:
        return None
    names = csv_list(text)
    if not names:
        from attnbench.console import fail

        fail(f"--backends {text!r} names no backend; "
             "give comma-separated names (attnbench backends lists them)")
    return names


def open_run_dir(cfg, plan, env, out: Path | None, resume: bool, sharding):
    """The run directory, checked and locked: (RunDir, RunLock). A second sweep or resume on a
    directory in use is refused, naming the holder (attnbench.runner.runlock)."""
    from attnbench.console import fail
    from attnbench.runio import check_out_dir
    from attnbench.runner.results import RunDir, RunError, latest_run, new_run_id
    from attnbench.runner.runlock import LockError, acquire
    from attnbench.runner.sweep import ResumeError, check_resume
    from attnbench.sysinfo import device_tag

    if resume:
        target = out or latest_run(RESULTS_DIR)
        if target is None:
            fail("--resume: no run directory given (--out) and none found under results/")
        run = RunDir(Path(target))
        if not run.path.is_dir():
            fail(f"--resume: {run.path} is not a run directory (no such directory)")
    else:
        tag = device_tag(env) + (f"-shard{sharding.index}of{sharding.count}" if sharding else "")
        run = RunDir(out or RESULTS_DIR / new_run_id(cfg.name, tag))
        problem = check_out_dir(run.path)
        if problem:
            fail(problem)
    try:
        lock = acquire(run.path, "attnbench sweep" + (" --resume" if resume else ""))
    except LockError as err:
        fail(str(err))
    except OSError as err:
        from attnbench.runio import describe_os_error

        fail(describe_os_error(err, run.path, "--out"))
    try:
        if resume:
            check_resume(run, cfg, plan)
            from attnbench.runner.shard import check_resume as check_resume_shard

            wrong_shard = check_resume_shard(run.read_manifest(), sharding.spec if sharding else None)
            if wrong_shard:
                raise ResumeError(wrong_shard)
        elif run.manifest_path.exists():
            raise ResumeError(f"{run.path} already holds a run; use --resume to continue it or another --out")
    except (ResumeError, RunError) as err:
        lock.release()
        fail(str(err))
    return run, lock


def _run(cfg, plan, run, dev: str, env, workers, isolate: bool, resume: bool, config: Path, sharding,
         whole_plan: list[list[str]]):
    """Run the sweep; SIGTERM stops it as Ctrl-C does. A full disk or a crash is one line (exit 1),
    after the manifest has recorded it (status `failed`)."""
    from attnbench.console import SweepProgress, fail, note
    from attnbench.runio import describe_os_error
    from attnbench.runner.run_end import sigterm_as_interrupt
    from attnbench.runner.sweep import run_sweep

    note(f"run directory: {run.path}  ({env.get('gpu_name') or 'CPU'}, {plan.n_points} points)")
    extra = {**(sharding.manifest_fields() if sharding else {}), "planned_keys": whole_plan}
    try:
        with sigterm_as_interrupt():
            if workers:
                from attnbench.runner.multi_gpu import DevicesError, run_multi_device

                note(f"devices: {', '.join(w.label for w in workers)} (one worker process each)")
                try:
                    return run_multi_device(cfg, plan, run, dev, env, workers, SweepProgress(),
                                            resume=resume, config_path=str(config), manifest_extra=extra)
                except DevicesError as err:  # no worker could go on: the manifest says failed
                    fail(str(err), code=1)
            return run_sweep(cfg, plan, run, dev, env, SweepProgress(), isolate=isolate, resume=resume,
                             config_path=str(config), manifest_extra=extra)
    except typer.Exit:
        raise
    except OSError as err:
        fail(f"the sweep stopped: {describe_os_error(err, err.filename or run.rows_path)}; "
             f"{len(run.rows())} rows are on disk in {run.path} (manifest status failed); "
             "continue with --resume", code=1)
    except Exception as err:  # noqa: BLE001 - a bug: one line here, the traceback in the run dir
        import traceback

        log = run.path / "crash.log"
        try:
            log.write_text(traceback.format_exc())
        except OSError:
            log = None
        fail(f"the sweep crashed: {type(err).__name__}: {err}; {len(run.rows())} rows are on disk in "
             f"{run.path} (manifest status failed)" + (f"; traceback in {log}" if log else "")
             + "; continue with --resume", code=1)


def _status(run) -> str:
    from attnbench.runner.results import RunError

    try:
        return str(run.read_manifest().get("status"))
    except RunError:
        return "unknown (the manifest cannot be read)"


def resume_hint(config: Path, run_path: Path, backends: str | None, shard: str | None,
                devices: str | None) -> str:
    import shlex

    parts = ["attnbench", "sweep", str(config), "--resume", "--out", str(run_path)]
    for flag, value in (("--backends", backends), ("--shard", shard), ("--devices", devices)):
        if value:
            parts += [flag, value]
    return " ".join(shlex.quote(p) for p in parts)


def finish(outcome, run, plan, hint: str, allow_failures: bool) -> None:
    """Summary, notes and the exit code (see sweep_command)."""
    from attnbench.console import out as console
    from attnbench.console import summary_table, warn
    from attnbench.runner.sweep import summarize

    for line in outcome.notes:
        warn(line)
    rows = run.rows()
    console.print(summary_table(summarize(rows)))
    if outcome.interrupted:
        signal_name = "SIGTERM" if outcome.terminated else "interrupted"
        warn(f"{signal_name}: {len(rows)} rows are on disk in {run.path}; continue with: {hint}")
        raise typer.Exit(143 if outcome.terminated else 130)
    typer.echo(f"results: {run.rows_path}")  # printed with -q too: where the results went
    status = _status(run)
    if status != "complete":
        warn(f"the run is {status}: {plan.n_points} points planned, {len(rows)} rows on disk; "
             f"continue with: {hint}")
        raise typer.Exit(1)
    bad = [r for r in rows if r.get("status") in ("failed", "incorrect")]
    if bad and not allow_failures:
        counts = {s: sum(r["status"] == s for r in bad) for s in ("failed", "incorrect")}
        warn(f"{counts['failed']} failed and {counts['incorrect']} incorrect point(s) of {len(rows)} "
             "(exit 1; --allow-failures exits 0 for exploratory sweeps)")
        raise typer.Exit(1)


def scale_out(plan, cfg, dev: str, shard: str | None, devices: str | None, isolate: bool):
    """(the shard of the plan or None, the device workers or None) for --shard and --devices."""
    from attnbench.console import fail

    sharding = workers = None
    if shard is not None:
        from attnbench.runner.shard import ShardError, parse_spec, shard_plan

        try:
            k, n = parse_spec(shard)
        except ShardError as err:
            fail(str(err))
        sharding = shard_plan(plan, cfg.timing_policy(dev), dev, k, n)
    if devices is not None:
        from attnbench.runner.multi_gpu import DevicesError, parse_devices

        if not isolate:
            fail("--devices runs one worker process per device; drop --no-isolate")
        try:
            workers = parse_devices(devices, dev)
        except DevicesError as err:
            fail(str(err))
    return sharding, workers
