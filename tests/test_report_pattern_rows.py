"""Report figures keep patterned cases apart from full attention, and key shapes safely.

The H200 study's speed-up heatmap averaged a window + soft-cap case (paged 1.49x faster) into the
full-attention cell of the same batch and context (0.98x), showing 1.21x; and the pattern figure's
shape keys broke on a missing block size (a float NaN in a string join)."""

from __future__ import annotations

import math

import pandas as pd

from attnbench.report.plots_memory import _grid
from attnbench.report.plots_patterns import shape_keys


def _pairs(pattern_cell: str) -> pd.DataFrame:
    rows = []
    for batch in (1, 4):
        for n in (1024, 4096):
            rows.append(dict(batch=batch, n_len=n, lat_a=1.0, lat_b=1.0, prefix_len=0, pattern="none"))
    # a patterned case on the (4, 4096) cell: paged 2x faster there
    rows.append(dict(batch=4, n_len=4096, lat_a=1.0, lat_b=2.0, prefix_len=0, pattern=pattern_cell))
    df = pd.DataFrame(rows)
    return df.assign(num_q_heads=32, num_kv_heads=8, head_dim=128, dtype="bf16", causal=False)


def test_heatmap_cells_hold_full_attention_only():
    grid = _grid(_pairs("window4096+softcap50"))
    assert grid is not None
    assert math.isclose(grid.loc[4, 4096], 1.0)  # the windowed case does not enter the cell
    assert math.isclose(_grid(_pairs("none")).loc[4, 4096], math.sqrt(2.0))  # two full cases: geomean


def test_shape_keys_take_missing_values():
    rows = pd.DataFrame(dict(batch=[16, 16], num_q_heads=[32, 32], num_kv_heads=[8, 8], head_dim=[128, 128],
                             dtype=["bf16", "bf16"], block_size=[16.0, float("nan")],
                             kv_layout=["shuffled", None]))
    keys = shape_keys(rows)
    assert keys.iloc[0] != keys.iloc[1] and all(isinstance(k, str) for k in keys)
