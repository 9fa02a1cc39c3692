"""The serving simulation's iteration time from measured kernel times (this run's attention rows) plus a
model's linear layers at the paper's model size, instead of a datasheet roofline.

What is measured and what is modelled, per iteration of `running` requests holding `context` KV
tokens in all and `prompt` prompt tokens admitted:
- attention (measured, scaled): this run's ok decode rows on a GPU give, per case, the best
  latency of one side (paged rows for the paged policy, contiguous flash-family rows for the Orca
  policies) as seconds per KV token read, tau = latency / (batch x context). tau at (running,
  context / running) is interpolated in (log2 batch, log2 context) over the cases of the measured
  shape with the most decode cases (inverse-distance weights, power 2; exact at a measured case;
  outside the measured range the nearest cases weigh most). It is scaled from the measured shape's
  KV bytes per token and layer (2 x kv_heads x head_dim x KV element bytes: 1 for an fp8 cache, the
  dtype's otherwise; rows of an fp8 cache are a shape of their own) to the model's (2 x hidden x
  dtype bytes, multi-head) and multiplied by the model's layers: decode attention is bandwidth-bound,
  so its time follows the bytes it reads. A layer's attention never takes less than the side's
  fastest measured call (the launch floor), which per-token scaling alone would go below at small
  batches and contexts.
- linear layers (modelled from calibrated rates): max(2 x params FLOPs per token x tokens / the
  run's calibrated matmul FLOP/s, weight bytes / the run's calibrated copy bandwidth), tokens =
  running + prompt (one new token per running request, every prompt token of the admitted ones).
- left out: the prompts' attention (for prompts up to 2,048 tokens under 3% of their linear FLOPs:
  p / (12 x hidden) with hidden 5,120), sampling, the scheduler and kernel launch gaps between layers.
Without GPU decode rows (a CPU run, a run without decode cases) the study keeps the roofline
iteration time of fragmentation_sim.ServingSetup and says so (no_measured_timing gives the reason).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.case import kv_elem_bytes

IDW_POWER = 2.0


@dataclass
class AttentionCurve:
    """Seconds per KV token read (one layer, the measured shape) at measured (batch, context) cases."""

    side: str  # "paged" | "contiguous"
    points: tuple[tuple[float, float, float], ...]  # (batch, context tokens, seconds per KV token)
    backends: tuple[str, ...]  # the backends whose rows were the best somewhere
    _cache: dict[tuple[int, int], float] = field(default_factory=dict, repr=False)

    @property
    def floor_s(self) -> float:
        """The fastest measured call of this side (seconds): no layer's attention is faster."""
        return min(t * b * c for b, c, t in self.points)

    def tau(self, batch: float, context: float) -> float:
        """Interpolated seconds per KV token at (batch, context): inverse-distance weights in log2 space
        (memoised per whole batch and context: a simulation asks the same few thousand many times)."""
        key = (int(batch), int(context))
        if key not in self._cache:
            self._cache[key] = self._interpolate(float(key[0]), float(key[1]))
        return self._cache[key]

    def _interpolate(self, batch: float, context: float) -> float:
        lb, lc = math.log2(max(batch, 1.0)), math.log2(max(context, 1.0))
        num = den = 0.0
        for b, c, t in self.points:
            dist2 = (math.log2(b) - lb) ** 2 + (math.log2(c) - lc) ** 2
            if dist2 < 1e-18:
                return t
            w = dist2 ** (-IDW_POWER / 2)
            num += w * math.log(t)
            den += w
        return math.exp(num / den)


@dataclass(frozen=True)
class MeasuredIteration:
    """Iteration seconds from measured attention and modelled linear layers (module doc)."""

    curves: dict[str, AttentionCurve]
    num_layers: int
    model_kv_bytes_per_token_layer: float  # 2 x hidden x dtype bytes
    case_kv_bytes_per_token_layer: float  # of the measured shape
    params: float  # model parameters
    weight_bytes: float
    matmul_flops_per_s: float  # calibrated
    copy_bytes_per_s: float  # calibrated
    source: dict[str, Any] = field(default_factory=dict)

    def attention_seconds(self, context_tokens: int, running: int, paged: bool) -> float:
        if running <= 0 or context_tokens <= 0:
            return 0.0
        curve = self.curves["paged" if paged else "contiguous"]
        scale = self.model_kv_bytes_per_token_layer / self.case_kv_bytes_per_token_layer
        per_token = curve.tau(running, context_tokens / running) * scale
        return self.num_layers * max(per_token * context_tokens, curve.floor_s)

    def linear_seconds(self, tokens: int) -> float:
        compute = 2.0 * self.params * tokens / self.matmul_flops_per_s
        weights = self.weight_bytes / self.copy_bytes_per_s
        return max(compute, weights)

    def seconds(self, context_tokens: int, prompt_tokens: int, running: int, paged: bool) -> float:
        attention = self.attention_seconds(context_tokens, running, paged)
        return attention + self.linear_seconds(running + prompt_tokens)


