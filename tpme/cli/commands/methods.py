"""`tpme methods`: the registry."""
from __future__ import annotations

import argparse

from tpme.cli.common import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("methods", help="list registered methods", description="List the registered methods and method families with their descriptions.")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import MODULE first, which registers methods")
    p.add_argument("--json", action="store_true", help="print a JSON list of {name, description, kind}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.methods.registry import available_methods, families, load_plugins

    load_plugins(args.plugin)
    rows = [{"name": n, "description": d, "kind": "method"} for n, d in available_methods().items()]
    rows += [{"name": n, "description": d, "kind": "family"} for n, d in families().items()]
    if args.json:
        print_json(rows)
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['description']}")
    return 0
