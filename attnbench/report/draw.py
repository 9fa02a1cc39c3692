"""Every figure of a report: which ones, their titles and captions, drawn once for all runs (shared)
or once per run, each written to figures/ or recorded with the reason it was not drawn.

Importing it imports matplotlib (through the plot modules): only a report with --plot does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from attnbench.report import plots_memory, plots_patterns, plots_perf, plots_samples
from attnbench.report.figures import FigureResult, NoData, colors_for, file_name, save
from attnbench.report.load import RunData


def draw_all(runs: list[RunData], figures_dir: Path) -> list[FigureResult]:
    """Draw every figure; each failure to find data becomes a not-drawn entry with its reason."""
    colors = colors_for(runs)
    results: list[FigureResult] = []
    shared: list[tuple[str, str, str, Callable]] = [
        ("latency_vs_seqlen", "Latency vs sequence length",
         "Median latency along the run's main length sweep per backend (log-log; band: p10–p90).",
         plots_perf.latency_vs_length),
        ("decode_bandwidth", "Decode bandwidth utilisation vs context length",
         "Achieved bandwidth (minimum bytes / time) as a share of the calibrated copy bandwidth.",
         plots_perf.decode_bandwidth),
    ]
    if len(runs) >= 2:
        shared.append(("samples", "Samples per point",
                       "Every timing sample of the points whose medians moved most between the first two "
                       "runs, divided by the first run's median.", plots_samples.samples_figure))
    per_run: list[tuple[str, str, str, Callable]] = [
        ("roofline", "Roofline", "Every ok point against the run's calibrated copy and matmul ceilings.",
         plots_perf.roofline),
        ("block_size_tradeoff", "Block-size trade-off",
         "Kernel time against KV-cache memory waste (1 - bytes used / bytes allocated) per block size.",
         plots_memory.block_size_tradeoff),
        ("speedup_heatmap", "Speed-up of the best paged over the best flash backend",
         "Best flash time / best paged time per batch x length (> 1: the paged side is faster).",
         plots_memory.speedup_heatmap),
        ("decode_window", "Decode time vs context, with and without a sliding window",
         "Median decode latency per backend: solid without a pattern, dashed with a window (dotted line at "
         "the window size); a kernel that skips keys outside the window stops growing there.",
         plots_patterns.decode_window),
        ("fragmentation", "KV-cache fragmentation",
         "Share of KV-cache memory per allocation policy (fragmentation study).", plots_memory.fragmentation),
    ]
    # Figures of an earlier render into the same folder would linger beside this report's: drop them.
    for key in [k for k, *_ in shared + per_run] + ["samples"]:
        for stale in figures_dir.glob(f"{key}*.png"):
            stale.unlink()
    for key, title, caption, fn in shared:
        res = FigureResult(key, title, caption, base=key)
        try:
            res.path = save(fn(runs, colors, title), figures_dir / file_name(key, None, 1))
        except NoData as exc:
            res.reason = str(exc)
        results.append(res)
    for i, run in enumerate(runs):
        for key, title, caption, fn in per_run:
            t = title if len(runs) == 1 else f"{title} — {run.run_id}"
            res = FigureResult(key if len(runs) == 1 else f"{key}_run{i + 1}", t, caption, base=key)
            try:
                res.path = save(fn([run], colors, title), figures_dir / file_name(key, i, len(runs)))
            except NoData as exc:
                res.reason = str(exc)
            results.append(res)
    return results
