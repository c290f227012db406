"""`tpme report`: the efficiency report (tables, figures, HTML) of one or more runs."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tpme.cli.common import add_weights_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    from tpme.reports.build import FORMATS

    p = sub.add_parser(
        "report",
        help="tables, figures and a self-contained HTML report from results",
        description="Write the efficiency report of one or more runs: the table in the paper's form (Markdown, LaTeX, CSV, HTML), "
        "figures (PNG, SVG), weight sensitivity and provenance. Several inputs are merged; repeats of a label are combined by median.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="a run directory, a results.jsonl, or a sweep directory holding runs")
    p.add_argument("--out", help="output directory (default: <first run directory>/report)")
    p.add_argument("--format", default=",".join(FORMATS), help=f"comma-separated subset of {','.join(FORMATS)} (default: all)")
    add_weights_arg(p)
    p.add_argument("--group-by", metavar="FIELD", help="dotted path into a record (e.g. method_options.r, config.train.batch_size, axes.rank): "
                   "labels become method + value, and a figure shows TPME, T, P and M against it")
    p.add_argument("--step", type=float, default=0.05, help="grid step of the weight-sensitivity map (default 0.05)")
    p.add_argument("--title", default="TPME efficiency report", help="report title")
    p.set_defaults(func=run)


def default_out(first: Path) -> Path:
    return (first if first.is_dir() else first.parent) / "report"


def run(args: argparse.Namespace) -> int:
    from tpme.metrics.tpme import Weights
    from tpme.reports.build import parse_formats, write_report
    from tpme.results.load import load_inputs

    weights = Weights.parse(args.weights)
    formats = parse_formats(args.format)
    records = load_inputs(args.inputs)
    out = Path(args.out) if args.out else default_out(Path(args.inputs[0]))
    result = write_report(records, out, weights, formats, args.group_by, args.inputs, args.step, args.title)
    for w in result.warnings:
        print(f"tpme: warning: {w}", file=sys.stderr)
    for f in result.files:
        print(f)
    html = result.path("report.html")
    print(f"tpme: report in {out}" + (f" (open {html})" if html else ""), file=sys.stderr)
    return 0
