"""Which flash-attn is installed, what it accepts, and the calls the `flash-attn` backend makes.

Three generations, three Python entry points (checked in this order):
- flash-attn-4 (`flash_attn.cute`, CuTe DSL, JIT-compiled per shape): flash_attn_func (batched) and
  flash_attn_varlen_func; paged KV through flash_attn_varlen_func(page_table=, seqused_k=) with
  k/v of shape (num_pages, page_size, Hkv, D). It returns (out, lse). page_table excludes
  cu_seqlens_k. Any page size works: a page of exactly the kernel's KV tile (tile_n) loads by TMA,
  any other size by a per-row cp.async gather. The Hopper gather is only known good when tile_n is a
  multiple of its 128 loader threads (upstream later rejects the rest), so supports() asks for it.
  Paged KV is not implemented on sm80 / sm120.
- flash-attn 3 (`flash_attn_interface`, the Hopper build): flash_attn_func, flash_attn_varlen_func,
  flash_attn_with_kvcache(page_table=, cache_seqlens=, cu_seqlens_q=); any page size.
- flash-attn 2 (`flash_attn`): flash_attn_func, flash_attn_varlen_func, and
  flash_attn_with_kvcache(block_table=, cache_seqlens=) with q of shape (B, Lq, Hq, D); its paged
  kernels require page_block_size % 256 == 0.
All take Hq != Hkv directly (GQA) and align causal masks bottom-right, the harness's convention.

FA4 ships no flash_attn/__init__.py: with only FA4 installed, `import flash_attn` gives an empty
namespace package, so FA2 is recognised by its functions, not by the import succeeding.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from attnbench.case import Case
from attnbench.inputs import Inputs
from attnbench.patterns import slopes_tensor

INSTALL_HINT = "pip install flash-attn (2.x/3.x) or flash-attn-4; see README"
IMPL_ENV = "ATTNBENCH_FLASH_ATTN_IMPL"  # fa4 | fa3 | fa2: pin one when several are installed
DTYPES = ("bf16", "fp16")
FA2_PAGE_MULTIPLE = 256
FA4_GATHER_THREADS = 128  # cp.async loader threads of the Hopper paged path (one warp group)


@dataclass(frozen=True)
class FlashAttnLib:
    """One installed flash-attn generation."""

    generation: int  # 2 | 3 | 4
    impl: str  # the module the calls go to
    version: str
    module: Any = field(compare=False, repr=False)

    def info(self) -> dict[str, Any]:
        return {"flash_attn_impl": self.impl, "flash_attn_version": self.version}

    def fn(self, name: str) -> Callable[..., Any]:
        return getattr(self.module, name)

    def accepts(self, fn_name: str, arg: str) -> bool:
        """Whether the installed function takes a keyword (older releases lack paged arguments)."""
        fn = getattr(self.module, fn_name, None)
        if fn is None:
            return False
        try:
            return arg in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return False


def _version(dists: tuple[str, ...], module: Any, fallback: str) -> str:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    v = getattr(module, "__version__", None)
    # flash_attn.cute reports "0.0.0" when its own metadata lookup misses; that is not a version.
    return v if isinstance(v, str) and v and v != "0.0.0" else fallback


def _try_fa4() -> tuple[FlashAttnLib | None, str]:
    try:
        mod = importlib.import_module("flash_attn.cute")
    except ImportError as err:
        return None, _import_error("flash_attn.cute", err)
    except Exception as err:  # noqa: BLE001 - a broken CuTe DSL install raises anything
        return None, f"flash_attn.cute failed to import: {_short(err)}"
    if not hasattr(mod, "flash_attn_varlen_func"):
        return None, "flash_attn.cute lacks flash_attn_varlen_func"
    return FlashAttnLib(4, "flash_attn.cute", _version(("flash-attn-4",), mod, "4.x"), mod), ""


def _try_fa3() -> tuple[FlashAttnLib | None, str]:
    try:
        mod = importlib.import_module("flash_attn_interface")
    except ImportError as err:
        return None, _import_error("flash_attn_interface", err)
    except Exception as err:  # noqa: BLE001
        return None, f"flash_attn_interface failed to import: {_short(err)}"
    if not hasattr(mod, "flash_attn_varlen_func"):
        return None, "flash_attn_interface lacks flash_attn_varlen_func"
    version = _version(("flash_attn_3", "flash-attn-3"), mod, "3.x")
    return FlashAttnLib(3, "flash_attn_interface", version, mod), ""


def _try_fa2() -> tuple[FlashAttnLib | None, str]:
    try:
        mod = importlib.import_module("flash_attn")
    except ImportError as err:
        return None, _import_error("flash_attn", err)
    except Exception as err:  # noqa: BLE001
        return None, f"flash_attn failed to import: {_short(err)}"
    if not hasattr(mod, "flash_attn_varlen_func"):
        return None, "flash_attn has no flash_attn_varlen_func (only a namespace package)"
    return FlashAttnLib(2, "flash_attn", _version(("flash-attn", "flash_attn"), mod, "2.x"), mod), ""


_PROBES = {"fa4": _try_fa4, "fa3": _try_fa3, "fa2": _try_fa2}


def detect() -> tuple[FlashAttnLib | None, str]:
    """The flash-attn to use, or None with the reason (install hint included).

    Cached per ATTNBENCH_FLASH_ATTN_IMPL value: planning asks once per case, and a failing import
    (a broken CuTe DSL install) would otherwise be retried every time. reset() forgets it.
    """
    return _detect(os.environ.get(IMPL_ENV, "").strip().lower())


def reset() -> None:
    _detect.cache_clear()


@functools.cache
def _detect(pinned: str) -> tuple[FlashAttnLib | None, str]:
    if pinned:
        if pinned not in _PROBES:
            return None, f"{IMPL_ENV}={pinned!r}: allowed {', '.join(_PROBES)}"
        lib, why = _PROBES[pinned]()
        return (lib, "") if lib else (None, f"{IMPL_ENV}={pinned}: {why}; {INSTALL_HINT}")
    reasons = []
    for probe in _PROBES.values():
        lib, why = probe()
        if lib is not None:
            return lib, ""
        reasons.append(why)
    broken = [r for r in reasons if "not installed" not in r]
    detail = f" ({'; '.join(broken)})" if broken else ""
    return None, f"flash-attn is not installed{detail}: {INSTALL_HINT}"


def _import_error(name: str, err: ImportError) -> str:
    missing = getattr(err, "name", None)
    if missing is None or missing == name or name.startswith(f"{missing}."):
        return f"{name} not installed"
    return f"{name} failed to import: {_short(err)}"


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:200]


# ---- what each generation accepts --------------------------------------------------------------
def gpu_arch() -> int | None:
    """Compute capability as 90 for sm_90, or None without a visible GPU."""
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


def fa4_tile_n(head_dim: int, causal: bool, arch: int | None) -> int:
    """FA4's KV tile (tokens per K/V load) for a plain forward, mirroring its tile heuristics."""
    if arch is None or arch // 10 != 9:
        return 128  # sm100 / sm110 dense tiles (sm80 / sm120 have no paged path)
    if head_dim <= 64:
        return 128
    if head_dim <= 96:
        return 128 if causal else 144
    if head_dim <= 128:
        return 128
    return 112 if head_dim <= 192 else 80


