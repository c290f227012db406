"""The efficiency table in the paper's form: method, trainable parameters and their share of
the largest, peak memory, epoch time, TPME, rank (and HR@10 / NDCG@10 when evaluated).

One column unit per table (a paper table does not mix MiB and GiB); epoch times that were
extrapolated or estimated, and estimated memory, carry a mark explained in the notes.
Renderers: terminal, Markdown, LaTeX (booktabs), CSV (raw numbers) and HTML.
"""
from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tpme.metrics.tpme import Weights
from tpme.reports.format import Unit, byte_unit, fmt_float
from tpme.reports.escape import csv_cell, markdown_text
from tpme.reports.summary import Row, Summary, summarise
from tpme.results.record import Record

TIME_MARK = {"measured": "", "published": "", "extrapolated": "*", "estimated": "~", "mixed": "+"}
MEMORY_SOURCES = {"cuda_allocator": "CUDA allocator peak allocated", "cuda_reserved": "CUDA allocator peak reserved", "cpu_tensor_peak": "CPU tensor-level peak"}
CSV_COLUMNS = (
    "label", "method", "group_value", "rank", "tpme", "t_norm", "p_norm", "m_norm", "epoch_time_s", "epoch_time_source",
    "trainable_params", "trainable_params_pct_of_max", "adapter_bytes", "peak_memory_bytes", "memory_source", "energy_per_epoch_j", "e_norm",
)
CSV_SPREAD = ("epoch_time_ci_low_s", "epoch_time_ci_high_s", "tpme_ci_low", "tpme_ci_high", "rank_ci_low", "rank_ci_high", "tied_with", "outlier_steps", "busy_repeats")
CSV_TAIL = ("repeats", "repeats_ok", "status", "error", "weight_time", "weight_params", "weight_memory", "weight_energy")


def fmt_time(s: float) -> str:
    """Three significant digits, trailing zeros kept (4.00, 10.0, 0.362); whole seconds from 100."""
    return f"{s:.0f}" if s >= 100 else f"{s:#.3g}"


def _half_width(value: float, ci: tuple[float, float] | None) -> float | None:
    """What `value ± w` must show to cover the interval (the wider side); None without spread."""
    if ci is None:
        return None
    w = max(value - ci[0], ci[1] - value, 0.0)
    return w if w > 0 else None


def time_cell(r: Row) -> str:
    """`2.62 ± 0.31`: the epoch time and the wider side of its bootstrap interval."""
    w = _half_width(r.epoch_time_s, r.epoch_time_ci)
    return fmt_time(r.epoch_time_s) + (f" ± {_spread(w)}" if w is not None else "")


def _spread(w: float) -> str:
    """Two significant digits, never in exponent notation (`± 130`, `± 1.7`, `± 0.0093`)."""
    return f"{w:.0f}" if w >= 10 else f"{w:#.2g}".rstrip(".")


def tpme_cell(r: Row) -> str:
    w = None if r.tpme is None else _half_width(r.tpme, r.tpme_ci)
    return fmt_float(r.tpme) + (f" ± {fmt_float(w)}" if w is not None else "")


def rank_cell(r: Row) -> str:
    """`2`, or `2 (1–3)` when the rank interval is wider than one rank; `=` marks a tie."""
    if r.rank is None:
        return "-"
    text = str(r.rank)
    if r.rank_ci is not None and r.rank_ci[0] != r.rank_ci[1]:
        text += f" ({r.rank_ci[0]}–{r.rank_ci[1]})"
    return text + ("=" if r.tied_with else "")


def params_unit(rows: list[Row]) -> Unit:
    top = max((r.trainable_params for r in rows if r.trainable_params is not None), default=0)
    return Unit("M", 1e6) if top >= 1e6 else Unit("K", 1e3) if top >= 1e3 else Unit("", 1)


def memory_unit(rows: list[Row]) -> Unit:
    top = max((r.peak_memory_bytes for r in rows if r.peak_memory_bytes is not None), default=0)
    for name, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if top >= size:
            return Unit(name, size)
    return Unit("B", 1)


@dataclass
class Table:
    """Headers and formatted cells; marks are appended to cells as plain characters. `raw`:
    per column, the row's unformatted number (None for text columns), for sorting in HTML."""

    headers: list[str]
    cells: list[list[str]]
    numeric: set[int]
    notes: list[str]
    raw: list[Callable[[Row], Any] | None] = field(default_factory=list)


MEMORY_MARK = {"estimated": "~", "mixed": "+"}


