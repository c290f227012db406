"""`tpme cache build|info|clear`: the IISAN hidden-state cache outside a benchmark run.

`build` makes the cache that `tpme run` with the same preset/backbone/dataset/seed (and
iisan-cached options) will find: the recommendation scenario (handed in by the CLI, which
this package never imports) seeds and builds the backbones exactly as a cell's first
repeat does, so the fingerprints agree. With `--protocol official` it builds the official
per-item state files instead (official_files.py); `info` and `clear` cover both layouts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tpme.errors import TpmeError
from tpme.methods.iisan import cache as hc
from tpme.methods.iisan import official_files
from tpme.methods.registry import get_method, parse_method_opts, register_command

METHOD = "iisan-cached"
SCENARIO = "recommendation"


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def add_parser(sub: argparse._SubParsersAction, services: Any) -> None:
    """`services.scenario(name)` gives the scenario whose assembly builds what the cache holds."""
    p = sub.add_parser("cache", help="build, inspect or clear the IISAN hidden-state cache", description="Manage the IISAN hidden-state cache (used by iisan-cached).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    b = actions.add_parser("build", help="build (or verify) the cache for a configuration")
    b.add_argument("--preset", default="default", help="ci, default or paper (default: default)")
    services.scenario(SCENARIO).add_arguments(b, True)  # the dataset and backbone options of `tpme run`, so the same flags find the same cache
    b.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    b.add_argument("--precision", choices=["fp32", "fp16", "bf16"], help="precision of the build pass (default: the preset's)")
    b.add_argument("--seed", type=int, help="seed of data and initialisation")
    b.add_argument("--method-opt", action="append", default=[], metavar="KEY=VALUE", help=f"an option of {METHOD} (layers, stride, cache_dtype, cache_batch_size)")
    _cache_dir_arg(b)
    b.add_argument("--json", action="store_true", help="print the build facts as JSON")
    b.set_defaults(func=lambda args: build(args, services.scenario(SCENARIO)))

    i = actions.add_parser("info", help="list caches and whether each verifies")
    _cache_dir_arg(i)
    i.add_argument("--json", action="store_true", help="print a JSON list of caches")
    i.set_defaults(func=info)

    c = actions.add_parser("clear", help="delete caches")
    _cache_dir_arg(c)
    c.add_argument("--key", help="delete only the cache whose key starts with this (default: all)")
    c.set_defaults(func=clear)


def _cache_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", default=".tpme-cache", help="cache directory (default .tpme-cache, as for tpme run)")


def build(args: argparse.Namespace, scenario: Any) -> int:
    from tpme.device import resolve_device

    overrides = {**scenario.overrides(args), "device": args.device, "precision": args.precision, "seed": args.seed}
    cfg = scenario.preset(args.preset).override(**overrides)
    method = get_method(METHOD, parse_method_opts(args.method_opt, [METHOD])[METHOD])
    facts = scenario.prepare_method(cfg, method, resolve_device(cfg.train.device), args.cache_dir, progress=not args.json)
    if args.json:
        _print_json(facts)
    else:
        rate = f", {facts['items_per_s']:.1f} items/s" if facts.get("items_per_s") else ""
        print(f"cache {facts['cache']}: {facts['cache_dir']} ({facts['dtype']}, {facts['bytes']:,} bytes, build {facts['build_time_s']:.2f} s{rate})")
    return 0


def _folder_bytes(d: Path) -> int:
    """Bytes of the plain files under d (an official export's two subfolders included); links never followed."""
    if d.is_symlink():
        return 0
    total = 0
    for folder, dirs, names in os.walk(d, followlinks=False):
        dirs[:] = [x for x in dirs if not (Path(folder) / x).is_symlink()]
        total += sum(f.lstat().st_size for f in (Path(folder) / n for n in names) if f.is_file() and not f.is_symlink())
    return total


def _key_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() or p.is_symlink()) if root.is_dir() else []


def _entries(cache_dir: str) -> list[dict]:
    """One row per key folder (a symbolic link included, never followed); a bad manifest is a status.
    `layout`: `hidden` (tpme's cache) or `official` (the official protocol's per-item files)."""
    rows = []
    for layout, root, verify in (("hidden", hc.cache_root(cache_dir), hc.verify), ("official", official_files.root(cache_dir), official_files.verify)):
        for d in _key_folders(root):
            manifest, status = verify(d)
            m = manifest or {}
            try:
                size = _folder_bytes(d)
            except OSError:
                size = 0
            if layout == "hidden":
                shapes = {k: v["shape"] for k, v in m["files"].items() if k in hc.MODALITIES} if m else None
            else:
                shapes = {k: [m["n_items"], *v["shape"]] for k, v in m["files"].items()} if m else None
            rows.append({
                "key": d.name, "path": str(d), "layout": layout, "status": status, "dtype": m.get("dtype"), "shapes": shapes,
                "bytes": size, "text_layers": m.get("text_layers"), "image_layers": m.get("image_layers"),
                "build_time_s": m.get("build_time_s"), "created": m.get("created"),
            })
    return rows


def info(args: argparse.Namespace) -> int:
    rows = _entries(args.cache_dir)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no IISAN caches under {args.cache_dir}")
        return 0
    for r in rows:
        print(f"{r['key']}  {r['layout']:<8}  {r['status']:<10}  {r['dtype'] or '-':<5}  {r['bytes']:>12,} B  text {r['shapes'] and r['shapes'].get('text')}  image {r['shapes'] and r['shapes'].get('image')}  {r['created'] or ''}")
    return 0


def clear(args: argparse.Namespace) -> int:
    rows = [r for r in _entries(args.cache_dir) if not args.key or r["key"].startswith(args.key)]
    for r in rows:
        try:
            hc.remove(Path(r["path"]))
        except OSError as e:
            raise TpmeError(f"cannot remove the cache {r['path']}: {e.strerror or e}", "check the folder's permissions and run `tpme cache clear` again") from None
    print(f"removed {len(rows)} cache(s) from {args.cache_dir}")
    return 0


class _Command:
    """What the registry hands the CLI: `add_parser(subparsers, services)`."""

    add_parser = staticmethod(add_parser)


register_command(_Command())
