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
from dataclasses import dataclass
from tpme.metrics.tpme import Weights
from tpme.reports.format import fmt_float
from tpme.reports.escape import csv_cell, markdown_text
from tpme.reports.summary import Row, Summary, summarise
from tpme.results.record import Record

TIME_MARK = {"measured": "", "extrapolated": "*", "estimated": "~", "mixed": "+"}
MEMORY_SOURCES = {"cuda_allocator": "CUDA allocator peak allocated", "cpu_tensor_peak": "CPU tensor-level peak"}
CSV_COLUMNS = (
    "label", "method", "group_value", "rank", "tpme", "t_norm", "p_norm", "m_norm", "epoch_time_s", "epoch_time_source",
    "trainable_params", "trainable_params_pct_of_max", "peak_memory_bytes", "memory_source",
)
CSV_TAIL = ("repeats", "repeats_ok", "status", "error", "weight_time", "weight_params", "weight_memory")


def fmt_time(s: float) -> str:
    """Three significant digits, trailing zeros kept (4.00, 10.0, 0.362); whole seconds from 100."""
    return f"{s:.0f}" if s >= 100 else f"{s:#.3g}"


@dataclass(frozen=True)
class Unit:
    name: str
    size: float


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
    """Headers and formatted cells; marks are appended to cells as plain characters."""

    headers: list[str]
    cells: list[list[str]]
    numeric: set[int]
    notes: list[str]


def build_table(summary: Summary, status_column: bool = True) -> Table:
    rows = summary.rows
    pu, mu = params_unit(rows), memory_unit(rows)
    headers = ["method", f"trainable params ({pu.name})" if pu.name else "trainable params", "% of max", f"peak memory ({mu.name})", "epoch time (s)", "TPME", "rank"]
    quality = summary.quality_metrics
    headers += [q.title for q in quality]
    if status_column:
        headers.append("status")
    cells = []
    for r in rows:
        if r.ok == 0:
            line = [r.label] + ["-"] * (len(headers) - 1)
        else:
            line = [
                r.label,
                f"{r.trainable_params / pu.size:.2f}" if pu.size > 1 else f"{r.trainable_params:.0f}",
                f"{100 * r.params_share:.2f}" if r.params_share is not None else "-",
                f"{r.peak_memory_bytes / mu.size:.2f}" + ("~" if r.memory_kind == "estimated" else "+" if r.memory_kind == "mixed" else ""),
                fmt_time(r.epoch_time_s) + TIME_MARK.get(r.epoch_time_source or "", "?"),
                fmt_float(r.tpme),
                str(r.rank) if r.rank is not None else "-",
            ]
            line += [fmt_float(r.quality.get(q.name), 4) for q in quality]
            if status_column:
                line.append(r.status)
        if status_column and r.ok == 0:
            err = r.failures[0]["error"].strip().splitlines()[-1:] if r.failures and r.failures[0]["error"] else []
            line[-1] = f"{r.status}: {err[0][:60]}" if err else r.status
        cells.append(line)
    numeric = set(range(1, 7 + len(quality)))
    return Table(headers, cells, numeric, notes(summary))


def notes(summary: Summary) -> list[str]:
    w = summary.weights.as_tuple()
    scored = summary.scored
    out = [
        f"TPME = {w[0]:g}·t + {w[1]:g}·p + {w[2]:g}·m over epoch time, trainable parameters and peak memory, "
        f"each min-max normalised over the {len(scored)} method(s) of this table; lower is better.",
    ]
    sources = sorted({r.memory_source for r in scored if r.memory_source})
    if sources:
        out.append("Peak memory: " + ", ".join(MEMORY_SOURCES.get(s, s) for s in sources) + ".")
    time_sources = {r.epoch_time_source for r in scored}
    marks = []
    if "extrapolated" in time_sources:
        marks.append("* epoch time extrapolated from the median timed step")
    if "estimated" in time_sources:
        marks.append("~ estimated, not measured")
    if "mixed" in time_sources or any(r.memory_kind == "mixed" for r in scored):
        marks.append("+ repeats of different sources (measured and extrapolated/estimated)")
    if any(r.memory_kind == "estimated" for r in scored):
        marks.append("~ after a memory figure: estimated")
    if marks:
        out.append("; ".join(marks) + ".")
    graphed = [r.label for r in scored if r.cuda_graphs]
    if graphed:
        out.append(f"Training step replayed from CUDA graphs (captured once, outside epoch time): {', '.join(graphed)}; the others ran eagerly.")
    if any(r.repeats > 1 for r in summary.rows):
        out.append("Repeats are combined by their median.")
    if summary.quality_metrics:
        out.append("Quality: " + ", ".join(f"{q.title} ({'higher' if q.higher_is_better else 'lower'} is better)" for q in summary.quality_metrics) + ".")
    return out