def head_dim_reason(lib: FlashAttnLib, head_dim: int, arch: int | None) -> str:
    if head_dim % 8 or not 8 <= head_dim <= 256:
        return f"head_dim {head_dim}: flash-attn {lib.generation} needs a multiple of 8 in 8..256"
    if lib.generation == 4 and arch is not None and arch // 10 in (10, 11) and 128 < head_dim < 256:
        return f"head_dim {head_dim}: flash-attn 4 on sm_{arch} takes 8..128 or 256"
    return ""


def paged_reason(lib: FlashAttnLib, case: Case, arch: int | None) -> str:
    """Why this paged case is outside what the installed flash-attn implements ("" if inside)."""
    bs = case.block_size
    assert bs is not None
    uniform_q = len(set(case.q_lens)) == 1
    if lib.generation == 2:
        if bs % FA2_PAGE_MULTIPLE:
            return (f"block_size {bs}: flash-attn {lib.version} paged KV needs a multiple of "
                    f"{FA2_PAGE_MULTIPLE} (page_block_size % 256 == 0)")
        if uniform_q and not lib.accepts("flash_attn_with_kvcache", "block_table"):
            return f"flash-attn {lib.version}: flash_attn_with_kvcache has no block_table"
        if not uniform_q and not lib.accepts("flash_attn_varlen_func", "block_table"):
            return (f"flash-attn {lib.version}: unequal query lengths on paged KV need "
                    "flash_attn_varlen_func(block_table=), which this release lacks")
        return ""
    if lib.generation == 3:
        if not lib.accepts("flash_attn_with_kvcache", "page_table"):
            return f"flash-attn {lib.version}: flash_attn_with_kvcache has no page_table"
        return ""
    if arch is not None and arch // 10 in (8, 12):
        return f"flash-attn 4 implements paged KV for sm_90 and sm_100 only, not sm_{arch}"
    tile_n = fa4_tile_n(case.head_dim, case.causal, arch)
    if bs != tile_n and tile_n % FA4_GATHER_THREADS:
        return (f"block_size {bs} with head_dim {case.head_dim}: flash-attn 4 gathers pages of any size "
                f"other than its KV tile ({tile_n}) with {FA4_GATHER_THREADS} threads, which needs a tile "
                f"that is a multiple of {FA4_GATHER_THREADS}; allowed here: block_size {tile_n}")
    return ""


