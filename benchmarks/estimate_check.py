"""Hold a GPU-free estimate (`tpme estimate --json`) against the measurement of the same
settings (`tpme run`'s results.jsonl): predicted vs measured peak memory and step time.

    python benchmarks/estimate_check.py gpu-key                       # h200 on an H200, h100 on an H100
    python benchmarks/estimate_check.py compare --results RUN/results.jsonl --estimate est.json --out cmp.json

`gpu-key` names the built-in GPU (`tpme estimate --list-gpus`) of this machine's CUDA device,
so the estimate is made for the GPU the measurement runs on. `compare` pairs records by
method; an error is predicted / measured - 1 (positive: the estimate is high). A pair is
`comparable` only when the measurement ran on the estimate's GPU: on any other device (a CPU
dry run) the figures are still written, with the reason they do not calibrate anything.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tpme.errors import TpmeError
from tpme.estimate.gpus import match_device_name
from tpme.results.record import Record
from tpme.results.store import load_records


@dataclass
class Figure:
    """One quantity both sides report."""

    predicted: float | None
    measured: float | None

    @property
    def error(self) -> float | None:
        if self.predicted is None or not self.measured:
            return None
        return self.predicted / self.measured - 1


@dataclass
class Pair:
    method: str
    status: str  # the measured cell's status
    measured_device: str | None
    estimate_gpu: str
    comparable: bool
    reason: str  # why not comparable; empty when it is
    figures: dict[str, Figure]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["figures"] = {name: {**asdict(f), "error": f.error} for name, f in self.figures.items()}
        return d


def gpu_key(fallback: str | None) -> str:
    """The built-in GPU key of CUDA device 0, or `fallback` when there is none (a CPU dry run)."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        gpu = match_device_name(name)
        if gpu is not None:
            return gpu.key
        if fallback is None:
            raise TpmeError(f"{name!r} is not in the estimator's GPU table", "give --fallback KEY (tpme estimate --list-gpus) or add the GPU to tpme/estimate/gpus.py")
    elif fallback is None:
        raise TpmeError("no CUDA device here, so there is no GPU to estimate for", "give --fallback KEY (e.g. h200) for a dry run on a CPU")
    return fallback


def settings_differ(record: Record, estimate: dict[str, Any]) -> list[str]:
    """The settings an estimate names (model, preset, batch size, precision) that the measured config does not share."""
    measured = {**{k: record.config.get(k) for k in ("model", "backbone", "preset")}, "batch_size": record.config.get("train", {}).get("batch_size"), "precision": record.precision}
    out = [f"{k} {estimate[k]} vs {v}" for k, v in measured.items() if k in estimate and estimate[k] != v]
    tokens, seq_len = estimate.get("batch", {}).get("input_ids"), record.config.get("data", {}).get("seq_len")
    if tokens and seq_len is not None and tokens[-1] != seq_len:  # a token batch: its longest sequence
        out.append(f"seq_len {tokens[-1]} vs {seq_len}")
    return out


def pair(record: Record, estimate: dict[str, Any]) -> Pair:
    device = record.provenance.device_name
    gpu = estimate.get("gpu", "")
    matched = match_device_name(device) if (record.device or "").startswith("cuda") and device else None
    differ = settings_differ(record, estimate)
    if not record.ok:
        reason = f"the measured cell did not finish: {record.status}"
    elif differ:
        reason = f"other settings (estimated vs measured): {'; '.join(differ)}"
    elif matched is None or matched.key != gpu:
        reason = f"measured on {device or record.device}, estimated for {estimate.get('gpu_name', gpu)}"
    else:
        reason = ""
    figures = {
        "peak_memory_bytes": Figure(estimate.get("peak_memory_bytes"), record.peak_memory_bytes),
        "peak_reserved_bytes": Figure(estimate.get("predicted_reserved_bytes"), record.memory.peak_reserved_bytes),
        "step_time_s": Figure(estimate.get("predicted_step_time_s"), record.step_time_s),
    }
    return Pair(record.method, record.status, device, gpu, not reason, reason, figures)


def compare(results: Path, estimate_file: Path) -> dict[str, Any]:
    try:
        estimates = json.loads(estimate_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TpmeError(f"cannot read the estimate {estimate_file}: {e}", "give the JSON `tpme estimate --json` printed") from e
    if not isinstance(estimates, list):
        raise TpmeError(f"{estimate_file} holds no list of estimate records", "give the JSON `tpme estimate --json` printed")
    by_method = {e["method"]: e for e in estimates if isinstance(e, dict) and e.get("status", "ok") == "ok"}
    records = load_records(results)
    pairs = [pair(r, by_method[r.method]) for r in records if r.method in by_method]
    unpaired = sorted(set(by_method) ^ {r.method for r in records})
    return {"results": str(results), "estimate": str(estimate_file), "pairs": [p.to_dict() for p in pairs], "unpaired_methods": unpaired}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    g = sub.add_parser("gpu-key", help="print the estimator's key of this machine's GPU")
    g.add_argument("--fallback", help="the key to print where there is no CUDA device (a CPU dry run)")
    c = sub.add_parser("compare", help="write predicted vs measured peak memory and step time")
    c.add_argument("--results", type=Path, required=True, help="results.jsonl of the measured run")
    c.add_argument("--estimate", type=Path, required=True, help="the JSON `tpme estimate --json` printed for the same settings")
    c.add_argument("--out", type=Path, help="write the comparison here (default: stdout)")
    args = ap.parse_args(argv)
    try:
        if args.command == "gpu-key":
            print(gpu_key(args.fallback))
            return 0
        doc = compare(args.results, args.estimate)
    except TpmeError as e:
        print(f"estimate_check: {e}", file=sys.stderr)
        return 2
    text = json.dumps(doc, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0 if all(p["comparable"] for p in doc["pairs"]) and doc["pairs"] else 1


if __name__ == "__main__":
    sys.exit(main())
