"""Write a report: tables (Markdown, LaTeX, CSV, HTML), figures (PNG, SVG), weight
sensitivity and provenance, from result records. A figure that fails to draw becomes a
warning in the result; the other outputs are still written."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpme.errors import TpmeError
from tpme.metrics.aggregate import entries_from_records
from tpme.metrics.sensitivity import Sensitivity, sensitivity
from tpme.metrics.tpme import Weights
from tpme.reports.html import EmbeddedFigure, render_html
from tpme.reports.provenance import Provenance, collect
from tpme.reports.reference import baseline_sentences, weights_sentence
from tpme.reports.summary import Summary, summarise
from tpme.reports.escape import markdown_text
from tpme.reports.table import build_table, render_csv, render_latex, render_markdown_table
from tpme.results.load import apply_group_by
from tpme.results.record import Record

FORMATS = ("html", "md", "latex", "csv", "json", "png", "svg", "pdf")
VECTOR = ("svg", "pdf")  # figures written as vector files, one per format
PNG_DPI = 200


@dataclass
class ReportResult:
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path | None:
        return next((f for f in self.files if f.name == name), None)


def parse_formats(text: str) -> list[str]:
    items = [f.strip().lower() for f in text.split(",") if f.strip()]
    aliases = {"markdown": "md", "tex": "latex"}
    items = [aliases.get(f, f) for f in items]
    bad = [f for f in items if f not in FORMATS]
    if bad or not items:
        raise TpmeError(f"unknown report format(s): {', '.join(bad) or '(none)'}", f"choose from {','.join(FORMATS)}")
    return list(dict.fromkeys(items))


def _sources_sentence(summary: Summary) -> str:
    by: dict[str, list[str]] = {}
    for r in summary.scored:
        by.setdefault(r.epoch_time_source or "unknown", []).append(r.label)
    parts = [f"{k} for {', '.join(v)}" if len(by) > 1 else f"{k} for all" for k, v in by.items()]
    mem: dict[str, list[str]] = {}
    for r in summary.scored:
        mem.setdefault(r.memory_kind or "unknown", []).append(r.label)
    mparts = [f"{k} for {', '.join(v)}" if len(mem) > 1 else f"{k} for all" for k, v in mem.items()]
    return f"Epoch time {'; '.join(parts)}. Peak memory {'; '.join(mparts)}."


CAPTIONS = {
    "efficiency": "Methods in TPME rank order (best at the top). Every axis linear from zero, each bar's value printed beside it. Extrapolated figures are hatched (//) and their value marked *, estimated ones .. and ~, as in the table. Error bars: 95 % seeded bootstrap intervals of epoch time and TPME (over steps and repeats).",
    "time_memory": "Dashed line: the Pareto front (no other method has both a shorter epoch and a lower peak). Marker area proportional to trainable parameters. Error bars: 95 % bootstrap interval of the epoch time.",
    "effectiveness": "Quality against TPME under the report's weights: more efficient to the left; each axis says which way is better.",
    "step_times": "Boxes: quartiles and median of the timed steps (warm-up excluded) over all repeats; dots: single steps. Measured.",
    "step_breakdown": "Median time per step in data loading, forward, backward and optimizer step, measured with device synchronisation between phases.",
    "memory_breakdown": "Peak memory by category from the GPU-free estimate (not measured); buffers hold resident caches (iisan-cached's hidden states), batch the inputs.",
    "group_trend": "One line per method against the group-by field; dashed: methods without that field, for reference. TPME is normalised over every label in the report.",
    "sensitivity": "Colour: the method with the lowest TPME at those weights (exact regions: TPME is linear in the weights); hatched: methods tied everywhere. Star: the report's weights; dots: the named weight presets. Legend: share of the grid where each method wins.",
}


def render_figures(summary: Summary, sens: Sensitivity | None, fig_dir: Path | None, formats: list[str], result: ReportResult) -> list[EmbeddedFigure]:
    """Each figure once as PNG bytes (written and/or embedded), as SVG when asked."""
    from matplotlib import rc_context

    from tpme.reports.plots import FIGURES, RC

    embedded = []
    sources = _sources_sentence(summary)
    for spec in FIGURES:
        try:
            with rc_context(RC):
                fig = spec.build(summary, sens)
                if fig is None:
                    continue
                width_in = float(fig.get_figwidth())
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=PNG_DPI)
                for ext in (f for f in VECTOR if f in formats and fig_dir is not None):
                    path = fig_dir / f"{spec.name}.{ext}"
                    fig.savefig(path, format=ext, metadata={"CreationDate": None} if ext == "pdf" else {"Date": None})
                    result.files.append(path)
        except Exception as e:  # a figure is never worth losing the report for
            result.warnings.append(f"figure {spec.name} not drawn: {type(e).__name__}: {e}")
            continue
        png = buf.getvalue()
        if fig_dir is not None and "png" in formats:
            path = fig_dir / f"{spec.name}.png"
            path.write_bytes(png)
            result.files.append(path)
        caption = CAPTIONS.get(spec.name, "")
        if spec.name in ("efficiency", "time_memory"):
            caption += " " + sources
        embedded.append(EmbeddedFigure(spec.name, spec.title, caption, png, width_in))
    return embedded


def render_report_markdown(summary: Summary, prov: Provenance, figures: list[EmbeddedFigure], sens: Sensitivity | None, fig_ext: str | None, title: str) -> str:
    md = markdown_text
    out = [f"# {md(title)}", "", weights_sentence(summary) + (f" Grouped by `{summary.group_by}`." if summary.group_by else ""), ""]
    out += [f"> **Caution:** {md(c)}\n" for c in prov.cautions()]
    out += ["## Efficiency table", "", render_markdown_table(build_table(summary))]
    out += [f"**Reference.** {line}\n" for line in baseline_sentences(summary)]
    if fig_ext:
        out += ["## Figures", ""]
        for f in figures:
            out += [f"![{f.title}]({f.name}.{fig_ext})", "", f"*{f.title}.* {f.caption}", ""]
    if sens is not None:
        out += ["## Weight sensitivity", "", *sensitivity_markdown(sens), ""]
    out += ["## Provenance", ""] + [f"- **{md(k)}**: {md(v)}" for k, v in prov.items()] + [""]
    out += ["| method | epoch time | peak memory | HR@10 / NDCG@10 |", "|---|---|---|---|"]
    out += [f"| {md(s['label'])} | {md(s['epoch_time'] or '-')} | {md(s['memory'] or '-')} ({md(s['memory_source'] or '-')}) | {md(s['effectiveness'] or 'not evaluated')} |" for s in prov.sources]
    out += ["", "## Failed cells", ""]
    if prov.failures:
        for f in prov.failures:
            last = (f["error"] or "").strip().splitlines()
            out.append(f"- {md(f['label'])} (repeat {f['repeat']}): {f['status']}: {md(last[-1]) if last else '(no error text)'}")
    else:
        out.append("None: every cell finished.")
    return "\n".join(out) + "\n"


def sensitivity_markdown(sens: Sensitivity) -> list[str]:
    w = sens.chosen.as_tuple()
    lines = [
        f"Grid step {sens.step:g} ({len(sens.grid)} weight triples). At the chosen weights ({w[0]:g}, {w[1]:g}, {w[2]:g}) "
        f"the lowest TPME is **{' = '.join(map(markdown_text, sens.chosen_winners))}**. Kendall tau against the chosen ranking: mean {sens.tau_mean:.3f}, "
        f"min {sens.tau_min:.3f}; identical ranking at {100 * sens.identical_share:.1f}% of the grid.",
        "",
        "| method | share of simplex where lowest (%) |",
        "|---|---:|",
    ]
    lines += [f"| {markdown_text(m)} | {100 * s:.1f} |" for m, s in sorted(sens.shares.items(), key=lambda kv: -kv[1])]
    bsum = sens.boundary_summary()
    if bsum:
        lines += ["", "| winner | neighbour | grid edges | boundary nearest the chosen weights (a1, a2, a3) |", "|---|---|---:|---|"]
        lines += [f"| {markdown_text(b['between'][0])} | {markdown_text(b['between'][1])} | {b['edges']} | {', '.join(f'{x:.3f}' for x in b['nearest'])} |" for b in bsum]
    lines += ["", "Ties: methods within 1e-9 of the lowest TPME share a point, which counts 1/k towards each of the k tied methods."]
    return lines


def write_report(
    records: list[Record],
    out_dir: str | Path,
    weights: Weights,
    formats: list[str] | tuple[str, ...] = FORMATS,
    group_by: str | None = None,
    inputs: list[str] | None = None,
    step: float = 0.05,
    title: str = "TPME efficiency report",
) -> ReportResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ReportResult(out)
    formats = list(formats)
    group_values: dict[str, Any] = {}
    if group_by:
        records, group_values = apply_group_by(records, group_by)
    summary = summarise(records, weights, group_by, group_values)
    entries = entries_from_records(records)
    sens = sensitivity(entries, weights, step) if entries else None
    prov = collect(records, summary, [str(i) for i in (inputs or [])])
    fig_dir = out if {"png", *VECTOR} & set(formats) else None  # beside the tables: one flat folder to attach
    figures = render_figures(summary, sens, fig_dir, formats, result) if {"png", "html", *VECTOR} & set(formats) else []

    def write(name: str, text: str) -> None:
        path = out / name
        path.write_text(text, encoding="utf-8")
        result.files.append(path)

    if "md" in formats:
        ext = "png" if "png" in formats else "svg" if "svg" in formats else None
        write("report.md", render_report_markdown(summary, prov, figures, sens, ext, title))
    if "latex" in formats:
        write("table.tex", render_latex(summary))
    if "csv" in formats:
        write("table.csv", render_csv(summary))
    if "json" in formats:
        write("report.json", json.dumps(report_json(summary, prov, sens), indent=2, default=str) + "\n")
    if "html" in formats:
        write("report.html", render_html(summary, prov, figures, sens, title))
    return result


def report_json(summary: Summary, prov: Provenance, sens: Sensitivity | None) -> dict[str, Any]:
    rows = []
    for r in summary.rows:
        d = dict(r.__dict__)
        d.pop("step_times_s")
        d["status"] = r.status
        rows.append(d)
    return {"weights": list(summary.weights.given()), "group_by": summary.group_by, "rows": rows, "sensitivity": sens.to_dict() if sens else None, "provenance": prov.to_dict()}
