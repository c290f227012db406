"""`tpme sweep`: run a grid of cells from a YAML/TOML spec, locally or on Ray, resumably."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid (methods x options x settings x seeds) from a YAML/TOML spec, locally or on Ray; resumable",
        description="Run every cell of the grid a SPEC file describes, each in its own process, on this machine "
        "(one cell per visible GPU, or N CPU processes) or as Ray tasks. Results go to DIR/results.jsonl (one record per cell, "
        "with its axes) as they finish; --resume continues an interrupted or partly failed sweep. README section Sweeps has the schema.",
    )
    p.add_argument("spec", metavar="SPEC", help="sweep spec, .yaml/.yml or .toml")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="local (default): subprocesses here; ray: Ray tasks")
    p.add_argument("--ray-address", metavar="ADDR", help="a running Ray cluster (HEAD:6379, or auto); default: start a local runtime")
    p.add_argument("--max-parallel", type=int, metavar="N", help="cells at a time: CPU processes (default 1), at most one per GPU (default: every visible GPU); with Ray, tasks in flight (default: the cluster's GPUs or CPUs; a local Ray runtime is started with N CPUs, default 1)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: skip finished cells, retry failed ones, move damaged lines aside")
    p.add_argument("--retries", type=int, default=2, metavar="N", help="attempts per cell in total, over every run of the sweep (default 2); error and timeout are retried, oom is a result")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="per cell attempt; a cell past it is stopped and recorded as timeout")
    p.add_argument("--out", metavar="DIR", help="sweep directory (default: runs/sweep-<spec name>)")
    p.add_argument("--json", action="store_true", help="print the final records of the sweep's cells as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.bench.sweep.driver import SweepOptions, run_sweep
    from tpme.bench.sweep.spec import load_spec
    from tpme.cli.common import print_json
    from tpme.errors import TpmeError
    from tpme.metrics.aggregate import attach_scores
    from tpme.metrics.tpme import Weights
    from tpme.reports.table import render_terminal

    if args.max_parallel is not None and args.max_parallel < 1:
        raise TpmeError("--max-parallel must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise TpmeError("--timeout must be positive")
    if args.ray_address and args.executor != "ray":
        raise TpmeError("--ray-address is for the Ray executor", "add --executor ray")
    spec = load_spec(args.spec)
    out_dir = Path(args.out) if args.out else Path("runs") / f"sweep-{spec.name}"
    opts = SweepOptions(
        out_dir, args.executor, args.ray_address, args.max_parallel, args.resume, args.retries, args.timeout,
        progress=not args.quiet, command=["tpme", "sweep", *sys.argv[2:]],
    )
    outcome = run_sweep(spec, opts)
    if outcome.interrupted:
        return 130
    records = outcome.records
    if args.json:
        print_json(records)
    elif records:
        weights = Weights.parse("paper")
        print(render_terminal(attach_scores(records, weights), weights))
        print("(one row per method and options, median over the other axes)", file=sys.stderr)
    bad = [r for r in records if r["status"] != "ok"]
    print(f"tpme: {len(records)}/{outcome.cells} cell(s) recorded in {out_dir}/results.jsonl, {len(bad)} not ok, {outcome.launched} attempt(s) run now", file=sys.stderr)
    return 0 if not bad and len(records) == outcome.cells else 1
