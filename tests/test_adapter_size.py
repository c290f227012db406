"""Adapter size on disk: computed from names, dtypes and shapes, equal to the byte to the file
safetensors' own writer produces (which orders tensors by dtype, then name, and pads its header)."""
from __future__ import annotations

import random

import torch
from safetensors.torch import save

from tpme.bench.adapter_size import DTYPES, adapter_bytes, safetensors_size, trainable_state


def test_size_equals_the_writers_file_for_random_states() -> None:
    rng = random.Random(0)
    for _ in range(200):
        state = {
            "".join(rng.choice("abxyz._019") for _ in range(rng.randint(1, 24))): torch.zeros([rng.randint(0, 6) for _ in range(rng.randint(0, 3))], dtype=rng.choice(list(DTYPES)))
            for _ in range(rng.randint(0, 10))
        }
        assert safetensors_size(state) == len(save(state)), {k: (v.dtype, tuple(v.shape)) for k, v in state.items()}


def test_adapter_bytes_counts_trainable_and_shared_parameters_once() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 4))
    model[1].weight.requires_grad_(False)
    model.tied = model[0]  # the same parameters under a second name
    state = trainable_state(model)
    assert sorted(state) == ["0.bias", "0.weight", "1.bias"]
    assert adapter_bytes(model) == len(save({k: v.detach() for k, v in state.items()}))
