"""The attnbench command line: thin, it parses, calls the modules and prints with rich."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from attnbench.run_cli import run_command, timing_options

HELP = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    name="attnbench",
    help="Benchmark and profile paged- and flash-attention kernels on your own GPU.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    context_settings=HELP,
)


def _version(value: bool) -> None:
    if value:
        from attnbench import __version__

        typer.echo(f"attnbench {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and where results went"),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="A line per point, also on a terminal"
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit"
    ),
) -> None:
    """Benchmark and profile paged- and flash-attention kernels on your own GPU."""
    from attnbench.console import set_verbosity

    set_verbosity(quiet, verbose)

RESULTS_DIR = Path("results")


def _device(requested: str) -> str:
    from attnbench.runner.command import resolve_or_fail

    return resolve_or_fail(requested)


@app.command()
def sweep(
    config: Path | None = typer.Argument(
        None, help="Sweep YAML, or a shipped config by name (h100, a100, smoke, ci-gate); "
        "default: the embedded config for this device"
    ),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default results/<run-id>)"),
    backends: str | None = typer.Option(
        None, "--backends", help="Comma-separated backends (overrides config)"
    ),
    backend: list[str] = typer.Option([], "--backend", help="A backend (repeatable; as in `run`)"),
    workload: list[str] = typer.Option([], "--workload", "-w", help="Only this workload (repeatable)"),
    sets: list[str] = typer.Option(
        [], "--set", help="Override a config key: timing.cuda_graph=true, workloads.NAME.batch=[1,8] "
        "(NAME may be *); validated like the YAML"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the point count, run nothing"),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (or the newest one)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    isolate: bool = typer.Option(True, "--isolate/--no-isolate", help="Run points in a child process"),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="Run only shard K/N of the plan (1<=K<=N), "
        "balanced by estimated cost; merge shards with `attnbench merge`",
    ),
    devices: str | None = typer.Option(
        None, "--devices", help="One worker process per GPU: 0,1,... or all (cpu,cpu: CPU workers, for tests)"
    ),
    repeat: int = typer.Option(1, "--repeat", help="K runs, fresh processes, in --out/run-NN"),
    allow_failures: bool = typer.Option(
        False, "--allow-failures", help="Exit 0 although points failed or were incorrect (exploratory sweeps)"
    ),
    max_points: int | None = typer.Option(
        None, "--max-points", min=1, help="Allow a plan of up to this many points (default 50000)"
    ),
    profile: bool = typer.Option(
        False, "--profile", help="Then profile the main decode/prefill points with ncu into RUN/profile "
        "(DRAM bytes for the report's HBM-traffic claim; tens of seconds a point)"
    ),
) -> None:
    """Run every backend over the sweep a YAML config describes; write a run directory.
    Exit 1 when a point failed or was incorrect (unless --allow-failures)."""
    from attnbench.runner.command import sweep_command

    chosen = ",".join([*([backends] if backends else []), *backend]) or None
    if repeat != 1:
        from attnbench.gate.repeat import repeat_sweep

        if dry_run or resume or shard or sets or workload or profile:
            from attnbench.console import fail

            fail("--repeat makes K fresh runs of a config as it is: it cannot be combined with --dry-run, "
                 "--resume, --shard, --set, --workload or --profile")
        raise typer.Exit(repeat_sweep(repeat, config, out, chosen, device, isolate, devices))

    sweep_command(config, out, chosen, dry_run, resume, device, isolate, shard, devices,
                  allow_failures, max_points, sets, workload, profile)


@app.command("run")
@timing_options
def run_case(
    backend: list[str] = typer.Option(["naive"], "--backend", help="Backend name (repeatable)"),
    phase: str = typer.Option("prefill", "--phase", help="prefill | decode | mixed"),
    seqlen: str = typer.Option("512", "--seqlen", help="Query lengths, one per sequence: L1,L2,..."),
    kv_len: str | None = typer.Option(None, "--kv-len", help="Context lengths for decode/mixed: L1,L2,..."),
    batch: int | None = typer.Option(
        None, "--batch", "-b", help="Sequences: repeats one --seqlen/--kv-len, or draws --lengths"
    ),
    lengths: str | None = typer.Option(
        None, "--lengths", help="A length mix as in configs: fixed:4096, uniform:64-2048, sharegpt"
    ),
    chunk: int = typer.Option(128, "--chunk", help="mixed with --lengths: new query tokens per sequence"),
    q_heads: int = typer.Option(32, "--q-heads"),
    kv_heads: int | None = typer.Option(None, "--kv-heads", help="Default: --q-heads"),
    head_dim: int = typer.Option(128, "--head-dim"),
    dtype: str = typer.Option("bf16", "--dtype", help="bf16 | fp16 | fp32"),
    causal: bool = typer.Option(True, "--causal/--no-causal"),
    block_size: int | None = typer.Option(None, "--block-size", help="KV block size for paged backends"),
    block_order: str = typer.Option(
        "shuffled", "--block-order", "--kv-layout", help="Paged pool block order: shuffled | contiguous "
        "(--kv-layout: its deprecated name)"
    ),
    seed: int = typer.Option(0, "--seed"),
    window: int | None = typer.Option(None, "--window", help="Sliding-window left context in tokens"),
    softcap: float | None = typer.Option(None, "--softcap", help="Logit soft-cap c: s -> c * tanh(s / c)"),
    alibi: bool = typer.Option(False, "--alibi", help="Add ALiBi biases (geometric per-head slopes)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per backend on stdout"),
    isolate: bool = typer.Option(True, "--isolate/--no-isolate", help="Run the points in a child process"),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.001, help="Seconds per point before it is killed and failed (default 180)"
    ),
    as_csv: bool = typer.Option(False, "--csv", help="The rows as CSV on stdout"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the rows here (.csv: CSV, else JSONL)"),
    baseline_backend: str | None = typer.Option(
        None, "--baseline-backend", help="Add a speed-up column: this backend's p50 / each backend's p50"
    ),
    timing: dict | None = None,
) -> None:
    """Measure one case given by flags (quick checks and scripts). A backend that crashes or hangs
    becomes a failed row (the points run in a child process with a time limit)."""
    run_command(**locals())


@app.command()
def backends(device: str = typer.Option("auto", "--device", help="auto | cpu | cuda")) -> None:
    """List every backend, available here or not, and why."""
    from rich.table import Table

    from attnbench.backends import all_backends
    from attnbench.console import out as console
    from attnbench.console import plain

    dev = _device(device)
    if dev == "cpu":
        # as `run` and `sweep` do: on a CPU the Triton backends run through the interpreter, so
        # they are available here, not "set TRITON_INTERPRET=1"
        os.environ.setdefault("TRITON_INTERPRET", "1")
    t = Table(title=f"backends on {dev}")
    if dev == "cpu":
        t.caption = ("Triton backends on a CPU: `run` uses Triton's interpreter by itself (correctness, not "
                     "speed); a sweep does when TRITON_INTERPRET=1 is set")
    for col in ("backend", "family", "impl", "KV input", "available", "why not / purpose"):
        t.add_column(col, overflow="fold")
    from attnbench.runner.plan import ask

    for name, b in all_backends().items():
        ok, why = ask("available()", lambda b=b: b.available(dev))
        t.add_row(
            plain(name),
            plain(b.family),
            plain(b.impl),
            plain("+".join(b.kv_inputs)),
            "[green]yes[/]" if ok else "[red]no[/]",
            plain(b.purpose if ok else why),
        )
    console.print(t)


@app.command()
def doctor(
    calibrate_now: bool = typer.Option(
        True, "--calibrate/--no-calibrate", help="Measure copy and matmul ceilings"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Device, driver, CUDA/torch/triton versions, clocks, NVML telemetry and calibrated ceilings."""
    from attnbench.doctor import doctor_command

    doctor_command(calibrate_now, as_json)


