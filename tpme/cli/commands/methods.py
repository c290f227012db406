"""`tpme methods`: the registry."""
from __future__ import annotations

import argparse

from tpme.cli.common import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list registered methods", description="List the registered methods and method families with their descriptions.")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import MODULE first, which registers methods")
    p.add_argument("--scenario", help="only the methods that adapt this scenario (default: every method)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, description, kind, scenarios, available}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.methods.registry import families, load_plugins, method_classes, missing_requirements
    from tpme.scenarios import get_scenario

    load_plugins(args.plugin)
    scenario = get_scenario(args.scenario).name if args.scenario else None
    rows = []
    for name, cls in method_classes().items():
        if scenario and scenario not in cls.scenarios:
            continue
        missing = missing_requirements(cls)
        rows.append({"name": name, "description": cls.description, "kind": "method", "scenarios": sorted(cls.scenarios),
                     "available": not missing, "install": "; ".join(h for _, h in missing) or None})
    rows += [{"name": n, "description": d, "kind": "family", "scenarios": None, "available": True, "install": None} for n, d in families().items()]
    if args.json:
        print_json(rows)
        return 0
    from tpme.reports.terminal import TextTable, print_table

    cells = [[r["name"], r["kind"], r["description"] + (f" [unavailable: {r['install']}]" if not r["available"] else "")] for r in rows]
    print_table(TextTable(["name", "kind", "description"], cells, failed_rows={i for i, r in enumerate(rows) if not r["available"]}))
    return 0
