"""Self-contained HTML: inline CSS, figures embedded as base64 PNG, no script, no external fetch.

Every string that comes from a config, a manifest or a results row goes through html.escape; the
only markup in the page is written here.
"""

from __future__ import annotations

import base64
import html

from attnbench.report.document import Report, figures_after, is_synthetic, title_line
from attnbench.report.figures import FigureResult
from attnbench.report.table import NOT_MEASURED, Table

CSS = """
body { font: 14px/1.45 -apple-system, 'Segoe UI', 'DejaVu Sans', Arial, sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1500px; padding: 18px 28px 60px; }
h1 { font-size: 24px; margin: 6px 0 4px; }
h2 { font-size: 19px; margin: 30px 0 6px; border-bottom: 2px solid #d0d7de; padding-bottom: 4px; }
p.intro { color: #444; margin: 4px 0 10px; max-width: 1100px; }
.meta { color: #555; font-size: 13px; }
.banner { background: #fff4d6; border: 1px solid #e0b84d; padding: 8px 12px; margin: 10px 0; }
nav { font-size: 13px; margin: 10px 0 4px; }
nav a { margin-right: 12px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 8px; }
th, td { border: 1px solid #d0d7de; padding: 4px 7px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafbfc; }
td.holds { background: #dcf5e1 !important; font-weight: 600; }
td.fails { background: #fde2e1 !important; font-weight: 600; }
td.na { color: #777; font-style: italic; }
td.undecided { background: #fff4d6 !important; font-weight: 600; }
ul.notes { color: #444; font-size: 12.5px; margin: 4px 0 10px; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #444; font-size: 13px; margin-top: 4px; }
p.empty, p.nodraw { color: #777; font-style: italic; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cell_class(text: str) -> str:
    if text == "holds" or text.startswith("holds "):
        return ' class="holds"'
    if text.startswith("does not hold"):
        return ' class="fails"'
    if text.startswith(NOT_MEASURED):
        return ' class="na"'
    if text.startswith("undecided"):  # claims.UNDECIDED: measured, the interval contains the limit
        return ' class="undecided"'
    return ""


def table_html(table: Table) -> str:
    parts = [f'<h2 id="{esc(table.key)}">{esc(table.title)}</h2>', f'<p class="intro">{esc(table.intro)}</p>']
    if table.rows:
        head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
        body = "\n".join(
            "<tr>" + "".join(f"<td{_cell_class(str(c))}>{esc(c)}</td>" for c in row) + "</tr>"
            for row in table.rows
        )
        parts.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n'
                     "</tbody></table></div>")
    else:
        parts.append(f'<p class="empty">{esc(table.empty_reason or "no rows")}</p>')
    if table.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in table.notes) + "</ul>")
    return "\n".join(parts)


def figure_html(fig: FigureResult) -> str:
    if fig.path is None:
        return f'<p class="nodraw">Figure “{esc(fig.title)}” not drawn: {esc(fig.reason)}.</p>'
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    return (f'<figure id="fig-{esc(fig.key)}"><img alt="{esc(fig.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{esc(fig.title)}.</b> {esc(fig.caption)}</figcaption></figure>")


def render(report: Report) -> str:
    nav = " ".join(f'<a href="#{esc(t.key)}">{esc(t.title)}</a>' for t in report.tables)
    body = ["<h1>attnbench report: PagedAttention vs FlashAttention, measured</h1>",
            f'<p class="meta">{esc(title_line(report))}</p>', f"<nav>{nav}</nav>"]
    if is_synthetic(report):
        body.append('<div class="banner"><b>Synthetic data.</b> At least one run is a test fixture generated '
                    "from a latency model; its numbers were not measured on any GPU.</div>")
    if not report.plotted:
        body.append('<p class="nodraw">Figures not drawn (run <code>attnbench report --plot</code>).</p>')
    for table in report.tables:
        body.append(table_html(table))
        body += [figure_html(f) for f in figures_after(report, table.key)]
    title = esc("attnbench report — " + ", ".join(r.run_id for r in report.runs))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(body)
            + "\n</body></html>\n")
