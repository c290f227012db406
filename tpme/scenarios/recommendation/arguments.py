"""The recommendation scenario's command-line options (run, sweep settings, params, estimate, cache)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESTS = ("dataset", "items", "users", "images", "missing_images", "max_users", "backbone", "protocol", "loader_workers")


def add_arguments(p: argparse.ArgumentParser, data: bool = True) -> None:
    """`data=False`: the model options only (commands that never read a dataset)."""
    g = p.add_argument_group("recommendation scenario")
    g.add_argument("--backbone", help="tiny|small|base (random-init shapes) or TEXT_DIR,IMAGE_DIR of local Hugging Face models (default: the preset's)")
    g.add_argument("--protocol", choices=["official", "tpme"], help="official: the official IISAN code's workload (every B x (L+1) slot), batch sizes, "
                   "learning rates (--lr is then not used), initialisation, attention, DDP wrapping and evaluation masking; tpme: tpme's "
                   "(default: official for --preset paper, tpme otherwise)")
    if not data:
        return
    g.add_argument("--dataset", help="synthetic[:tiny|small|medium|scientific] or a dataset directory (default: the preset's)")
    g.add_argument("--items", metavar="FILE", help="the items file (ITEM_ID<TAB>title) of a dataset directory, when not found by name")
    g.add_argument("--users", metavar="FILE", help="the users file (USER_ID<TAB>ITEM ITEM ...), when not found by name")
    g.add_argument("--images", metavar="PATH", help="an LMDB image store or a folder of <item_id>.jpg|.png (default: found in the dataset directory)")
    g.add_argument("--missing-images", choices=["error", "blank", "synthetic"], help="items without an image: fail (default), a grey image, or one derived from the item id")
    g.add_argument("--max-users", type=int, help="train and evaluate on a seeded random subset of this many users")
    g.add_argument("--loader-workers", type=int, metavar="N", help="official protocol: worker processes that build the training batches, as the official "
                   "DataLoader's --num_workers (default 4; 0: in the main process, one prefetch thread)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields from the options given (None: keep the preset's)."""
    out = {
        "backbone": getattr(args, "backbone", None), "protocol": getattr(args, "protocol", None), "dataset": getattr(args, "dataset", None), "items_file": getattr(args, "items", None),
        "users_file": getattr(args, "users", None), "images": getattr(args, "images", None), "missing_images": getattr(args, "missing_images", None),
        "max_users": getattr(args, "max_users", None), "loader_workers": getattr(args, "loader_workers", None),
    }
    if (out["items_file"] or out["users_file"]) and not out["dataset"]:
        out["dataset"] = str(Path(out["items_file"] or out["users_file"]).parent)
    return out
