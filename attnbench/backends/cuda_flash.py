"""cuda-flash: attnbench's own CUDA flash-attention forward (kernels/cuda/flash_attention.cu).

Tensor cores through mma.sync m16n8k16 with ldmatrix and cp.async double buffering; packed varlen
sequences, causal (bottom-right aligned) or full, GQA. Prefill, and chunked prefill ("mixed": a chunk
of queries at the end of a longer context), on contiguous K/V. Sliding window (KV tiles before a
query tile's window are never loaded), logit soft-cap (tanh.approx.f32) and ALiBi, all run-time
arguments of the one compiled kernel: a new window size or cap needs no rebuild.
"""

from __future__ import annotations

import functools
import os

import torch

from attnbench import cuda_lib
from attnbench.backends._cuda_common import DTYPES, cuda_available, current_stream, dtype_code
from attnbench.backends.base import Backend, Prepared, Unsupported, register
from attnbench.case import Case
from attnbench.inputs import Inputs
from attnbench.patterns import alibi_slopes

HEAD_DIMS = (64, 128)
PHASES = ("prefill", "mixed")
CONFIG_ENV = "ATTNBENCH_CUDA_FLASH_CONFIG"  # tile configuration index (tuning only)
DEFAULT_CONFIG = 0
# Mirrors the table at the top of flash_attention.cu.
CONFIGS = {
    0: "BM128 BN64 8 warps",
    1: "BM128 BN64 4 warps",
    2: "BM64 BN64 4 warps",
    3: "BM128 BN32 4 warps",
}


@register
class CudaFlash(Backend):
    name = "cuda-flash"
    family = "flash"
    impl = "cuda"
    purpose = "fused flash-attention forward on tensor cores (CUDA C++, mma.sync)"
    memory_model = "streaming: K/V tiles through shared memory, O(N) working memory"
    kv_inputs = ("contiguous",)
    devices = ("cuda",)
    patterns = frozenset({"window", "softcap", "alibi"})

    def available(self, device: str) -> tuple[bool, str]:
        ok, reason = super().available(device)
        return (ok, reason) if not ok else cuda_available(device)

    def supports(self, case: Case) -> tuple[bool, str]:
        if case.paged:
            return False, "reads contiguous K/V, not a paged cache"
        if case.phase not in PHASES:
            return False, f"phase {case.phase}: allowed {', '.join(PHASES)} (decode: use cuda-paged)"
        if case.dtype not in DTYPES:
            return False, f"dtype {case.dtype}: allowed {', '.join(DTYPES)}"
        if case.head_dim not in HEAD_DIMS:
            return False, f"head_dim {case.head_dim}: allowed {', '.join(map(str, HEAD_DIMS))}"
        return True, ""

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        ok, reason = self.supports(case)
        if not ok:
            raise Unsupported(reason)
        env = os.environ.get(CONFIG_ENV)
        config = int(env) if env else DEFAULT_CONFIG
        if config not in CONFIGS:
            raise Unsupported(f"{CONFIG_ENV}={config}: allowed {', '.join(map(str, CONFIGS))}")
        lib = cuda_lib.load()
        q, k, v = inputs.q.contiguous(), inputs.k.contiguous(), inputs.v.contiguous()
        cu_q = inputs.cu_seqlens_q.to(torch.int32).contiguous()
        cu_k = inputs.cu_seqlens_k.to(torch.int32).contiguous()
        out = torch.empty_like(q)
        slopes = (torch.tensor(alibi_slopes(case.num_q_heads), dtype=torch.float32, device=q.device)
                  if case.alibi else None)
        forward = functools.partial(  # the launch's arguments, bound once outside the timed call
            lib.flash_fwd,
            out=out.data_ptr(),
            q=q.data_ptr(),
            k=k.data_ptr(),
            v=v.data_ptr(),
            cu_q=cu_q.data_ptr(),
            cu_k=cu_k.data_ptr(),
            batch=case.batch,
            max_q_len=case.max_q,
            num_q_heads=case.num_q_heads,
            num_kv_heads=case.num_kv_heads,
            head_dim=case.head_dim,
            dtype=dtype_code(case.dtype),
            causal=case.causal,
            scale=case.softmax_scale,
            window=case.window,
            softcap=case.softcap,
            config=config,
            alibi_slopes=slopes.data_ptr() if slopes is not None else 0,
        )
        keep = (q, k, v, cu_q, cu_k, slopes)

        def run() -> torch.Tensor:
            _ = keep
            forward(stream=current_stream())
            return out

        return Prepared(run=run, to_packed=lambda o: o, info={"config": CONFIGS[config]})
