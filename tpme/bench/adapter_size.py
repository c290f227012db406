"""The size on disk of what a method trains: its trainable state saved as safetensors.

Trainable parameters count numbers; this counts the bytes an adapter costs to store or ship
per task (dtype included, header included), measured by writing the file."""
from __future__ import annotations

import os
import tempfile

import torch
from safetensors.torch import save_file


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter once (shared ones under their first name), detached on the CPU."""
    seen: set[int] = set()
    state = {}
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            state[name] = p.detach().to("cpu").contiguous()
    return state


def adapter_bytes(model: torch.nn.Module) -> int:
    """The file size of the trainable state written with safetensors (a temporary file)."""
    fd, path = tempfile.mkstemp(suffix=".safetensors")
    os.close(fd)
    try:
        save_file(trainable_state(model), path)
        return os.path.getsize(path)
    finally:
        os.unlink(path)
