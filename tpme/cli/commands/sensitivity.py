"""`tpme sensitivity`: how the TPME winner and ranking depend on the weights."""
from __future__ import annotations

import argparse

from tpme.cli.common import add_weights_arg, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sensitivity",
        help="TPME winner over the weight simplex, each method's share, rank stability, where the winner changes",
        description="Evaluate TPME on a grid over the weight simplex (a1+a2+a3 = 1 in steps of --step): the method with the lowest TPME "
        "at each point, each method's share of the simplex, Kendall tau of the ranking at each point against the ranking at --weights, "
        "and the weights at which the winner changes. Ties: methods within 1e-9 of the lowest TPME share a point (1/k each).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="run directory, results.jsonl or sweep directory (several merge)")
    p.add_argument("--step", type=float, default=0.05, help="grid step (default 0.05: 231 weight triples)")
    add_weights_arg(p)
    p.add_argument("--group-by", metavar="FIELD", help="relabel by a record field first (as in `tpme report --group-by`)")
    p.add_argument("--json", action="store_true", help="print the full analysis as JSON (every boundary crossing included)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.errors import TpmeError
    from tpme.metrics.aggregate import entries_from_records
    from tpme.metrics.sensitivity import sensitivity
    from tpme.metrics.tpme import Weights
    from tpme.results.load import apply_group_by, load_inputs

    weights = Weights.parse(args.weights)
    records = load_inputs(args.inputs)
    if args.group_by:
        records, _ = apply_group_by(records, args.group_by)
    entries = entries_from_records(records)
    if not entries:
        raise TpmeError("no completed (status ok) results to analyse")
    sens = sensitivity(entries, weights, args.step)
    if args.json:
        print_json(sens.to_dict())
        return 0
    w = weights.as_tuple()
    print(f"grid: step {sens.step:g}, {len(sens.grid)} weight triples (a1 time, a2 parameters, a3 memory)")
    print(f"lowest TPME at the chosen weights ({w[0]:g}, {w[1]:g}, {w[2]:g}): {' = '.join(sens.chosen_winners)}")
    from tpme.reports.terminal import TextTable, render

    shares = [[m, f"{100 * s:.1f}"] for m, s in sorted(sens.shares.items(), key=lambda kv: -kv[1])]
    print("\n" + render(TextTable(["method", "share of the simplex where lowest (%)"], shares, {1})))
    print(f"\nrank stability against the chosen weights: Kendall tau mean {sens.tau_mean:.3f}, min {sens.tau_min:.3f}; "
          f"identical ranking at {100 * sens.identical_share:.1f}% of the grid")
    summary = sens.boundary_summary()
    if not summary:
        print("\nthe winner is the same everywhere on the simplex")
    else:
        cells = [[b["between"][0], b["between"][1], str(b["edges"]), *(f"{x:.3f}" for x in b["nearest"]), f"{b['distance_l1']:.3f}"] for b in summary]
        print("\n" + render(TextTable(["winner", "neighbour", "grid edges", "nearest a1", "nearest a2", "nearest a3", "L1 distance"], cells, {2, 3, 4, 5, 6},
                                      title="where the winner changes (the boundary point nearest the chosen weights; --json lists every crossing)")))
    print("\nties: methods within 1e-9 of the lowest TPME share a point; it counts 1/k towards each of the k tied methods")
    return 0
