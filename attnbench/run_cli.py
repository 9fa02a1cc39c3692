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

from attnbench.config import TimingPolicy

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
    from attnbench.config import ConfigError, SweepConfig, validate_timing

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
    rep = lambda v: None if v is None else ",".join([v.strip()] * batch)  # noqa: E731
    return rep(seqlen), rep(kv_len), "list"


def add_speedup(rows: list[dict[str, Any]], baseline: str) -> None:
    """speedup_vs_baseline = baseline p50 / row p50 (> 1: faster than the baseline), on ok rows."""
    base = next((r for r in rows if r["backend"] == baseline and r["status"] == "ok"), None)
    for r in rows:
        r["baseline_backend"] = baseline
        ok = base is not None and r["status"] == "ok" and r.get("latency_ms_p50")
        r["speedup_vs_baseline"] = base["latency_ms_p50"] / r["latency_ms_p50"] if ok else None


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
