"""Shared fixtures: tiny configs, offline, one torch thread (CI machines have 2 cores)."""
from __future__ import annotations

import os
import sys
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


def _is_plugin(module) -> bool:
    """A module the tests load as a plugin: one of the tests' own files or the shipped examples."""
    path = getattr(module, "__file__", None) or ""
    return path.startswith((str(Path(__file__).parent), str(Path(__file__).parents[1] / "examples")))


@pytest.fixture(autouse=True)
def quiet_ray(request, monkeypatch):
    """A local Ray runtime on a busy machine: its memory monitor, which kills workers when the
    host (not the test) runs short of memory, is off, so another process's load cannot fail a test."""
    if request.node.get_closest_marker("ray"):
        monkeypatch.setenv("RAY_memory_monitor_refresh_ms", "0")


@pytest.fixture(autouse=True)
def restore_method_registry():
    """A test that loads a plugin in this process (through the CLI) leaves the registry as it found it,
    and forgets the plugin module too, so the next test that loads it registers it again."""
    from tpme.methods import registry
    from tpme.scenarios import available_scenarios

    registry.available_methods()
    available_scenarios()  # scenarios register method families (causal-lm's peft-config) when first loaded
    methods, families = dict(registry._METHODS), dict(registry._FAMILIES)
    modules = set(sys.modules)
    yield
    for name in set(sys.modules) - modules:
        if _is_plugin(sys.modules[name]):
            del sys.modules[name]
    registry._METHODS.clear()
    registry._METHODS.update(methods)
    registry._FAMILIES.clear()
    registry._FAMILIES.update(families)
