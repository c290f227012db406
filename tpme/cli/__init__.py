"""The `tpme` command. Each subcommand is a module in tpme.cli.commands exposing
`add_parser(subparsers)`; modules are discovered, so a new command touches no other file.
A method package may register a subcommand of its own (IISAN's `tpme cache`); it gets
`services`, through which it reaches the scenarios without importing anything above it.

Exit codes: 0 success; 1 the work ran but something failed (a cell not ok, a
regression found); 2 bad input (unknown method, invalid weights, missing files).
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from tpme import __version__
from tpme.errors import TpmeError

EXIT_USAGE = 2  # bad input; 0 and 1 are returned by the commands themselves


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tpme",
        description="Benchmark the training-time, parameter and GPU-memory efficiency (TPME) of PEFT methods on a multimodal sequential recommender.",
        epilog="Run `tpme COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tpme {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import tpme.cli.commands as commands

    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{mod.name}").add_parser(sub)
    from tpme.methods.registry import commands as method_commands

    for command in method_commands():
        command.add_parser(sub, Services())
    return parser


class Services:
    """What the CLI lends the subcommands that method packages register."""

    @staticmethod
    def scenario(name: str):
        from tpme.scenarios import get_scenario

        return get_scenario(name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except TpmeError as e:
        print(f"tpme: error: {e.problem}", file=sys.stderr)
        if e.fix:
            print(f"tpme: fix: {e.fix}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("tpme: interrupted", file=sys.stderr)
        return 130
