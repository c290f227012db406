"""`tpme data check` validates a dataset directory; `tpme data synth` writes a synthetic one
in the same (IISAN) layout."""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

SHOWN_PER_KIND = 20


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check a dataset directory or write a synthetic one", description="Datasets in the IISAN layout: an items file ITEM_ID<TAB>title and a users file USER_ID<TAB>ITEM ITEM ... (chronological).")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    c = dsub.add_parser("check", help="validate a dataset and print its statistics after preprocessing", description="Read, validate and preprocess a dataset (drop users with < 5 interactions, keep the last max_seq_len + 3). Prints statistics and every problem with file:line. Exit 2 when the dataset cannot be used.")
    c.add_argument("path", help="dataset directory (holding *_items.tsv and am_*_users[_10K].tsv)")
    c.add_argument("--items", metavar="FILE", help="the items file, when not found by name")
    c.add_argument("--users", metavar="FILE", help="the users file, when not found by name")
    c.add_argument("--images", metavar="PATH", help="an LMDB image store or a folder of <item_id>.jpg|.png (default: found in the directory)")
    c.add_argument("--missing-images", choices=["error", "blank", "synthetic"], help="check under this policy for items without an image (default: missing images are a warning, since a run can use blank or synthetic ones; `error` makes them fatal)")
    c.add_argument("--max-seq-len", type=int, default=10, help="history length of preprocessing (default 10)")
    c.add_argument("--max-users", type=int, help="check a seeded random subset of this many users")
    c.add_argument("--json", action="store_true", help="print the statistics and all problems as one JSON object")
    c.set_defaults(func=check)

    s = dsub.add_parser("synth", help="write a synthetic dataset (items tsv, users tsv, images/ of PNGs)", description="Write the built-in synthetic dataset in the IISAN layout, so that `tpme data check DIR` and `tpme run --dataset DIR` read it like a real one.")
    s.add_argument("--out", required=True, help="directory to write (created; existing dataset files are replaced)")
    s.add_argument("--size", default="small", choices=["tiny", "small", "medium", "scientific"], help="users / items of the synthetic data (default small)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--image-size", type=int, default=64, help="side of the PNG images in pixels (default 64; the reader resizes to the backbone's)")
    s.set_defaults(func=synth)


def check(args: argparse.Namespace) -> int:
    from tpme.cli.common import print_json
    from tpme.datasets.config import DataConfig
    from tpme.datasets.readers import inspect_dataset
    from tpme.errors import TpmeError

    path = Path(args.path)
    if not path.exists():
        raise TpmeError(f"dataset path {path} does not exist", "give a directory holding the items and users files")
    cfg = DataConfig(dataset=str(path), max_seq_len=args.max_seq_len, items_file=args.items, users_file=args.users, images=args.images, missing_images=args.missing_images or "error", max_users=args.max_users)
    report = inspect_dataset(path, cfg, missing_images_fatal=args.missing_images is not None)
    stats = report.stats()
    if args.json:
        print_json(stats)
    else:
        print(_render(stats))
    return 0 if report.usable else 2


def _render(stats: dict) -> str:
    out = [
        f"items file:   {stats['items_file']}",
        f"users file:   {stats['users_file']}",
        f"images:       {stats['images'] or '(none found)'}",
        f"listed:       {stats['raw'].get('users_listed', 0):,} users, {stats['raw'].get('items_listed', 0):,} items, {stats['raw'].get('interactions_listed', 0):,} interactions",
        f"preprocessed: {stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} interactions",
    ]
    dist = stats["sequence_length"]
    if dist:
        out.append("sequence length: " + ", ".join(f"{k} {v:g}" for k, v in dist.items()))
    out.append(f"images:       {stats['images_found']:,} found, {stats['images_missing']:,} missing (policy: {stats['missing_image_policy'] or '-'})")
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for p in stats["problems"]:
        by_kind[p["kind"]].append(p)
    for kind, problems in by_kind.items():
        severity = "error" if problems[0]["fatal"] else "warning"
        out.append(f"{severity}s of kind {kind}: {len(problems)}")
        for p in problems[:SHOWN_PER_KIND]:
            where = f"{p['file']}:{p['line']}" if p["line"] is not None else p["file"]
            out.append(f"  {where}: {p['message']}")
        if len(problems) > SHOWN_PER_KIND:
            out.append(f"  ... and {len(problems) - SHOWN_PER_KIND} more (--json lists all)")
    out.append("usable: yes" if stats["usable"] else "usable: NO (fix the errors above)")
    if "missing-image" in by_kind and by_kind["missing-image"][0]["fatal"]:
        out.append("fix for missing images: --missing-images blank|synthetic, or --images PATH")
    return "\n".join(out)


def synth(args: argparse.Namespace) -> int:
    from tpme.datasets.synth_writer import write_synthetic_dataset

    files = write_synthetic_dataset(Path(args.out), args.size, args.seed, args.image_size)
    print(f"tpme: wrote {files.items}, {files.users} and {files.images}/ ({args.size}, seed {args.seed})", file=sys.stderr)
    return 0
