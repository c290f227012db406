"""The size on disk of what a method trains: its trainable state as a safetensors file.

Trainable parameters count numbers; this counts the bytes an adapter costs to store or ship
per task (dtype and header included). The size follows from the format alone (an 8-byte
length, a JSON header padded to 8 bytes, then the raw tensors in the writer's order), so it
is computed from names, dtypes and shapes instead of copying the state to the host and
writing it: for full fine-tuning of a 1B model that write alone would be gigabytes. A test
holds the computation to the byte against safetensors' own writer."""
from __future__ import annotations

import json

import torch

# safetensors' dtype names, in the order of its Dtype enum: the writer lays tensors out by
# this order descending, then by name
DTYPES = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.float8_e5m2: "F8_E5M2", torch.float8_e4m3fn: "F8_E4M3",
    torch.int16: "I16", torch.uint16: "U16", torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32",
    torch.uint32: "U32", torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.uint64: "U64",
}
_RANK = {name: i for i, name in enumerate(DTYPES.values())}


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter once (shared ones under their first name)."""
    seen: set[int] = set()
    state = {}
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            state[name] = p
    return state


def safetensors_size(state: dict[str, torch.Tensor]) -> int:
    """Bytes of the file `safetensors.torch.save_file(state, ...)` would write (no metadata)."""
    entries = sorted(((DTYPES[t.dtype], name, t) for name, t in state.items()), key=lambda e: (-_RANK[e[0]], e[1]))
    header, offset = {}, 0
    for dtype, name, t in entries:
        size = t.numel() * t.element_size()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    n = len(json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()) if header else 2
    return 8 + n + (-n % 8) + offset


def adapter_bytes(model: torch.nn.Module) -> int:
    """The file size of the model's trainable state saved with safetensors."""
    return safetensors_size(trainable_state(model))