def build_table(summary: Summary, status_column: bool = True) -> Table:
    rows = summary.rows
    pu, mu = params_unit(rows), memory_unit(rows)
    au = byte_unit(r.adapter_bytes for r in rows)
    sized, energy = any(r.adapter_bytes is not None for r in rows), any(r.energy_j is not None for r in rows)
    columns: list[tuple[str, Callable[[Row], str], Callable[[Row], Any]]] = [  # header, cell of an ok row, raw value
        (f"trainable params ({pu.name})" if pu.name else "trainable params",
         lambda r: f"{r.trainable_params / pu.size:.2f}" if pu.size > 1 else f"{r.trainable_params:.0f}", lambda r: r.trainable_params),
        *([(au.header("adapter size"), lambda r: au.cell(r.adapter_bytes), lambda r: r.adapter_bytes)] if sized else []),
        ("% of max", lambda r: f"{100 * r.params_share:.2f}" if r.params_share is not None else "-", lambda r: r.params_share),
        (f"peak memory ({mu.name})", lambda r: f"{r.peak_memory_bytes / mu.size:.2f}" + MEMORY_MARK.get(r.memory_kind or "", ""), lambda r: r.peak_memory_bytes),
        ("epoch time (s)", lambda r: time_cell(r) + TIME_MARK.get(r.epoch_time_source or "", "?"), lambda r: r.epoch_time_s),
        *([("energy per epoch (J)", lambda r: fmt_float(r.energy_j, 1), lambda r: r.energy_j)] if energy else []),
        ("TPME", tpme_cell, lambda r: r.tpme),
        ("rank", rank_cell, lambda r: r.rank),
        *((q.title, lambda r, n=q.name: fmt_float(r.quality.get(n), 4), lambda r, n=q.name: r.quality.get(n)) for q in summary.quality_metrics),
    ]
    headers = ["method", *(c[0] for c in columns)] + (["status"] if status_column else [])
    cells = []
    for r in rows:
        line = [r.label] + ([c[1](r) for c in columns] if r.ok else ["-"] * len(columns))
        if status_column:
            err = r.failures[0]["error"].strip().splitlines()[-1:] if r.ok == 0 and r.failures and r.failures[0]["error"] else []
            line.append(f"{r.status}: {err[0][:60]}" if err else r.status)
        cells.append(line)
    raw = [None, *(c[2] for c in columns)] + ([None] if status_column else [])
    return Table(headers, cells, set(range(1, len(columns) + 1)), notes(summary), raw)


def notes(summary: Summary) -> list[str]:
    scored = summary.scored
    out = [
        f"TPME = {summary.weights.formula()} over epoch time, trainable parameters and peak memory"
        + (" and energy per epoch" if summary.weights.energy else "")
        + f", each min-max normalised over the {len(scored)} method(s) of this table; lower is better.",
    ]
    sources = sorted({r.memory_source for r in scored if r.memory_source})
    if sources:
        out.append("Peak memory: " + ", ".join(MEMORY_SOURCES.get(s, s) for s in sources) + ".")
    out += mark_notes(scored)
    if "published" in {r.epoch_time_source for r in scored}:
        out.append("Epoch time as its source published it, not measured here: it may cover a fixed step budget rather than an epoch (each record's timing.note says).")
    if any(r.adapter_bytes is not None for r in summary.rows):
        out.append("Adapter size: the trainable state saved as safetensors (bytes on disk).")
    if any(r.energy_j is not None for r in summary.rows):
        out.append("Energy per epoch: the GPU's NVML energy counter over the timed steps, scaled to one epoch.")
    graphed = [r.label for r in scored if r.cuda_graphs]
    if graphed:
        out.append(f"Training step replayed from CUDA graphs (captured once, outside epoch time): {', '.join(graphed)}; the others ran eagerly.")
    if any(r.repeats > 1 for r in summary.rows):
        out.append("Repeats are combined by their median.")
    if any(r.epoch_time_ci or r.tpme_ci for r in scored):
        out.append(f"± covers the {100 * summary.level:g} % seeded bootstrap interval (over steps and repeats; the wider side); "
                   f"rank (a–b): the ranks that interval allows; = not separable from another method's TPME (a tie).")
    outliers = [f"{r.label} {r.outlier_steps}" for r in scored if r.outlier_steps]
    if outliers:
        out.append(f"Outlier steps flagged (kept; the median resists them): {', '.join(outliers)}.")
    busy = [f"{r.label} ({r.busy_repeats}/{r.ok})" for r in scored if r.busy_repeats]
    if busy:
        out.append(f"WARNING: the host was busy while these were measured, so their times may be inflated: {', '.join(busy)}; "
                   f"e.g. {scored_reason(scored)}. Rerun on an idle host (`--require-idle`) for clean numbers.")
    if summary.quality_metrics:
        out.append("Quality: " + ", ".join(f"{q.title} ({'higher' if q.higher_is_better else 'lower'} is better)" for q in summary.quality_metrics) + ".")
    return out


def mark_notes(rows: list[Row]) -> list[str]:
    """What each mark in the table means, for the marks these rows carry."""
    time_sources = {r.epoch_time_source for r in rows}
    marks = []
    if "extrapolated" in time_sources:
        marks.append("* epoch time extrapolated from the median timed step")
    if "estimated" in time_sources:
        marks.append("~ estimated, not measured")
    if "mixed" in time_sources or any(r.memory_kind == "mixed" for r in rows):
        marks.append("+ repeats of different sources (measured and extrapolated/estimated)")
    if any(r.memory_kind == "estimated" for r in rows):
        marks.append("~ after a memory figure: estimated")
    return ["; ".join(marks) + "."] if marks else []


