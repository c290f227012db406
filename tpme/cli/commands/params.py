"""`tpme params`: trainable and total parameters of every method, without training or allocating.

Each method is applied to backbones built on the meta device (shapes only, no memory,
no weight init work), wrapped in the Recommender exactly as a cell does, and counted
like the harness counts (unique parameters of the whole trained model, user encoder
included; iisan-cached holds no backbones in training, so none are counted).
"""
from __future__ import annotations

import argparse

from tpme.cli.common import parse_method_opts, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "params",
        help="trainable and total parameters of each method (no training, no memory: meta device)",
        description="Count the trainable and total parameters of each method on a configuration's backbones, in seconds, without allocating the model.",
    )
    p.add_argument("--preset", default="default", help="ci, default or paper (default: default)")
    p.add_argument("--backbone", help="tiny|small|base or TEXT_DIR,IMAGE_DIR (default: the preset's)")
    p.add_argument("--methods", default="all", help="comma-separated method names, or `all` (default)")
    p.add_argument("--method-opt", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="a method option (repeatable)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import MODULE, which registers methods (repeatable)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {method, trainable_params, total_params}")
    p.set_defaults(func=run)


def count_method(name: str, options: dict[str, str], backbone: str, embed_dim: int, max_seq_len: int) -> tuple[int, int]:
    import torch

    from tpme.bench.cell import count_params
    from tpme.methods.registry import get_method
    from tpme.models.backbones import Backbones, BackboneSpec
    from tpme.models.recommender import Recommender

    method = get_method(name, options)
    with torch.device("meta"):
        backbones = Backbones.build(BackboneSpec.parse(backbone))
        tower = method.build_tower(backbones, embed_dim)
        model = Recommender(tower, embed_dim, max_seq_len)
    return count_params(model)


def run(args: argparse.Namespace) -> int:
    from tpme.config import preset
    from tpme.methods.registry import load_plugins, resolve_method_names
    from tpme.models.backbones import BackboneSpec
    from tpme.reports.format import fmt_params

    cfg = preset(args.preset).override(backbone=args.backbone)
    BackboneSpec.parse(cfg.backbone)
    load_plugins(args.plugin)
    names = resolve_method_names(args.methods)
    options = parse_method_opts(args.method_opt, names)
    rows = []
    for name in names:
        trainable, total = count_method(name, options[name], cfg.backbone, cfg.train.embed_dim, cfg.data.max_seq_len)
        rows.append({"method": name, "trainable_params": trainable, "total_params": total})
    if args.json:
        print_json(rows)
        return 0
    ref = max(r["trainable_params"] for r in rows)
    width = max(len(r["method"]) for r in rows + [{"method": "method"}])
    print(f"{'method':<{width}}  {'trainable':>12}  {'total':>12}  {'% of max trainable':>18}")
    for r in rows:
        print(f"{r['method']:<{width}}  {r['trainable_params']:>12,}  {r['total_params']:>12,}  {100 * r['trainable_params'] / ref:>17.2f}%")
    print(f"\npreset {cfg.preset}, backbone {cfg.backbone}, e = {cfg.train.embed_dim}; counted on the meta device (shapes only), user encoder included ({fmt_params(ref)} = the largest)")
    return 0
