"""Measure tpme's performance ratios side by side in one run and print each beside its goal.

    .venv/bin/python benchmarks/ratios.py                       # default preset, CPU
    .venv/bin/python benchmarks/ratios.py --preset paper --steps 20 --json   # on a GPU

Ratios, not absolute times: both sides of each ratio are measured in this one run, on the
same machine, interleaved where they share a process, so machine noise mostly cancels.
- method ratios: fft / iisan-cached epoch time, fft / iisan and fft / iisan-cached peak
  memory, each from the harness (a fresh process per method, as `tpme run` measures);
- harness overhead: the harness's timed loop (prefetching loader, phase clock) against a
  minimal hand-written PyTorch loop over pre-collated batches, same model;
- probe overhead: the timed loop with the memory probes running against without;
- cache build speed: iisan-cached's one-off cache build against plain batched inference
  of both backbones (no grad, eval, autocast), in items per second;
- on a GPU, when iisan-cached was captured as CUDA graphs: the same cell run eagerly.
GPU goals (paper preset) are marked n/a on a CPU; CPU results are reported for reference.
Last, the GPU-free estimate of the GPU ratios (`tpme estimate`), labelled as such.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import torch

from tpme.bench.probes import memory_probes
from tpme.bench.train import StepTimes, timed_steps
from tpme.cli.commands.run import write_run_report
from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures
from tpme.datasets.bundle import DataBundle
from tpme.datasets.prefetch import Prefetcher
from tpme.device import autocast, resolve_device, synchronize
from tpme.estimate.api import estimate_records
from tpme.estimate.gpus import resolve_gpus
from tpme.methods.registry import available_methods, get_method
from tpme.metrics.tpme import Weights
from tpme.models.backbones import Backbones, BackboneSpec
from tpme.results.record import Record
from tpme.scenarios import get_scenario
from tpme.scenarios.recommendation.config import RunConfig
from tpme.sweep.driver import DriverOptions, Plan, prepare_data
from tpme.sweep.driver import run as drive
from tpme.sweep.grid import run_cells

SCENARIO = get_scenario("recommendation")


@dataclass
class Ratio:
    name: str
    value: float | None
    goal: str
    met: bool | None  # None: the goal does not apply to this device or preset
    note: str = ""


def _goal(value: float | None, op: str, bound: float, applies: bool) -> bool | None:
    if value is None or not applies:
        return None
    return {">=": value >= bound, ">": value > bound, "<=": value <= bound}[op]


CORE_METHODS = ("fft", "iisan", "iisan-cached")


def _methods() -> dict[str, str]:
    """The recommendation methods that can run here (their optional packages installed)."""
    return available_methods(SCENARIO.name)


def measure(cfg: RunConfig, methods: list[str], out_dir: Path) -> list[Record]:
    """Each method as one cell in a fresh process, through the one orchestrator `tpme run` uses."""
    plan = Plan("ratios", run_cells(SCENARIO, cfg, [(m, {}) for m in methods], 1))
    return drive(plan, DriverOptions(out_dir, command=["python", *sys.argv])).records


def method_ratios(cfg: RunConfig, out_dir: Path, on_gpu_paper: bool, all_methods: bool) -> tuple[list[Ratio], list[Record]]:
    names = list(_methods()) if all_methods else [m for m in CORE_METHODS if m in _methods()]
    records = {r.method: r for r in measure(cfg, names, out_dir)}
    if all_methods:
        write_run_report(out_dir, list(records.values()), Weights.parse("paper"))
    ok = {m: r for m, r in records.items() if r.ok}

    def ratio(a: str, b: str, field: str) -> float | None:
        return getattr(ok[a], field) / getattr(ok[b], field) if a in ok and b in ok and getattr(ok[b], field) else None

    t = ratio("fft", "iisan-cached", "epoch_time_s")
    m1 = ratio("fft", "iisan", "peak_memory_bytes")
    m2 = ratio("fft", "iisan-cached", "peak_memory_bytes")
    out = [
        Ratio("epoch time fft / iisan-cached", t, ">= 50 (GPU, paper)", _goal(t, ">=", 50, on_gpu_paper)),
        Ratio("peak memory fft / iisan", m1, ">= 10 (GPU, paper)", _goal(m1, ">=", 10, on_gpu_paper)),
        Ratio("peak memory fft / iisan-cached", m2, ">= 30 (GPU, paper)", _goal(m2, ">=", 30, on_gpu_paper)),
    ]
    cached = ok.get("iisan-cached")
    if cached is not None:
        full = cached.epoch_time_s
        applies = on_gpu_paper and "H200" in (cached.provenance.device_name or "")
        graphs = cached.execution["cuda_graphs"]
        how = "CUDA graphs" if graphs["used"] else f"eager: {graphs['reason']}"
        out.append(Ratio(f"iisan-cached epoch time, seconds ({cfg.data.dataset})", full, "< 2 s (H200, paper)", _goal(full, "<=", 2.0, applies), f"absolute; only meaningful on the GPU; {how}"))
        if graphs["used"]:
            out.append(graph_speedup(cfg, out_dir, cached))
    for m, r in records.items():
        if not r.ok:
            out.append(Ratio(f"{m} cell", None, "ok", False, f"{r.status}: {r.error}"))
    return out, list(records.values())


def graph_speedup(cfg: RunConfig, out_dir: Path, graphed: Record) -> Ratio:
    """The same cached-IISAN cell run eagerly, in its own process: what the CUDA graphs bring."""
    eager = measure(cfg.replace(cuda_graphs="off"), ["iisan-cached"], out_dir / "eager")[0]
    if not eager.ok:
        return Ratio("iisan-cached step eager / with CUDA graphs", None, "> 1", False, f"eager cell {eager.status}: {eager.error}")
    r = eager.step_time_s / graphed.step_time_s
    return Ratio("iisan-cached step eager / with CUDA graphs", r, "> 1", _goal(r, ">", 1.0, True), f"eager {eager.step_time_s * 1e3:.2f} ms, graphed {graphed.step_time_s * 1e3:.2f} ms")


def predicted_ratios(cfg: RunConfig, gpu_key: str) -> list[Ratio]:
    """The GPU-free estimate of the GPU ratios at `cfg` (the paper preset: where the goals
    are set): a reference beside a GPU measurement, whose gap calibrates the estimator,
    and the only figure where there is no GPU."""
    gpu = resolve_gpus(gpu_key)[0]
    data = SCENARIO.data_shape(cfg)
    est = {m: estimate_records(SCENARIO, cfg, m, {}, [gpu], data)[0] for m in CORE_METHODS if m in _methods()}
    note = f"tpme estimate on {gpu.name}, {cfg.preset} preset: a prediction, not a measurement"
    t = est["fft"]["predicted_epoch_time_s"] / est["iisan-cached"]["predicted_epoch_time_s"]
    m1 = est["fft"]["peak_memory_bytes"] / est["iisan"]["peak_memory_bytes"]
    m2 = est["fft"]["peak_memory_bytes"] / est["iisan-cached"]["peak_memory_bytes"]
    cached = est["iisan-cached"]
    return [
        Ratio("estimate: epoch time fft / iisan-cached", t, ">= 50 (GPU, paper)", None, note),
        Ratio("estimate: peak memory fft / iisan", m1, ">= 10 (GPU, paper)", None, note),
        Ratio("estimate: peak memory fft / iisan-cached", m2, ">= 30 (GPU, paper)", None, note),
        Ratio("estimate: iisan-cached epoch time, seconds", cached["predicted_epoch_time_s"], "< 2 s (H200, paper)", None,
              f"{note}; {cached['kernels_per_step']} kernels per step, {'CUDA graphs' if cached['cuda_graphs'] else 'eager'}"),
    ]


def data_paths(cfg: RunConfig, methods: list[str], out_dir: Path) -> dict[str, Path]:
    """Each method's prepared data file, as the driver prepares it for a cell (the method
    cells above already made it in `out_dir`, so it is found, not built again)."""
    cells = run_cells(SCENARIO, cfg, [(m, {}) for m in methods], 1)
    paths, _ = prepare_data(cells, out_dir, lambda msg: print(f"tpme: {msg}", file=sys.stderr))
    return {c.method: paths[c.data_key] for c in cells}


def _interleaved(a, b, rounds: int) -> tuple[float, float]:
    """Median of per-round medians of a() and b(), run alternately so drift hits both."""
    xs, ys = [], []
    for _ in range(rounds):
        xs.append(a())
        ys.append(b())
    return statistics.median(xs), statistics.median(ys)


def loop_overheads(cfg: RunConfig, data_path: Path, method: str, steps: int, rounds: int) -> list[Ratio]:
    cfg = SCENARIO.config_for_method(cfg, method)
    device = resolve_device(cfg.train.device)
    with tempfile.TemporaryDirectory() as cache:
        setup = SCENARIO.build_training(cfg, get_method(method), data_path, device, cache, cfg.train.seed)
        trainer = setup.trainer
        premade = [b.to(device) for b in islice(setup.loader.forever(), steps)]
        for b in premade[:2]:
            trainer.step(b)

        def minimal() -> float:
            times = []
            for b in premade:
                synchronize(device)
                t0 = time.perf_counter()
                loss = trainer.loss(b)  # the model under autocast (or its captured graph)
                trainer.scaler.scale(loss).backward()
                trainer.scaler.step(trainer.optimizer)
                trainer.scaler.update()
                trainer.optimizer.zero_grad(set_to_none=True)
                synchronize(device)
                times.append(time.perf_counter() - t0)
            return statistics.median(times)

        def harness(with_probes: bool = False) -> float:
            probes = memory_probes(device) if with_probes else []
            with Prefetcher(setup.loader.forever(), depth=cfg.train.prefetch, pin_memory=device.type == "cuda") as batches:
                for p in probes:
                    p.start()
                times = timed_steps(trainer, batches, steps, StepTimes())
                for p in probes:
                    p.stop()
            return statistics.median(times.total)

        base, full = _interleaved(minimal, harness, rounds)
        plain, probed = _interleaved(harness, lambda: harness(True), rounds)
    on_gpu = device.type == "cuda"
    h = full / base
    p = probed / plain
    return [
        Ratio(f"harness step / minimal PyTorch step ({method})", h, "<= 1.10", _goal(h, "<=", 1.10, True), "harness includes its data pipeline; minimal uses pre-collated batches"),
        Ratio(f"step with memory probes / without ({method})", p, "<= 1.01", _goal(p, "<=", 1.01, on_gpu), "CPU has no concurrent probes (its tracker runs in separate steps)" if not on_gpu else ""),
    ]


def cache_build_speed(cfg: RunConfig, data_path: Path) -> list[Ratio]:
    if "iisan-cached" not in _methods():
        return []
    cfg = SCENARIO.config_for_method(cfg, "iisan-cached")
    device = resolve_device(cfg.train.device)
    bundle = DataBundle.load(data_path)
    with tempfile.TemporaryDirectory() as cache:
        setup = SCENARIO.build_training(cfg, get_method("iisan-cached"), data_path, device, cache, cfg.train.seed)
        build_rate = bundle.n_items / setup.prepare_time_s
    backbones = Backbones.build(BackboneSpec.parse(cfg.backbone))
    backbones.text.to(device).eval()
    backbones.image.to(device).eval()
    features = ItemFeatures(bundle, frozenset({TEXT, IMAGE}), backbones.image_size, int(bundle.info.get("pad_id", 0)))
    batch = int(setup.prepare_info.get("batch_size", 256)) if setup.prepare_info else 256
    ids = torch.arange(1, bundle.n_items + 1).numpy()
    synchronize(device)
    t0 = time.perf_counter()
    with torch.no_grad(), autocast(device, cfg.train.precision):
        for start in range(0, len(ids), batch):
            items = features.gather(ids[start : start + batch]).to(device)
            backbones.text(input_ids=items.input_ids, attention_mask=items.attention_mask, output_hidden_states=True)
            backbones.image(pixel_values=items.pixels, output_hidden_states=True)
    synchronize(device)
    infer_rate = bundle.n_items / (time.perf_counter() - t0)
    r = build_rate / infer_rate
    return [Ratio("cache build / backbone inference, items per second", r, ">= 0.9", _goal(r, ">=", 0.9, True), f"build {build_rate:.0f} items/s, inference {infer_rate:.0f} items/s")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, help="timed steps per cell (default: the preset's)")
    ap.add_argument("--overhead-methods", default="frozen,iisan-cached", help="methods for the overhead ratios, comma-separated (default: frozen, whose step runs both backbones, "
                    "and iisan-cached, the smallest step, where overhead shows most)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds for in-process ratios")
    ap.add_argument("--out", default=None, help="run directory for the method cells")
    ap.add_argument("--all-methods", action="store_true", help="measure every registered method (results.jsonl and a report in --out), not only fft, iisan and iisan-cached")
    ap.add_argument("--predict-gpu", default="h200", help="GPU of the estimate printed beside the measured ratios (tpme estimate --list-gpus)")
    ap.add_argument("--protocol", choices=["tpme", "official"], default="tpme", help="the recommendation protocol (default tpme: these ratios and goals are about "
                    "tpme's implementation; the paper preset alone would mean the official one)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON to FILE (the table still prints)")
    args = ap.parse_args(argv)

    cfg = SCENARIO.preset(args.preset).override(device=args.device, protocol=args.protocol, steps=args.steps)
    device = resolve_device(cfg.train.device)
    on_gpu_paper = device.type == "cuda" and cfg.preset == "paper"
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="tpme-ratios-"))
    ratios, records = method_ratios(cfg, out_dir, on_gpu_paper, args.all_methods)
    overhead_methods = [m.strip() for m in args.overhead_methods.split(",") if m.strip()]
    data = data_paths(cfg, [*overhead_methods, "iisan-cached"], out_dir)
    for method in overhead_methods:
        ratios += loop_overheads(cfg, data[method], method, cfg.train.steps or 8, args.rounds)
    ratios += cache_build_speed(cfg, data["iisan-cached"])
    ratios += predicted_ratios(cfg if cfg.preset == "paper" else SCENARIO.preset("paper").override(device=args.device, protocol=args.protocol), args.predict_gpu)

    device_name = (records[0].provenance.device_name if records else None) or str(device)
    doc = {"preset": cfg.preset, "device": device_name, "out": str(out_dir), "ratios": [asdict(r) for r in ratios]}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(f"preset {cfg.preset}, device {device_name}")
        for r in ratios:
            verdict = {True: "met", False: "NOT met", None: "n/a here"}[r.met]
            value = "-" if r.value is None else f"{r.value:.3f}"
            print(f"  {r.name:<58} {value:>10}   goal {r.goal:<22} {verdict}" + (f"   ({r.note})" if r.note else ""))
    return 0 if all(r.met is not False for r in ratios) else 1


if __name__ == "__main__":
    sys.exit(main())
