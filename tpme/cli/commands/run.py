"""`tpme run`: measure methods on one configuration and print the TPME table."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tpme.cli.common import add_methods_arg, add_require_idle_arg, add_scenario_args, add_train_args, add_weights_arg, method_names, parse_method_opts, print_json, require_idle, scenario_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="benchmark methods: epoch time, trainable parameters, peak memory, TPME",
        description="Benchmark methods, each cell (method x repeat) in a fresh process, and print the TPME table. "
        "With no arguments: every registered method of the recommendation scenario on its synthetic dataset at the `default` preset. "
        "Writes results.jsonl, table.md and a report into the run directory. It is a sweep of one configuration: "
        "the same driver, executors, retries and --resume as `tpme sweep`.",
    )
    add_methods_arg(p)
    p.add_argument("--preset", default="default", help="ci (seconds), default (minutes on a CPU), paper (the IISAN paper's shapes and data size)")
    add_scenario_args(p)
    add_train_args(p)
    p.add_argument("--repeats", type=int, default=1, help="cells per method (default 1)")
    add_weights_arg(p)
    p.add_argument("--method-opt", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="a method option (repeatable); unscoped options apply to every selected method")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import MODULE, which registers methods (repeatable)")
    p.add_argument("--out", help="run directory (default: runs/<time>-<preset>); an existing one needs --resume")
    p.add_argument("--resume", action="store_true", help="continue the run in --out: skip finished cells, retry failed ones, move damaged lines aside")
    p.add_argument("--retries", type=int, default=1, metavar="N", help="attempts per cell in total (default 1); error and timeout are retried, oom is a result")
    p.add_argument("--timeout", type=float, help="seconds before a cell is stopped and recorded as a timeout")
    p.add_argument("--executor", choices=["local", "ray", "inprocess"], default="local", help="local (default): a fresh process per cell here; ray: Ray tasks; inprocess: this process (debugging)")
    p.add_argument("--in-process", action="store_true", help="the same as --executor inprocess (cells then share allocator state)")
    p.add_argument("--max-parallel", type=int, metavar="N", help="cells at a time (default 1 on a CPU, one per visible GPU)")
    p.add_argument("--ray-address", metavar="ADDR", help="with --executor ray: a running Ray cluster (HEAD:6379); default: a local runtime")
    p.add_argument("--cache-dir", default=".tpme-cache", help="where one-off method caches live (default .tpme-cache)")
    p.add_argument("--estimate", action="store_true", help="also store each cell's GPU-free estimate (tpme estimate) as record['estimate'], computed after measuring")
    p.add_argument("--json", action="store_true", help="print the result records (each with its tpme) as JSON on stdout; progress and failures go to stderr")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="do not write the report (report/report.html, report.md, figures) at the end")
    add_require_idle_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.device import resolve_device
    from tpme.errors import TpmeError
    from tpme.methods.registry import get_method, load_plugins
    from tpme.metrics.aggregate import scored_dicts
    from tpme.metrics.tpme import Weights
    from tpme.reports.table import render_markdown, render_terminal
    from tpme.results.lock import run_lock
    from tpme.sweep.driver import DriverOptions, Plan, validate
    from tpme.sweep.driver import run as drive
    from tpme.sweep.grid import run_cells

    weights = Weights.parse(args.weights)
    if args.repeats < 1:
        raise TpmeError("--repeats must be at least 1")
    command = ["tpme", "run", *sys.argv[2:]]
    opts = DriverOptions(Path(args.out) if args.out else Path(), "inprocess" if args.in_process else args.executor, args.ray_address, args.max_parallel, args.resume, args.retries, args.timeout, not args.quiet, command)
    validate(opts)  # every numeric option before any work
    scenario, cfg = scenario_config(args)
    if resolve_device(cfg.train.device).type != "cuda" and weights.energy:
        raise TpmeError(f"the energy weight is {weights.energy:g}, and this run is on the CPU, where no energy is measured", "give three weights a1,a2,a3, or run with --device cuda")
    if resolve_device(cfg.train.device).type != "cuda" and cfg.train.cuda_graphs == "on":
        raise TpmeError("--cuda-graphs on needs a CUDA device, and this run is on the CPU", "drop --cuda-graphs (auto captures where it can) or run with --device cuda")
    load_plugins(args.plugin)
    names = method_names(args, scenario)
    options = parse_method_opts(args.method_opt, names)
    every = (args.methods or "all").strip() == "all" and not scenario.extra_methods(args)
    for name in list(names):
        method = get_method(name, options[name])
        scenario.check_method(method)  # bad options or a method of another task fail here, before any cell runs
        try:
            scenario.preflight(cfg, method)
        except TpmeError as e:
            if not every:
                raise
            names.remove(name)  # `all`: the methods this model can take (bitfit needs biases)
            print(f"tpme: skipping {name}: {e.problem}", file=sys.stderr)
    if not names:
        raise TpmeError(f"no method of the {scenario.name} scenario applies to this configuration", "see the reasons above")
    if args.require_idle:
        require_idle({resolve_device(cfg.train.device).type})
    out_dir = opts.out_dir = Path(args.out) if args.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.preset}"
    plan = Plan("run", run_cells(scenario, cfg, [(n, options[n]) for n in names], args.repeats), args.plugin, args.cache_dir, args.estimate,
                resume_hint=" ".join(["tpme", "run", *[a for a in sys.argv[2:] if a != "--resume"], "--resume"]))
    print(f"tpme: {len(names)} method(s) x {args.repeats} repeat(s), {scenario.name}, {scenario.describe(cfg)} -> {out_dir}", file=sys.stderr)
    with run_lock(out_dir):  # the table and report are this run's too: no second run may write them meanwhile
        outcome = drive(plan, opts)
        if outcome.interrupted:
            return 130
        records = outcome.records
        (out_dir / "table.md").write_text(render_markdown(records, weights))
        report = write_run_report(out_dir, records, weights) if not args.no_report else None
    if args.json:
        print_json(scored_dicts(records, weights))
    else:
        print(render_terminal(records, weights))
    for baselines in outcome.baselines.values():
        for b in baselines.values():
            figures = ", ".join(f"{k.upper() if '@' in k else k} {q.value:.4f}" for k, q in b.quality.items())
            print(f"tpme: {b.name} baseline (reference, test): {figures}", file=sys.stderr)
    print(f"tpme: results in {out_dir}/results.jsonl, table in {out_dir}/table.md", file=sys.stderr)
    if report is not None:
        print(f"tpme: report in {report} (figures beside it)", file=sys.stderr)
    return 0 if records and all(r.ok for r in records) and len(records) == outcome.cells else 1


def write_run_report(out_dir: Path, records: list, weights) -> Path | None:
    """The report of the run; a failure to draw is a warning, never a lost run."""
    try:
        from tpme.reports.build import write_report

        result = write_report(records, out_dir / "report", weights, ("html", "md", "png"), inputs=[str(out_dir)])
    except Exception as e:  # noqa: BLE001 - the measurements are already on disk
        print(f"tpme: warning: report not written: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    for w in result.warnings:
        print(f"tpme: warning: {w}", file=sys.stderr)
    return result.path("report.html")
