"""The TPME table: one row per method (repeats combined), in the terminal and as Markdown."""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from tpme.metrics.aggregate import score_records
from tpme.metrics.tpme import Weights
from tpme.reports.format import fmt_bytes, fmt_float, fmt_params, fmt_seconds

HEADERS = ["method", "epoch time (s)", "trainable params", "% of max", "peak memory", "TPME", "rank", "status"]
SOURCE_MARK = {"measured": "", "extrapolated": "*", "estimated": "~"}


def table_rows(records: list[dict[str, Any]], weights: Weights) -> list[list[str]]:
    scores = score_records(records, weights)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r.get("label") or r["method"]].append(r)
    max_params = max((r["trainable_params"] for r in records if r.get("status") == "ok"), default=None)
    rows = []
    for name, rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        statuses = sorted({r["status"] for r in rs})
        status = "ok" if statuses == ["ok"] else ",".join(statuses)
        if not ok:
            err = next((r.get("error") for r in rs if r.get("error")), "") or ""
            rows.append([name, "-", "-", "-", "-", "-", "-", f"{status}: {err[:60]}"])
            continue
        t = statistics.median(r["epoch_time_s"] for r in ok)
        p = statistics.median(r["trainable_params"] for r in ok)
        m = statistics.median(r["peak_memory_bytes"] for r in ok)
        mark = SOURCE_MARK.get(ok[0].get("epoch_time_source"), "?")
        s = scores[name]
        share = f"{100 * p / max_params:.2f}%" if max_params else "-"
        rows.append([name, fmt_seconds(t) + mark, fmt_params(p), share, fmt_bytes(m), fmt_float(s.tpme), str(s.rank), status])
    rows.sort(key=lambda r: (r[6] == "-", int(r[6]) if r[6] != "-" else 0))
    return rows


def footnote(records: list[dict[str, Any]], weights: Weights) -> str:
    sources = {r.get("memory_source") for r in records if r.get("status") == "ok"}
    memory = {"cuda_allocator": "CUDA allocator peak allocated", "cpu_tensor_peak": "CPU tensor-level peak"}
    mem = ", ".join(memory.get(s, str(s)) for s in sorted(s for s in sources if s)) or "-"
    w = weights.as_tuple()
    return (
        f"TPME = {w[0]:g}·t + {w[1]:g}·p + {w[2]:g}·m over min-max normalised epoch time, trainable parameters and peak memory; lower is better. "
        f"Memory: {mem}. * epoch time extrapolated from the median timed step."
    )


def render_terminal(records: list[dict[str, Any]], weights: Weights) -> str:
    rows = table_rows(records, weights)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(HEADERS)]
    numeric = {1, 2, 3, 4, 5, 6}
    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(HEADERS), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    return "\n".join(out) + "\n\n" + footnote(records, weights)


def render_markdown(records: list[dict[str, Any]], weights: Weights) -> str:
    rows = table_rows(records, weights)
    out = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---"] + ["---:"] * 6 + ["---"]) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n\n" + footnote(records, weights) + "\n"
