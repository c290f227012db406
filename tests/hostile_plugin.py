"""Test methods for tests/test_failure_handling.py, loaded with `--plugin hostile_plugin`
(the test puts this directory on sys.path / PYTHONPATH)."""
from __future__ import annotations

from tpme.methods.frozen import Frozen
from tpme.methods.registry import register_method


@register_method("test-nan", "frozen, but every item embedding is NaN: a diverged method")
class NanTower(Frozen):
    def build_tower(self, backbones, embed_dim):
        tower = super().build_tower(backbones, embed_dim)
        tower.register_forward_hook(lambda module, args, out: out * float("nan"))
        return tower
