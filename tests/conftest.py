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
    from tpme.scenarios.recommendation.config import preset

    return preset("ci")


@pytest.fixture(scope="session")
def ci_bundle_path(tmp_path_factory, ci_config) -> Path:
    """The ci preset's synthetic dataset, prepared once per test session."""
    from tpme.datasets.build import build_bundle
    from tpme.models.backbones import BackboneSpec, text_config

    spec = BackboneSpec.parse(ci_config.backbone)
    bundle = build_bundle(ci_config.data, spec.tokenizer_dir, text_config(spec).vocab_size)
    path = tmp_path_factory.mktemp("data") / "data.npz"
    bundle.save(path)
    return path


@pytest.fixture(autouse=True)
def quiet_ray(request, monkeypatch):
    """A local Ray runtime on a busy machine: its memory monitor, which kills workers when the
    host (not the test) runs short of memory, is off, so another process's load cannot fail a test."""
    if request.node.get_closest_marker("ray"):
        monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")


@pytest.fixture(autouse=True)
def restore_method_registry():
    """A test that loads a plugin in this process (through the CLI) leaves the registry as it found it,
    and forgets the plugin module too, so that a later test importing it registers its methods again."""
    import sys

    from tpme.methods import registry

    registry.available_methods()
    methods, families = dict(registry._METHODS), dict(registry._FAMILIES)
    yield
    for name, cls in registry._METHODS.items():
        module = getattr(cls, "__module__", "")
        if name not in methods and not module.startswith("tpme."):
            sys.modules.pop(module, None)
    registry._METHODS.clear()
    registry._METHODS.update(methods)
    registry._FAMILIES.clear()
    registry._FAMILIES.update(families)
