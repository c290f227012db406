"""Bundles for the benchmark suites: the ci (tiny) and default (small) presets' data."""
from __future__ import annotations

import os

import pytest
import torch

from tpme.scenarios.recommendation.config import preset
from tpme.datasets.build import build_bundle
from tpme.datasets.bundle import DataBundle
from tpme.models.backbones import BackboneSpec, text_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PRESET_OF_SIZE = {"tiny": "ci", "small": "default"}


@pytest.fixture(scope="session")
def bundles() -> dict[str, DataBundle]:
    out = {}
    for size, name in PRESET_OF_SIZE.items():
        cfg = preset(name)
        spec = BackboneSpec.parse(cfg.backbone)
        out[size] = build_bundle(cfg.data, spec.tokenizer_dir, text_config(spec).vocab_size)
    return out


@pytest.fixture(scope="session")
def cpu() -> torch.device:
    return torch.device("cpu")
