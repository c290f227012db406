"""GPU-free estimation: fake-tensor memory equals a real CPU measurement, FLOPs equal
hand counts, the GPU table validates its input, the CLI prints the contract's keys.

The paper-preset ordering test is marked slow (minutes on 2 cores):
    PYTHONPATH=$PWD python -m pytest tests/test_estimate.py -m slow
and `-m "not slow"` leaves it out.
"""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tpme.bench.cell import CellSpec, run_cell
from tpme.estimate.attention import gpu_attention
from tpme.estimate.cost import CostCounter, OpCost, StepCost
from tpme.estimate.gpus import BUILTIN, GIB, Calibration, Gpu, load_gpu_file, match_device_name, resolve_gpus
from tpme.estimate.predict import fits, runtime_overhead, step_time_s
from tpme.scenarios import get_scenario
from tpme.scenarios.base import DataShape

REC = get_scenario("recommendation")
from tpme.scenarios.recommendation.config import preset
from tpme.errors import TpmeError
from tpme.methods.registry import available_methods
from tpme.models.user_encoder import SelfAttention

MEASURED_METHODS = ["fft", "frozen", "lora", "iisan", "iisan-cached"]


def test_every_measured_method_is_built_in():
    """The comparison below runs each of these; a missing one is a failure, never a skip."""
    assert set(MEASURED_METHODS) <= set(available_methods("recommendation"))


# --- memory: the estimate of a cell equals the cell's CPU tensor peak -------------------


@pytest.mark.parametrize("backbone", ["tiny", "small"])
@pytest.mark.parametrize("method", MEASURED_METHODS)
def test_estimated_peak_equals_cpu_tensor_peak(method, backbone, ci_bundle_path, tmp_path):
    """run_cell tracks one step with TensorMemoryTracker (parameters, buffers, gradients,
    Adam state, the batch and every op output) and then estimates the same step, with the
    same batch, on fake tensors (target cpu: Adam's CPU path, CPU attention)."""
    cfg = preset("ci").replace(backbone=backbone, batch_size=4, steps=1, warmup_steps=1, memory_steps=1)
    rec = run_cell(CellSpec(method, cfg.to_dict(), str(ci_bundle_path), cache_dir=str(tmp_path), estimate=True)).to_dict()
    assert rec["memory_source"] == "cpu_tensor_peak"
    est = rec["estimate"]
    assert est["source"] == "estimate" and "error" not in est, est
    assert est["peak_memory_bytes"] == pytest.approx(rec["peak_memory_bytes"], rel=0.02)
    assert est["trainable_params"] == rec["trainable_params"]
    assert est["total_params"] == rec["total_params"]
    assert sum(est["breakdown"].values()) == est["peak_memory_bytes"]


def test_half_precision_estimate_matches_cpu_measurement(ci_bundle_path, tmp_path):
    """fp16 autocast: fp32 master weights and Adam state, half activations."""
    cfg = preset("ci").replace(batch_size=4, steps=1, warmup_steps=1, memory_steps=1, precision="bf16")
    rec = run_cell(CellSpec("fft", cfg.to_dict(), str(ci_bundle_path), cache_dir=str(tmp_path), estimate=True)).to_dict()
    assert rec["estimate"]["peak_memory_bytes"] == pytest.approx(rec["peak_memory_bytes"], rel=0.02)


def test_frozen_parameters_get_no_gradient_memory():
    from tpme.estimate.estimator import estimate_step
    from tpme.methods.registry import get_method

    cfg = preset("ci")
    frozen = estimate_step(REC, cfg, get_method("frozen"), DataShape(64, {"items": 120}))
    fft = estimate_step(REC, cfg, get_method("fft"), DataShape(64, {"items": 120}))
    assert frozen.trainable_params < fft.trainable_params == fft.total_params
    assert frozen.memory.breakdown["optimizer_state"] < fft.memory.breakdown["optimizer_state"]
    assert frozen.memory.peak_bytes < fft.memory.peak_bytes


# --- FLOPs: hand-computed -----------------------------------------------------------------


def test_flops_of_a_linear_stack():
    n, a, b, c = 8, 16, 32, 4
    model = nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c))
    x = torch.randn(n, a)
    counter = CostCounter()
    with counter:
        counter.phase = "forward"
        y = model(x).sum()
        counter.phase = "backward"
        y.backward()
    cost = counter.cost
    assert cost.flops("forward") == 2 * n * a * b + 2 * n * b * c
    # layer 2: input grad and weight grad; layer 1: weight grad only (x needs no grad)
    assert cost.flops("backward") == 2 * n * c * b + 2 * b * n * c + 2 * b * n * a


def test_flops_of_an_attention_block_include_attention():
    b, n, dim, heads = 2, 10, 64, 2
    attn = SelfAttention(dim, heads, dropout=0.0).eval()
    x = torch.randn(b, n, dim, requires_grad=True)
    mask = torch.ones(b, 1, n, n, dtype=torch.bool).tril()
    counter = CostCounter()
    with counter:
        counter.phase = "forward"
        out = attn(x, mask).sum()
        counter.phase = "backward"
        out.backward()
    d = dim // heads
    proj = 2 * b * n * dim * 3 * dim + 2 * b * n * dim * dim
    scores_and_mix = 2 * (2 * b * heads * n * n * d)
    assert counter.cost.flops("forward") == proj + scores_and_mix
    # backward: every projection twice (input and weight grads), attention 5 matmuls
    assert counter.cost.flops("backward") == 2 * proj + 5 * (2 * b * heads * n * n * d)


