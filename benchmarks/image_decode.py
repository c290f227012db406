"""Decoding real images for a batch: one thread against the decode pool, measured side by side.

    .venv/bin/python benchmarks/image_decode.py [--items 352] [--source-size 500] [--json]

Writes `--items` JPEGs of `--source-size` pixels (a typical product photo) to a temporary
folder, then times `FolderImages.images` for one paper-shaped batch (352 items resized to
224 px) cold, with the pool limited to one thread and with the default pool, alternating
`--rounds` times. Decoding is what the prefetch thread spends its time on with real
images, so this ratio says how far the data pipeline stays ahead of a fast GPU step.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tpme.datasets import image_stores
from tpme.datasets.image_stores import FolderImages


def write_jpegs(directory: Path, n: int, size: int) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)  # smooth, photo-like content
        img = Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC)
        name = f"item{i}.jpg"
        img.save(directory / name, quality=90)
        names.append(name)
    return names


def cold_batch_seconds(directory: Path, names: list[str], threads: int, image_size: int) -> float:
    keys = [n.removesuffix(".jpg") for n in names]
    source = FolderImages(str(directory), keys, names, "error")
    image_stores.DECODE_THREADS = threads
    t0 = time.perf_counter()
    source.images(np.arange(1, len(names) + 1), image_size)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=352, help="items in the batch (paper: 32 users x 11)")
    ap.add_argument("--source-size", type=int, default=500, help="side of the JPEGs on disk")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    pool = image_stores.DECODE_THREADS
    with tempfile.TemporaryDirectory() as tmp:
        names = write_jpegs(Path(tmp), args.items, args.source_size)
        one, many = [], []
        for _ in range(args.rounds):
            one.append(cold_batch_seconds(Path(tmp), names, 1, args.image_size))
            many.append(cold_batch_seconds(Path(tmp), names, pool, args.image_size))
    result = {
        "items": args.items, "source_size": args.source_size, "image_size": args.image_size, "pool_threads": pool,
        "one_thread_s": statistics.median(one), "pool_s": statistics.median(many),
        "speedup": statistics.median(one) / statistics.median(many),
        "pool_items_per_s": args.items / statistics.median(many),
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(f"{args.items} JPEGs {args.source_size} px -> {args.image_size} px, cold: one thread {result['one_thread_s'] * 1e3:.0f} ms, "
              f"pool of {pool} {result['pool_s'] * 1e3:.0f} ms ({result['speedup']:.2f}x, {result['pool_items_per_s']:.0f} items/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
