"""The one reference, error metric and correctness rule: the harness, the tests and the GPU scripts use it.

Reference: exact attention in float64 (CPU) or float32 without TF32 (GPU), one sequence at a time, from
the same rounded inputs the kernels get. A quantised KV cache (kv_dtype fp8_e4m3) enters dequantised,
element * scale formed in the reference's precision (exact in float64), so the reference is exact with
respect to the quantisation: a kernel reading the same fp8 bytes and scales is judged on its attention
alone. The plain implementation (below) gets the cache dequantised to the case's dtype, as an eager
framework without an fp8 kernel computes it; the bar stays the output dtype's.

Metric: the relative error of every (sequence, query head) cell,
    rel[s, h] = ||out[s, h] - ref[s, h]|| / ||ref[s, h]||      (Frobenius over the cell's rows x head dim).
A batch-wide norm cannot serve: a decode output is an average of V rows, so its norm falls like
1/sqrt(context), and a length-1 sequence can hold 87% of a mixed batch's squared norm while a 1000-token
one holds 0.25%; an error confined to the long sequence disappears in the batch's norm.

Rule (FlashAttention's test convention, made per cell): a plain PyTorch implementation computed in the
case's dtype on the same inputs ("plain": matmuls and softmax in bf16/fp16; fp32 with TF32 matmuls on a
GPU, the precision tensor-core kernels are allowed there) sets the error the dtype itself costs. No
implementation that returns its output in the dtype can beat the rounding of the exact output to it, so
that rounding error (round_rel) bounds the plain error from below. And a short sequence's plain error
is a handful of roundings, which differ between heads by 2-3x by chance (an honest naive kernel measured
1.2x the bar on one head of a 110-token sequence when cells were judged alone): the median over the
sequence's heads (plain_seq) is the dtype's typical cost at that length. A kernel passes when every cell
satisfies
    rel[s, h] <= FACTOR * max(plain_rel[s, h], plain_seq[s], round_rel[s, h]) + FLOOR[dtype]
and is `incorrect` otherwise, or when any element is NaN/Inf. The verdict comes from the worst cell,
the one with the largest ratio rel / allowed; rows record that cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from attnbench.kv_quant import dequantise
from attnbench.patterns import apply_softcap, needs_bias, score_bias

if TYPE_CHECKING:
    from attnbench.case import Case
    from attnbench.inputs import Inputs

# A kernel may be this many times less accurate than the plain in-dtype implementation, per cell.
# FlashAttention's tests allow 2x on the max-abs error; a per-cell Frobenius ratio is smoother, and
# kernels that keep scores in fp32 land well under 1x (tests/test_reference.py records the margins).
FACTOR = 3.0
# A relative floor far below any dtype's own rounding: u/8 for bf16 and fp16 (unit roundoff
# u = 2^-(mantissa+1)), 4 fp32 ulps for fp32 (kernels fold the scale with an FMA, leaving ~1e-8 where the
# plain result is exact). It only matters for cells whose outputs are exactly representable (a length-1
# sequence's output is its one V row), where the plain error is 0.
FLOOR = {"bf16": 2.0**-12, "fp16": 2.0**-15, "fp32": 2.0**-22}

_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _masked_scores(case: Case, scores: torch.Tensor, r0: int, nq: int, nk: int) -> torch.Tensor:
    """Soft-cap, then mask and bias a (heads, rows, nk) score block whose first row is query r0.

    The order is the pattern contract (attnbench.patterns): scale (already applied), soft-cap,
    then the causal/window mask and the ALiBi bias, then softmax.
    """
    scores = apply_softcap(scores, case.softcap)
    if needs_bias(case):
        bias = score_bias(case, nq, nk, scores.device, scores.dtype, r0, r0 + scores.shape[1])
        return scores + bias
    if case.causal:
        qpos = torch.arange(r0, r0 + scores.shape[1], device=scores.device)[:, None] + (nk - nq)
        kpos = torch.arange(nk, device=scores.device)[None, :]
        scores = scores.masked_fill(kpos > qpos, float("-inf"))
    return scores


def _kv_in(t: torch.Tensor, scale: torch.Tensor | None, compute: torch.dtype) -> torch.Tensor:
    """A (tokens, Hkv, D) K or V slice in `compute`, dequantised first when it has a scale."""
    return t.to(compute) if scale is None else dequantise(t, scale, compute)


def _attention(
    case: Case,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: list[int],
    cu_k: list[int],
    compute: torch.dtype,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention one sequence at a time with every operation in `compute`; float32 output.

    k_scale / v_scale: the float32 scales of a quantised k / v (attnbench.kv_quant), None otherwise.
    """
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    group = case.gqa_ratio
    elem = torch.finfo(compute).bits // 8
    for i in range(case.batch):
        qs = q[cu_q[i] : cu_q[i + 1]].to(compute).transpose(0, 1)  # (Hq, nq, D)
        kv = slice(cu_k[i], cu_k[i + 1])
        ks = _kv_in(k[kv], k_scale, compute).transpose(0, 1).repeat_interleave(group, dim=0)
        vs = _kv_in(v[kv], v_scale, compute).transpose(0, 1).repeat_interleave(group, dim=0)
        nq, nk = qs.shape[1], ks.shape[1]
        # Chunk query rows so the (heads, rows, nk) score block stays near 512 MiB.
        rows = max(1, (512 << 20) // (elem * qs.shape[0] * nk))
        for r0 in range(0, nq, rows):
            r1 = min(nq, r0 + rows)
            scores = torch.matmul(qs[:, r0:r1], ks.transpose(1, 2)) * case.softmax_scale
            probs = torch.softmax(_masked_scores(case, scores, r0, nq, nk), dim=-1)
            out[cu_q[i] + r0 : cu_q[i] + r1] = torch.matmul(probs, vs).transpose(0, 1).float()
    return out


class _Tf32:
    """Set TF32 matmuls on or off for a block, restoring the previous setting."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> None:
        self.prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = self.enabled

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32 = self.prev


def reference_attention(
    case: Case, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: list[int], cu_k: list[int],
    k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact attention in float64 (CPU) or float32 without TF32 (GPU), one sequence at a time
    (from the dequantised K/V when scales are given)."""
    precise = torch.float64 if q.device.type == "cpu" else torch.float32
    with _Tf32(False):
        return _attention(case, q, k, v, cu_q, cu_k, precise, k_scale, v_scale)


def plain_attention(
    case: Case, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: list[int], cu_k: list[int],
    k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """The plain PyTorch implementation in the case's dtype: what the dtype itself costs in accuracy."""
    with _Tf32(q.device.type == "cuda"):
        return _attention(case, q, k, v, cu_q, cu_k, _TORCH_DTYPES[case.dtype], k_scale, v_scale)


def cell_sq_norms(x: torch.Tensor, cu_q: torch.Tensor) -> torch.Tensor:
    """Sum of squares per (sequence, head) of a packed (total_q, heads, D) tensor, float64 (B, heads)."""
    lens = (cu_q[1:] - cu_q[:-1]).to(device=x.device, dtype=torch.int64)
    seq_of_row = torch.repeat_interleave(torch.arange(lens.numel(), device=x.device), lens)
    sq = x.double().pow(2).sum(-1)  # (total_q, heads)
    return torch.zeros(lens.numel(), x.shape[1], dtype=torch.float64, device=x.device).index_add_(
        0, seq_of_row, sq
    )


@dataclass(frozen=True)
class ErrorBaseline:
    """What the check needs of a case's inputs, computed once per case."""

    dtype: str
    ref_sq: torch.Tensor  # (B, Hq) float64 squared norms of the reference per cell
    plain_rel: torch.Tensor  # (B, Hq) float64 relative error of the plain in-dtype implementation
    round_rel: torch.Tensor  # (B, Hq) float64 relative error of the reference rounded to the dtype

    @property
    def allowed(self) -> torch.Tensor:
        plain_seq = self.plain_rel.median(dim=1, keepdim=True).values  # (B, 1): typical over heads
        typical = torch.maximum(torch.maximum(self.plain_rel, plain_seq), self.round_rel)
        return FACTOR * typical + FLOOR[self.dtype]


def error_baseline(
    case: Case, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor, cu_k: torch.Tensor,
    reference: torch.Tensor, k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None,
) -> ErrorBaseline:
    if not torch.isfinite(reference).all():
        raise ValueError("the reference output has NaN or Inf: the inputs cannot judge a kernel")
    plain = plain_attention(case, q, k, v, cu_q.tolist(), cu_k.tolist(), k_scale, v_scale)
    ref_sq = cell_sq_norms(reference, cu_q).clamp_min(1e-300)
    plain_rel = (cell_sq_norms(plain - reference, cu_q) / ref_sq).sqrt()
    rounded = reference.to(_TORCH_DTYPES[case.dtype]).float()
    round_rel = (cell_sq_norms(rounded - reference, cu_q) / ref_sq).sqrt()
    return ErrorBaseline(case.dtype, ref_sq.cpu(), plain_rel.cpu(), round_rel.cpu())


@dataclass(frozen=True)
class ErrorCheck:
    """The verdict on one output and the worst cell behind it."""

    ok: bool
    reason: str
    rel_err: float | None  # the worst cell's relative error (largest rel / allowed)
    allowed: float | None  # that cell's allowed error
    ratio: float | None  # rel_err / allowed; > 1 is incorrect
    seq: int | None
    head: int | None
    batch_rel_err: float | None  # the batch-wide Frobenius error, for continuity with older rows
    plain_rel_err: float | None  # the plain implementation's error in the worst cell

    def row_fields(self) -> dict[str, Any]:
        return {
            "rel_err": self.rel_err,
            "rel_err_tol": self.allowed,
            "rel_err_ratio": self.ratio,
            "rel_err_seq": self.seq,
            "rel_err_head": self.head,
            "rel_err_batch": self.batch_rel_err,
            "rel_err_plain": self.plain_rel_err,
        }


def check_output(out: torch.Tensor, inputs: Inputs) -> ErrorCheck:
    """Judge a packed (total_q, Hq, D) output against the inputs' reference, cell by cell."""
    ref, base = inputs.reference, inputs.error_baseline
    if out.shape != ref.shape:
        raise ValueError(f"output shape {tuple(out.shape)} != reference shape {tuple(ref.shape)}")
    out = out.to(device=ref.device, dtype=torch.float32)
    finite = torch.isfinite(out)
    if not finite.all():
        bad = (~finite).any(-1)  # (total_q, Hq)
        row, head = (int(x) for x in bad.nonzero()[0])
        seq = int(torch.searchsorted(inputs.cu_seqlens_q.cpu(), torch.tensor(row), right=True)) - 1
        n = int((~finite).sum())
        why = f"output has NaN or Inf ({n} elements; first in sequence {seq}, head {head})"
        return ErrorCheck(False, why, None, None, None, seq, head, None, None)
    err_sq = cell_sq_norms(out - ref, inputs.cu_seqlens_q).cpu()
    rel = (err_sq / base.ref_sq.clamp_min(1e-300)).sqrt()
    allowed = base.allowed
    ratio = rel / allowed
    flat = int(torch.argmax(ratio))
    seq, head = divmod(flat, ratio.shape[1])
    batch = math.sqrt(float(err_sq.sum()) / max(float(base.ref_sq.sum()), 1e-300))
    worst = ErrorCheck(
        ok=True, reason="", rel_err=float(rel[seq, head]), allowed=float(allowed[seq, head]),
        ratio=float(ratio[seq, head]), seq=seq, head=head, batch_rel_err=batch,
        plain_rel_err=float(base.plain_rel[seq, head]),
    )
    if worst.ratio is None or not math.isfinite(worst.ratio):
        return replace(worst, ok=False, reason="the error could not be computed (non-finite reference?)")
    if worst.ratio is not None and worst.ratio > 1.0:
        kv_len = inputs.case.kv_lens[seq]
        reason = (
            f"sequence {seq} (kv_len {kv_len}), head {head}: relative error {worst.rel_err:.3g} > allowed "
            f"{worst.allowed:.3g} ({FACTOR:g} x plain {inputs.case.dtype} PyTorch's error, "
            f"{worst.plain_rel_err:.3g} in this cell, or its sequence's median or output rounding if larger)"
        )
        return replace(worst, ok=False, reason=reason)
    return worst
