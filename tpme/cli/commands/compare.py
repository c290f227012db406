"""`tpme compare`: did a candidate run get better or worse than a baseline, method by method?"""
from __future__ import annotations

import argparse
import sys

from tpme.cli.common import add_weights_arg, print_json

EXIT_REFUSED = 2


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two result sets: ratio and verdict per method and metric",
        description="For every method in both BASELINE and CANDIDATE and every metric (epoch time, trainable parameters, peak memory, "
        "TPME, HR@10/NDCG@10 when present): the ratio candidate/baseline and a verdict, better / worse / within noise. "
        "Epoch time is judged on the step-time distributions of both sides: a seeded 95%% bootstrap interval of the ratio of medians "
        "(over steps and repeats) must lie wholly above 1 + --threshold for `worse` (below 1 - threshold for `better`); "
        "TPME the same way on the interval of its absolute difference; such a change measured on a busy host (either side) is `inconclusive: busy host`, not a regression. Parameters, memory and quality metrics are compared exactly: "
        "a change must exceed --threshold, widened to the relative spread (max-min)/median of the repeats on either side. "
        "Result sets from different devices, configurations or protocols (official / tpme) are refused (exit 2) unless --force.",
    )
    p.add_argument("baseline", metavar="BASELINE", help="run directory or results.jsonl")
    p.add_argument("candidate", metavar="CANDIDATE", help="run directory or results.jsonl")
    p.add_argument("--threshold", default="5%", help="smallest relative change that counts, e.g. 5%% or 0.05 (default 5%%)")
    add_weights_arg(p)
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any metric of any method got worse")
    p.add_argument("--force", action="store_true", help="compare even across devices or configurations (flagged in the output)")
    p.set_defaults(func=run)


METRIC_TITLES = {"epoch_time_s": "epoch time", "trainable_params": "trainable params", "peak_memory_bytes": "peak memory", "tpme": "TPME"}


def render(rows: list, colour: bool | None = None) -> str:
    """One table per metric, so that every column holds one unit, named in the title or header."""
    from tpme.reports.format import Unit, byte_unit, count_unit
    from tpme.reports.terminal import TextTable
    from tpme.reports.terminal import render as render_table

    out = []
    for metric in dict.fromkeys(c.metric for c in rows):
        group = [c for c in rows if c.metric == metric]
        values = [v for c in group for v in (c.baseline, c.candidate)]
        unit = {"epoch_time_s": Unit("s", 1), "peak_memory_bytes": byte_unit(values), "trainable_params": count_unit(values)}.get(metric, Unit("", 1))
        digits = {"epoch_time_s": 3, "tpme": 3}.get(metric, 2 if unit.size > 1 else 4)
        title = unit.header(METRIC_TITLES.get(metric, metric.upper() if "@" in metric else metric))
        cells = [[c.label, _cell(c.baseline, unit, digits), _cell(c.candidate, unit, digits), f"{c.ratio:.3f}" if c.ratio is not None else "-",
                  band(c), c.verdict] for c in group]
        out.append(render_table(TextTable(["method", "baseline", "candidate", "ratio", "interval or band", "verdict"], cells, {1, 2, 3}, title=title), colour))
    return "\n\n".join(out)


def _cell(v: float | None, unit, digits: int) -> str:
    return "-" if v is None else f"{v / unit.size:.{digits}f}"


def band(c) -> str:
    """The bootstrap interval a verdict came from (ratio for time, difference for TPME), else the exact rule's band."""
    if c.interval is not None:
        lo, hi = c.interval
        return f"[{lo:.3f}, {hi:.3f}]" if c.metric != "tpme" else f"[{lo:+.3f}, {hi:+.3f}]"
    return f"±{100 * c.noise:.1f}%" if c.metric != "tpme" else f"±{c.noise:.3f}"


def run(args: argparse.Namespace) -> int:
    from tpme.metrics.tpme import Weights
    from tpme.reports.compare import compare, mismatches, parse_threshold
    from tpme.results.load import load_inputs

    weights = Weights.parse(args.weights)
    threshold = parse_threshold(args.threshold)
    base, cand = load_inputs([args.baseline]), load_inputs([args.candidate])
    problems = mismatches(base, cand)
    if problems and not args.force:
        if args.json:
            print_json({"comparable": False, "mismatches": problems, "forced": False})
        for m in problems:
            print(f"tpme: error: not comparable: {m}", file=sys.stderr)
        print("tpme: fix: compare runs on the same device, configuration and protocol, or pass --force to compare anyway (flagged)", file=sys.stderr)
        return EXIT_REFUSED
    result = compare(base, cand, threshold, weights)
    result.mismatches, result.forced = problems, bool(problems)
    if args.json:
        print_json(result.to_dict())
    else:
        for m in problems:
            print(f"WARNING (forced): {m}")
        for side, labels in result.busy.items():
            print(f"WARNING: the host was busy while the {side} measured {', '.join(labels)}: their step times include the load, "
                  "so a time change beyond the band there is `inconclusive: busy host`, not a verdict (rerun both with --require-idle)")
        print(render(result.rows))
        for lab in result.only_baseline:
            print(f"only in baseline: {lab}")
        for lab in result.only_candidate:
            print(f"only in candidate: {lab}")
        n = len(result.regressions)
        print("\nintervals: 95% seeded bootstrap over steps and repeats (time: ratio candidate/baseline; TPME: difference); "
              "a verdict needs the whole interval beyond the threshold")
        print(f"{n} regression(s) beyond the noise band (threshold {100 * threshold:g}%)" + (": " + ", ".join(f"{c.label} {c.metric}" for c in result.regressions) if n else ""))
    return 1 if args.fail_on_regression and result.regressions else 0
