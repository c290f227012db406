"""Test methods for tests/test_failure_handling.py, loaded with `--plugin hostile_plugin`
(the test puts this directory on sys.path / PYTHONPATH)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tpme.methods.frozen import Frozen
from tpme.methods.registry import register_method


@register_method("test-nan", "frozen, but every item embedding is NaN: a diverged method")
class NanTower(Frozen):
    def build_tower(self, backbones, embed_dim):
        tower = super().build_tower(backbones, embed_dim)
        tower.register_forward_hook(lambda module, args, out: out * float("nan"))
        return tower


@dataclass
class HangOptions:
    marker: str = ""


@register_method("test-hang", "frozen, but building the tower writes the process id to `marker` and then sleeps (a cell that never ends)")
class Hang(Frozen):
    Options = HangOptions

    def build_tower(self, backbones, embed_dim):
        Path(self.options.marker).write_text(str(os.getpid()))
        time.sleep(600)
        return super().build_tower(backbones, embed_dim)
