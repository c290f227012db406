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
    width = max(len(n) for n in WEIGHT_PRESETS)
    for n, w in WEIGHT_PRESETS.items():
        print(f"{n:<{width}}  {','.join(f'{x:.3g}' for x in w):<17}  {WEIGHT_PRESET_USES.get(n, '')}")
    return 0


def run(args: argparse.Namespace) -> int:
    from tpme.results.aggregate import check_one_configuration
    from tpme.results.store import load_records
    from tpme.metrics.aggregate import entries_from_records
    from tpme.metrics.tpme import Weights, score
    from tpme.reports.format import fmt_bytes, fmt_params, fmt_seconds

    if args.list_weights:
        return list_weights(args.json)
    if not args.input:
        raise TpmeError("INPUT is missing", "give a results.jsonl, a run directory or a CSV (or --list-weights)")
    weights = Weights.parse(args.weights)
    path = Path(args.input)
    if not path.exists():
        raise TpmeError(f"{path} does not exist", "give a results.jsonl, a run directory or a CSV")
    if path.suffix.lower() == ".csv":
        entries = read_csv(path)
    else:
        records = load_records(path)
        check_one_configuration(records)  # repeats are combined by median, configurations never
        entries = entries_from_records(records)
    if not entries:
        raise TpmeError(f"{path}: no completed (status ok) results to score")
    scores = sorted(score(entries, weights), key=lambda s: (s.rank, s.method))
    if args.json:
        print_json([{"method": s.method, "tpme": s.tpme, "t_norm": s.t_norm, "p_norm": s.p_norm, "m_norm": s.m_norm, "rank": s.rank} for s in scores])
        return 0
    by_name = {e.method: e for e in entries}
    width = max(len(s.method) for s in scores)
    print(f"{'method':<{width}}  {'epoch (s)':>9}  {'params':>9}  {'memory':>10}  {'t':>5}  {'p':>5}  {'m':>5}  {'TPME':>6}  rank")
    for s in scores:
        e = by_name[s.method]
        print(f"{s.method:<{width}}  {fmt_seconds(e.epoch_time_s):>9}  {fmt_params(e.trainable_params):>9}  {fmt_bytes(e.peak_memory):>10}  {s.t_norm:5.3f}  {s.p_norm:5.3f}  {s.m_norm:5.3f}  {s.tpme:6.3f}  {s.rank}")
    print(f"\nweights: time {weights.time:g}, parameters {weights.params:g}, memory {weights.memory:g}; lower TPME is better")
    return 0
