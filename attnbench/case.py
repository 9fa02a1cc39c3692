"""A case: one point of a sweep before a backend is chosen.

A case fixes the work exactly (query and KV lengths of every sequence, heads, head dim, dtype,
masking, KV layout) so that every backend that runs it computes the same function on the same
inputs, and the FLOP and byte models can be evaluated without running anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

PHASES = ("prefill", "decode", "mixed")
DTYPES = ("bf16", "fp16", "fp32")
KV_LAYOUTS = ("shuffled", "contiguous")
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
# The KV cache's element type: "auto" stores K/V in the case's dtype (every case before the axis
# existed); fp8_e4m3 stores them as float8 e4m3 (torch.float8_e4m3fn) with float32 scales, as vLLM's
# kv_cache_dtype=fp8 does. The scale is one per tensor (K and V each) or one per KV head.
KV_DTYPES = ("auto", "fp8_e4m3")
KV_SCALES = ("per-tensor", "per-head")
KV_DTYPE_BYTES = {"fp8_e4m3": 1}
SCALE_BYTES = 4  # a float32 scale


def kv_elem_bytes(dtype: str, kv_dtype: object = None) -> int:
    """Bytes of one stored K/V element for a row's dtype and kv_dtype (missing or auto: dtype's; an
    unknown dtype counts 2). Readers of rows use it, so rows without kv_dtype read as before."""
    if isinstance(kv_dtype, str) and kv_dtype in KV_DTYPE_BYTES:
        return KV_DTYPE_BYTES[kv_dtype]
    return DTYPE_BYTES.get(dtype, 2)


@dataclass(frozen=True)
class Case:
    """One attention problem.

    phase: prefill (q_len == kv_len per sequence), decode (q_len == 1 against a cached context),
        mixed (chunked prefill: q_len new tokens at the end of a kv_len context, q_len <= kv_len).
    kv_dtype / kv_scale: the KV cache's storage (KV_DTYPES); "auto" = the case's dtype, with
        kv_scale None; fp8_e4m3 with a float32 scale per tensor or per KV head (kv_scale, default
        per-tensor). Q and the output stay in dtype.
    q_lens / kv_lens: per-sequence query and key lengths; causal masks align bottom-right
        (query i of a sequence sees keys 0 .. kv_len - q_len + i).
    block_size: tokens per KV-cache block for paged backends; None for contiguous-KV backends.
    kv_layout: order of a sequence's blocks in the pool: shuffled (as a long-running server
        leaves it) or contiguous; only meaningful with a block size.
    window: sliding-window left context in tokens, None for full attention. The query at absolute
        position p (p = kv_len - q_len + i for query i) sees keys j with j >= p - window (and j <= p
        when causal), so at most window + 1 keys: flash-attn's window_size=(window, 0), FlashInfer's
        window_left=window.
    softcap: logit soft-capping, None for none: a score s (after the softmax scale) becomes
        softcap * tanh(s / softcap) before the mask and softmax (Gemma-2 uses 50).
    alibi: add ALiBi biases -slope_h * |p - j| to the scores (after the soft-cap), with the usual
        geometric per-head slopes (attnbench.patterns.alibi_slopes); |p - j| = p - j wherever causal,
        and the absolute value is flash-attn's convention for keys right of the query.
    """

    workload: str
    phase: str
    q_lens: tuple[int, ...]
    kv_lens: tuple[int, ...]
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    dtype: str
    causal: bool
    seqlen_mix: str = "fixed"
    block_size: int | None = None
    kv_layout: str = "shuffled"
    seed: int = 0
    prefix_len: int = 0
    window: int | None = None
    softcap: float | None = None
    alibi: bool = False
    kv_dtype: str = "auto"
    kv_scale: str | None = None
    tags: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase {self.phase!r} is not one of {PHASES}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {DTYPES}")
        if len(self.q_lens) != len(self.kv_lens) or not self.q_lens:
            raise ValueError("q_lens and kv_lens must be non-empty and of equal length")
        if any(q < 1 or k < q for q, k in zip(self.q_lens, self.kv_lens, strict=True)):
            raise ValueError("every sequence needs 1 <= q_len <= kv_len")
        if self.num_q_heads % self.num_kv_heads:
            raise ValueError(
                f"num_q_heads {self.num_q_heads} is not a multiple of num_kv_heads {self.num_kv_heads}"
            )
        if self.kv_layout not in KV_LAYOUTS:
            raise ValueError(f"kv_layout {self.kv_layout!r} is not one of {KV_LAYOUTS}")
        if self.prefix_len < 0 or self.prefix_len > min(self.kv_lens):
            raise ValueError(
                f"prefix_len {self.prefix_len} must be within 0 .. the shortest kv_len {min(self.kv_lens)}"
            )
        if self.block_size is not None and self.block_size < 1:
            raise ValueError("block_size must be positive")
        if self.window is not None and (isinstance(self.window, bool) or self.window < 0):
            raise ValueError(f"window {self.window!r} must be a non-negative token count or None")
        if self.softcap is not None and not self.softcap > 0:
            raise ValueError(f"softcap {self.softcap!r} must be a positive number or None")
        if self.kv_dtype not in KV_DTYPES:
            raise ValueError(f"kv_dtype {self.kv_dtype!r} is not one of {KV_DTYPES}")
        if self.kv_dtype == "auto":
            if self.kv_scale is not None:
                raise ValueError(f"kv_scale {self.kv_scale!r} needs a quantised kv_dtype "
                                 f"({', '.join(KV_DTYPES[1:])}); kv_dtype is auto")
        elif self.kv_scale is None:
            object.__setattr__(self, "kv_scale", KV_SCALES[0])  # frozen: the documented default
        elif self.kv_scale not in KV_SCALES:
            raise ValueError(f"kv_scale {self.kv_scale!r} is not one of {KV_SCALES}")

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def batch(self) -> int:
        return len(self.q_lens)

    @property
    def gqa_ratio(self) -> int:
        return self.num_q_heads // self.num_kv_heads

    @property
    def total_q(self) -> int:
        return sum(self.q_lens)

    @property
    def total_kv(self) -> int:
        return sum(self.kv_lens)

    @property
    def max_q(self) -> int:
        return max(self.q_lens)

    @property
    def max_kv(self) -> int:
        return max(self.kv_lens)

    @property
    def elem_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def kv_quantised(self) -> bool:
        """K/V stored in a narrower type than dtype, with scales (kv_dtype other than auto)."""
        return self.kv_dtype != "auto"

    @property
    def kv_elem_bytes(self) -> int:
        """Bytes of one stored K or V element: dtype's, or 1 for fp8."""
        return kv_elem_bytes(self.dtype, self.kv_dtype)

    @property
    def kv_scale_count(self) -> int:
        """float32 scales per tensor (K, and V again): 0 unquantised, 1 per tensor, Hkv per head."""
        if not self.kv_quantised:
            return 0
        return self.num_kv_heads if self.kv_scale == "per-head" else 1

    @property
    def paged(self) -> bool:
        return self.block_size is not None

    @property
    def softmax_scale(self) -> float:
        return self.head_dim**-0.5

    @property
    def pattern(self) -> str:
        """The score pattern beyond causal masking: 'none', or e.g. 'window4096+softcap50+alibi'."""
        parts = []
        if self.window is not None:
            parts.append(f"window{self.window}")
        if self.softcap is not None:
            parts.append(f"softcap{self.softcap:g}")
        if self.alibi:
            parts.append("alibi")
        return "+".join(parts) or "none"

    # ---- identity ------------------------------------------------------------------------
    def without_paging(self) -> Case:
        """The same problem with contiguous KV (what non-paged backends run)."""
        return replace(self, block_size=None, kv_layout="shuffled")

    @property
    def lengths_digest(self) -> str:
        text = json.dumps([self.q_lens, self.kv_lens])
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    @property
    def case_id(self) -> str:
        """A readable key, stable across runs of the same config (the gate matches on it)."""
        parts = [
            self.workload,
            self.phase,
            f"b{self.batch}",
            f"{self.seqlen_mix}-{self.lengths_digest}",
            f"hq{self.num_q_heads}-hkv{self.num_kv_heads}",
            f"d{self.head_dim}",
            self.dtype,
        ]
        if self.kv_quantised:  # absent for auto: the ids of cases before the axis stay as they were
            parts.append(f"kv{self.kv_dtype}-{self.kv_scale}")
        parts.append("causal" if self.causal else "full")
        if self.prefix_len:
            parts.append(f"prefix{self.prefix_len}")
        if self.pattern != "none":
            parts.append(self.pattern)
        if self.block_size is not None:
            parts.append(f"bs{self.block_size}-{self.kv_layout}")
        return "/".join(parts)

    def describe(self) -> dict[str, Any]:
        """The case's columns in a results row."""
        d = asdict(self)
        d.pop("q_lens")
        d.pop("kv_lens")
        d.pop("tags")
        if not self.kv_quantised:  # rows of unquantised cases hold the columns they always did
            d.pop("kv_dtype")
            d.pop("kv_scale")
        d.update(
            case_id=self.case_id,
            batch=self.batch,
            q_lens=list(self.q_lens),
            kv_lens=list(self.kv_lens),
            total_q=self.total_q,
            total_kv=self.total_kv,
            max_q=self.max_q,
            max_kv=self.max_kv,
            mean_kv=self.total_kv / self.batch,
            gqa_ratio=self.gqa_ratio,
            pattern=self.pattern,
            tags=list(self.tags),
        )
        return d

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["q_lens"] = list(self.q_lens)
        d["kv_lens"] = list(self.kv_lens)
        d["tags"] = list(self.tags)
        if not self.kv_quantised:  # the defaults; from_json restores them
            d.pop("kv_dtype")
            d.pop("kv_scale")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Case:
        d = dict(d)
        d["q_lens"] = tuple(d["q_lens"])
        d["kv_lens"] = tuple(d["kv_lens"])
        d["tags"] = tuple(d.get("tags", ()))
        return cls(**d)
