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
        "A change must exceed --threshold, widened to the relative spread (max-min)/median of the repeats on either side; "
        "TPME is judged on its absolute difference. Result sets from different devices, configurations or protocols (official / tpme) are refused (exit 2) unless --force.",
    )
    p.add_argument("baseline", metavar="BASELINE", help="run directory or results.jsonl")
    p.add_argument("candidate", metavar="CANDIDATE", help="run directory or results.jsonl")
    p.add_argument("--threshold", default="5%", help="smallest relative change that counts, e.g. 5%% or 0.05 (default 5%%)")
    add_weights_arg(p)
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any metric of any method got worse")
    p.add_argument("--force", action="store_true", help="compare even across devices or configurations (flagged in the output)")
    p.set_defaults(func=run)


def fmt(metric: str, v: float | None) -> str:
    from tpme.reports.format import fmt_bytes, fmt_params, fmt_seconds

    if v is None:
        return "-"
    return {"epoch_time_s": lambda x: fmt_seconds(x) + " s", "trainable_params": fmt_params, "peak_memory_bytes": fmt_bytes}.get(metric, lambda x: f"{x:.4f}")(v)


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
        rows = [[c.label, c.metric, fmt(c.metric, c.baseline), fmt(c.metric, c.candidate), f"{c.ratio:.3f}" if c.ratio is not None else "-", f"±{100 * c.noise:.1f}%" if c.metric != "tpme" else f"±{c.noise:.3f}", c.verdict] for c in result.rows]
        headers = ["method", "metric", "baseline", "candidate", "ratio", "noise", "verdict"]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)] if rows else [len(h) for h in headers]
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        for lab in result.only_baseline:
            print(f"only in baseline: {lab}")
        for lab in result.only_candidate:
            print(f"only in candidate: {lab}")
        n = len(result.regressions)
        print(f"\n{n} regression(s) beyond the noise band (threshold {100 * threshold:g}%)" + (": " + ", ".join(f"{c.label} {c.metric}" for c in result.regressions) if n else ""))
    return 1 if args.fail_on_regression and result.regressions else 0
