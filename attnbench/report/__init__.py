"""Reports: turn run directories into Markdown, self-contained HTML and PNG figures that fill the
PagedAttention-vs-FlashAttention comparison's tables with measured numbers and check its claims.

Reads results only; never runs a kernel. Entry point: build.write_report (used by `attnbench report`).
This file imports nothing: its submodules import each other by full name, so a package that loaded
them here would sit in every import cycle among them.

- load.py                  run directories -> one pandas frame per run (ReportError, RunData)
- build.py                 every table of every run, merged side by side; write_report
- document.py              the Report the renderers read, and which figures follow which table
- render_md.py, render_html.py   Markdown and self-contained HTML
- table.py                 the Table every section is, and the number formats
- quick_summary.py, complexity.py, bandwidth.py, when_to_use.py, summary.py, claims.py,
  claims_patterns.py, claims_layout.py (the paired block-order claim), fragmentation.py,
  fragmentation_window.py, support.py, overview.py,
  compare.py               one table each
- select.py, classify.py, fit.py, describe.py   the shared row selections, classes and fits
- figures.py               the figure kit (canvas, title and footer, saving); draw.py draws them all
- plots_perf.py, plots_memory.py, plots_patterns.py, plots_samples.py, styles.py   the figures
- study_compare.py         `attnbench compare-studies`
- output_dir.py            where a report goes when --out is not given
"""
