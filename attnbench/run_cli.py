"""`attnbench run`: one case from flags, measured on each backend, printed, written and compared.

What the flags add over a case's raw lengths:
- `--batch N` with `--lengths MIX` (a config's mix: fixed:4096, uniform:64-2048, sharegpt, ...) or
  one `--seqlen`/`--kv-len` value repeated N times ("batch 64 at context 4096");
- one flag per TimingPolicy field (`--cuda-graph`, `--min-samples`, `--max-time-s`, ...), made from
  the dataclass so a new timing setting gets its flag, validated as the YAML's `timing:` is;
- `--out FILE` (JSON lines, or CSV for a .csv name) and `--csv` (CSV on stdout);
- `--baseline-backend NAME`: a speed-up column (baseline p50 / backend p50) and row field.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import typer

from attnbench.config.sweep_config import TimingPolicy

TIMING_PREFIX = "timing_"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def timing_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add one typer option per TimingPolicy field to a command; the command receives them as one
    `timing` dict of the flags given (absent flags keep the device's defaults)."""
    sig = inspect.signature(fn)
    extra = []
    for f in fields(TimingPolicy):
        flag = _flag(f.name)
        kind: object  # the option's type annotation, as typer reads it
        if f.type == "bool":
            decl, kind = (f"{flag}/--no-{flag[2:]}",), bool | None
        else:
            decl, kind = (flag,), (int if f.type == "int" else float) | None
        help_text = f"timing.{f.name} (default: the device's, GPU {getattr(TimingPolicy(), f.name)})"
        extra.append(inspect.Parameter(
            TIMING_PREFIX + f.name, inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, *decl, help=help_text, rich_help_panel="Timing"), annotation=kind,
        ))
    params = [p for p in sig.parameters.values() if p.name != "timing"]

    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        timing = {k[len(TIMING_PREFIX):]: kwargs.pop(k) for k in list(kwargs) if k.startswith(TIMING_PREFIX)}
        return fn(**kwargs, timing={k: v for k, v in timing.items() if v is not None})

    wrapper.__signature__ = sig.replace(parameters=params + extra)  # type: ignore[attr-defined]
    return wrapper


def policy_for(device: str, timing: dict[str, Any]) -> TimingPolicy:
    """The device's policy with the flags given, validated like a config's `timing:` mapping."""
    from attnbench.config.sweep_config import ConfigError, SweepConfig, validate_timing

    try:
        values = validate_timing(timing, "attnbench run")
    except ConfigError as err:  # name the flag the user typed, not the YAML key
        text = str(err)
        for key in timing:
            text = text.replace(f"timing.{key}:", f"{_flag(key)}:")
        raise ConfigError(text) from None
    return SweepConfig(name="run", workloads=(), timing=values).timing_policy(device)


def lengths_for(
    phase: str, batch: int | None, lengths: str | None, seqlen: str, kv_len: str | None, seed: int,
    chunk: int,
) -> tuple[str, str | None, str]:
    """(--seqlen, --kv-len, seqlen_mix label) after --batch and --lengths are applied."""
    from attnbench.case_flags import FlagError

    if batch is not None and batch < 1:
        raise FlagError(f"--batch {batch}: give a batch size >= 1")
    if lengths is not None:
        from attnbench.workloads import MixError, draw_lengths, parse_mix

        try:
            mix = parse_mix(lengths)
        except MixError as err:
            raise FlagError(f"--lengths {lengths!r}: {err}") from None
        drawn = draw_lengths(mix, batch or 1, seed, phase)
        text = ",".join(map(str, drawn))
        if phase == "prefill":
            return text, None, mix.label
        if phase == "decode":
            return text, None, mix.label
        return ",".join(str(min(chunk, n)) for n in drawn), text, f"{mix.label}-chunk{chunk}"
    if batch is None:
        return seqlen, kv_len, "list"
    for flag, value in (("--seqlen", seqlen), ("--kv-len", kv_len)):
        if value is not None and "," in value:
            raise FlagError(f"{flag} {value!r} lists lengths per sequence; with --batch give one length "
                            "(or use --lengths MIX)")
    kv = None if kv_len is None else _repeat(kv_len, batch)
    return _repeat(seqlen, batch), kv, "list"


def _repeat(length: str, batch: int) -> str:
    """One length as a list of `batch` equal ones (the --seqlen/--kv-len form)."""
    return ",".join([length.strip()] * batch)


def add_speedup(rows: list[dict[str, Any]], baseline: str) -> None:
    """speedup_vs_baseline = baseline p50 / row p50 (> 1: faster than the baseline), on ok rows."""
    base = next((r for r in rows if r["backend"] == baseline and r["status"] == "ok"), None)
    for r in rows:
        r["baseline_backend"] = baseline
        if base is not None and r["status"] == "ok" and r.get("latency_ms_p50"):
            r["speedup_vs_baseline"] = base["latency_ms_p50"] / r["latency_ms_p50"]
        else:
            r["speedup_vs_baseline"] = None


def rows_csv(rows: list[dict[str, Any]]) -> str:
    from attnbench.export import frame

    buf = io.StringIO()
    frame(rows).to_csv(buf, index=False)
    return buf.getvalue()


def write_rows(rows: list[dict[str, Any]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        out.write_text(rows_csv(rows), encoding="utf-8")
    else:
        out.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows), encoding="utf-8")