# --- commands added by feature modules (each imports its module lazily inside the function) ---


@app.command()
def profile(
    config: Path | None = typer.Argument(
        None,
        help="Sweep YAML whose cases to profile; omit it to give one case with the flags of `attnbench run`",
    ),
    backend: list[str] | None = typer.Option(None, "--backend", help="Backend (repeatable)"),
    backends: str | None = typer.Option(None, "--backends", help="Comma-separated backends"),
    tool: str | None = typer.Option(None, "--tool", help="ncu | torch (default: ncu when on the PATH)"),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default results/<run-id>)"),
    workload: list[str] | None = typer.Option(None, "--workload", help="With CONFIG: only this workload"),
    phase: str | None = typer.Option(
        None, "--phase", help="prefill | decode | mixed; with CONFIG a filter: decode,prefill"
    ),
    seqlen: str | None = typer.Option(None, "--seqlen", help="Query lengths, one per sequence: L1,L2,..."),
    kv_len: str | None = typer.Option(None, "--kv-len", help="Context lengths for decode/mixed: L1,L2,..."),
    q_heads: int | None = typer.Option(None, "--q-heads", help="Default 32"),
    kv_heads: int | None = typer.Option(None, "--kv-heads", help="Default: --q-heads"),
    head_dim: int | None = typer.Option(None, "--head-dim", help="Default 128"),
    dtype: str | None = typer.Option(None, "--dtype", help="bf16 | fp16 | fp32 (default bf16)"),
    causal: bool | None = typer.Option(None, "--causal/--no-causal", help="Default causal"),
    block_size: int | None = typer.Option(None, "--block-size", help="KV block size for paged backends"),
    kv_layout: str | None = typer.Option(None, "--kv-layout", help="shuffled | contiguous"),
    seed: int | None = typer.Option(None, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cuda | cpu (cpu: --tool torch only)"),
    calls: int = typer.Option(5, "--calls", help="--tool torch: profiled calls per point"),
    timeout: float = typer.Option(600.0, "--timeout", help="Seconds per point, under the profiler"),
    sweep: Path | None = typer.Option(
        None, "--sweep", help="A sweep run whose rows (timings) the profile's fields join, point by point"
    ),
) -> None:
    """Profile each point's timed call (ncu: per-kernel time, DRAM bytes, L2, occupancy, tensor pipe;
    torch: kernels, their share, launch gaps, a Chrome trace) into a run directory."""
    from attnbench.profile.command import run_command

    raise typer.Exit(run_command(dict(locals())))


