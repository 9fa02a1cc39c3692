"""What the gate shows: a rich table on the terminal, a Markdown summary for the CI page, JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from attnbench.gate import VERDICTS, GateResult, Key, PointResult

COLOURS = {"SLOW": "bold red", "FAST": "green", "SAME": "dim", "UNKNOWN": "yellow"}
_ORDER = {v: i for i, v in enumerate(("SLOW", "UNKNOWN", "FAST", "SAME"))}


def sorted_points(result: GateResult) -> list[PointResult]:
    """SLOW first, then UNKNOWN, FAST, SAME; within each, the largest ratio first."""
    return sorted(result.points, key=lambda p: (_ORDER[p.verdict], -(p.ratio or 0.0), p.key))


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def fmt_interval(p: PointResult) -> str:
    if p.low is None or p.high is None:
        return "unbounded" if p.n_baseline and p.n_current else "-"
    return f"[{p.low:.3f}, {p.high:.3f}]"


def _run_line(side, role: str) -> str:
    m = side.manifest
    return (
        f"{role}: {side.label} (run {m.get('run_id', '?')}, {m.get('gpu_name') or m.get('device', '?')}, "
        f"config {m.get('config_name', '?')} {m.get('config_hash', '?')}, commit {m.get('git_commit', '?')})"
    )


def method_text(result: GateResult) -> str:
    per_point = f"{(1.0 - result.point_alpha) * 100:.6g}%"
    return (
        f"Verdicts from a {per_point} confidence interval for the current/baseline time ratio of each "
        f"point (Hodges-Lehmann interval from the Mann-Whitney distribution of pairwise log-differences "
        f"of the raw samples), Bonferroni-corrected over the {result.n_tested} points compared "
        f"(family-wise alpha {result.family_alpha:g}). SLOW when the whole interval lies above "
        f"{result.slow_limit:.3f} (1 + threshold {result.threshold:g}), FAST when it lies below "
        f"{result.fast_limit:.3f} (1 / (1 + threshold)), SAME otherwise; UNKNOWN when a side lacks samples."
    )


def headline(result: GateResult) -> str:
    counts = ", ".join(f"{result.count(v)} {v}" for v in VERDICTS)
    extra = f", {len(result.new)} new, {len(result.vanished)} vanished"
    status = "FAIL" if result.exit_code else "PASS"
    return f"attnbench gate: {status} ({counts}{extra})"


# ---- terminal --------------------------------------------------------------------------------
def print_result(result: GateResult, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=headline(result), title_justify="left")
    for name, justify in (
        ("point", "left"), ("backend", "left"), ("baseline ms", "right"), ("current ms", "right"),
        ("ratio", "right"), ("interval", "right"), ("verdict", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify, overflow="fold")
    for p in sorted_points(result):
        style = COLOURS[p.verdict]
        verdict = f"[{style}]{p.verdict}[/{style}]" + (f" [dim]({escape(p.note)})[/dim]" if p.note else "")
        table.add_row(
            escape(p.case_id), escape(p.backend), fmt_ms(p.baseline_ms), fmt_ms(p.current_ms),
            fmt_ratio(p.ratio), fmt_interval(p), verdict,
        )  # fmt: skip
    console.print(table)
    for line in (_run_line(result.baseline, "baseline"), _run_line(result.current, "current")):
        console.print(line, highlight=False, markup=False)
    console.print(method_text(result), highlight=False, markup=False)
    if result.forced:
        console.print("[yellow]FORCED:[/yellow] " + escape("; ".join(result.mismatches)), highlight=False)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    for title, keys in (("new points (current only)", result.new), ("vanished points", result.vanished)):
        if keys:
            text = f"{title}: " + ", ".join(f"{c} [{b}]" for c, b in keys)
            console.print(text, highlight=False, markup=False)


# ---- Markdown --------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_keys(keys: list[Key]) -> list[str]:
    return [f"- `{c}` [{b}]" for c, b in keys]


def markdown(result: GateResult) -> str:
    lines = [f"### {headline(result)}", ""]
    lines += [f"- {_md_cell(_run_line(result.baseline, 'baseline'))}"]
    lines += [f"- {_md_cell(_run_line(result.current, 'current'))}", ""]
    if result.forced:
        lines += ["**Forced:** the runs are not comparable: " + "; ".join(result.mismatches), ""]
    lines += [f"> {w}" for w in result.warnings] + ([""] if result.warnings else [])
    lines += [method_text(result), ""]
    lines += ["| point | backend | baseline ms | current ms | ratio | interval | verdict |"]
    lines += ["| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for p in sorted_points(result):
        verdict = f"**{p.verdict}**" if p.verdict == "SLOW" else p.verdict
        if p.note:
            verdict += f" ({p.note})"
        cells = [
            f"`{p.case_id}`", p.backend, fmt_ms(p.baseline_ms), fmt_ms(p.current_ms),
            fmt_ratio(p.ratio), fmt_interval(p), verdict,
        ]  # fmt: skip
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    listed = (("New points (current only)", result.new), ("Vanished points (baseline only)", result.vanished))
    for title, keys in listed:
        if keys:
            lines += [f"#### {title}", "", *_md_keys(keys), ""]
    return "\n".join(lines)


def error_markdown(message: str) -> str:
    return f"### attnbench gate: NOT COMPARED\n\n{message}\n"


# ---- JUnit XML -------------------------------------------------------------------------------
def _numbers(p: PointResult, result: GateResult) -> str:
    return (
        f"baseline {fmt_ms(p.baseline_ms)} ms (n={p.n_baseline}), current {fmt_ms(p.current_ms)} ms "
        f"(n={p.n_current}), ratio {fmt_ratio(p.ratio)}, interval {fmt_interval(p)}, "
        f"SLOW above {result.slow_limit:.3f}, FAST below {result.fast_limit:.3f}"
        + (f"; {p.note}" if p.note else "")
    )


def junit_xml(result: GateResult) -> str:
    """One testcase per point: SLOW is a <failure>, UNKNOWN, new and vanished points are <skipped>."""
    n_new_gone = len(result.new) + len(result.vanished)
    suites = ET.Element("testsuites", name="attnbench gate")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="attnbench-gate",
        tests=str(len(result.points) + n_new_gone),
        failures=str(result.count("SLOW")),
        errors="0",
        skipped=str(result.count("UNKNOWN") + n_new_gone),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("baseline", str(result.baseline.path)), ("current", str(result.current.path)),
        ("threshold", f"{result.threshold:g}"), ("family_alpha", f"{result.family_alpha:g}"),
        ("point_confidence", f"{1 - result.point_alpha:.6f}"), ("correction", "bonferroni"),
        ("forced", str(result.forced).lower()),
    ):  # fmt: skip
        ET.SubElement(props, "property", name=name, value=value)
    for p in sorted(result.points, key=lambda q: q.key):
        case = ET.SubElement(suite, "testcase", classname=f"attnbench.gate.{p.backend}", name=p.case_id)
        message = f"{p.verdict}: {_numbers(p, result)}"
        if p.verdict == "SLOW":
            ET.SubElement(case, "failure", message=message, type="SLOW").text = message
        elif p.verdict == "UNKNOWN":
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = message
    gone = ((result.new, "new point: not in the baseline"), (result.vanished, "vanished: not in this run"))
    for keys, why in gone:
        for c, b in keys:
            case = ET.SubElement(suite, "testcase", classname=f"attnbench.gate.{b}", name=c)
            ET.SubElement(case, "skipped", message=why)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def error_junit(message: str) -> str:
    suites = ET.Element("testsuites", name="attnbench gate")
    suite = ET.SubElement(suites, "testsuite", name="attnbench-gate", tests="1", failures="0", errors="1")
    case = ET.SubElement(suite, "testcase", classname="attnbench.gate", name="runs comparable")
    ET.SubElement(case, "error", message=message, type="NOT_COMPARED").text = message
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


# ---- files -----------------------------------------------------------------------------------
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + "\n")


def write_outputs(
    result: GateResult, junit: Path | None, summary: Path | None, step_summary: str | None
) -> None:
    md = markdown(result)
    if summary is not None:
        _write(summary, md)
    if step_summary:
        _append(step_summary, md)
    if junit is not None:
        _write(junit, junit_xml(result))


def write_error_outputs(
    message: str, junit: Path | None, summary: Path | None, step_summary: str | None
) -> None:
    md = error_markdown(message)
    if summary is not None:
        _write(summary, md)
    if step_summary:
        _append(step_summary, md)
    if junit is not None:
        _write(junit, error_junit(message))