def render_terminal(records: list[Record], weights: Weights) -> str:
    return render_terminal_table(build_table(summarise(records, weights)))


def render_terminal_table(t: Table) -> str:
    widths = [max(len(h), *(len(r[i]) for r in t.cells)) if t.cells else len(h) for i, h in enumerate(t.headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in t.numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(t.headers), "  ".join("-" * w for w in widths)] + [line(r) for r in t.cells]
    return "\n".join(out) + "\n\n" + " ".join(t.notes)


def render_markdown(records: list[Record], weights: Weights) -> str:
    return render_markdown_table(build_table(summarise(records, weights)))


def render_markdown_table(t: Table) -> str:
    esc = markdown_text  # labels are user text: no tag, link or formatting survives

    out = ["| " + " | ".join(t.headers) + " |", "|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.headers))) + "|"]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in t.cells]
    return "\n".join(out) + "\n\n" + " ".join(n.replace("*", "\\*") for n in t.notes) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


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
    w.writerow([*CSV_COLUMNS, *(q.name for q in summary.quality_metrics), *CSV_TAIL])
    wt = summary.weights.as_tuple()
    for r in summary.rows:
        err = "; ".join(f"{f['status']}: {f['error'].strip().splitlines()[-1] if f['error'].strip() else ''}" for f in r.failures)
        values = [
            r.label, r.method, r.group_value, r.rank, r.tpme, r.t_norm, r.p_norm, r.m_norm, r.epoch_time_s, r.epoch_time_source,
            r.trainable_params, None if r.params_share is None else 100 * r.params_share, r.peak_memory_bytes, r.memory_source,
            *(r.quality.get(q.name) for q in summary.quality_metrics), r.repeats, r.ok, r.status, err, *wt,
        ]
        w.writerow([csv_cell(v) for v in values])  # a label starting with = + - @ is text, never a formula
    return buf.getvalue()


def render_html_table(summary: Summary) -> str:
    """A <table> whose numeric cells carry their raw value in data-v (the page sorts on it)."""
    t = build_table(summary)
    raw = {
        1: lambda r: r.trainable_params, 2: lambda r: r.params_share, 3: lambda r: r.peak_memory_bytes, 4: lambda r: r.epoch_time_s,
        5: lambda r: r.tpme, 6: lambda r: r.rank,
        **{7 + i: (lambda r, name=q.name: r.quality.get(name)) for i, q in enumerate(summary.quality_metrics)},
    }
    head = "".join(f'<th class="{"num" if i in t.numeric else ""}" data-col="{i}">{html.escape(h)}</th>' for i, h in enumerate(t.headers))
    body = []
    for row, cells in zip(summary.rows, t.cells):
        tds = []
        for i, c in enumerate(cells):
            if i in t.numeric:
                v = raw[i](row)
                tds.append(f'<td class="num" data-v="{"" if v is None else v}">{html.escape(c)}</td>')
            else:
                tds.append(f"<td>{html.escape(c)}</td>")
        cls = "" if row.ok == row.repeats else ' class="failed"'
        body.append(f"<tr{cls}>{''.join(tds)}</tr>")
    notes = "".join(f"<p class=\"note\">{html.escape(n)}</p>" for n in t.notes)
    return f'<table class="tpme sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{notes}'
