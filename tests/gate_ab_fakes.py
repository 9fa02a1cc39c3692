"""A plugin for the gate's A/B tests: replaces the `naive` backend of the version that loads it
with a slower, a wrong or an unsupported one, as ATTNBENCH_AB_FAKE (read at import) says."""

from __future__ import annotations

import os
import time

from attnbench.backends.base import Prepared, Unsupported, registry
from attnbench.backends.naive import Naive

MODE = os.environ.get("ATTNBENCH_AB_FAKE", "slow")
SLOW_EXTRA_S = 0.003


class FakeNaive(Naive):
    name = "naive"

    def prepare(self, case, inputs):
        inner = super().prepare(case, inputs)
        if MODE == "slow":
            # the work, then idle for as long as the work took plus 3 ms: at least 2x, far beyond the
            # test's 20% threshold however busy the machine (CI measured 0.85 ms for A, so doubling
            # the work there read as only 1.19x, and with the tests on both cores of a loaded machine
            # A took 46 ms, where a fixed 3 ms read as 1.06x); sleeping needs no CPU, so contention
            # cannot hide it
            def slow():
                t0 = time.perf_counter()
                out = inner.run()
                time.sleep(SLOW_EXTRA_S + (time.perf_counter() - t0))
                return out

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