def scored_reason(rows: list[Row]) -> str:
    return next((x for r in rows for x in r.busy_reasons), "")[:200]


def render_terminal(records: list[Record], weights: Weights) -> str:
    return render_terminal_table(build_table(summarise(records, weights)))


def render_terminal_table(t: Table, colour: bool | None = None) -> str:
    """Through the CLI's one table renderer; failed rows red on a colour terminal."""
    from tpme.reports.terminal import TextTable, render

    failed = {i for i, c in enumerate(t.cells) if len(c) > 1 and c[1] == "-"}
    return render(TextTable(t.headers, t.cells, t.numeric, t.notes, failed), colour)


def render_markdown(records: list[Record], weights: Weights) -> str:
    return render_markdown_table(build_table(summarise(records, weights)))


def render_markdown_table(t: Table) -> str:
    esc = markdown_text  # labels are user text: no tag, link or formatting survives

    out = ["| " + " | ".join(t.headers) + " |", "|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.headers))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in t.cells]
    return "\n".join(out) + "\n\n" + " ".join(n.replace("*", "\\*") for n in t.notes) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "–": "--"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text)


def _latex_cell(cell: str, numeric: bool) -> str:
    """Marks become superscripts; a missing value an en dash."""
    if cell == "-":
        return "--"
    if numeric and cell and cell[-1] in "*~+?":
        return latex_escape(cell[:-1]) + r"$^{" + {"*": "*", "~": r"\sim", "+": "+", "?": "?"}[cell[-1]] + "}$"
    return latex_escape(cell)


def render_latex(summary: Summary, label: str = "tab:tpme-efficiency") -> str:
    """A booktabs table environment; `\\usepackage{booktabs}` in the preamble."""
    t = build_table(summary, status_column=False)
    headers = [latex_escape(h[:1].upper() + h[1:]) for h in t.headers]
    spec = "l" + "r" * (len(headers) - 1)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{Training efficiency. " + latex_escape(" ".join(t.notes)).replace("·", r"$\cdot$") + "}",
        rf"\label{{{label}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(headers) + r" \\",
        r"\midrule",
    ]
    for r in t.cells:
        lines.append(" & ".join(_latex_cell(c, i in t.numeric) for i, c in enumerate(r)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def render_csv(summary: Summary) -> str:
    """Raw numbers (seconds, parameters, bytes), one row per label, the weights on every row."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*CSV_COLUMNS, *CSV_SPREAD, *(q.name for q in summary.quality_metrics), *CSV_TAIL])
    wt = summary.weights.terms()
    for r in summary.rows:
        err = "; ".join(f"{f['status']}: {f['error'].strip().splitlines()[-1] if f['error'].strip() else ''}" for f in r.failures)
        values = [
            r.label, r.method, r.group_value, r.rank, r.tpme, r.t_norm, r.p_norm, r.m_norm, r.epoch_time_s, r.epoch_time_source,
            r.trainable_params, None if r.params_share is None else 100 * r.params_share, r.adapter_bytes, r.peak_memory_bytes, r.memory_source,
            r.energy_j, r.e_norm,
            *(r.epoch_time_ci or (None, None)), *(r.tpme_ci or (None, None)), *(r.rank_ci or (None, None)), ";".join(r.tied_with),
            r.outlier_steps if r.ok else None, r.busy_repeats if r.ok else None,
            *(r.quality.get(q.name) for q in summary.quality_metrics), r.repeats, r.ok, r.status, err, *wt,
        ]
        w.writerow([csv_cell(v) for v in values])  # a label starting with = + - @ is text, never a formula
    return buf.getvalue()


def render_html_table(summary: Summary) -> str:
    """A <table> whose numeric cells carry their raw value in data-v (the page sorts on it)."""
    t = build_table(summary)
    raw = t.raw
    ranked = ' aria-sort="ascending"'  # the rows come in rank order
    head = "".join(f'<th class="{"num" if i in t.numeric else ""}" data-col="{i}"{ranked if h == "rank" else ""}>{html.escape(h)}</th>' for i, h in enumerate(t.headers))
    body = []
    for row, cells in zip(summary.rows, t.cells):
        tds = []
        for i, c in enumerate(cells):
            if i in t.numeric:
                v = raw[i](row) if row.ok else None
                tds.append(f'<td class="num" data-v="{"" if v is None else v}">{html.escape(c)}</td>')
            else:
                tds.append(f"<td>{html.escape(c)}</td>")
        cls = "" if row.ok == row.repeats else ' class="failed"'
        body.append(f"<tr{cls}>{''.join(tds)}</tr>")
    notes = "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in t.notes)
    return f'<table class="tpme sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{notes}'
