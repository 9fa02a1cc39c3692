"""flex: FlexAttention (torch.nn.attention.flex_attention) on the packed sequences.

Variable lengths without padding: all sequences sit in one packed row and a document mask keeps
each query inside its own sequence (bottom-right causal within it). The kernel is compiled once per
shape in prepare; the compile time is excluded from timing and recorded as compile_s.

Below 128 query rows FlexAttention switches to its decoding kernel, whose query tile is
next_pow2(rows x GQA group) and must divide the block mask's query block: the default 128 left
inductor no valid configuration for 64 packed decode queries with group 4 (NoValidChoicesError).
q_block_size() picks a query block that fits. Decode also gets its own layout: queries as
(batch, Hq, 1, D) against the packed K/V row (K/V batch 1, broadcast), with each sequence's KV
blocks as masked-only block lists, so the kernel splits each sequence's keys across SMs.

Patterns: the window goes into the mask_mod (and, for decode, the block lists start at the block of the
window's first key, so blocks left of the window are never visited); soft-cap and ALiBi into a
score_mod (pattern_score_mod). The window size and soft-cap are Python constants captured by the
traced functions, so every distinct pattern compiles its own kernel: the row's compile_s is that
compile and new_kernel says whether dynamo built a new graph for it.
"""

from __future__ import annotations

import time

import torch

from attnbench.backends.base import Backend, Prepared, Unsupported, register
from attnbench.case import Case
from attnbench.inputs import Inputs
from attnbench.patterns import slopes_tensor

_compiled = None
DECODE_KV_BLOCK = 128  # keys per block-mask column in the decode layout
RECOMPILE_LIMIT = 256  # one compiled kernel per shape; a sweep meets many shapes in one worker


def compiled_flex():
    global _compiled
    if _compiled is None:
        from torch.nn.attention.flex_attention import flex_attention

        cfg = torch._dynamo.config
        for knob in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                     "accumulated_cache_size_limit"):
            if hasattr(cfg, knob):
                setattr(cfg, knob, max(getattr(cfg, knob), RECOMPILE_LIMIT))
        # Past the limit dynamo would silently run flex eagerly (dense scores): fail instead.
        if hasattr(cfg, "fail_on_recompile_limit_hit"):
            cfg.fail_on_recompile_limit_hit = True
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def q_block_size(q_len: int, gqa_group: int) -> int:
    """The block mask's query block for a query length.

    Below 128 queries FlexAttention uses its decoding kernel, whose query tile is
    next_pow2(q_len * group) rows (at least 16) and must divide the mask's query block; the default
    128 fails for longer tiles (NoValidChoicesError). One block covering the whole query fits.
    """
    if q_len >= 128:
        return 128
    return max(128, 1 << max(0, q_len * gqa_group - 1).bit_length())


def flex_import_reason() -> str:
    """Why FlexAttention cannot be imported here ("" when it can)."""
    try:
        from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention  # noqa: F401
    except ImportError as err:
        return f"torch {torch.__version__} lacks FlexAttention ({err})"
    return ""


def document_ids(lengths: tuple[int, ...], device: torch.device) -> torch.Tensor:
    counts = torch.tensor(lengths, device=device)
    return torch.repeat_interleave(torch.arange(len(lengths), device=device), counts)