@app.command()
def merge(
    runs: list[Path] = typer.Argument(..., metavar="RUN", help="Run directories to merge (shards)"),
    out: Path = typer.Option(..., "--out", help="Directory for the merged run (must not hold a run)"),
    force: bool = typer.Option(False, "--force", help="Merge although config, GPU, version or shards differ"),
    require_complete: bool = typer.Option(
        False, "--require-complete", help="Exit 1 when shards or planned points are missing"
    ),
) -> None:
    """One run from shards: refuses mismatched runs; a point measured twice keeps one row by a stated rule."""
    from attnbench.runner.merge import run_command

    raise typer.Exit(run_command(list(runs), out, force, require_complete))


@app.command()
def report(
    runs: list[Path] = typer.Argument(
        None, metavar="RUN", help="Run directories (default: the newest run under results/)"
    ),
    plot: bool = typer.Option(False, "--plot", help="Also draw figures/*.png (embedded in the HTML)"),
    out: Path | None = typer.Option(
        None, "--out", help="Output folder (default <first run>/report/; for a committed baseline "
        "results/reports/<name>/)"
    ),
    in_place: bool = typer.Option(
        False, "--in-place",
        help="Write into a committed baseline's own report/ folder (rewrites tracked files)",
    ),
    formats: str = typer.Option("md,html", "--format", help="Comma-separated: md, html"),
    fragmentation: Path | None = typer.Option(None, "--fragmentation", help="fragmentation.json to include"),
    profile: list[Path] = typer.Option(
        [], "--profile", help="attnbench profile run whose ncu fields join the first run's points"
    ),
) -> None:
    """Turn runs into report.md, report.html and figures: the comparison's tables, measured."""
    from attnbench.console import err, fail
    from attnbench.report.build import write_report
    from attnbench.report.load import ReportError
    from attnbench.runner.results import latest_run

    paths = list(runs or [])
    if not paths:
        newest = latest_run(RESULTS_DIR)
        if newest is None:
            fail(f"no run directories found under {RESULTS_DIR}/ (pass RUN paths)")
        paths = [newest]
    from attnbench.report.output_dir import default_out

    out = out or default_out(paths[0], in_place)
    try:
        _, written = write_report(paths, out, plot, formats, fragmentation, profile)
    except ReportError as exc:
        fail(str(exc))
    except OSError as exc:  # --out a file, under a file, read-only, a full disk
        from attnbench.runio import describe_os_error

        fail(describe_os_error(exc, out or Path(paths[0]) / "report", "--out"))
    for path in written:
        typer.echo(str(path))
    err.print(f"report written to {out}/", highlight=False)


