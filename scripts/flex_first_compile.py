"""Where the first compiled FlexAttention call of a fresh process spends its time (needs a GPU).

    python3 scripts/flex_first_compile.py      # once to fill the caches, then again: warm figures

Prints one JSON line of seconds per step: import torch, import the compile stack (torch._dynamo,
torch._inductor, flex_attention), CUDA start, inputs, the first compiled call (B1 H32 N2048 D128
bf16 causal), a second shape's (N4096). On an H200 host with warm caches the compile-stack import
took 7.0-7.6 s and the first call 1.0-1.3 s, later shapes 0.2-0.3 s
(results/baselines/multi-gpu-h200x2/earlier/flex-first-compile.log): the per-process warm-up that
Backend.warmup_s states for the FlexAttention backends and attnbench.runner.device_queue schedules around.
"""

from __future__ import annotations

import json
import time

stamps = {"start": time.perf_counter()}
import torch  # noqa: E402 - timed

stamps["import_torch"] = time.perf_counter()
import torch._dynamo  # noqa: E402, F401
import torch._inductor.compile_fx  # noqa: E402, F401
from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: E402

stamps["import_compile_stack"] = time.perf_counter()
torch.zeros(1, device="cuda")
torch.cuda.synchronize()
stamps["cuda_init"] = time.perf_counter()
compiled = torch.compile(flex_attention, dynamic=False)


def causal_inputs(n: int):
    q, k, v = (torch.randn(1, 32, n, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    mask = create_block_mask(lambda b, h, qi, ki: qi >= ki, 1, None, n, n, device="cuda")
    return q, k, v, mask


for n, label in ((2048, "first_compile"), (4096, "second_shape_compile")):
    q, k, v, mask = causal_inputs(n)
    stamps[f"inputs_{n}"] = time.perf_counter()
    compiled(q, k, v, block_mask=mask)
    torch.cuda.synchronize()
    stamps[label] = time.perf_counter()
names = list(stamps)
print(json.dumps({names[i]: round(stamps[names[i]] - stamps[names[i - 1]], 3) for i in range(1, len(names))}))