def positions(lengths: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.cat([torch.arange(n, device=device) for n in lengths])


def pattern_score_mod(case: Case, q_position, k_position, device: torch.device):
    """score_mod for the case's soft-cap (after the scale) and ALiBi, or None without them.

    q_position(b, q_idx) / k_position(b, kv_idx): absolute positions within the sequence.
    """
    if case.softcap is None and not case.alibi:
        return None
    cap = case.softcap
    slopes = slopes_tensor(case.num_q_heads, device) if case.alibi else None

    def score_mod(score, b, h, q_idx, kv_idx):
        if cap is not None:
            score = torch.tanh(score / cap) * cap
        if slopes is not None:
            score = score - slopes[h] * (q_position(b, q_idx) - k_position(b, kv_idx)).abs()
        return score

    return score_mod


def unique_graphs() -> int | None:
    """dynamo's count of compiled graphs in this process (None if torch does not expose it)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return int(counters["stats"]["unique_graphs"])


class FlexBase(Backend):
    """What the FlexAttention backends share: the import check and the dtype / head-dim limits."""

    patterns = frozenset({"window", "softcap", "alibi"})

    impl = "torch"
    devices = ("cuda",)
    compile = True  # tests on a CPU turn it off and run FlexAttention eagerly
    # The first compiled call in a process: importing torch._dynamo, torch._inductor and
    # flex_attention took 7.0-7.6 s and the first compile 1.0-1.3 s on an H200 host, with Triton's
    # and inductor's caches warm (docs/scale-out.md); later shapes compile in 0.2-0.3 s.
    warmup_key = "torch.compile"
    warmup_s = 8.5

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = super().available(device)
        if not ok:
            return ok, why
        why = flex_import_reason()
        return (False, why) if why else (True, "")

    def supports(self, case: Case) -> tuple[bool, str]:
        if case.dtype == "fp32":
            return False, "fp32 is not benchmarked for flex (allowed: bf16, fp16)"
        if case.head_dim % 16 or case.head_dim > 256:
            return False, f"head_dim {case.head_dim}: flex needs a multiple of 16 up to 256"
        return True, ""


@register
class Flex(FlexBase):
    name = "flex"
    family = "flash"
    purpose = "FlexAttention: a compiled Triton flash kernel generated from a mask function"
    memory_model = "Tiled, scores stay on chip; a block mask skips empty tiles (O(N) working memory)"
    kv_inputs = ("contiguous",)

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        if case.max_q == 1:
            return self._prepare_decode(case, inputs)
        from torch.nn.attention.flex_attention import create_block_mask

        dev = inputs.device
        q_doc, k_doc = document_ids(case.q_lens, dev), document_ids(case.kv_lens, dev)
        # Shift each query's position by kv_len - q_len so causal aligns bottom-right.
        shift = torch.tensor([k - q for q, k in zip(case.q_lens, case.kv_lens, strict=True)], device=dev)
        q_pos = positions(case.q_lens, dev) + shift[q_doc]
        k_pos = positions(case.kv_lens, dev)
        causal, window = case.causal, case.window

        def mask_mod(b, h, q_idx, kv_idx):
            keep = q_doc[q_idx] == k_doc[kv_idx]
            if causal:
                keep = keep & (k_pos[kv_idx] <= q_pos[q_idx])
            if window is not None:
                keep = keep & (k_pos[kv_idx] >= q_pos[q_idx] - window)
            return keep

        score_mod = pattern_score_mod(case, lambda b, i: q_pos[i], lambda b, j: k_pos[j], dev)

        t0 = time.perf_counter()
        qb = q_block_size(case.total_q, case.gqa_ratio)
        block_mask = create_block_mask(mask_mod, 1, None, case.total_q, case.total_kv, device=dev,
                                       BLOCK_SIZE=(qb, 128))
        q = inputs.q.transpose(0, 1).unsqueeze(0)  # (1, Hq, total_q, D)
        k = inputs.k.transpose(0, 1).unsqueeze(0)
        v = inputs.v.transpose(0, 1).unsqueeze(0)
        return self._compiled_call(
            case, q, k, v, block_mask, t0, score_mod,
            to_packed=lambda out: out[0].transpose(0, 1),
            info={"input_mode": "packed-document-mask", "flex_q_block": qb},
        )

    def _prepare_decode(self, case: Case, inputs: Inputs) -> Prepared:
        """One query per sequence: q (B, Hq, 1, D) against the packed K/V row, one mask row per sequence.

        The single query is the last position, so causal or not it sees all of its sequence's keys.
        """
        from torch.nn.attention.flex_attention import BlockMask

        dev = inputs.device
        k_doc = document_ids(case.kv_lens, dev)
        k_pos = positions(case.kv_lens, dev)
        q_pos = torch.tensor(case.kv_lens, device=dev) - 1  # each sequence's one query is its last token
        window = case.window

        def mask_mod(b, h, q_idx, kv_idx):
            keep = k_doc[kv_idx] == b
            if window is not None:
                keep = keep & (k_pos[kv_idx] >= q_pos[b] - window)
            return keep

        score_mod = pattern_score_mod(case, lambda b, i: q_pos[b], lambda b, j: k_pos[j], dev)
        t0 = time.perf_counter()
        first_key = None
        if window is not None:  # the block lists start at the window: earlier blocks are never visited
            first_key = (q_pos - window).clamp_min(0).to(inputs.cu_seqlens_k.dtype)
        count, indices = sequence_kv_blocks(inputs.cu_seqlens_k, case.total_kv, DECODE_KV_BLOCK, first_key)
        q_block = q_block_size(1, case.gqa_ratio)
        block_mask = BlockMask.from_kv_blocks(
            count[:, None, None].contiguous(), indices[:, None, None].contiguous(),
            BLOCK_SIZE=(q_block, DECODE_KV_BLOCK), mask_mod=mask_mod, seq_lengths=(1, case.total_kv),
        )
        q = inputs.q.unsqueeze(2)  # (B, Hq, 1, D), a view
        k = inputs.k.transpose(0, 1).unsqueeze(0)  # (1, Hkv, total_kv, D): K/V batch broadcast
        v = inputs.v.transpose(0, 1).unsqueeze(0)
        return self._compiled_call(
            case, q, k, v, block_mask, t0, score_mod,
            to_packed=lambda out: out[:, :, 0],
            info={"input_mode": "batched-q1-document-mask"},
        )

    def _compiled_call(
        self, case: Case, q, k, v, block_mask, t0: float, score_mod, to_packed, info
    ) -> Prepared:
        """The timed call over a built block mask, compiled by its first (untimed) run."""
        from torch.nn.attention.flex_attention import flex_attention

        fn = compiled_flex() if self.compile else flex_attention
        gqa = case.gqa_ratio > 1

        def run() -> torch.Tensor:
            return fn(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=case.softmax_scale,
                      enable_gqa=gqa)

        graphs = unique_graphs()
        compile_s = _first_call(run, q.device, t0)
        info = {"compile_s": compile_s, **info}
        after = unique_graphs()
        if self.compile and graphs is not None and after is not None:
            info["new_kernel"] = after > graphs
        return Prepared(run=run, to_packed=to_packed, info=info)


def sequence_kv_blocks(
    cu_seqlens_k: torch.Tensor, total_kv: int, block: int, first_key: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence, the KV blocks of the packed row that hold its keys: (count (B,), indices (B, W)).

    first_key (B,): the first key (within the sequence) to cover, e.g. a window's start; default 0.

    Only masked ("partial") lists: with full lists the decoding kernel sizes its KV splits by the
    whole packed length rather than the sequence's blocks, leaving most splits idle.
    """
    cu = cu_seqlens_k.long()
    width = -(-total_kv // block)
    begin = cu[:-1] if first_key is None else cu[:-1] + first_key.long()
    start, end = begin // block, (cu[1:] - 1) // block
    count = end - start + 1
    j = torch.arange(width, device=cu.device)[None, :]
    indices = torch.where(j < count[:, None], start[:, None] + j, 0)
    return count.to(torch.int32), indices.to(torch.int32)


def _first_call(run, dev: torch.device, t0: float) -> float:
    """Compile (the first call), untimed; a compile failure makes the case unsupported."""
    try:
        run()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
    except Exception as err:  # noqa: BLE001 - inductor errors come in many types
        raise Unsupported(f"FlexAttention failed to compile: {' '.join(str(err).split())[:300]}") from None
    return round(time.perf_counter() - t0, 3)
