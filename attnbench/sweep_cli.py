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


def default_config(device: str) -> Path:
    """The embedded default: a CPU-sized sweep without a GPU, the full sweep for the GPU present."""
    from attnbench.paths import configs_dir

    if device == "cpu":
        return configs_dir() / "smoke.yaml"
    import torch

    name = torch.cuda.get_device_name(0)
    return configs_dir() / ("a100.yaml" if "A100" in name else "h100.yaml")


def workers_expected(devices: str | None, isolate: bool) -> int:
    """How many worker processes the sweep will start, guessed before torch is imported so that
    they can be spawned ahead (attnbench.child.prestart): none without isolation, one per entry of
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
    sets: list[str] | None = None,
    workloads: list[str] | None = None,
) -> None:
    """Plan, run and summarise a sweep (the CLI's `sweep`)."""
    if not dry_run:
        from attnbench.child import prestart

        # the workers import torch (seconds) while this process imports it and plans
        prestart(workers_expected(devices, isolate))
    from attnbench.backends import backend_names
    from attnbench.config import ConfigError
    from attnbench.console import SweepProgress, fail, plan_table, summary_table
    from attnbench.console import out as console
    from attnbench.overrides import load_sweep_config
    from attnbench.paths import find_config, shipped_configs
    from attnbench.plan import build_plan
    from attnbench.results import RunDir, latest_run, new_run_id
    from attnbench.sweep import ResumeError, check_resume, run_sweep, summarize
    from attnbench.sysinfo import device_tag, environment

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
            config = default_config(dev)
            console.print(f"using the embedded default config {config}")
            cfg = load_sweep_config(config, sets, workloads, backend_names())
        plan = build_plan(cfg, dev, csv_list(backends))
    except (ConfigError, KeyError) as err:
        fail(str(err).strip("'\""))
    # every point of the whole plan (before sharding), kept in the manifest so that `merge` can check
    # coverage without re-planning (which loads the backends and torch)
    whole_plan = sorted([pc.case.case_id, b] for pc in plan.cases for b in [*pc.run, *pc.skip])
    sharding, workers = scale_out(plan, cfg, dev, shard, devices, isolate)
    if sharding is not None:
        plan = sharding.plan
    if dry_run:
        if sharding is not None:
            console.print(
                f"shard {sharding.spec}: {plan.n_points} of the plan's {sharding.plan_points} "
                "points; estimated seconds per shard: " + ", ".join(f"{x:.1f}" for x in sharding.loads_s)
            )
        console.print(plan_table(plan))
        console.print(
            f"{plan.n_points} points: {plan.n_run} to measure, {plan.n_skip} skipped, "
            f"{plan.excluded_points} excluded by the config"
        )
        for name, why in plan.unavailable.items():
            console.print(f"  [dim]{name}: {why}[/]")
        return
    env = environment(dev)
    if resume:
        target = out or latest_run(RESULTS_DIR)
        if target is None:
            fail("--resume: no run directory given (--out) and none found under results/")
        run = RunDir(Path(target))
        try:
            check_resume(run, cfg)
        except ResumeError as err:
            fail(str(err))
        from attnbench.shard import check_resume as check_resume_shard

        wrong_shard = check_resume_shard(run.read_manifest(), sharding.spec if sharding else None)
        if wrong_shard:
            fail(wrong_shard)
    else:
        tag = device_tag(env) + (f"-shard{sharding.index}of{sharding.count}" if sharding else "")
        run_id = new_run_id(cfg.name, tag)
        run = RunDir(out or RESULTS_DIR / run_id)
        if run.manifest_path.exists():
            fail(f"{run.path} already holds a run; use --resume to continue it or another --out")
    console.print(f"run directory: {run.path}  ({env.get('gpu_name') or 'CPU'}, {plan.n_points} points)")
    extra = {**(sharding.manifest_fields() if sharding else {}), "planned_keys": whole_plan}
    if workers:
        from attnbench.multi_gpu import DevicesError, run_multi_device

        console.print(f"devices: {', '.join(w.label for w in workers)} (one worker process each)")
        try:
            outcome = run_multi_device(
                cfg,
                plan,
                run,
                dev,
                env,
                workers,
                SweepProgress(),
                resume=resume,
                config_path=str(config),
                manifest_extra=extra,
            )
        except DevicesError as err:
            fail(str(err))
    else:
        outcome = run_sweep(
            cfg,
            plan,
            run,
            dev,
            env,
            SweepProgress(),
            isolate=isolate,
            resume=resume,
            config_path=str(config),
            manifest_extra=extra,
        )
    console.print(summary_table(summarize(run.rows())))
    if outcome.interrupted:
        console.print(
            f"[yellow]interrupted:[/] {len(run.rows())} points are on disk in {run.path}; "
            "continue with: attnbench sweep CONFIG --resume --out " + str(run.path)
        )
        raise typer.Exit(130)
    typer.echo(f"results: {run.rows_path}")  # printed with -q too: where the results went



def scale_out(plan, cfg, dev: str, shard: str | None, devices: str | None, isolate: bool):
    """(the shard of the plan or None, the device workers or None) for --shard and --devices."""
    from attnbench.console import fail

    sharding = workers = None
    if shard is not None:
        from attnbench.shard import ShardError, parse_spec, shard_plan

        try:
            k, n = parse_spec(shard)
        except ShardError as err:
            fail(str(err))
        sharding = shard_plan(plan, cfg.timing_policy(dev), dev, k, n)
    if devices is not None:
        from attnbench.multi_gpu import DevicesError, parse_devices

        if not isolate:
            fail("--devices runs one worker process per device; drop --no-isolate")
        try:
            workers = parse_devices(devices, dev)
        except DevicesError as err:
            fail(str(err))
    return sharding, workers
