"""Training to convergence: timed epochs with an evaluation after each, early stopping on
the scenario's validation metric (HR@10 for the recommender, loss for a decoder), and test
metrics at the best validation epoch.

Evaluation runs outside the timed and memory-probed windows: probes are started and
stopped around each epoch and their results merged (peaks by max, energy summed), so
neither epoch time nor peak memory includes evaluation. Validation and test are both
scored after every epoch from the same item embeddings (the user side is cheap), so the
test figure of the best validation epoch is read off without keeping a copy of the model.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tpme.bench.probes import Probe
from tpme.bench.train import StepTimes, timed_steps
from tpme.datasets.prefetch import Prefetcher
from tpme.scenarios.base import Evaluator, Loader
from tpme.training.step import Trainer

EPOCH_SEED_BASE = 1000  # timed epochs shuffle apart from the warm-up steps' epochs


@dataclass
class EpochsOutcome:
    epoch_walls: list[float]
    memory: dict[str, Any]
    evaluation: dict[str, Any] | None


def merge_probe_results(into: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Peaks (`*_bytes`) by max, energy (`energy_j`) summed, anything else the latest."""
    out = dict(into)
    for key, value in new.items():
        old = out.get(key)
        if old is None or value is None:
            out[key] = value if old is None else old
        elif key.endswith("_bytes"):
            out[key] = max(old, value)
        elif key == "energy_j":
            out[key] = old + value
        else:
            out[key] = value
    return out


def run_epochs(
    trainer: Trainer,
    loader: Loader,
    epochs: int,
    times: StepTimes,
    probes: list[Probe],
    evaluator: Evaluator | None,
    patience: int | None,
    on_step=None,
    prefetched: Callable[[Iterator[Any]], Prefetcher] = Prefetcher,
) -> EpochsOutcome:
    walls: list[float] = []
    memory: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for epoch in range(1, epochs + 1):
        for p in probes:
            p.start()
        t0 = time.perf_counter()
        with prefetched(loader.epoch(EPOCH_SEED_BASE + epoch - 1)) as batches:
            timed_steps(trainer, batches, len(loader), times, on_step)
        walls.append(time.perf_counter() - t0)
        for p in probes:
            memory = merge_probe_results(memory, p.stop())
        if evaluator is None:
            continue
        history.append({"epoch": epoch, **evaluator.evaluate(trainer.model)})
        if best is None or _better(evaluator, history[-1]["valid"], best["valid"]):
            best = history[-1]
        elif patience is not None and epoch - best["epoch"] >= patience:
            break
    evaluation = None
    if best is not None:
        evaluation = {
            **evaluator.info,
            "mode": "best-validation-epoch",
            "selected_by": f"valid {evaluator.select.name}",
            "best_epoch": best["epoch"],
            "valid": best["valid"],
            "test": best["test"],
            "epochs_run": len(walls),
            "stopped_early": len(walls) < epochs,
            "eval_time_s": sum(h["eval_time_s"] for h in history),
            "epochs": history,
        }
    return EpochsOutcome(walls, memory, evaluation)


def _better(evaluator: Evaluator, new: dict[str, Any], best: dict[str, Any]) -> bool:
    name, up = evaluator.select.name, evaluator.select.higher_is_better
    return new[name] > best[name] if up else new[name] < best[name]


def evaluate_after_steps(evaluator: Evaluator, trainer: Trainer) -> dict[str, Any]:
    """Steps mode: one evaluation of the model as the timed steps left it."""
    result = evaluator.evaluate(trainer.model)
    return {**evaluator.info, "mode": "after-timed-steps", **result}
