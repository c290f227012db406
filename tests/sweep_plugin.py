"""Test methods for tests/test_sweep.py, loaded with `plugins: [sweep_plugin]` (the test puts
this directory on PYTHONPATH, so cell subprocesses import it too)."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from tpme.methods.frozen import Frozen
from tpme.methods.registry import register_method


@dataclass
class RankOptions:
    rank: int = 8


@register_method("test-ranked", "frozen, with a rank option that changes nothing (grid tests)")
class Ranked(Frozen):
    Options = RankOptions


@dataclass
class KillOptions:
    marker: str = ""


@register_method("test-kill-once", "frozen, but the first training step SIGKILLs its own process unless the marker file exists")
class KillOnce(Frozen):
    Options = KillOptions

    def build_tower(self, backbones, embed_dim):
        tower = super().build_tower(backbones, embed_dim)
        marker = Path(self.options.marker)

        def kill_on_first_attempt(module, args):
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)

        tower.register_forward_pre_hook(kill_on_first_attempt)
        return tower
