"""Time `count` over every experiment of a peft method_comparison folder and hold each against its published run.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/count_params.py [SUITE_DIR] [--model CONFIG_DIR] [--json]

SUITE_DIR holds default_training_params.json, experiments/ and results/ (default: the shared folder).
Prints per experiment the seconds, trainable and total counted, and whether they equal the published
numbers; then the wall and CPU time of all counts and the load average they ran under (the goal:
all of them in under a minute on the 2-core machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from transformers import AutoConfig

from tpme.scenarios.causal_lm.counting import count
from tpme.scenarios.causal_lm.peft_experiment import load_experiment

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "peft-method-comparison"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", nargs="?", type=Path, default=SHARED)
    ap.add_argument("--model", type=Path, default=SHARED / "llama-3.2-3b", help="folder of the model's config.json")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    config = AutoConfig.from_pretrained(args.model)
    rows, wall0, cpu0 = [], time.perf_counter(), time.process_time()
    for run in sorted((args.suite / "results").glob("*.json")):
        info = json.loads(run.read_text())
        experiment = load_experiment(args.suite / "experiments" / info["run_info"]["experiment_name"])
        start = time.perf_counter()
        trainable, total = count(config, experiment.adapter_config, experiment.training)
        published = (info["train_info"]["num_trainable_params"], info["train_info"]["num_total_params"])
        rows.append({"label": experiment.label, "seconds": round(time.perf_counter() - start, 2), "trainable_params": trainable,
                     "total_params": total, "published": list(published), "match": (trainable, total) == published})
    summary = {"matched": sum(r["match"] for r in rows), "runs": len(rows), "wall_s": round(time.perf_counter() - wall0, 1),
               "cpu_s": round(time.process_time() - cpu0, 1), "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps({"runs": rows, "summary": summary}, indent=1))
    else:
        for r in rows:
            print(f"{r['label']:<58} {r['seconds']:>6.2f}s {r['trainable_params']:>13,} {r['total_params']:>15,}  {'ok' if r['match'] else 'DIFFERS from ' + str(r['published'])}")
        print(f"{summary['matched']} of {summary['runs']} equal the published counts; all counts: {summary['wall_s']} s wall, "
              f"{summary['cpu_s']} s CPU, load average {summary['load_average'][0]:.1f} on {summary['cpus']} cores")
    return 0 if summary["matched"] == summary["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
