"""`tpme params`: trainable and total parameters of every method, without training or allocating.

Each method is applied through the scenario's own assembly on the meta device (shapes only,
no memory, no weight init work) and counted like the harness counts (unique parameters of
the whole trained model, user encoder included; iisan-cached holds no backbones in training,
so none are counted).
"""
from __future__ import annotations

import argparse
from typing import Any

from tpme.cli.common import add_methods_arg, add_scenario_args, method_names, parse_method_opts, print_json, scenario_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "params",
        help="trainable and total parameters of each method (no training, no memory: meta device)",
        description="Count the trainable and total parameters of each method on a configuration's model, in seconds, without allocating it.",
    )
    p.add_argument("--preset", default="default", help="ci, default or paper (default: default)")
    add_scenario_args(p, data=False)
    add_methods_arg(p)
    p.add_argument("--method-opt", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="a method option (repeatable)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import MODULE, which registers methods (repeatable)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {method, label, trainable_params, total_params}")
    p.set_defaults(func=run)


def count_method(scenario: Any, cfg: Any, name: str, options: dict[str, str]) -> tuple[int, int]:
    """(trainable, total) of one method, assembled on the meta device as the harness assembles it."""
    from tpme.methods.registry import get_method

    method = get_method(name, options)
    scenario.check_method(method)
    return scenario.count(scenario.config_for_method(cfg, name), method)


def method_label(name: str, options: dict[str, str]) -> str:
    """How records name the method: its own label (a peft config's experiment) or name and options."""
    from tpme.methods.registry import get_method
    from tpme.results.record import label

    return get_method(name, options).label or label(name, options)


def run(args: argparse.Namespace) -> int:
    from tpme.methods.registry import load_plugins

    scenario, cfg = scenario_config(args)
    load_plugins(args.plugin)
    names = method_names(args, scenario)
    options = parse_method_opts(args.method_opt, names)
    rows = []
    for name in names:
        trainable, total = count_method(scenario, cfg, name, options[name])
        rows.append({"method": name, "label": method_label(name, options[name]), "trainable_params": trainable, "total_params": total})
    if args.json:
        print_json(rows)
        return 0
    print(render(rows, f"{scenario.name}, {scenario.describe(cfg)}"))
    return 0


def render(rows: list[dict[str, Any]], setting: str, colour: bool | None = None) -> str:
    """Most trainable parameters first; exact counts, the share of the largest."""
    from tpme.reports.format import fmt_params
    from tpme.reports.terminal import TextTable
    from tpme.reports.terminal import render as render_table

    ref = max(r["trainable_params"] for r in rows) or 1
    ordered = sorted(rows, key=lambda r: (-r["trainable_params"], r["method"]))
    cells = [[r.get("label", r["method"]), f"{r['trainable_params']:,}", f"{r['total_params']:,}", f"{100 * r['trainable_params'] / ref:.2f}"] for r in ordered]
    note = f"{setting}; counted on the meta device (shapes only), the whole trained model ({fmt_params(ref)} = the largest)"
    return render_table(TextTable(["method", "trainable", "total", "% of max trainable"], cells, {1, 2, 3}, [note]), colour)
