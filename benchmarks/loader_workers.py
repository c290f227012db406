"""Official cached IISAN batches: built in the main process against 4 worker processes, side by side.

    .venv/bin/python benchmarks/loader_workers.py [--batches 24] [--workers 4] [--rounds 2] [--json]

Under `--protocol official` a training batch of iisan-cached `torch.load`s two per-item state
files (BERT and ViT [CLS] rows of all 13 hidden states, fp32 [13, 768] each: the paper's
backbones) for every real slot of its B x (L+1) slots, as the official loader does. This writes
such files (random values, the paper's shape) for every item of the `synthetic:small` data
(800 items; paper-size files for Scientific's 20,314 items would be 1.6 GB), then times
`--batches` batches of the paper's IISAN shape (64 users x 11 slots) from `OfficialLoader.forever`
with 0 and with `--workers` worker processes, alternating `--rounds` times; worker start-up is
inside the time, as an epoch pays it. The files sit in the page cache (just written), as they
do after a first epoch. The ratio says how far the workers keep the loader ahead of a GPU step.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from tpme.datasets.batching import STATES, ItemFeatures
from tpme.datasets.build import build_bundle
from tpme.datasets.bundle import DataBundle
from tpme.datasets.config import DataConfig
from tpme.methods.iisan.official_files import PREFIX, StateFiles, file_path
from tpme.models.backbones import BackboneSpec, text_config
from tpme.scenarios.recommendation.protocol import OfficialLoader

PAPER_STATES = (13, 768)  # embedding output + 12 layers, hidden size 768 (BERT-base, ViT-base)
PAPER_BATCH = 64  # the official IISAN script's batch size


def write_state_files(directory: Path, n_items: int, shape: tuple[int, int]) -> None:
    """One torch.save file per item and modality, in the official layout, of random fp32 states."""
    gen = torch.Generator().manual_seed(0)
    for modality in PREFIX:
        file_path(directory, modality, 1).parent.mkdir(parents=True, exist_ok=True)
        for item in range(1, n_items + 1):
            torch.save(torch.randn(*shape, generator=gen), file_path(directory, modality, item))


def seconds_for(loader: OfficialLoader, workers: int, n: int) -> tuple[float, int]:
    """(wall seconds for the first n batches of `forever`, worker start included; real slots read)."""
    loader.workers = workers
    t0 = time.perf_counter()
    batches = loader.forever()
    real = sum(int(next(batches).real.sum()) for _ in range(n))
    elapsed = time.perf_counter() - t0
    batches.close()  # the workers end here, outside the timed span
    return elapsed, real


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=24, help="batches timed per side and round")
    ap.add_argument("--workers", type=int, default=4, help="worker processes of the parallel side (official: 4)")
    ap.add_argument("--batch-size", type=int, default=PAPER_BATCH)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = BackboneSpec.parse("tiny")  # the tokenizer only: the batches carry states, not titles
    bundle: DataBundle = build_bundle(DataConfig(dataset="synthetic:small", max_seq_len=10, text_len=30), spec.tokenizer_dir, text_config(spec).vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        write_state_files(Path(tmp), bundle.n_items, PAPER_STATES)
        states = StateFiles(Path(tmp), {m: PAPER_STATES for m in PREFIX})
        features = ItemFeatures(bundle, frozenset({STATES}), 224, int(bundle.info.get("pad_id", 0)), states=states)
        loader = OfficialLoader(bundle, features, args.batch_size, seed=0)
        load0 = os.getloadavg()
        alone, parallel, real = [], [], 0
        for _ in range(args.rounds):
            s, real = seconds_for(loader, 0, args.batches)
            alone.append(s)
            parallel.append(seconds_for(loader, args.workers, args.batches)[0])
        load1 = os.getloadavg()
    one, many = statistics.median(alone), statistics.median(parallel)
    result = {
        "batches": args.batches, "batch_size": args.batch_size, "slots_per_batch": args.batch_size * (bundle.max_seq_len + 1),
        "loads_per_batch": 2 * real / args.batches, "state_shape": list(PAPER_STATES), "workers": args.workers, "rounds": args.rounds,
        "main_process_s": one, "workers_s": many, "speedup": one / many,
        "main_process_s_per_batch": one / args.batches, "workers_s_per_batch": many / args.batches,
        "cpu_cores": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load0], "load_avg_after": [round(x, 2) for x in load1],
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(f"{args.batches} official iisan-cached batches of {args.batch_size} users ({result['slots_per_batch']} slots, "
              f"{result['loads_per_batch']:.0f} torch.loads of fp32 {PAPER_STATES[0]}x{PAPER_STATES[1]} each): "
              f"main process {one:.2f} s ({one / args.batches * 1e3:.0f} ms/batch), {args.workers} workers {many:.2f} s "
              f"({many / args.batches * 1e3:.0f} ms/batch): {one / many:.2f}x; {os.cpu_count()} cores, load {load0[0]:.2f} -> {load1[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