# ---- patterns ----------------------------------------------------------------------------------
# The keyword each pattern feature needs: FA2 and FA3 take window_size and softcap (FA2 also
# alibi_slopes); flash-attn-4 (flash_attn.cute) takes window_size and softcap, no ALiBi.
PATTERN_KWARGS = {"window": "window_size", "softcap": "softcap", "alibi": "alibi_slopes"}


def entry_name(lib: FlashAttnLib, case: Case) -> str:
    """The library function a case goes through (the same choice contiguous_call / paged_call make)."""
    if not case.paged:
        batched = _uniform(case.q_lens) and _uniform(case.kv_lens)
        return "flash_attn_func" if batched else "flash_attn_varlen_func"
    if lib.generation == 4:
        return "flash_attn_varlen_func"
    if lib.generation == 3 or _uniform(case.q_lens):
        return "flash_attn_with_kvcache"
    return "flash_attn_varlen_func"


def pattern_reason(lib: FlashAttnLib, case: Case) -> str:
    """Which of the case's pattern features the installed entry point takes no keyword for ("" if none)."""
    used = [f for f, on in (("window", case.window is not None), ("softcap", case.softcap is not None),
                            ("alibi", case.alibi)) if on]
    entry = entry_name(lib, case)
    missing = [f"{f} ({PATTERN_KWARGS[f]})" for f in used if not lib.accepts(entry, PATTERN_KWARGS[f])]
    if not missing:
        return ""
    return (f"{lib.impl} {lib.version} {entry} takes no {', '.join(missing)}: "
            f"that pattern is not in this flash-attn")


def pattern_kwargs(lib: FlashAttnLib, case: Case, device: torch.device) -> dict[str, Any]:
    """The keywords for the case's patterns. flash-attn's window_size is (left, right) keys around
    the bottom-right-aligned diagonal: (window, 0) causal, (window, unlimited) otherwise; unlimited
    is -1 in FA2/FA3 and None in FA4."""
    kwargs: dict[str, Any] = {}
    if case.window is not None:
        unlimited = None if lib.generation == 4 else -1
        kwargs["window_size"] = (case.window, 0 if case.causal else unlimited)
    if case.softcap is not None:
        kwargs["softcap"] = float(case.softcap)
    if case.alibi:
        kwargs["alibi_slopes"] = slopes_tensor(case.num_q_heads, device)
    return kwargs


# ---- the calls ---------------------------------------------------------------------------------
@dataclass
class Call:
    """One library call, built in prepare; run() is the timed work."""

    entry: str  # the library function's name
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    out_shape: tuple[int, ...]  # to_packed reshapes the output to (total_q, Hq, D) from this

    def run(self) -> torch.Tensor:
        out = self.fn(**self.kwargs)
        # FA4 returns (out, lse); FA2/FA3 return out, or a tuple when asked for extras.
        return out[0] if isinstance(out, (tuple, list)) else out


