"""Early stopping on validation HR@10 and test at the best validation epoch (scripted
evaluations, no training), probe merging, and the config rules."""
from types import SimpleNamespace

import pytest
import torch

from tpme.bench.convergence import merge_probe_results, run_epochs
from tpme.bench.train import StepTimes
from tpme.scenarios.recommendation.config import preset
from tpme.errors import TpmeError
from tpme.results.quality import KNOWN


class ScriptedEvaluator:
    """The scenario evaluator's contract: its metrics, the validation metric it selects by, its info."""

    metrics = (KNOWN["hr@10"],)
    select = KNOWN["hr@10"]
    info = {"k": 10}

    def __init__(self, valid_hr):
        self.valid_hr = list(valid_hr)
        self.calls = 0

    def evaluate(self, model):
        hr = self.valid_hr[self.calls]
        self.calls += 1
        return {"valid": {"hr@10": hr}, "test": {"hr@10": 10 * hr}, "eval_time_s": 1.0}


class NoSteps:
    def __len__(self):
        return 0

    def epoch(self, seed):
        return iter(())


TRAINER = SimpleNamespace(device=torch.device("cpu"), model=None, optimizer=None, scaler=None, precision="fp32")


def test_early_stop_after_patience_and_test_at_best_epoch():
    ev = ScriptedEvaluator([0.1, 0.3, 0.2, 0.25, 0.5])
    out = run_epochs(TRAINER, NoSteps(), 5, StepTimes(), [], ev, patience=2).evaluation
    assert (out["best_epoch"], out["epochs_run"], out["stopped_early"]) == (2, 4, True)
    assert out["test"]["hr@10"] == 3.0 and out["eval_time_s"] == 4.0
    assert [e["epoch"] for e in out["epochs"]] == [1, 2, 3, 4]


def test_without_patience_all_epochs_run_and_ties_keep_the_earlier_epoch():
    out = run_epochs(TRAINER, NoSteps(), 3, StepTimes(), [], ScriptedEvaluator([0.2, 0.2, 0.1]), patience=None).evaluation
    assert (out["best_epoch"], out["epochs_run"], out["stopped_early"]) == (1, 3, False)


def test_no_evaluator_no_evaluation():
    out = run_epochs(TRAINER, NoSteps(), 2, StepTimes(), [], None, patience=None)
    assert out.evaluation is None and len(out.epoch_walls) == 2


def test_probe_results_merge_peaks_and_energy():
    merged = merge_probe_results({"peak_allocated_bytes": 5, "energy_j": 1.0, "nvml_peak_bytes": None}, {"peak_allocated_bytes": 3, "energy_j": 2.5, "nvml_peak_bytes": 7})
    assert merged == {"peak_allocated_bytes": 5, "energy_j": 3.5, "nvml_peak_bytes": 7}


def test_early_stop_needs_epochs_and_policy_is_checked():
    with pytest.raises(TpmeError, match="early_stop needs epochs"):
        preset("ci").replace(early_stop=2)
    assert preset("ci").replace(epochs=3, steps=None, early_stop=2).train.early_stop == 2
    with pytest.raises(TpmeError, match="missing-image policy"):
        preset("ci").replace(missing_images="maybe")
