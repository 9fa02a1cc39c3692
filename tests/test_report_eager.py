"""The report's eager-call picture: device time by default, the host's call time beside it."""

from __future__ import annotations

import math

import pandas as pd

from attnbench.report.select import eager_times


def test_eager_time_is_the_slower_of_device_and_host() -> None:
    rows = pd.DataFrame({
        "backend": ["cuda-paged", "sdpa-cudnn", "old-row"],
        "latency_ms_p50": [0.028, 0.015, 0.020],  # device time
        "call_ms_p50": [0.016, 0.056, math.nan],  # host time per eager call
    })
    eager = eager_times(rows)
    # cuda-paged is device-bound (0.028 > 0.016); cuDNN is launch-bound, paced by its host call
    assert list(eager["backend"]) == ["cuda-paged", "sdpa-cudnn"]
    assert list(eager["latency_ms_p50"]) == [0.028, 0.056]
    # device time itself is untouched in the rows the report uses by default
    assert list(rows["latency_ms_p50"]) == [0.028, 0.015, 0.020]


def test_runs_without_host_times_have_no_eager_picture() -> None:
    rows = pd.DataFrame({"backend": ["a"], "latency_ms_p50": [1.0]})
    assert eager_times(rows).empty