def _uniform(lengths: tuple[int, ...]) -> bool:
    return len(set(lengths)) == 1


def contiguous_call(lib: FlashAttnLib, case: Case, inputs: Inputs) -> Call:
    """Contiguous K/V: equal lengths as zero-copy (B, L, H, D) views, else packed varlen."""
    b, hq, hkv, d = case.batch, case.num_q_heads, case.num_kv_heads, case.head_dim
    common: dict[str, Any] = {"softmax_scale": case.softmax_scale, "causal": case.causal,
                              **pattern_kwargs(lib, case, inputs.device)}
    if _uniform(case.q_lens) and _uniform(case.kv_lens):
        lq, lk = case.q_lens[0], case.kv_lens[0]
        kwargs = dict(q=inputs.q.view(b, lq, hq, d), k=inputs.k.view(b, lk, hkv, d),
                      v=inputs.v.view(b, lk, hkv, d), **common)
        return Call("flash_attn_func", lib.fn("flash_attn_func"), kwargs, (b, lq, hq, d))
    kwargs = dict(q=inputs.q, k=inputs.k, v=inputs.v, cu_seqlens_q=inputs.cu_seqlens_q,
                  cu_seqlens_k=inputs.cu_seqlens_k, max_seqlen_q=case.max_q, max_seqlen_k=case.max_kv,
                  **common)
    return Call("flash_attn_varlen_func", lib.fn("flash_attn_varlen_func"), kwargs, (case.total_q, hq, d))


def paged_call(lib: FlashAttnLib, case: Case, inputs: Inputs) -> Call:
    """Paged K/V: the pool and block tables as the harness built them, no copies.

    Equal query lengths (decode, uniform chunks) pass q as a (B, Lq, Hq, D) view; unequal ones pass
    the packed q with cu_seqlens_q. Per-sequence KV lengths go as seqused_k / cache_seqlens.
    """
    paged = inputs.paged
    assert paged is not None
    b, hq, d = case.batch, case.num_q_heads, case.head_dim
    uniform_q = _uniform(case.q_lens)
    lq = case.q_lens[0]
    q = inputs.q.view(b, lq, hq, d) if uniform_q else inputs.q
    out_shape = (b, lq, hq, d) if uniform_q else (case.total_q, hq, d)
    varlen_q = {} if uniform_q else {"cu_seqlens_q": inputs.cu_seqlens_q, "max_seqlen_q": case.max_q}
    common: dict[str, Any] = {"softmax_scale": case.softmax_scale, "causal": case.causal,
                              **pattern_kwargs(lib, case, inputs.device)}
    if lib.generation == 4:
        kwargs = dict(q=q, k=paged.k_cache, v=paged.v_cache, page_table=paged.block_tables,
                      seqused_k=paged.kv_lens, max_seqlen_k=case.max_kv, **varlen_q, **common)
        return Call("flash_attn_varlen_func", lib.fn("flash_attn_varlen_func"), kwargs, out_shape)
    if lib.generation == 3:
        kwargs = dict(q=q, k_cache=paged.k_cache, v_cache=paged.v_cache, page_table=paged.block_tables,
                      cache_seqlens=paged.kv_lens, **varlen_q, **common)
        return Call("flash_attn_with_kvcache", lib.fn("flash_attn_with_kvcache"), kwargs, out_shape)
    if uniform_q:
        kwargs = dict(q=q, k_cache=paged.k_cache, v_cache=paged.v_cache, block_table=paged.block_tables,
                      cache_seqlens=paged.kv_lens, **common)
        return Call("flash_attn_with_kvcache", lib.fn("flash_attn_with_kvcache"), kwargs, out_shape)
    # FA2 with unequal query lengths: the varlen kernel reads pages through block_table, with the
    # per-sequence KV lengths as cu_seqlens_k.
    kwargs = dict(q=q, k=paged.k_cache, v=paged.v_cache, cu_seqlens_q=inputs.cu_seqlens_q,
                  cu_seqlens_k=inputs.cu_seqlens_k, max_seqlen_q=case.max_q, max_seqlen_k=case.max_kv,
                  block_table=paged.block_tables, **common)
    return Call("flash_attn_varlen_func", lib.fn("flash_attn_varlen_func"), kwargs, out_shape)
