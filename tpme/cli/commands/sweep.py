"""`tpme sweep`: run a grid of cells from a YAML/TOML spec, locally or on Ray, resumably."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tpme.cli.common import add_require_idle_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid (methods x options x settings x seeds) from a YAML/TOML spec, locally or on Ray; resumable",
        description="Run every cell of the grid a SPEC file describes, each in its own process, on this machine "
        "(one cell per visible GPU, or N CPU processes) or as Ray tasks. Results go to DIR/results.jsonl (one record per cell, "
        "with its axes) as they finish; --resume continues an interrupted or partly failed sweep. README section Sweeps has the schema.",
    )
    p.add_argument("spec", metavar="SPEC", help="sweep spec, .yaml/.yml or .toml")
    p.add_argument("--executor", choices=["local", "ray", "inprocess"], default="local", help="local (default): subprocesses here; ray: Ray tasks; inprocess: this process (debugging)")
    p.add_argument("--ray-address", metavar="ADDR", help="a running Ray cluster (HEAD:6379, or auto); default: start a local runtime")
    p.add_argument("--max-parallel", type=int, metavar="N", help="cells at a time: CPU processes (default 1), at most one per GPU (default: every visible GPU); with Ray, tasks in flight (default: the cluster's GPUs or CPUs; a local Ray runtime is started with N CPUs, default 1)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: skip finished cells, retry failed ones, move damaged lines aside")
    p.add_argument("--retries", type=int, default=2, metavar="N", help="attempts per cell in total, over every run of the sweep (default 2); error and timeout are retried, oom is a result")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="per cell attempt; a cell past it is stopped and recorded as timeout")
    p.add_argument("--out", metavar="DIR", help="sweep directory (default: runs/sweep-<spec name>)")
    p.add_argument("--json", action="store_true", help="print the final records of the sweep's cells as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_require_idle_arg(p)
    p.add_argument("--protocol", choices=["official", "tpme"], help="the recommendation scenario's protocol for every cell, over the spec's `settings: protocol` "
                   "(default: the spec's, else the preset's: official for paper)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.cli.common import print_json
    from tpme.metrics.aggregate import scored_dicts
    from tpme.metrics.tpme import Weights
    from tpme.reports.table import render_terminal
    from tpme.sweep.driver import DriverOptions, Plan, validate
    from tpme.sweep.driver import run as drive
    from tpme.sweep.spec import load_spec

    opts = DriverOptions(Path(args.out) if args.out else Path(), args.executor, args.ray_address, args.max_parallel, args.resume, args.retries, args.timeout,
                         progress=not args.quiet, command=["tpme", "sweep", *sys.argv[2:]])
    validate(opts)  # numeric options before the spec is read
    spec = load_spec(args.spec)
    if args.protocol is not None:
        _set_protocol(spec, args.protocol)
    opts.out_dir = Path(args.out) if args.out else Path("runs") / f"sweep-{safe_name(spec.name)}"
    resume = f"tpme sweep {spec.path} --out {opts.out_dir} --resume" + (" --executor ray" if args.executor == "ray" else "") + (f" --protocol {args.protocol}" if args.protocol else "")
    plan = Plan(f"sweep {spec.name}", spec.cells(), spec.plugins, spec.cache_dir, spec_path=spec.path, resume_hint=resume)
    if args.require_idle:
        from tpme.cli.common import require_idle
        from tpme.device import resolve_device

        require_idle({resolve_device(c.config.train.device).type for c in plan.cells})
    outcome = drive(plan, opts)
    if outcome.interrupted:
        return 130
    records = outcome.records
    weights = Weights.parse("paper")
    if args.json:
        print_json(scored_dicts(records, weights))
    elif records:
        print(render_terminal(records, weights))
        print("(one row per method and options, median over the other axes)", file=sys.stderr)
    bad = [r for r in records if not r.ok]
    print(f"tpme: {len(records)}/{outcome.cells} cell(s) recorded in {opts.out_dir}/results.jsonl, {len(bad)} not ok, {outcome.launched} attempt(s) run now", file=sys.stderr)
    return 0 if not bad and len(records) == outcome.cells else 1


def _set_protocol(spec: Any, protocol: str) -> None:
    """`--protocol` for every cell; refused where the spec sweeps the protocol or its scenario has none."""
    from tpme.errors import TpmeError

    if "protocol" in spec.config_axes:
        raise TpmeError(f"{spec.path} sweeps the protocol as an axis, and --protocol would override it", "drop --protocol, or the protocol axis")
    if "protocol" not in spec.scenario.config_class.field_types():
        raise TpmeError(f"the {spec.scenario.name} scenario has no protocol", "drop --protocol")
    spec.base = spec.base.replace(protocol=protocol)


def safe_name(name: str) -> str:
    """A spec name as one folder name under runs/: no separators, no `..`, never empty."""
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return cleaned or "sweep"
