"""Per-step training time of every registered method at the tiny and small sizes.

    .venv/bin/pytest benchmarks/test_step_time.py --benchmark-autosave
    .venv/bin/pytest benchmarks/test_step_time.py --benchmark-compare      # against the last saved run

Batches are collated before timing: this suite times the training step itself (forward,
backward, optimizer); the harness overhead and data pipeline are measured by ratios.py.
"""
from __future__ import annotations

from itertools import cycle, islice

import pytest

from benchmarks.conftest import PRESET_OF_SIZE
from tpme.scenarios.base import count_params
from tpme.scenarios.recommendation.training import build_training
from tpme.scenarios.recommendation.config import preset
from tpme.methods.registry import available_methods, get_method

ROUNDS = {"tiny": 20, "small": 5}


@pytest.mark.parametrize("size", list(PRESET_OF_SIZE))
@pytest.mark.parametrize("method", list(available_methods("recommendation")))
def test_step_time(benchmark, bundles, cpu, tmp_path, method, size):
    cfg = preset(PRESET_OF_SIZE[size])
    setup = build_training(cfg, get_method(method), bundles[size], cpu, cache_dir=str(tmp_path))
    batches = cycle([b.to(cpu) for b in islice(setup.loader.forever(), 4)])
    trainable, total = count_params(setup.model)
    benchmark.extra_info.update(method=method, size=size, trainable_params=trainable, total_params=total)
    benchmark.pedantic(lambda: setup.trainer.step(next(batches)), rounds=ROUNDS[size], warmup_rounds=2, iterations=1)
