"""Peak memory of a method's one-off preparation (a cache build), which can exceed training's.

The paper's cached IISAN reports 3 GB; its training step needs far less: what needs 3 GB is
the official preprocessing, which keeps every hidden state of both backbones for a batch of
128 items. The scenario assembles the model on the meta device, the method describes its
pass (`Method.prepare_pass`), and the pass runs on fake tensors under the memory tracker,
without autograd, as the real one runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from tpme.estimate.allocator import replay
from tpme.estimate.attention import attention_for
from tpme.estimate.fake_model import fakify
from tpme.estimate.memory import MemoryEstimate, TrainableMemTracker, peak_breakdown
from tpme.methods.registry import Method
from tpme.scenarios.base import DataShape, Scenario


@dataclass(frozen=True)
class PrepareEstimate:
    memory: MemoryEstimate  # the pass's peak (resident weights included) and its split
    reserved_bytes: int  # the caching allocator's peak reserved memory over the pass (allocator.py)
    description: str


def estimate_prepare(scenario: Scenario, cfg: Any, method: Method, data: DataShape | None, target: str = "cuda") -> PrepareEstimate | None:
    """The preparation pass's peak, or None when the method prepares nothing on the device."""
    assembly = scenario.assemble(cfg, method, data, meta=True)
    spec = scenario.prepare_pass(cfg, method, assembly)
    if spec is None:
        return None
    mode = FakeTensorMode()
    resident = nn.ModuleList(spec.resident)  # one fakify: a module held twice stays one set of weights
    fakify(resident, mode)
    tracker = TrainableMemTracker()
    tracker.track_external(resident)
    before = len(tracker.events)
    with attention_for(target), mode, tracker, torch.no_grad():
        held = spec.run()
    del held
    reserved = replay(tracker.events[:before], tracker.events[before:])
    return PrepareEstimate(peak_breakdown(tracker), reserved.peak_reserved, spec.description)
