"""A float64 attention oracle for the score patterns (window, soft-cap, ALiBi), per sequence and head.

Written from the Case docstring's definitions, independently of any kernel and of
attnbench/reference.py, to check that reference (tests/test_cpu_paged_patterns.py); kernels are judged
by reference.check_output, and scripts/gpu_cuda_patterns_check.py uses this oracle only to confirm the
reference on the GPU before it trusts it. The query at absolute position p = kv_len - q_len + i sees key
j when j >= p - window (window set) and j <= p (causal); s = scale * q.k, then softcap * tanh(s /
softcap), then - slope_h * |p - j|.
"""

from __future__ import annotations

import torch

from attnbench.case import Case


def pattern_attention(case: Case, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: list[int],
                      cu_k: list[int], slopes: list[float] | None = None) -> torch.Tensor:
    """float64 (total_q, Hq, D) output of the packed inputs under the case's mask and patterns."""
    device = q.device  # float64 on the inputs' device (a GPU's float64 is exact enough and fast)
    out = torch.empty(q.shape, dtype=torch.float64, device=device)
    hkv, group = case.num_kv_heads, case.gqa_ratio
    slope_t = (torch.tensor(slopes, dtype=torch.float64, device=device).view(hkv, group, 1, 1)
               if case.alibi else None)
    for i in range(case.batch):
        # Query heads grouped by their KV head, (Hkv, group, nq, D): K/V are never repeated per head.
        qs = q[cu_q[i]:cu_q[i + 1]].double().permute(1, 0, 2).reshape(hkv, group, -1, q.shape[-1])
        ks = k[cu_k[i]:cu_k[i + 1]].double().transpose(0, 1)[:, None]  # (Hkv, 1, nk, D)
        vs = v[cu_k[i]:cu_k[i + 1]].double().transpose(0, 1)[:, None]
        nq, nk = qs.shape[2], ks.shape[2]
        rows = max(1, (256 << 20) // (8 * case.num_q_heads * nk))  # query rows per ~256 MiB score block
        for r0 in range(0, nq, rows):
            r1 = min(nq, r0 + rows)
            s = torch.matmul(qs[:, :, r0:r1], ks.transpose(-1, -2)) * case.softmax_scale  # (Hkv, g, rows, nk)
            if case.softcap is not None:
                s = case.softcap * torch.tanh(s / case.softcap)
            pos = torch.arange(r0, r1, dtype=torch.float64, device=device)[:, None] + (nk - nq)
            key = torch.arange(nk, dtype=torch.float64, device=device)[None, :]
            if slope_t is not None:
                s = s - slope_t * (pos - key).abs()
            hidden = torch.zeros(r1 - r0, nk, dtype=torch.bool, device=device)
            if case.causal:
                hidden |= key > pos
            if case.window is not None:
                hidden |= key < pos - case.window
            probs = torch.softmax(s.masked_fill(hidden, float("-inf")), dim=-1)
            o = torch.matmul(probs, vs)  # (Hkv, group, rows, D)
            out[cu_q[i] + r0:cu_q[i] + r1] = o.reshape(case.num_q_heads, r1 - r0, -1).transpose(0, 1)
    return out


def worst_cell_error(out: torch.Tensor, expected: torch.Tensor, cu_q: list[int]) -> tuple[float, int, int]:
    """Largest relative L2 error over (sequence, query head) cells, with that cell's sequence and head."""
    worst = (0.0, -1, -1)
    diff = out.double().to(expected.device) - expected
    for i in range(len(cu_q) - 1):
        rows = slice(cu_q[i], cu_q[i + 1])
        num = torch.linalg.vector_norm(diff[rows], dim=(0, 2))
        den = torch.linalg.vector_norm(expected[rows], dim=(0, 2)).clamp_min(1e-30)
        rel = torch.nan_to_num(num / den, nan=float("inf"))  # an unwritten (NaN) cell is infinitely wrong
        h = int(torch.argmax(rel))
        if rel[h].item() > worst[0] or worst[1] < 0:
            worst = (rel[h].item(), i, h)
    return worst