@app.command()
def fragmentation(
    config: str = typer.Argument(..., help="study config, e.g. configs/fragmentation.yaml"),
    plot: bool = typer.Option(False, "--plot", help="also write figures/*.png"),
    out: str = typer.Option(None, "--out", help="output folder (default results/fragmentation-<timestamp>/)"),
    json_out: bool = typer.Option(False, "--json", help="print the result JSON to stdout"),
    gpu: bool = typer.Option(False, "--gpu", help="also replay the churn on PyTorch's CUDA allocator"),
    timing_from: str = typer.Option(None, "--timing-from", help="a GPU run directory whose decode rows time "
                                    "the serving iterations (default: the setup's roofline)"),
) -> None:
    """KV-cache memory study (vLLM paper Fig. 2 and block sizes); runs on a CPU."""
    from pathlib import Path

    from attnbench.memory.command import run_command

    code = run_command(Path(config), plot, Path(out) if out else None, json_out, gpu,
                       Path(timing_from) if timing_from else None)
    if code:
        raise typer.Exit(code)


@app.command("compare-studies")
def compare_studies(
    run_a: Path = typer.Argument(..., metavar="A", help="the first study's run directory (the baseline)"),
    run_b: Path = typer.Argument(..., metavar="B", help="the second study's run directory"),
    out: Path = typer.Option(None, "--out", help="output folder (default <B>/compare-<A name>/)"),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="draw figures/speedup_by_backend.png"),
) -> None:
    """Two studies side by side: per backend and regime (bandwidth-bound decode, compute-bound prefill),
    what the second GPU changed; points matched by case_id and backend. Writes compare.md and .html."""
    from attnbench.console import fail
    from attnbench.console import out as console
    from attnbench.report.load import ReportError
    from attnbench.report.study_compare import compare_studies as build
    from attnbench.report.study_compare import write

    for name, path in (("A", run_a), ("B", run_b)):
        if not (path / "manifest.json").is_file():
            fail(f"{name} {path}: not a run directory (no manifest.json); allowed: a sweep's run directory")
    try:
        cmp = build(run_a, run_b)
    except ReportError as exc:
        fail(str(exc))
    if cmp.points.empty:
        fail(f"{run_a} and {run_b} share no point that is ok in both (matched by case_id and backend)")
    target = out or (run_b / f"compare-{run_a.name}")
    try:
        written = write(cmp, target, plot)
    except OSError as exc:
        from attnbench.runio import describe_os_error

        fail(describe_os_error(exc, target, "--out"))
    console.print(f"{len(cmp.points)} points matched; wrote " + ", ".join(str(p) for p in written),
                  highlight=False, soft_wrap=True, markup=False)


from attnbench.gate.command import gate_app  # noqa: E402 - the gate's commands live with the gate

app.add_typer(gate_app, name="gate")


@app.command()
def export(
    run: Path = typer.Argument(..., metavar="RUN", help="Run directory to export"),
    fmt: str = typer.Option(
        ..., "--format", "-f", help="csv | parquet | github-action-benchmark | bencher | pytest-benchmark"
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="File to write (default: stdout; parquet needs it)"
    ),
) -> None:
    """A run's rows as CSV/Parquet or a CI dashboard's input; every row names its run_id, gpu_name,
    git_commit."""
    from attnbench.export import run_command

    raise typer.Exit(run_command(run, fmt, out))


from attnbench.config.command import config_app  # noqa: E402 - `config schema`, `config list`
from attnbench.gate.baseline_command import baseline_app  # noqa: E402 - beside gate/baselines.py

app.add_typer(config_app, name="config")
app.add_typer(baseline_app, name="baseline")


def main() -> None:
    from attnbench import pipe_safe

    pipe_safe.install()  # `attnbench gate ... | head` keeps the gate's exit code
    app()