def _read(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = []
    path = run_dir / "results.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line: the rows before it are whole
    return manifest, rows


def _side(row: dict[str, Any]) -> str | None:
    family = row.get("family")
    if family == "naive":
        return None
    if row.get("block_size") is not None:
        return "paged"
    return "contiguous" if family == "flash" else None


def _usable(row: dict[str, Any]) -> bool:
    kv = row.get("kv_lens") or []
    return (row.get("status") == "ok" and row.get("phase") == "decode" and row.get("device") == "cuda"
            and bool(kv) and len(set(kv)) == 1 and not row.get("prefix_len")
            and row.get("pattern", "none") in (None, "none") and (row.get("latency_ms_p50") or 0) > 0)


def no_measured_timing(run_dir: Path | None) -> str | None:
    """Why the run cannot time the iterations (None when it can)."""
    if run_dir is None:
        return "no run directory given"
    try:
        manifest, rows = _read(run_dir)
    except (OSError, json.JSONDecodeError) as err:
        return f"{run_dir}: cannot read the run ({type(err).__name__})"
    if manifest.get("device") != "cuda":
        return f"the run is on {manifest.get('device') or 'an unknown device'}, not a GPU"
    cal = manifest.get("calibration") or {}
    if not (cal.get("matmul_tflops") and cal.get("copy_gbps")):
        return "the run's manifest has no calibrated matmul rate and copy bandwidth"
    sides = {_side(r) for r in rows if _usable(r)}
    missing = [s for s in ("paged", "contiguous") if s not in sides]
    if missing:
        return f"the run has no ok equal-length GPU decode rows on the {' and '.join(missing)} side"
    return None


def _shape(row: dict[str, Any]) -> tuple:
    """The measured shape a row belongs to; an fp8 KV cache is its own (rows without kv_dtype: auto)."""
    kv = row.get("kv_dtype") or "auto"
    return (row["num_q_heads"], row["num_kv_heads"], row["head_dim"], row["dtype"], kv)


def measured_iteration(run_dir: Path, setup: dict[str, Any]) -> MeasuredIteration:
    """The model for a run directory (check no_measured_timing first) and a study's setup."""
    manifest, rows = _read(run_dir)
    usable = [r for r in rows if _usable(r) and _side(r)]
    counts: dict[tuple, set] = {}
    for r in usable:
        counts.setdefault(_shape(r), set()).add((r["batch"], r["kv_lens"][0], _side(r)))
    # the shape measured at the most (batch, context) points on both sides
    both = {s: c for s, c in counts.items() if {x[2] for x in c} == {"paged", "contiguous"}}
    shape = max(both or counts, key=lambda s: len((both or counts)[s]))
    curves = {}
    for side in ("paged", "contiguous"):
        best: dict[tuple[int, int], tuple[float, str]] = {}
        for r in usable:
            if _shape(r) != shape or _side(r) != side:
                continue
            key = (int(r["batch"]), int(r["kv_lens"][0]))
            tau = r["latency_ms_p50"] * 1e-3 / (key[0] * key[1])  # seconds per KV token, one layer
            if key not in best or tau < best[key][0]:
                best[key] = (tau, str(r["backend"]))
        points = tuple((float(b), float(c), t) for (b, c), (t, _) in sorted(best.items()))
        curves[side] = AttentionCurve(side, points, tuple(sorted({name for _, name in best.values()})))
    hq, hkv, d, dtype, kv_dtype = shape
    cal = manifest["calibration"]
    params = setup["weights_gb"] * 1e9 / setup["dtype_bytes"]  # the paper's weight bytes / bytes a parameter
    return MeasuredIteration(
        curves=curves,
        num_layers=int(setup["num_layers"]),
        model_kv_bytes_per_token_layer=2.0 * setup["hidden_size"] * setup["dtype_bytes"],
        case_kv_bytes_per_token_layer=2.0 * hkv * d * kv_elem_bytes(dtype, kv_dtype),
        params=params,
        weight_bytes=setup["weights_gb"] * 1e9,
        matmul_flops_per_s=float(cal["matmul_tflops"]) * 1e12,
        copy_bytes_per_s=float(cal["copy_gbps"]) * 1e9,
        source={
            "kind": "measured",
            "run": str(run_dir),
            "gpu": manifest.get("gpu_name"),
            "shape": f"heads {hq}/{hkv}, d{d}, {dtype}" + ("" if kv_dtype == "auto" else f", KV {kv_dtype}"),
            "cases": {side: len(c.points) for side, c in curves.items()},
            "backends": {side: list(c.backends) for side, c in curves.items()},
            "matmul_tflops": float(cal["matmul_tflops"]),
            "copy_gbps": float(cal["copy_gbps"]),
        },
    )


def describe(source: dict[str, Any]) -> str:
    """One sentence saying how the iterations were timed (for the study's notes and the report)."""
    if source.get("kind") != "measured":
        return ("Iteration time: roofline from the setup's datasheet numbers (weights + KV read at "
                f"{source.get('hbm_gbps')} GB/s, prompt FLOPs at {source.get('peak_tflops')} TFLOP/s); not "
                f"measured: {source.get('reason', 'no GPU rows')}.")
    return (f"Iteration time: attention measured in {source['run']} on {source['gpu']} (best decode row per "
            f"case, {source['shape']}, {source['cases']['paged']} paged / {source['cases']['contiguous']} "
            "contiguous cases, interpolated over batch and context and scaled to the model's KV bytes per "
            "token and layers); linear layers modelled: max(2 x params x tokens / "
            f"{source['matmul_tflops']:.0f} TFLOP/s, weight bytes / {source['copy_gbps']:.0f} GB/s), the "
            "run's calibrated rates; prompt attention, sampling and scheduling left out.")