def identity(device: str) -> dict[str, Any]:
    """run_id, gpu_name, git_commit for rows of a `run` (no run directory: a timestamped id)."""
    from attnbench.runner.results import new_run_id
    from attnbench.sysinfo import git_commit

    gpu = None
    if device == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(0)
    return {"run_id": new_run_id("run", device), "gpu_name": gpu, "git_commit": git_commit()}


def run_command(
    backend: list[str], phase: str, seqlen: str, kv_len: str | None, batch: int | None, lengths: str | None,
    chunk: int, q_heads: int, kv_heads: int | None, head_dim: int, dtype: str, causal: bool,
    block_size: int | None, block_order: str, seed: int, window: int | None, softcap: float | None,
    alibi: bool, device: str, as_json: bool, isolate: bool, timeout: float | None, as_csv: bool,
    out: Path | None, baseline_backend: str | None, timing: dict[str, Any] | None,
) -> None:
    """The `attnbench run` command (its flags are documented there): the case, each backend's row
    (skipped, or measured in a worker), then the rows printed and written. Exit 1 when a point failed
    or was incorrect, 2 on bad flags."""
    import os

    from attnbench.backends import all_backends
    from attnbench.case_flags import FlagError, case_from_flags, check_backend_names
    from attnbench.config.sweep_config import ConfigError
    from attnbench.console import fail
    from attnbench.runner.command import resolve_or_fail

    dev = resolve_or_fail(device)
    if dev == "cpu":
        # Triton backends run on CPU tensors through Triton's interpreter (correctness only; the
        # rows say so). It must be chosen before triton is first imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    every = all_backends()
    if baseline_backend is not None and baseline_backend not in backend:
        backend = [baseline_backend, *backend]
    try:
        seqlen, kv_len, mix = lengths_for(phase, batch, lengths, seqlen, kv_len, seed, chunk)
        case = case_from_flags(
            phase, seqlen, kv_len, q_heads, kv_heads, head_dim, dtype, causal, block_size, block_order, seed,
            seqlen_mix=mix, window=window, softcap=softcap, alibi=alibi,
        )
        check_backend_names(backend, every)
        policy = policy_for(dev, timing or {})
    except (FlagError, ConfigError) as err:
        fail(str(err))
    if isolate:
        from attnbench.runner.child import prestart

        prestart(1)  # the worker's imports overlap this process's checks below
    from attnbench.runner.worker import executor_for

    executor = executor_for(dev, policy, isolate, timeout)
    rows, runnable = _skipped_rows(case, backend, every, dev)
    if runnable:
        rows += _measured_rows(case, runnable, every, dev, executor)
    order = {name: i for i, name in enumerate(backend)}
    rows.sort(key=lambda r: order.get(r["backend"], 0))
    ident = identity(dev)
    rows = [{**ident, **r} for r in rows]
    if baseline_backend is not None:
        add_speedup(rows, baseline_backend)
    from attnbench.point import checked

    rows = [checked(r) for r in rows]
    _show_rows(rows, out, as_json, as_csv, f"{case.case_id} on {dev}", baseline_backend)
    if any(r["status"] in ("failed", "incorrect") for r in rows):
        raise typer.Exit(1)


def _skipped_rows(case: Any, names: list[str], every: dict[str, Any],
                  device: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(a skipped row for each backend that cannot take the case here, the backends that can)."""
    from attnbench.point import base_row, skipped
    from attnbench.runner.plan import ask

    rows, runnable = [], []
    for name in names:
        b = every[name]
        ok, why = ask("available()", lambda b=b: b.available(device))
        if ok:
            ok, why = ask("supports()", lambda b=b: b.supports(case))
        if ok and not b.wants(case):
            ok, why = (
                False,
                (
                    "needs --block-size (a paged backend)"
                    if "paged" in b.kv_inputs
                    else "takes contiguous KV: drop --block-size"
                ),
            )
        if ok:
            runnable.append(name)
        else:
            rows.append(skipped(base_row(case, b, device), why))
    return rows, runnable


def _measured_rows(case: Any, runnable: list[str], every: dict[str, Any], device: str,
                   executor: Any) -> list[dict[str, Any]]:
    """The runnable backends' rows from the executor (a child process with a time limit when isolated)."""
    from attnbench.console import fail
    from attnbench.point import base_row, failed
    from attnbench.runner.worker import Task

    make_failed = lambda name, reason: failed(base_row(case, every[name], device), reason)  # noqa: E731
    try:
        return list(executor.run(Task(case, runnable), lambda name: None, make_failed))
    except RuntimeError as err:  # the worker process could not start
        fail(str(err), code=1)
    finally:
        executor.close()


def _show_rows(rows: list[dict[str, Any]], out: Path | None, as_json: bool, as_csv: bool, title: str,
               baseline_backend: str | None) -> None:
    """--out, then stdout: JSON lines (--json), CSV (--csv) or the table."""
    from attnbench.console import out as console
    from attnbench.console import rows_table

    if out is not None:
        write_rows(rows, out)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, default=str))
    elif as_csv:
        typer.echo(rows_csv(rows), nl=False)
    else:
        console.print(rows_table(rows, title, baseline_backend))
        if out is not None:
            console.print(f"rows: {out}")
