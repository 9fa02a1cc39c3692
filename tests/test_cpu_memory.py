"""CPU working memory from the profiler's allocation events (attnbench.cpu_memory)."""

from __future__ import annotations

import torch

from attnbench import cpu_memory
from attnbench.measure import measure_memory

MIB = 1 << 20


def test_peak_is_the_largest_running_total():
    assert cpu_memory.peak_above_start([]) == 0
    assert cpu_memory.peak_above_start([100, -100, 50, 30, -80]) == 100
    assert cpu_memory.peak_above_start([-40, 10]) == 0  # frees of older tensors never go below the start


def test_temporaries_count_in_working_memory_and_outputs_only_in_the_peak():
    def work() -> torch.Tensor:
        scratch = torch.empty(MIB // 4)  # 1 MiB, freed before the return
        scratch.fill_(1.0)
        del scratch
        return torch.empty(4 * MIB // 4)  # a 4 MiB output

    out, peak, working = cpu_memory.measure(work)
    assert out.numel() == MIB
    assert peak == 4 * MIB
    assert working == MIB


def test_a_buffer_allocated_before_the_call_counts_in_neither():
    before, source = torch.empty(8 * MIB // 4), torch.ones(8 * MIB // 4)
    out, peak, working = cpu_memory.measure(lambda: before.copy_(source))
    assert out is before
    assert peak == working == 0


def test_measure_memory_on_cpu_reports_bytes():
    out, mem = measure_memory(lambda: torch.ones(256, 256) @ torch.ones(256, 256), torch.device("cpu"))
    assert out.shape == (256, 256)
    assert mem["peak_mem_bytes"] >= 3 * 256 * 256 * 4  # two operands and the product
    assert mem["working_mem_bytes"] == mem["peak_mem_bytes"] - 256 * 256 * 4
