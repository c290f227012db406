"""The estimate of a method's one-off preparation pass (tpme/estimate/prepare.py): the official
cached IISAN's preprocessing keeps every hidden state of both backbones, which is what its
paper figure measured; tpme's cache build keeps [CLS] rows only."""
from __future__ import annotations

import pytest
import torch

from tpme.bench.probes import TensorMemoryTracker
from tpme.estimate.api import estimate_records
from tpme.estimate.gpus import resolve_gpus
from tpme.estimate.prepare import estimate_prepare
from tpme.methods.registry import get_method
from tpme.models.backbones import Backbones, BackboneSpec
from tpme.scenarios import get_scenario
from tpme.scenarios.recommendation import protocol

SCENARIO = get_scenario("recommendation")


def cfg(proto: str):
    return SCENARIO.config_for_method(SCENARIO.preset("ci").replace(protocol=proto), "iisan-cached")


def measured_peak(proto: str) -> int:
    """The same pass on real ci backbones on the CPU, every tensor counted."""
    c = cfg(proto)
    torch.manual_seed(0)
    backbones = Backbones.build(BackboneSpec.parse(c.backbone))
    if proto == "official":
        protocol.prepare_backbones(backbones)
    method = get_method("iisan-cached", {"official": "true"} if proto == "official" else {})
    tower = method.build_tower(backbones, c.train.embed_dim)
    spec = method.prepare_pass(tower, backbones, c.data.text_len, c.train.precision)
    tracker = TensorMemoryTracker()
    with tracker, torch.no_grad():
        tracker.add_existing(t for m in spec.resident for t in [*m.parameters(), *m.buffers()])
        held = spec.run()
    del held
    return tracker.peak


@pytest.mark.parametrize("proto", ["official", "tpme"])
def test_prepare_estimate_equals_the_measured_cpu_pass(proto):
    est = estimate_prepare(SCENARIO, cfg(proto), get_method("iisan-cached"), SCENARIO.data_shape(cfg(proto)), target="cpu")
    assert est is not None
    assert est.memory.peak_bytes == pytest.approx(measured_peak(proto), rel=0.03)


def test_official_preprocessing_keeps_every_hidden_state():
    c = cfg("official")
    official = estimate_prepare(SCENARIO, c, get_method("iisan-cached"), SCENARIO.data_shape(c), target="cpu")
    tpme = estimate_prepare(SCENARIO, cfg("tpme"), get_method("iisan-cached"), SCENARIO.data_shape(cfg("tpme")), target="cpu")
    backbones = SCENARIO.assemble(c, get_method("iisan-cached"), meta=True).extras["backbones"]
    tokens = {"text": c.data.text_len, "image": (backbones.image_size // backbones.image.config.patch_size) ** 2 + 1}
    kept = sum(128 * tokens[m] * model.config.hidden_size * 4 * (model.config.num_hidden_layers + 1)
               for m, model in (("text", backbones.text), ("image", backbones.image)))
    assert official.memory.breakdown["activations"] >= kept
    assert "batch 128" in official.description and "preprocess_vectors" in official.description
    per_item = {name: e.memory.breakdown["activations"] / batch for name, e, batch in (("official", official, 128), ("tpme", tpme, get_method("iisan-cached").options.cache_batch_size))}
    assert per_item["tpme"] < per_item["official"]  # [CLS] rows copied out, each layer's output freed


def test_methods_without_preparation_have_no_pass_and_records_say_so():
    c = SCENARIO.preset("ci").replace(protocol="official")
    assert estimate_prepare(SCENARIO, c, get_method("fft"), None) is None
    gpu = resolve_gpus("a6000")[0]
    fft, cached = (estimate_records(SCENARIO, c, m, {}, [gpu], SCENARIO.data_shape(c))[0] for m in ("fft", "iisan-cached"))
    assert "prepare" not in fft and "prepare_total_memory_bytes" not in fft
    assert cached["prepare_total_memory_bytes"] > cached["prepare"]["peak_memory_bytes"] > 0
