"""A plugin for the gate's A/B tests: replaces the `naive` backend of the version that loads it
with a slower, a wrong or an unsupported one, as ATTNBENCH_AB_FAKE (read at import) says."""

from __future__ import annotations

import os

from attnbench.backends.base import Prepared, Unsupported, registry
from attnbench.backends.naive import Naive

MODE = os.environ.get("ATTNBENCH_AB_FAKE", "slow")
SLOW_REPEATS = 8


class FakeNaive(Naive):
    name = "naive"

    def prepare(self, case, inputs):
        inner = super().prepare(case, inputs)
        if MODE == "slow":
            # the same work eight times: a slowdown that scales with the work, so it stays far beyond
            # the test's 20% threshold when a busy CI machine stretches or preempts calls (doubled
            # work on a 0.1 ms point read as 1.19x there; a fixed sleep made the ratios too scattered)
            def slow():
                for _ in range(SLOW_REPEATS - 1):
                    inner.run()
                return inner.run()

            return Prepared(run=slow, to_packed=inner.to_packed, info=inner.info)
        if MODE == "wrong":  # the last sequence's output off by a little: per-sequence error catches it
            last = inputs.seq_slices()[-1][0]

            def wrong():
                out = inner.to_packed(inner.run()).clone()
                out[last] += 0.05
                return out

            return Prepared(run=wrong, info=inner.info)
        if MODE == "unsupported":
            raise Unsupported("planted: not supported in B")
        return inner


registry()["naive"] = FakeNaive
