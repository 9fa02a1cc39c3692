"""What each backend is (purpose, memory model): from the backend registry, else a built-in table.

The report must render on a machine where a backend module is missing or fails to import, so the
registry is only a preferred source; the built-in table covers every backend the project ships.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class BackendInfo:
    family: str
    impl: str
    purpose: str
    memory_model: str


BUILTIN: dict[str, BackendInfo] = {
    "naive": BackendInfo("naive", "torch", "Reference: eager matmul, softmax, matmul",
                         "Materialises the N x N scores (O(N²) working memory)"),
    "sdpa-math": BackendInfo("naive", "torch", "PyTorch SDPA math path (standard attention)",
                             "Materialises the N x N scores (O(N²))"),
    "sdpa-flash": BackendInfo("flash", "torch", "PyTorch SDPA FlashAttention-2 kernel",
                              "Streaming tiles in SRAM (O(N) working memory)"),
    "sdpa-efficient": BackendInfo("flash", "torch", "PyTorch SDPA memory-efficient (xFormers) kernel",
                                  "Streaming tiles (O(N))"),
    "sdpa-cudnn": BackendInfo("flash", "torch", "PyTorch SDPA cuDNN fused attention",
                              "Streaming tiles (O(N))"),
    "flex": BackendInfo("flash", "torch", "FlexAttention (compiled Triton template)",
                        "Streaming tiles, block mask (O(N))"),
    "flex-paged": BackendInfo("paged", "torch", "FlexAttention over a paged KV cache",
                              "Paged blocks through a block table, streaming tiles"),
    "triton-flash": BackendInfo("flash", "triton", "Triton FlashAttention forward (varlen, causal, GQA)",
                                "Streaming tiles (O(N))"),
    "triton-paged": BackendInfo("paged", "triton", "Triton paged attention (decode, chunked prefill)",
                                "Paged blocks through a block table"),
    "cuda-flash": BackendInfo("flash", "cuda", "CUDA FlashAttention forward", "Streaming tiles (O(N))"),
    "cuda-paged": BackendInfo("paged", "cuda", "CUDA paged attention (v1 one pass, v2 split-K)",
                              "Paged blocks through a block table; v2 keeps per-partition partials"),
    "flash-attn": BackendInfo("flash", "external", "flash-attn package (varlen and block_table paths)",
                              "Streaming tiles; contiguous or paged KV"),
    "sdpa-flash-cpu": BackendInfo("flash", "torch", "PyTorch's flash-style CPU attention kernel",
                                  "Query x key tiles per thread, no N x N scores (O(N))"),
    "cpu-paged": BackendInfo("paged", "cpp", "Paged attention on a CPU (C++/OpenMP)",
                             "Paged blocks through a block table"),
    "flashinfer": BackendInfo("paged", "external", "FlashInfer FA2: tensor-core decode, paged/ragged prefill",
                              "Paged KV through a CSR page table (O(N))"),
    "flashinfer-notc": BackendInfo("paged", "external", "FlashInfer paged decode on CUDA cores",
                                   "Paged KV through a CSR page table (O(N))"),
    "flashinfer-fa3": BackendInfo("paged", "external", "FlashInfer sm90 FA3 kernels",
                                  "Paged KV through a CSR page table (O(N))"),
}


@lru_cache(maxsize=1)
def _registry() -> dict[str, BackendInfo]:
    # Only a process that has loaded the backends already (a sweep) asks them: loading them imports
    # torch (seconds of CPU), which a report never needs; the built-in table covers the shipped ones.
    backends = sys.modules.get("attnbench.backends")
    if backends is None or not getattr(backends, "_loaded", False):
        return {}
    try:
        from attnbench.backends import all_backends

        return {
            name: BackendInfo(b.family, b.impl, b.purpose or "", b.memory_model or "")
            for name, b in all_backends().items()
        }
    except Exception:  # noqa: BLE001 - any failure of a backend import falls back to the table
        return {}


def describe(name: str, family: str | None = None, impl: str | None = None) -> BackendInfo:
    """The registry's description where it has text, else the built-in one, else the row's columns."""
    reg = _registry().get(name)
    base = BUILTIN.get(name)
    if reg is not None and (reg.purpose or reg.memory_model):
        return BackendInfo(
            reg.family,
            reg.impl,
            reg.purpose or (base.purpose if base else ""),
            reg.memory_model or (base.memory_model if base else ""),
        )
    if base is not None:
        return base
    return BackendInfo(family or "?", impl or "?", "not described (unknown backend)", "not described")
