"""Paged-family backends for the paired layout measurement's tests (loaded through ATTNBENCH_PLUGINS).

Each runs naive attention on the case's contiguous K/V (the tensors a paged case shares with its
contiguous twin), so both block orders do the same work on the same memory, unless told otherwise:
- test-paged-same: identical work on shuffled and contiguous tables (one callable for both sides),
- test-paged-slow: the shuffled side repeats the work SLOW_FACTOR times (a planted slowdown far
  beyond the 1% limit, so a busy machine cannot hide it),
- test-paged-flaky: like -same, but prepare raises (or ends the process) while
  ATTNBENCH_TEST_LAYOUT_FAIL is `raise` (or `crash`): ok in the sweep, failing in the post-step.
"""

from __future__ import annotations

import os
from dataclasses import replace

from attnbench.backends.base import Prepared, register
from attnbench.backends.naive import Naive

SLOW_FACTOR = 3  # tests/test_layout_pairs.py repeats both (it must not import this module)
FAIL_ENV = "ATTNBENCH_TEST_LAYOUT_FAIL"
_shared: dict[tuple, Prepared] = {}


def _contiguous_work(case, inputs) -> Prepared:
    """Naive on the contiguous K/V, one Prepared per (problem, Q tensor): the shuffled and contiguous
    inputs of one round share their Q/K/V (attnbench.inputs.build_inputs with a base), so both sides
    get the very same callable."""
    flat = case.without_paging()
    key = (flat, inputs.q.data_ptr())
    if key not in _shared:
        _shared.clear()  # one round's at a time
        _shared[key] = Naive().prepare(flat, replace(inputs, case=flat, paged=None))
    return _shared[key]


class _PagedFake(Naive):
    family = "paged"
    kv_inputs = ("paged",)

    def supports(self, case):
        return (True, "") if case.paged else (False, "needs a paged KV cache")


@register
class PagedSame(_PagedFake):
    name = "test-paged-same"

    def prepare(self, case, inputs):
        return _contiguous_work(case, inputs)


@register
class PagedSlow(_PagedFake):
    name = "test-paged-slow"

    def prepare(self, case, inputs):
        inner = _contiguous_work(case, inputs)
        if case.kv_layout != "shuffled":
            return inner

        def slow():
            for _ in range(SLOW_FACTOR - 1):
                inner.run()
            return inner.run()

        return Prepared(run=slow, to_packed=inner.to_packed, info=inner.info)


@register
class PagedFlaky(_PagedFake):
    name = "test-paged-flaky"

    def prepare(self, case, inputs):
        mode = os.environ.get(FAIL_ENV, "")
        if mode == "crash":
            os._exit(3)
        if mode == "raise":
            raise RuntimeError("planted layout failure")
        return _contiguous_work(case, inputs)
