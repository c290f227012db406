"""Shared fixtures: tiny configs, offline, one torch thread (CI machines have 2 cores)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ci_config():
    from tpme.config import preset

    return preset("ci")


@pytest.fixture(scope="session")
def ci_bundle_path(tmp_path_factory, ci_config) -> Path:
    """The ci preset's synthetic dataset, prepared once per test session."""
    from tpme.datasets.bundle import build_bundle
    from tpme.models.backbones import BackboneSpec, text_config

    spec = BackboneSpec.parse(ci_config.backbone)
    bundle = build_bundle(ci_config.data, spec.tokenizer_dir, text_config(spec).vocab_size)
    path = tmp_path_factory.mktemp("data") / "data.npz"
    bundle.save(path)
    return path