def test_gpu_attention_matches_sdpa():
    q, k, v = (torch.randn(2, 2, 6, 8) for _ in range(3))
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
    original = torch.nn.functional.scaled_dot_product_attention
    expected = original(q, k, v, attn_mask=mask)
    with gpu_attention():
        got = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(got, expected)
    assert torch.nn.functional.scaled_dot_product_attention is original


# --- time and fit ---------------------------------------------------------------------------


def _gpu(**calib) -> Gpu:
    return Gpu("x", "X", 10 * GIB, 1e12, {"fp32": 1e13, "tf32": 2e13, "fp16": 1e14, "bf16": 1e14}, Calibration(**calib))


def test_step_time_is_a_per_op_roofline():
    gpu = _gpu(compute_efficiency=0.5, memory_efficiency=0.5, kernel_overhead_s=1e-6)
    cost = StepCost([
        OpCost("forward", flops=10**12, bytes=10**6, compute_dtype="fp16"),  # compute-bound: 1e12 / 5e13 = 0.02 s
        OpCost("backward", flops=0, bytes=10**9, compute_dtype="fp32"),  # memory-bound: 1e9 / 5e11 = 0.002 s
    ])
    assert step_time_s(cost, gpu) == pytest.approx(0.02 + 0.002 + 2e-6)
    assert DataShape(12076).steps_per_epoch(32) == 378


def test_graphed_step_pays_graph_gaps_and_its_eager_kernels():
    gpu = _gpu(kernel_overhead_s=5e-6, graph_kernel_overhead_s=1e-6)
    cost = StepCost([OpCost("forward", 0, 0, "fp32")] * 6 + [OpCost("backward", 0, 0, "fp32")] * 3 + [OpCost("optimizer", 0, 0, "fp32")])
    assert step_time_s(cost, gpu) == pytest.approx(10 * 5e-6)
    assert step_time_s(cost, gpu, graph_eager_kernels=4) == pytest.approx(9 * 1e-6 + (1 + 4) * 5e-6)


def test_estimate_times_cached_iisan_as_graphed_and_says_so(capsys):
    from tpme.cli import main

    assert main(["estimate", "--preset", "ci", "--methods", "fft,iisan-cached", "--gpu", "h200", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["iisan-cached"]["cuda_graphs"] and not rows["fft"]["cuda_graphs"]
    assert main(["estimate", "--preset", "ci", "--methods", "iisan-cached", "--gpu", "h200", "--cuda-graphs", "off", "--json"]) == 0
    eager = json.loads(capsys.readouterr().out)[0]
    assert not eager["cuda_graphs"] and eager["kernels_per_step"] == rows["iisan-cached"]["kernels_per_step"]
    assert eager["predicted_step_time_s"] > rows["iisan-cached"]["predicted_step_time_s"]


def test_fit_counts_the_runtime_overhead():
    gpu = _gpu(cuda_context_bytes=GIB, cublas_workspace_bytes=0, fragmentation=0.1)
    assert runtime_overhead(8 * GIB, gpu).total == GIB + int(0.8 * GIB)
    assert fits(8 * GIB, gpu)
    assert not fits(9 * GIB, gpu)


# --- GPU table ------------------------------------------------------------------------------


def test_builtin_gpus_and_names():
    for key in ("a100-40gb", "a100-80gb", "h100", "h200", "a6000", "a40", "l40s", "l4", "rtx4090", "rtx3090"):
        g = BUILTIN[key]
        assert g.memory_bytes > 0 and g.bandwidth_bytes_s > 0 and set(g.peak_flops) == {"fp32", "tf32", "fp16", "bf16"}
    assert [g.key for g in resolve_gpus("H100, RTX-4090,a100_40gb")] == ["h100", "rtx4090", "a100-40gb"]
    assert len(resolve_gpus("all")) == len(BUILTIN)
    assert [g.key for g in resolve_gpus("all") if g.memory_bytes <= 24 * GIB] == ["l4", "rtx4090", "rtx3090"]
    with pytest.raises(TpmeError, match="unknown GPU"):
        resolve_gpus("v100")
    assert match_device_name("NVIDIA H100 80GB HBM3").key == "h100"
    assert match_device_name("NVIDIA A100-SXM4-40GB").key == "a100-40gb"
    assert match_device_name("NVIDIA L40S").key == "l40s" and match_device_name("NVIDIA L4").key == "l4"
    assert match_device_name("Tesla T4") is None
    l40s = BUILTIN["l40s"]
    assert (l40s.memory_bytes, l40s.bandwidth_bytes_s, l40s.peak_flops["bf16"], l40s.peak_flops["fp16"], l40s.peak_flops["fp32"]) == (48 * GIB, 864e9, 362e12, 362e12, 91.6e12)


def test_gpu_file_adds_and_calibrates(tmp_path):
    f = tmp_path / "gpus.json"
    f.write_text(json.dumps({"gpus": {
        "my-card": {"name": "My card", "memory_gib": 12, "bandwidth_gb_s": 500, "tflops": {"fp32": 10, "tf32": 20, "fp16": 40, "bf16": 40}},
        "h100": {"compute_efficiency": 0.45, "cuda_context_bytes": 600000000},
    }}))
    by_key = {g.key: g for g in resolve_gpus("all", f)}
    assert by_key["my-card"].memory_bytes == 12 * GIB and by_key["my-card"].peak_flops["fp16"] == 40e12
    assert by_key["h100"].calibration.compute_efficiency == 0.45
    assert by_key["h100"].calibration.cuda_context_bytes == 600000000
    assert by_key["h100"].peak_flops == BUILTIN["h100"].peak_flops
    toml = tmp_path / "gpus.toml"
    toml.write_text('[gpus.l4]\nmemory_efficiency = 0.7\n')
    assert load_gpu_file(toml)["l4"].calibration.memory_efficiency == 0.7


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"name": "x", "memory_gib": 8, "bandwidth_gb_s": 100}, "lacks 'tflops'"),
        ({"name": "x", "memory_gib": -8, "bandwidth_gb_s": 100, "tflops": {"fp32": 1, "tf32": 1, "fp16": 1, "bf16": 1}}, "not a positive number"),
        ({"name": "x", "memory_gib": 8, "bandwidth_gb_s": 100, "tflops": {"fp32": 1}}, "tflops lacks"),
        ({"name": "x", "memory_gib": 8, "bandwidth_gb_s": 100, "tflops": {"fp32": 1, "tf32": 1, "fp16": 1, "bf16": 1}, "speed": 3}, "unknown field"),
        ({"name": "x", "memory_gib": 8, "bandwidth_gb_s": 100, "tflops": {"fp32": 1, "tf32": 1, "fp16": 1, "bf16": 1}, "compute_efficiency": 1.5}, r"must be in \(0, 1\]"),
    ],
)
def test_gpu_file_errors_name_the_problem(tmp_path, entry, message):
    f = tmp_path / "gpus.json"
    f.write_text(json.dumps({"gpus": {"new-card": entry}}))
    with pytest.raises(TpmeError, match=message):
        load_gpu_file(f)


