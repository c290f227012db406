"""`tpme params`: meta-device counts equal the harness's counts of a real model."""
from __future__ import annotations

import json

import torch

from tpme.scenarios.base import count_params
from tpme.cli import main
from tpme.cli.commands import params
from tpme.methods.registry import get_method
from tpme.models.backbones import Backbones, BackboneSpec
from tpme.scenarios import get_scenario
from tpme.scenarios.recommendation.config import preset
from tpme.scenarios.recommendation.model import Recommender


def count_method(name, options, backbone, embed_dim, max_seq_len):
    cfg = preset("ci").replace(backbone=backbone, embed_dim=embed_dim, max_seq_len=max_seq_len)
    return params.count_method(get_scenario("recommendation"), cfg, name, options)


def test_params_json_lists_every_method(capsys):
    assert main(["params", "--preset", "ci", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"fft", "frozen", "adapter", "lora", "lora-loralib", "bitfit", "iisan", "iisan-cached"} <= set(rows)
    assert all(set(r) == {"method", "label", "trainable_params", "total_params"} and r["label"] == r["method"] for r in rows.values())
    assert rows["fft"]["trainable_params"] == rows["fft"]["total_params"]
    assert rows["iisan-cached"]["trainable_params"] == rows["iisan-cached"]["total_params"] == rows["iisan"]["trainable_params"]
    assert rows["lora"]["trainable_params"] == rows["lora-loralib"]["trainable_params"]
    assert rows["frozen"]["trainable_params"] < rows["bitfit"]["trainable_params"] < rows["fft"]["trainable_params"]


def test_meta_counts_equal_real_counts():
    for name, opts in (("adapter", {}), ("lora", {}), ("lora-loralib", {}), ("iisan", {}), ("peft:ia3", {})):
        model = Recommender(get_method(name, opts).build_tower(Backbones.build(BackboneSpec.parse("tiny")), 64), 64, 10)
        assert count_method(name, opts, "tiny", 64, 10) == count_params(model), name


def test_params_builds_nothing_real(monkeypatch):
    seen = []
    real = Recommender.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        seen.append({p.device.type for p in self.parameters()})

    monkeypatch.setattr(Recommender, "__init__", spy)
    count_method("fft", {}, "small", 64, 10)
    assert seen == [{"meta"}]
    assert torch.empty(1).device.type == "cpu"  # the meta device does not leak out of the count
