"""The calibration fit (tpme/estimate/calibration.py): it recovers constants planted in synthetic runs,
stays on them when one run is an outlier, and the GPU table picks up a fitted calibration file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tpme.estimate.calibration import MemorySample, OpArrays, TimeSample, fit_memory, fit_time, memory_loo, time_loo
from tpme.estimate.cost import OpCost, StepCost
from tpme.estimate.gpus import Calibration, Gpu, fitted_calibrations, load_gpu_file
from tpme.estimate.predict import step_time_s

pytest.importorskip("scipy")

GPU = Gpu("x", "X", 48 << 30, 864e9, {"fp32": 91.6e12, "tf32": 183e12, "fp16": 362e12, "bf16": 362e12})
PLANTED = {"compute_efficiency": 0.55, "memory_efficiency": 0.72, "kernel_overhead_s": 2.5e-5}


def _runs(n: int, seed: int = 0) -> list[OpArrays]:
    """Runs that differ in how much of their step is matmul, traffic and launches, as methods do."""
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n):
        k = int(rng.integers(800, 6000))
        matmul = rng.random(k) < rng.uniform(0.1, 0.5)
        flops = np.where(matmul, rng.lognormal(24, 1.5, k), 0.0)
        moved = rng.lognormal(rng.uniform(14, 18), 1.5, k)
        runs.append(OpArrays(flops, moved, rng.choice([0, 3], size=k, p=[0.2, 0.8]).astype(np.int8)))
    return runs


def _times(runs: list[OpArrays], values: dict[str, float], steps: int = 100) -> list[TimeSample]:
    return [TimeSample(ops, steps, ops.step_time_s(GPU, **values) * steps) for ops in runs]


def test_vectorised_step_time_is_predict_step_time():
    ops = [OpCost("forward", 10**12, 10**8, "bf16"), OpCost("backward", 0, 10**9, "fp32"), OpCost("optimizer", 10**9, 10**6, "fp32")]
    calib = Calibration(compute_efficiency=0.4, memory_efficiency=0.6, kernel_overhead_s=1e-5)
    gpu = Gpu("x", "X", GPU.memory_bytes, GPU.bandwidth_bytes_s, GPU.peak_flops, calib)
    arrays = OpArrays.from_cost(StepCost(ops))
    assert arrays.step_time_s(gpu, 0.4, 0.6, 1e-5) == pytest.approx(step_time_s(StepCost(ops), gpu), rel=1e-12)
    assert OpArrays.from_dict(json.loads(json.dumps(arrays.to_dict()))).step_time_s(gpu, 0.4, 0.6, 1e-5) == pytest.approx(step_time_s(StepCost(ops), gpu), rel=1e-12)


def test_time_fit_recovers_planted_constants():
    fit = fit_time(_times(_runs(12), PLANTED), GPU)
    assert fit.converged
    for k, v in PLANTED.items():
        assert fit.values[k] == pytest.approx(v, rel=1e-3), k
    assert max(abs(e) for e in fit.log_errors) < 1e-6


def test_time_fit_is_robust_to_one_run_it_cannot_see():
    samples = _times(_runs(15, seed=1), PLANTED)
    slow = samples[3]
    samples[3] = TimeSample(slow.ops, slow.steps, slow.measured_s * 3)  # e.g. a method whose cost runs outside the estimated step
    fit = fit_time(samples, GPU)
    for k, v in PLANTED.items():
        assert fit.values[k] == pytest.approx(v, rel=0.05), k
    others = [abs(e) for i, e in enumerate(fit.log_errors) if i != 3]
    assert max(others) < 0.05 and fit.log_errors[3] < -0.9  # the outlier stays visible instead of being absorbed


def test_time_fit_needs_as_many_runs_as_constants():
    with pytest.raises(ValueError, match="at least"):
        fit_time(_times(_runs(2), PLANTED), GPU)


def test_memory_fit_recovers_planted_overhead_and_loo_is_honest():
    rng = np.random.default_rng(2)
    predicted = rng.uniform(18e9, 40e9, 20).astype(int)
    samples = [MemorySample(int(p), int(p * 1.04)) for p in predicted]
    fit = fit_memory(samples)
    assert fit.converged and fit.values["reserved_overhead"] == pytest.approx(0.04, rel=1e-3)
    assert max(abs(e) for e in memory_loo(samples)) < 1e-4
    samples[5] = MemorySample(samples[5].predicted_bytes, samples[5].measured_bytes * 2)  # a method whose peak the estimate cannot see
    assert fit_memory(samples).values["reserved_overhead"] == pytest.approx(0.04, abs=0.005)
    assert fit_memory([MemorySample(int(p), int(p * 0.97)) for p in predicted]).values["reserved_overhead"] == pytest.approx(-0.03, rel=1e-3)


def test_time_leave_one_out_on_exact_data_is_exact():
    assert max(abs(e) for e in time_loo(_times(_runs(6, seed=3), PLANTED), GPU)) < 1e-4


def test_gpu_table_reads_a_fitted_calibration_file(tmp_path):
    path = tmp_path / "calibrated.json"
    path.write_text(json.dumps({"gpus": {"l40s": {"values": {"compute_efficiency": 0.42, "reserved_overhead": -0.03},
                                                   "provenance": {"runs": 3, "data": "test", "fit": "least squares", "command": "cmd"}}}}))
    values, source = fitted_calibrations(path)["l40s"]
    assert values == {"compute_efficiency": 0.42, "reserved_overhead": -0.03}
    assert "fitted to 3 test runs" in source and "cmd" in source
    assert fitted_calibrations(tmp_path / "none.json") == {}


def test_gpu_file_may_set_a_negative_reserved_overhead(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"gpus": {"l40s": {"reserved_overhead": -0.02}}}))
    gpu = load_gpu_file(path)["l40s"]
    assert gpu.calibration.reserved_overhead == -0.02 and "--gpu-file" in gpu.calibration_source
    path.write_text(json.dumps({"gpus": {"l40s": {"kernel_overhead_s": -1e-6}}}))
    with pytest.raises(Exception, match="not a positive number"):
        load_gpu_file(path)
