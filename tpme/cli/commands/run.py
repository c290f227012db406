"""`tpme run`: measure methods on one configuration and print the TPME table."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tpme.cli.common import add_weights_arg, parse_method_opts, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="benchmark methods: epoch time, trainable parameters, peak memory, TPME",
        description="Benchmark methods, each cell (method x repeat) in a fresh process, and print the TPME table. "
        "With no arguments: every registered method on the synthetic dataset at the `default` preset. "
        "Writes results.jsonl and table.md into the run directory.",
    )
    p.add_argument("--methods", default="all", help="comma-separated method names, or `all` (default)")
    p.add_argument("--preset", default="default", help="ci (seconds), default (minutes on a CPU), paper (DESIGN section 2)")
    p.add_argument("--dataset", help="synthetic[:tiny|small|medium|scientific] or a dataset directory (default: the preset's)")
    p.add_argument("--items", metavar="FILE", help="the items file (ITEM_ID<TAB>title) of a dataset directory, when not found by name")
    p.add_argument("--users", metavar="FILE", help="the users file (USER_ID<TAB>ITEM ITEM ...), when not found by name")
    p.add_argument("--images", metavar="PATH", help="an LMDB image store or a folder of <item_id>.jpg|.png (default: found in the dataset directory)")
    p.add_argument("--missing-images", choices=["error", "blank", "synthetic"], help="items without an image: fail (default), a grey image, or one derived from the item id")
    p.add_argument("--max-users", type=int, help="train and evaluate on a seeded random subset of this many users")
    p.add_argument("--backbone", help="tiny|small|base or TEXT_DIR,IMAGE_DIR of local Hugging Face models (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="users per batch")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="timed steps; epoch time extrapolated from their median")
    g.add_argument("--epochs", type=int, help="timed whole epochs; epoch time measured")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the preset's, 1e-4)")
    p.add_argument("--early-stop", type=int, metavar="PATIENCE", help="with --epochs: stop after PATIENCE epochs without a better validation HR@10 (implies --eval)")
    p.add_argument("--eval", action="store_true", default=None, help="evaluate HR@10 / NDCG@10 (full ranking): after every epoch, or once after the timed steps")
    p.add_argument("--warmup-steps", type=int, help="untimed steps before timing")
    p.add_argument("--repeats", type=int, default=1, help="cells per method (default 1)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], help="autocast precision (default: the preset's)")
    p.add_argument("--seed", type=int, help="seed of data and initialisation")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the recommender (compiled during warm-up; give enough --warmup-steps)")
    p.add_argument("--cuda-graphs", choices=["auto", "on", "off"], help="capture the training step as CUDA graphs: auto (default) where the method allows it on a GPU "
                   "(iisan-cached), falling back to eager with the reason recorded; on: fail instead; off: never")
    add_weights_arg(p)
    p.add_argument("--method-opt", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="a method option (repeatable); unscoped options apply to every selected method")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import MODULE, which registers methods (repeatable)")
    p.add_argument("--out", help="run directory (default: runs/<time>-<preset>)")
    p.add_argument("--timeout", type=float, help="seconds before a cell is stopped and recorded as a timeout")
    p.add_argument("--in-process", action="store_true", help="run cells in this process (debugging; cells then share allocator state)")
    p.add_argument("--cache-dir", default=".tpme-cache", help="where one-off method caches live (default .tpme-cache)")
    p.add_argument("--estimate", action="store_true", help="also store each cell's GPU-free estimate (tpme estimate) as record['estimate'], computed after measuring")
    p.add_argument("--json", action="store_true", help="print the result records (each with its tpme) as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="do not write the report (report/report.html, report.md, figures) at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.bench.launcher import InProcessLauncher, SubprocessLauncher
    from tpme.bench.runner import RunPlan, default_out_dir, run_benchmark
    from tpme.config import preset
    from tpme.errors import TpmeError
    from tpme.methods.registry import get_method, load_plugins, resolve_method_names
    from tpme.metrics.tpme import Weights
    from tpme.models.backbones import BackboneSpec
    from tpme.reports.table import render_terminal

    weights = Weights.parse(args.weights)
    if args.repeats < 1:
        raise TpmeError("--repeats must be at least 1")
    overrides = {
        "dataset": args.dataset, "backbone": args.backbone, "batch_size": args.batch_size, "lr": args.lr, "warmup_steps": args.warmup_steps,
        "device": args.device, "precision": args.precision, "seed": args.seed, "compile": args.compile, "cuda_graphs": args.cuda_graphs,
        "items_file": args.items, "users_file": args.users, "images": args.images, "missing_images": args.missing_images,
        "max_users": args.max_users, "early_stop": args.early_stop, "eval": args.eval, "steps": args.steps, "epochs": args.epochs,
    }
    if (args.items or args.users) and not args.dataset:
        overrides["dataset"] = str(Path(args.items or args.users).parent)
    cfg = preset(args.preset).override(**overrides)
    BackboneSpec.parse(cfg.backbone)
    from tpme.bench.device import resolve_device

    if resolve_device(cfg.train.device).type != "cuda" and cfg.train.cuda_graphs == "on":
        raise TpmeError("--cuda-graphs on needs a CUDA device, and this run is on the CPU", "drop --cuda-graphs (auto captures where it can) or run with --device cuda")
    load_plugins(args.plugin)
    names = resolve_method_names(args.methods)
    options = parse_method_opts(args.method_opt, names)
    for name in names:
        get_method(name, options[name])  # bad options fail here, before any cell runs
    out_dir = Path(args.out) if args.out else default_out_dir(cfg)
    plan = RunPlan(cfg, [(n, options[n]) for n in names], out_dir, args.repeats, weights, args.plugin, args.cache_dir, ["tpme", "run", *sys.argv[2:]], report=not args.no_report, estimate=args.estimate)
    launcher = InProcessLauncher() if args.in_process else SubprocessLauncher(timeout_s=args.timeout, log_dir=out_dir / "logs")
    print(f"tpme: {len(names)} method(s) x {args.repeats} repeat(s), preset {cfg.preset}, backbone {cfg.backbone}, dataset {cfg.data.dataset} -> {out_dir}", file=sys.stderr)
    records = run_benchmark(plan, launcher, progress=not args.quiet)
    if args.json:
        print_json(records)
    else:
        print(render_terminal(records, weights))
    pop = records[0]["baselines"]["popularity"] if records else None
    if pop:
        print(f"tpme: popularity baseline (reference, test): HR@10 {pop['hr@10']:.4f}, NDCG@10 {pop['ndcg@10']:.4f}", file=sys.stderr)
    print(f"tpme: results in {out_dir}/results.jsonl, table in {out_dir}/table.md", file=sys.stderr)
    report = out_dir / "report" / "report.html"
    if plan.report and report.is_file():
        print(f"tpme: report in {report} (figures beside it)", file=sys.stderr)
    return 0 if all(r["status"] == "ok" for r in records) else 1
