"""Two studies side by side (`attnbench compare-studies A B`): what the second GPU changed, point by point.

Points are matched by (case_id, backend): the same case of the same config, the same backend; where a
backend wrote several variants of a case (tuning configs differ by GPU) its fastest ok row stands for
it. A point counts when it is ok in both runs. speed-up = A's median latency / B's (> 1: B faster).

Decode reads the whole KV cache once per step (bandwidth-bound); prefill does O(N^2 d) FLOPs on O(N d)
bytes (compute-bound): on a GPU with more bandwidth and the same tensor cores (H100 SXM -> H200:
4.8 / 3.35 = 1.43x the HBM bandwidth, the same 989 TFLOP/s bf16 datasheet peak), decode should speed
up by up to the bandwidth ratio and prefill hardly at all. Points shorter than SMALL_MS in either
run are a regime of their own ("small"): their time is mostly launch and fixed costs, which more
bandwidth does not shorten and which the runs' timing methods treat differently (held timing hides
host launch gaps; an older run without it does not), so the measurement differences are tabled too.
The ratios of the two runs' calibrated ceilings (copy bandwidth, matmul rate) are the yardsticks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from attnbench.report.load import RunData, load_one
from attnbench.report.table import Table, geomean, ms, num, ratio

SMALL_MS = 0.05  # points faster than this in either run: launch and fixed costs dominate
ROOF_SHARE = 0.5  # decode points at this share of B's copy bandwidth or more: bandwidth-bound kernels
CLASSES = ("decode", "prefill", "mixed", "small")
MANIFEST_KEYS = ("gpu_name", "driver", "cuda", "torch", "triton", "flash_attn", "git_commit", "config_name",
                 "config_hash", "timer")


@dataclass
class StudyComparison:
    a: RunData
    b: RunData
    points: pd.DataFrame  # one row per matched point: case_id, backend, phase, lat_a, lat_b, speedup, cls
    tables: list[Table] = field(default_factory=list)
    unmatched: dict[str, int] = field(default_factory=dict)


def _best(run: RunData) -> pd.DataFrame:
    ok = run.ok
    cols = ["case_id", "backend", "phase", "latency_ms_p50", "hbm_gbps", "tflops", "family"]
    ok = ok[[c for c in cols if c in ok.columns]].copy()
    idx = ok.groupby(["case_id", "backend"])["latency_ms_p50"].idxmin()
    return ok.loc[idx].set_index(["case_id", "backend"])


def match(a: RunData, b: RunData) -> tuple[pd.DataFrame, dict[str, int]]:
    """The points ok in both runs, with their speed-up and regime class; counts of the others."""
    best_a, best_b = _best(a), _best(b)
    both = best_a.add_suffix("_a").join(best_b.add_suffix("_b"), how="inner")
    pts = pd.DataFrame({
        "phase": both["phase_a"],
        "family": both["family_a"],
        "lat_a": both["latency_ms_p50_a"].astype(float),
        "lat_b": both["latency_ms_p50_b"].astype(float),
        "gbps_a": both.get("hbm_gbps_a"),
        "gbps_b": both.get("hbm_gbps_b"),
    }).reset_index()
    pts["speedup"] = pts["lat_a"] / pts["lat_b"]
    small = pts[["lat_a", "lat_b"]].min(axis=1) < SMALL_MS
    pts["cls"] = pts["phase"].where(~small, "small")
    keys_a = {(r.case_id, r.backend) for r in a.df[["case_id", "backend"]].itertuples()}
    keys_b = {(r.case_id, r.backend) for r in b.df[["case_id", "backend"]].itertuples()}
    counts = {"matched ok in both": len(pts), "only in A": len(keys_a - keys_b),
              "only in B": len(keys_b - keys_a), "in both, not ok in one": len(keys_a & keys_b) - len(pts)}
    return pts, counts


def _ceiling_ratio(a: RunData, b: RunData, key: str) -> float | None:
    va, vb = a.calibration(key), b.calibration(key)
    return vb / va if va and vb else None


def _cell(values: pd.Series) -> str:
    if values.empty:
        return "—"
    return f"{ratio(geomean(list(values)))} (n={len(values)}, {ratio(values.min())}–{ratio(values.max())})"


def ceilings_table(a: RunData, b: RunData) -> Table:
    t = Table("ceilings", "The two GPUs", f"A = {a.label}, B = {b.label}: the calibrated ceilings each run "
              "measured at its start, and the datasheet values the manifests carry.",
              ["Ceiling", "A", "B", "B / A"])
    for key, name, unit in (("copy_gbps", "copy bandwidth (calibrated)", "GB/s"),
                            ("datasheet_copy_gbps", "HBM bandwidth (datasheet)", "GB/s"),
                            ("matmul_tflops", "bf16 matmul (calibrated)", "TFLOP/s"),
                            ("datasheet_tflops_bf16", "bf16 tensor peak (datasheet)", "TFLOP/s")):
        va, vb = a.calibration(key), b.calibration(key)
        t.rows.append([name, f"{num(va)} {unit}" if va else "—", f"{num(vb)} {unit}" if vb else "—",
                       ratio(vb / va) if va and vb else "—"])
        t.records.append({"ceiling": key, "a": va, "b": vb})
    return t


def regime_table(pts: pd.DataFrame, a: RunData, b: RunData) -> Table:
    bw, mm = _ceiling_ratio(a, b, "copy_gbps"), _ceiling_ratio(a, b, "matmul_tflops")
    t = Table("regimes", "Speed-up by regime",
              "Geometric mean of A time / B time over the points ok in both runs, per regime (> 1: B "
              f"faster), with the range; yardsticks: calibrated copy bandwidth B/A "
              f"{ratio(bw) if bw else '—'}, calibrated matmul B/A {ratio(mm) if mm else '—'}. 'decode near "
              f"the roof': decode points at >= {ROOF_SHARE:.0%} of B's calibrated copy bandwidth "
              "(bandwidth-bound kernels). 'small': points of any phase under "
              f"{SMALL_MS * 1e3:.0f} µs in either run (launch-dominated; see the measurement differences).",
              ["Regime", "Speed-up B vs A", "Median A", "Median B", "Share of the bandwidth gain"])
    copy_b = b.calibration("copy_gbps")
    groups = [(cls, pts[pts["cls"] == cls]) for cls in CLASSES]
    if copy_b:
        roof = pts[(pts["cls"] == "decode") & (pts["gbps_b"].astype(float) >= ROOF_SHARE * copy_b)]
        groups.insert(1, ("decode near the roof", roof))
    for cls, sub in groups:
        if sub.empty:
            continue
        g = geomean(list(sub["speedup"]))
        share = (g - 1) / (bw - 1) if bw and bw > 1 and cls != "small" else None
        t.rows.append([cls, _cell(sub["speedup"]), ms(sub["lat_a"].median()), ms(sub["lat_b"].median()),
                       "—" if share is None else f"{share * 100:.0f}%"])
        t.records.append({"cls": cls, "speedup": g, "n": len(sub), "bandwidth_share": share})
    return t


def backend_table(pts: pd.DataFrame) -> Table:
    t = Table("backends", "Speed-up per backend",
              "Per backend and regime: geometric mean of A time / B time (n points, range); the phase "
              "columns exclude the small points.",
              ["Backend", *CLASSES, "Decode achieved GB/s A → B"])
    for backend, sub in pts.groupby("backend", sort=True):
        cells = [_cell(sub[sub["cls"] == cls]["speedup"]) for cls in CLASSES]
        dec = sub[sub["cls"] == "decode"]
        bw = "—"
        if not dec.empty and dec["gbps_a"].notna().any() and dec["gbps_b"].notna().any():
            bw = f"{num(dec['gbps_a'].median())} → {num(dec['gbps_b'].median())}"
        t.rows.append([str(backend), *cells, bw])
        per_cls = {cls: list(sub[sub["cls"] == cls]["speedup"]) for cls in CLASSES}
        t.records.append({"backend": backend, **{c: geomean(v) if v else None for c, v in per_cls.items()}})
    return t


def points_table(pts: pd.DataFrame, counts: dict[str, int]) -> Table:
    t = Table("extremes", "Largest and smallest speed-ups",
              "The five points B sped up most and the five it sped up least (or slowed), of the matched "
              "points; counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".",
              ["Point (case_id, backend)", "Regime", "A", "B", "Speed-up"])
    ordered = pts.sort_values("speedup")
    picks = pd.concat([ordered.tail(5).iloc[::-1], ordered.head(5)]).drop_duplicates(["case_id", "backend"])
    for r in picks.itertuples():
        t.rows.append([f"{r.case_id} / {r.backend}", r.cls, ms(r.lat_a), ms(r.lat_b), ratio(r.speedup)])
    return t


def verdict_notes(t: Table, a: RunData, b: RunData) -> list[str]:
    rec = {r["cls"]: r for r in t.records}
    bw = _ceiling_ratio(a, b, "copy_gbps")
    notes = []
    if "decode" in rec and "prefill" in rec and bw:
        d, p = rec["decode"]["speedup"], rec["prefill"]["speedup"]
        mm = _ceiling_ratio(a, b, "matmul_tflops")
        roof = rec.get("decode near the roof")
        near = (f" (near the bandwidth roof: {ratio(roof['speedup'])} over {roof['n']} points)"
                if roof else "")
        gain = (d - 1) / (bw - 1) * 100
        notes.append(f"Decode (bandwidth-bound) sped up {ratio(d)}{near}, {gain:.0f}% of the {ratio(bw)} "
                     f"calibrated bandwidth gain; prefill (compute-bound) {ratio(p)}, against a calibrated "
                     f"matmul ratio of {ratio(mm) if mm else '—'}.")
    return notes


def _timing_methods(run: RunData) -> str:
    col = run.df["timing_method"] if "timing_method" in run.df.columns else pd.Series(dtype=object)
    counts = col.dropna().value_counts()
    return ", ".join(f"{k} x{v}" for k, v in counts.items()) or "not recorded (older rows)"


def differences_table(a: RunData, b: RunData) -> Table:
    """What differs between the two runs besides the GPU: versions, config, timing policy."""
    t = Table("differences", "Measurement differences",
              "Manifest fields and timing policy keys whose values differ between the runs (the same "
              "config hash means the same cases); a ratio is the GPU's only where the rest is equal.",
              ["Field", "A", "B"])
    for key in MANIFEST_KEYS:
        va, vb = a.manifest.get(key), b.manifest.get(key)
        if va != vb:
            t.rows.append([key, str(va) if va is not None else "not recorded", str(vb) if vb is not None
                           else "not recorded"])
    ta, tb = a.manifest.get("timing") or {}, b.manifest.get("timing") or {}
    for key in sorted(set(ta) | set(tb)):
        if ta.get(key) != tb.get(key):
            t.rows.append([f"timing.{key}", "not set" if key not in ta else str(ta[key]),
                           "not set" if key not in tb else str(tb[key])])
    ma, mb = _timing_methods(a), _timing_methods(b)
    if ma != mb:
        t.rows.append(["rows' timing_method", ma, mb])
    if not t.rows:
        t.empty_reason = "the runs differ in nothing recorded but the GPU"
    return t


def compare_studies(path_a: Path, path_b: Path) -> StudyComparison:
    a, b = load_one(Path(path_a)), load_one(Path(path_b))
    pts, counts = match(a, b)
    cmp = StudyComparison(a, b, pts, unmatched=counts)
    regimes = regime_table(pts, a, b)
    regimes.notes += verdict_notes(regimes, a, b)
    cmp.tables = [ceilings_table(a, b), differences_table(a, b), regimes, backend_table(pts),
                  points_table(pts, counts)]
    return cmp


def _legend(cls: str) -> str:
    return cls if cls != "small" else f"small (< {SMALL_MS * 1e3:.0f} µs in either run)"


def speedup_figure(cmp: StudyComparison, path: Path) -> Path:
    """Per backend, the geometric-mean speed-up per regime as bars, the calibrated bandwidth and
    matmul ratios as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pts = cmp.points
    backends = sorted(pts["backend"].unique())
    classes = [c for c in CLASSES if (pts["cls"] == c).any()]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(backends) + 3), 5.2), dpi=110)
    width = 0.8 / max(1, len(classes))
    colors = {"decode": "#1f77b4", "prefill": "#d62728", "mixed": "#8c564b", "small": "#bbbbbb"}
    for i, cls in enumerate(classes):
        vals = [geomean(list(pts[(pts["backend"] == be) & (pts["cls"] == cls)]["speedup"]))
                if ((pts["backend"] == be) & (pts["cls"] == cls)).any() else np.nan for be in backends]
        ax.bar(np.arange(len(backends)) + (i - (len(classes) - 1) / 2) * width, vals, width,
               label=_legend(cls), color=colors.get(cls, "#777777"))
    for key, name, style in (("copy_gbps", "calibrated copy bandwidth B/A", "--"),
                             ("matmul_tflops", "calibrated matmul B/A", ":")):
        r = _ceiling_ratio(cmp.a, cmp.b, key)
        if r:
            ax.axhline(r, color="black", linestyle=style, linewidth=1.2, label=f"{name} {r:.2f}x")
    ax.axhline(1.0, color="#999999", linewidth=0.8)
    # log scale: the launch-dominated points' large ratios would flatten the ~1.0-1.4x bars
    ax.set_yscale("log", base=2)
    ticks = [t for t in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0) if t <= max(1.5, float(
        np.nanmax(pts.groupby(["backend", "cls"])["speedup"].apply(lambda v: geomean(list(v))))) * 1.1)]
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{t:g}x" for t in ticks])
    ax.minorticks_off()
    ax.set_xticks(range(len(backends)))
    ax.set_xticklabels(backends, rotation=30, ha="right")
    ax.set_ylabel("speed-up: A time / B time (geometric mean)")
    ax.set_title(f"What {cmp.b.gpu} changed against {cmp.a.gpu}, per backend and regime", fontsize=11)
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write(cmp: StudyComparison, out: Path, plot: bool = True) -> list[Path]:
    """compare.md and compare.html (and figures/speedup_by_backend.png) under out."""
    from attnbench.report.render_html import CSS, table_html
    from attnbench.report.render_md import esc, table_md

    out.mkdir(parents=True, exist_ok=True)
    title = f"attnbench: {cmp.a.gpu} vs {cmp.b.gpu}, the same study side by side"
    intro = (f"A = {cmp.a.path} ({cmp.a.label}, config {cmp.a.manifest.get('config_name')} "
             f"{cmp.a.manifest.get('config_hash')}), B = {cmp.b.path} ({cmp.b.label}, config "
             f"{cmp.b.manifest.get('config_name')} {cmp.b.manifest.get('config_hash')}). Points matched by "
             "case_id and backend; every number is a ratio of the two runs' median latencies.")
    written: list[Path] = []
    fig_rel = "figures/speedup_by_backend.png"
    if plot and not cmp.points.empty:
        written.append(speedup_figure(cmp, out / fig_rel))
    md = [f"# {esc(title)}", "", esc(intro), ""]
    for t in cmp.tables:
        md += table_md(t)
        if t.key == "backends" and written:
            md += [f"![Speed-up per backend and regime]({fig_rel})", ""]
    (out / "compare.md").write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    written.append(out / "compare.md")
    import base64
    import html

    body = [f"<h1>{html.escape(title)}</h1>", f"<p class='intro'>{html.escape(intro)}</p>"]
    for t in cmp.tables:
        body.append(table_html(t))
        if t.key == "backends" and plot and (out / fig_rel).exists():
            data = base64.b64encode((out / fig_rel).read_bytes()).decode()
            body.append(f"<img alt='Speed-up per backend and regime' src='data:image/png;base64,{data}' "
                        "style='max-width:100%'>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    (out / "compare.html").write_text(page, encoding="utf-8")
    written.append(out / "compare.html")
    return written
