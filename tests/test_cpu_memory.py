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


def test_a_freed_scratch_at_the_outputs_address_still_counts_as_working_memory():
    """The allocator may give the output the address of a scratch freed during the call (seen in a
    full test run): only the allocation still live at the end is the output's."""
    from attnbench.cpu_memory import _output_allocations, peak_above_start

    events = [(1, MIB, 0xA), (2, -MIB, 0xA), (3, 4 * MIB, 0xA)]  # scratch, its free, the output
    kept = _output_allocations(events, {0xA})
    assert kept == {2}
    assert peak_above_start(s for i, (_, s, _) in enumerate(events) if i not in kept) == MIB
