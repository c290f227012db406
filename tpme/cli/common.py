"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tpme.errors import TpmeError


def add_weights_arg(p: argparse.ArgumentParser) -> None:
    from tpme.metrics.tpme import WEIGHT_PRESETS

    p.add_argument("--weights", default="paper", metavar="A1,A2,A3|PRESET", help=f"TPME weights for time, parameters, memory (non-negative, sum 1) or a preset: {', '.join(WEIGHT_PRESETS)} (default: paper = 0.45,0.1,0.45)")


def parse_method_opts(items: list[str], methods: list[str]) -> dict[str, dict[str, str]]:
    """`KEY=VALUE` applies to every selected method; `METHOD.KEY=VALUE` to that method only."""
    per: dict[str, dict[str, str]] = {m: {} for m in methods}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TpmeError(f"bad --method-opt {item!r}", "use KEY=VALUE or METHOD.KEY=VALUE")
        target, dot, name = key.rpartition(".")
        if dot and target:
            if target not in per:
                raise TpmeError(f"--method-opt {item!r} names method {target!r}, which is not selected", f"selected: {', '.join(methods)}")
            per[target][name] = value
        else:
            for m in methods:
                per[m][key] = value
    return per


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
