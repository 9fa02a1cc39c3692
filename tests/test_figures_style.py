"""Figures a reader can tell apart: family colours, implementation markers/lines, labels at line
ends, one fragmentation palette, the decode panel of the roofline and the samples figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.colors as mcolors
import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.memory.colors import CATEGORY_COLORS
from attnbench.report.load import load_one
from attnbench.report.styles import FAMILY_COLORS, IMPL_STYLE, spread, styles_for

ROOT = Path(__file__).resolve().parent.parent
H100 = ROOT / "results" / "baselines" / "h100"
PAIR = ROOT / "results" / "baselines" / "multi-gpu-h200x2" / "ci-gate"
runner = CliRunner()


@pytest.fixture(scope="module")
def h100():
    return load_one(H100)


def test_family_sets_colour_and_implementation_sets_marker_and_line(h100):
    styles = styles_for([h100])
    kinds = h100.df.groupby("label")[["kind", "impl"]].first()
    for label, st in styles.items():
        kind, impl = kinds.loc[label, "kind"], kinds.loc[label, "impl"]
        assert st.color in FAMILY_COLORS[kind]
        assert (st.linestyle, st.marker) == IMPL_STYLE[impl]
    flash = [lab for lab in styles if kinds.loc[lab, "kind"] == "flash"]
    # two backends of one family never share colour and shape at once
    looks = [(styles[lab].color, styles[lab].marker) for lab in flash]
    assert len(set(looks)) == len(looks)


def test_spread_keeps_order_gap_and_bounds():
    ys = spread([1.0, 1.01, 1.02, 5.0], 0.1)
    assert ys == sorted(ys) and all(b - a >= 0.1 - 1e-12 for a, b in zip(ys, ys[1:], strict=False))
    assert ys[-1] == pytest.approx(5.0)
    capped = spread([9.9, 9.95, 10.0], 0.5, low=0.0, high=10.0)
    assert max(capped) <= 10.0 + 1e-12 and min(capped) >= 0.0


def test_latency_figure_labels_every_line_at_its_end(h100):
    from attnbench.report.plots_perf import latency_vs_length
    from attnbench.report.select import length_series

    fig = latency_vs_length([h100], {}, "t")
    for ax, phase in zip(fig.axes, ("prefill", "decode"), strict=True):
        texts = {t.get_text() for t in ax.texts}
        assert set(length_series(h100.ok, phase)) <= texts


def test_roofline_puts_decode_in_its_own_panel(h100):
    from attnbench.report.plots_perf import roofline

    fig = roofline([h100], {}, "t")
    assert len(fig.axes) == 2
    decode_labels = {t.get_text() for t in fig.axes[1].get_xticklabels()}
    assert decode_labels == set(h100.ok[h100.ok["phase"] == "decode"]["label"])


def test_both_fragmentation_figures_use_one_palette(h100):
    from attnbench.memory import render as fragmentation_render
    from attnbench.report.plots_memory import fragmentation

    for key, color in CATEGORY_COLORS.items():
        assert fragmentation_render.COLORS[key] == color
    fig = fragmentation([h100], {}, "t")
    bars = {mcolors.to_hex(p.get_facecolor()) for p in fig.axes[0].patches}
    assert bars and bars <= {mcolors.to_hex(c) for c in CATEGORY_COLORS.values()}


def test_report_of_two_runs_draws_the_samples_figure(tmp_path):
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", str(PAIR / "one-1"), str(PAIR / "one-2"), "--plot", "--out",
                                 str(out), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert (out / "figures" / "samples.png").exists()
    assert "figures/samples.png" in (out / "report.md").read_text()
    single = runner.invoke(app, ["report", str(PAIR / "one-1"), "--plot", "--out", str(tmp_path / "one"),
                                 "--format", "md"])
    assert single.exit_code == 0 and not (tmp_path / "one" / "figures" / "samples.png").exists()


def test_samples_figure_orders_points_by_median_move():
    from attnbench.report.plots_samples import pairs

    a, b = load_one(PAIR / "one-1"), load_one(PAIR / "one-2")
    shown = pairs(a, b, 5)
    import numpy as np

    moves = [abs(np.log(np.median(xb) / np.median(xa))) for _, xa, xb in shown]
    assert len(shown) == 5 and moves == sorted(moves, reverse=True)


def test_gate_samples_plot(tmp_path):
    png = tmp_path / "gate.png"
    result = runner.invoke(app, ["gate", "--baseline", str(PAIR / "one-1"), "--current", str(PAIR / "one-2"),
                                 "--samples-plot", str(png)])
    assert result.exit_code in (0, 1), result.output
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
