"""ALiBi slopes for the project's own kernels (cpu-paged, cuda-flash, cuda-paged); not a backend.

TODO(patterns): switch to attnbench.patterns.alibi_slopes (the harness's one definition, written in
parallel) once it lands on main, and delete this module.
"""

from __future__ import annotations

import math


def alibi_slopes(num_heads: int) -> list[float]:
    """Per-head ALiBi slopes: 2^(-8 (h+1) / n) for n a power of two; otherwise the n' = 2^floor(log2 n)
    series followed by every other slope of the 2n' series (the ALiBi paper's rule for other head counts).

    TODO(patterns): switch to attnbench.patterns.alibi_slopes once that module lands on main.
    """
    def series(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    base = 2 ** int(math.floor(math.log2(num_heads)))
    if base == num_heads:
        return series(num_heads)
    return series(base) + series(2 * base)[0::2][: num_heads - base]