def test_gpu_file_that_does_not_parse(tmp_path):
    f = tmp_path / "gpus.json"
    f.write_text("{not json")
    with pytest.raises(TpmeError, match="does not parse"):
        load_gpu_file(f)
    with pytest.raises(TpmeError, match="does not exist"):
        load_gpu_file(tmp_path / "missing.json")


# --- the command ------------------------------------------------------------------------------


def test_cli_json_has_the_contract_keys(capsys):
    from tpme.cli import main

    assert main(["estimate", "--preset", "ci", "--methods", "fft,frozen", "--gpu", "h100,rtx4090", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["gpu"]) for r in rows] == [("fft", "h100"), ("fft", "rtx4090"), ("frozen", "h100"), ("frozen", "rtx4090")]
    for r in rows:
        assert {"method", "peak_memory_bytes", "flops_per_step", "predicted_epoch_time_s", "fits", "breakdown", "precision", "gpu", "overhead_bytes"} <= set(r)
        assert r["source"] == "estimate" and r["precision"] == "fp32"
    assert rows[0]["peak_memory_bytes"] > rows[2]["peak_memory_bytes"]
    assert rows[0]["predicted_epoch_time_s"] == pytest.approx(rows[0]["predicted_step_time_s"] * rows[0]["steps_per_epoch"])


def test_cli_bad_gpu_is_a_usage_error(capsys):
    from tpme.cli import main

    assert main(["estimate", "--preset", "ci", "--methods", "fft", "--gpu", "v100"]) == 2
    assert "unknown GPU" in capsys.readouterr().err


# --- the paper preset -------------------------------------------------------------------------


@pytest.mark.slow
def test_paper_preset_memory_order():
    """DESIGN section 6: fft > adapter, lora > iisan > iisan-cached (those registered), and
    frozen below fft. Each method takes 20-70 s here."""
    from tpme.estimate.estimator import estimate_step
    from tpme.methods.registry import get_method

    cfg = preset("paper")
    data = REC.data_shape(cfg)
    assert data.samples == 12076
    order = [["fft"], ["adapter", "lora"], ["iisan"], ["iisan-cached"]]
    peaks = {m: estimate_step(REC, cfg, get_method(m), data).memory.peak_bytes for group in order for m in group if m in available_methods()}
    peaks["frozen"] = estimate_step(REC, cfg, get_method("frozen"), data).memory.peak_bytes
    assert peaks["frozen"] < peaks["fft"]
    levels = [[peaks[m] for m in group if m in peaks] for group in order]
    levels = [lv for lv in levels if lv]
    for upper, lower in zip(levels, levels[1:]):
        assert min(upper) > max(lower), peaks
