"""`tpme score`: TPME from results measured here or elsewhere."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from tpme.cli.common import add_weights_arg, print_json
from tpme.errors import TpmeError

CSV_COLUMNS = ("method", "epoch_time_s", "trainable_params", "peak_memory_gb")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="compute TPME from results.jsonl, a run directory or a CSV",
        description="Score methods by TPME. INPUT is a results.jsonl, a run directory, or a CSV with columns "
        "method,epoch_time_s,trainable_params,peak_memory_gb (figures measured elsewhere, e.g. a paper's table).",
    )
    p.add_argument("input", metavar="INPUT", nargs="?")
    add_weights_arg(p)
    p.add_argument("--list-weights", action="store_true", help="list the named weight presets and what each is for, then exit")
    p.add_argument("--json", action="store_true", help="print a JSON list of {method, tpme, t_norm, p_norm, m_norm, rank}")
    p.set_defaults(func=run)


def read_csv(path: Path):
    from tpme.metrics.tpme import Entry

    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise TpmeError(f"{path}: missing column(s) {', '.join(missing)}", f"a CSV needs the columns {','.join(CSV_COLUMNS)}")
        entries = []
        for lineno, row in enumerate(reader, 2):
            try:
                entries.append(Entry(row["method"], float(row["epoch_time_s"]), float(row["trainable_params"]), float(row["peak_memory_gb"]) * 1e9))
            except (TypeError, ValueError):
                raise TpmeError(f"{path}:{lineno}: a figure is not a number: {row}") from None
    if not entries:
        raise TpmeError(f"{path}: no rows")
    return entries


def list_weights(as_json: bool) -> int:
    from tpme.metrics.tpme import WEIGHT_PRESETS, WEIGHT_PRESET_USES

    if as_json:
        print_json([{"name": n, "weights": list(w), "use": WEIGHT_PRESET_USES.get(n, "")} for n, w in WEIGHT_PRESETS.items()])
        return 0
    from tpme.reports.terminal import TextTable, print_table

    cells = [[n, *(f"{x:.3g}" for x in w), WEIGHT_PRESET_USES.get(n, "")] for n, w in WEIGHT_PRESETS.items()]
    print_table(TextTable(["preset", "a1 (time)", "a2 (params)", "a3 (memory)", "use"], cells, {1, 2, 3}))
    return 0


def run(args: argparse.Namespace) -> int:
    from tpme.results.aggregate import check_one_configuration
    from tpme.metrics.aggregate import entries_from_records
    from tpme.metrics.tpme import Weights, score
    from tpme.results.store import load_records

    if args.list_weights:
        return list_weights(args.json)
    if not args.input:
        raise TpmeError("INPUT is missing", "give a results.jsonl, a run directory or a CSV (or --list-weights)")
    weights = Weights.parse(args.weights)
    path = Path(args.input)
    if not path.exists():
        raise TpmeError(f"{path} does not exist", "give a results.jsonl, a run directory or a CSV")
    records = None if path.suffix.lower() == ".csv" else load_records(path)
    if records is not None:
        check_one_configuration(records)  # repeats are combined by median, configurations never
    entries = read_csv(path) if records is None else entries_from_records(records)
    if not entries:
        raise TpmeError(f"{path}: no completed (status ok) results to score")
    scores = sorted(score(entries, weights), key=lambda s: (s.rank, s.method))
    if args.json:
        print_json([{"method": s.method, "tpme": s.tpme, "t_norm": s.t_norm, "p_norm": s.p_norm, "m_norm": s.m_norm, "e_norm": s.e_norm, "rank": s.rank} for s in scores])
        return 0
    print(render(scores, entries, weights, records))
    return 0


def render(scores: list, entries: list, weights, records: list | None = None, colour: bool | None = None) -> str:
    """Units in the headers, the reports' marks on epoch time and memory (records only)."""
    from tpme.reports.format import byte_unit, count_unit, fmt_seconds
    from tpme.reports.summary import summarise
    from tpme.reports.table import TIME_MARK, MEMORY_MARK
    from tpme.reports.terminal import TextTable
    from tpme.reports.terminal import render as render_table

    rows = {r.label: r for r in summarise(records, weights).rows} if records else {}
    by_name = {e.method: e for e in entries}
    pu, mu = count_unit(e.trainable_params for e in entries), byte_unit(e.peak_memory for e in entries)
    energy = any(e.energy_j is not None for e in entries)
    headers = ["method", "epoch time (s)", pu.header("trainable params"), mu.header("peak memory"), *(["energy (J)"] if energy else []), "t", "p", "m",
               *(["e"] if energy else []), "TPME", "rank"]
    cells = []
    for s in scores:
        e, row = by_name[s.method], rows.get(s.method)
        tmark = TIME_MARK.get(row.epoch_time_source or "", "?") if row else ""
        mmark = MEMORY_MARK.get(row.memory_kind or "", "") if row else ""
        cells.append([
            s.method, fmt_seconds(e.epoch_time_s) + tmark, pu.cell(e.trainable_params), mu.cell(e.peak_memory) + mmark,
            *([f"{e.energy_j:.1f}" if e.energy_j is not None else "-"] if energy else []), f"{s.t_norm:.3f}", f"{s.p_norm:.3f}", f"{s.m_norm:.3f}",
            *([f"{s.e_norm:.3f}" if s.e_norm is not None else "-"] if energy else []), f"{s.tpme:.3f}", str(s.rank),
        ])
    notes = [weights.describe() + "; lower TPME is better."]
    if rows:
        from tpme.reports.table import mark_notes

        notes += mark_notes(list(rows.values()))
    return render_table(TextTable(headers, cells, set(range(1, len(headers))), notes), colour)
