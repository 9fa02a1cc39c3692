"""What the gate shows: a rich table on the terminal, a Markdown summary for the CI page, JUnit XML;
and run_gate, the `attnbench gate` command's work: compare, then show."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnbench.gate import stats as gate_stats
from attnbench.gate.runs import (
    DEFAULT_BASELINES_DIR,
    EXIT_INCOMPARABLE,
    FAILING,
    VERDICTS,
    GateError,
    GateResult,
    Key,
    PointResult,
    compare,
)

if TYPE_CHECKING:
    from rich.console import JustifyMethod

COLOURS = {
    "SLOW": "bold red", "BROKEN": "bold red", "VANISHED": "bold red", "FAST": "green", "SAME": "dim",
    "NOISY": "magenta", "UNKNOWN": "yellow",
}  # fmt: skip
_ORDER = {v: i for i, v in enumerate(("BROKEN", "VANISHED", "SLOW", "UNKNOWN", "NOISY", "FAST", "SAME"))}
# a result is a GateResult (runs against a baseline) or a gate_ab.ABResult (paired A/B); both have
# points, count(), exit_code, problem, new, warnings, forced, mismatches


def sorted_points(result: Any) -> list[PointResult]:
    """Failing verdicts first, then UNKNOWN, NOISY, FAST, SAME; within each, the largest ratio first."""
    return sorted(result.points, key=lambda p: (_ORDER[p.verdict], -(p.ratio or 0.0), p.key))


def fmt_fraction(x: float | None) -> str:
    if x is None:
        return "-"
    return ">1000%" if x > 10 else f"{x * 100:.2g}%"


def fmt_k(p: PointResult) -> str:
    return str(p.k_runs) if p.rule in ("spread", "single-run") else ("pairs" if p.rule == "paired" else "-")


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def fmt_interval(p: PointResult) -> str:
    if p.low is None or p.high is None:
        return "unbounded" if p.n_baseline and p.n_current and p.verdict not in FAILING else "-"
    return f"[{p.low:.3f}, {p.high:.3f}]"


def _run_line(side, role: str) -> str:
    m = side.manifest
    return (
        f"{role}: {side.label} (run {m.get('run_id', '?')}, {m.get('gpu_name') or m.get('device', '?')}, "
        f"config {m.get('config_name', '?')} {m.get('config_hash', '?')}, commit {m.get('git_commit', '?')})"
    )


def side_lines(result: Any) -> list[str]:
    if hasattr(result, "side_lines"):
        return result.side_lines()
    b = result.baseline
    runs = f" ({b.k} runs: {', '.join(r.label for r in b.runs)})" if b.k > 1 else " (1 run)"
    return [_run_line(b.runs[0], "baseline") + runs, _run_line(result.current, "current")]


def method_text(result: Any) -> str:
    if hasattr(result, "method_text"):
        return result.method_text()
    r = result.rules
    spread = (
        f"Points with >= 3 baseline runs (the spread rule): SLOW when the current median exceeds the "
        f"baseline runs' geometric mean by more than the tolerance max({r.floor:.0%}, {r.multiplier:g} x sd "
        f"x sqrt(1 + 1/K)), sd the between-run sd of the runs' log medians (column 'spread'), pooled "
        f"over the K baseline runs and the current side's runs when it has several; FAST by "
        f"the same margin below; NOISY (not gated) when the tolerance exceeds {r.cap:.0%}. 'run interval' "
        f"is the current run's own ~95% interval for its median over the baseline: shown, not used."
    )
    single = (
        f" Points with fewer runs (the single-run rule): a {(1.0 - r.point_alpha) * 100:.6g}% Hodges-Lehmann "
        f"interval for the ratio from the raw samples (Bonferroni-corrected, family-wise alpha "
        f"{result.family_alpha:g}); SLOW when it lies above {result.slow_limit:.3f} (1 + threshold "
        f"{r.threshold:g}) against every baseline run, FAST below {result.fast_limit:.3f}."
    )
    rules_used = {p.rule for p in result.points}
    text = spread if "spread" in rules_used else ""
    if "single-run" in rules_used:
        text = (text + single).strip()
    tail = (
        " BROKEN: ok in the baseline, incorrect or failed now; VANISHED: ok in the baseline, absent or "
        "skipped now; UNKNOWN: nothing to compare. Exit 1 on SLOW, BROKEN or VANISHED."
    )
    return (text + tail).strip()


def headline(result: Any) -> str:
    counts = ", ".join(f"{result.count(v)} {v}" for v in VERDICTS)
    extra = f", {len(result.new)} new"
    status = {0: "PASS", 1: "FAIL"}.get(result.exit_code, "NOT COMPARED")
    return f"attnbench gate: {status} ({counts}{extra})"


# ---- terminal --------------------------------------------------------------------------------
def print_result(result: GateResult, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=headline(result), title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("point", "left"), ("backend", "left"), ("baseline ms", "right"), ("current ms", "right"),
        ("ratio", "right"), ("tolerance", "right"), ("spread", "right"), ("runs", "right"),
        ("run interval", "right"), ("verdict", "left"),
    )  # fmt: skip
    for name, justify in columns:
        table.add_column(name, justify=justify, overflow="fold")
    for p in sorted_points(result):
        style = COLOURS[p.verdict]
        verdict = f"[{style}]{p.verdict}[/{style}]" + (f" [dim]({escape(p.note)})[/dim]" if p.note else "")
        table.add_row(
            escape(p.case_id), escape(p.backend), fmt_ms(p.baseline_ms), fmt_ms(p.current_ms),
            fmt_ratio(p.ratio), fmt_fraction(p.tolerance), fmt_fraction(p.spread), fmt_k(p),
            fmt_interval(p), verdict,
        )  # fmt: skip
    console.print(table)
    for line in side_lines(result):
        console.print(line, highlight=False, markup=False)
    console.print(method_text(result), highlight=False, markup=False)
    if result.forced:
        console.print("[yellow]FORCED:[/yellow] " + escape("; ".join(result.mismatches)), highlight=False)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    for title, keys in (("new points (current only)", result.new),):
        if keys:
            text = f"{title}: " + ", ".join(f"{c} [{b}]" for c, b in keys)
            console.print(text, highlight=False, markup=False)


# ---- Markdown --------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_keys(keys: list[Key]) -> list[str]:
    return [f"- `{c}` [{b}]" for c, b in keys]


def markdown(result: Any) -> str:
    lines = [f"### {headline(result)}", ""]
    lines += [f"- {_md_cell(line)}" for line in side_lines(result)] + [""]
    if result.problem:
        lines += [f"**{result.problem}**", ""]
    if result.forced:
        lines += ["**Forced:** the runs are not comparable: " + "; ".join(result.mismatches), ""]
    lines += [f"> {w}" for w in result.warnings] + ([""] if result.warnings else [])
    lines += [method_text(result), ""]
    columns = ("point", "backend", "baseline ms", "current ms", "ratio", "tolerance", "spread", "runs")
    lines += ["| " + " | ".join((*columns, "run interval", "verdict")) + " |"]
    lines += ["| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for p in sorted_points(result):
        verdict = f"**{p.verdict}**" if p.verdict in FAILING else p.verdict
        if p.note:
            verdict += f" ({p.note})"
        cells = [
            f"`{p.case_id}`", p.backend, fmt_ms(p.baseline_ms), fmt_ms(p.current_ms),
            fmt_ratio(p.ratio), fmt_fraction(p.tolerance), fmt_fraction(p.spread), fmt_k(p),
            fmt_interval(p), verdict,
        ]  # fmt: skip
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    for title, keys in (("New points (current only)", result.new),):
        if keys:
            lines += [f"#### {title}", "", *_md_keys(keys), ""]
    return "\n".join(lines)


def error_markdown(message: str) -> str:
    return f"### attnbench gate: NOT COMPARED\n\n{message}\n"


# ---- JUnit XML -------------------------------------------------------------------------------
def _numbers(p: PointResult) -> str:
    limits = ""
    if p.tolerance is not None:
        slow = 1.0 + p.tolerance
        limits = f", SLOW above {slow:.3f}, FAST below {1.0 / slow:.3f}"
    spread = (
        f", between-run spread {fmt_fraction(p.spread)} over {p.k_runs} runs" if p.spread is not None else ""
    )
    return (
        f"baseline {fmt_ms(p.baseline_ms)} ms (n={p.n_baseline}), current {fmt_ms(p.current_ms)} ms "
        f"(n={p.n_current}), ratio {fmt_ratio(p.ratio)}, run interval {fmt_interval(p)}{limits}{spread}"
        + (f"; {p.note}" if p.note else "")
    )


def _properties(result: Any) -> list[tuple[str, str]]:
    if hasattr(result, "properties"):
        return result.properties()
    r = result.rules
    return [
        ("baseline", str(result.baseline.path)), ("baseline_runs", str(result.baseline.k)),
        ("current", str(result.current.path)), ("multiplier", f"{r.multiplier:g}"),
        ("floor", f"{r.floor:g}"), ("cap", f"{r.cap:g}"), ("threshold", f"{r.threshold:g}"),
        ("family_alpha", f"{result.family_alpha:g}"), ("point_confidence", f"{1 - r.point_alpha:.6f}"),
        ("correction", "bonferroni"), ("forced", str(result.forced).lower()),
    ]  # fmt: skip


def junit_xml(result: Any) -> str:
    """One testcase per point: SLOW, BROKEN and VANISHED are <failure>s, UNKNOWN, NOISY and new
    points <skipped>; a whole-run problem (every point failed, nothing compared) is an <error>."""
    n_failing = sum(result.count(v) for v in FAILING)
    n_skipped = result.count("UNKNOWN") + result.count("NOISY") + len(result.new)
    suites = ET.Element("testsuites", name="attnbench gate")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="attnbench-gate",
        tests=str(len(result.points) + len(result.new) + bool(result.problem)),
        failures=str(n_failing),
        errors=str(int(bool(result.problem))),
        skipped=str(n_skipped),
    )
    props = ET.SubElement(suite, "properties")
    for name, value in _properties(result):
        ET.SubElement(props, "property", name=name, value=value)
    for p in sorted(result.points, key=lambda q: q.key):
        case = ET.SubElement(suite, "testcase", classname=f"attnbench.gate.runs.{p.backend}", name=p.case_id)
        message = f"{p.verdict}: {_numbers(p)}"
        if p.verdict in FAILING:
            ET.SubElement(case, "failure", message=message, type=p.verdict).text = message
        elif p.verdict in ("UNKNOWN", "NOISY"):
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = message
    if result.problem:
        case = ET.SubElement(suite, "testcase", classname="attnbench.gate.runs", name="the run as a whole")
        ET.SubElement(case, "error", message=result.problem, type="RUN").text = result.problem
    for keys, why in ((result.new, "new point: not in the baseline"),):
        for c, b in keys:
            case = ET.SubElement(suite, "testcase", classname=f"attnbench.gate.runs.{b}", name=c)
            ET.SubElement(case, "skipped", message=why)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def error_junit(message: str) -> str:
    suites = ET.Element("testsuites", name="attnbench gate")
    suite = ET.SubElement(suites, "testsuite", name="attnbench-gate", tests="1", failures="0", errors="1")
    case = ET.SubElement(suite, "testcase", classname="attnbench.gate.runs", name="runs comparable")
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


def write_outputs(result: Any, junit: Path | None, summary: Path | None, step_summary: str | None) -> None:
    _write_all(markdown(result), junit_xml(result), junit, summary, step_summary)


def write_error_outputs(
    message: str, junit: Path | None, summary: Path | None, step_summary: str | None
) -> None:
    _write_all(error_markdown(message), error_junit(message), junit, summary, step_summary)


def _write_all(md: str, xml: str, junit: Path | None, summary: Path | None, step_summary: str | None) -> None:
    """The Markdown summary (a file and/or the CI page's step summary) and the JUnit XML, where asked."""
    if summary is not None:
        _write(summary, md)
    if step_summary:
        _append(step_summary, md)
    if junit is not None:
        _write(junit, xml)


def run_gate(
    baseline: str,
    current: str,
    threshold: float = 0.05,
    alpha: float = 0.05,
    junit: Path | None = None,
    summary: Path | None = None,
    force: bool = False,
    baselines_dir: Path = DEFAULT_BASELINES_DIR,
    console: Any = None,
    err_console: Any = None,
    multiplier: float = gate_stats.DEFAULT_MULTIPLIER,
    floor: float = gate_stats.DEFAULT_FLOOR,
    cap: float = gate_stats.DEFAULT_CAP,
) -> int:
    """The `attnbench gate` command: compare, print, write the outputs; returns the exit code."""
    try:
        result = compare(baseline, current, threshold, alpha, force, baselines_dir, multiplier, floor, cap)
    except GateError as e:
        return report_error(str(e), junit, summary, err_console)
    return report_result(result, junit, summary, console, err_console)


def report_error(message: str, junit: Path | None, summary: Path | None, err_console: Any = None) -> int:
    """One line on stderr, the CI outputs saying NOT COMPARED; exit 2."""
    from rich.markup import escape

    from attnbench.console import err

    err_console = err_console or err
    err_console.print(f"[red]gate:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    try:
        write_error_outputs(
            message, junit, summary, os.environ.get("GITHUB_STEP_SUMMARY") or None
        )
    except OSError as w:
        err_console.print(f"[red]gate:[/red] cannot write an output: {escape(str(w))}", highlight=False)
    return EXIT_INCOMPARABLE


def report_result(
    result: Any, junit: Path | None, summary: Path | None, console: Any, err_console: Any
) -> int:
    """Print the table, write the outputs, say what failed the run as a whole; the exit code."""
    from rich.markup import escape

    from attnbench.console import err, out

    console, err_console = console or out, err_console or err
    print_result(result, console)
    try:
        write_outputs(result, junit, summary, os.environ.get("GITHUB_STEP_SUMMARY") or None)
    except OSError as e:
        err_console.print(f"[red]gate:[/red] cannot write an output: {escape(str(e))}", highlight=False)
        return EXIT_INCOMPARABLE
    if result.problem:
        err_console.print(f"[red]gate:[/red] {escape(result.problem)}", highlight=False, soft_wrap=True)
    return result.exit_code
