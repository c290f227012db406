"""Where and with what a measurement was made."""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("tpme", "torch", "transformers", "peft", "tokenizers", "numpy")


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            found[p] = version(p)
        except PackageNotFoundError:
            found[p] = None
    return found


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, total_memory_bytes=props.total_memory, capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda)
        try:
            import pynvml

            pynvml.nvmlInit()
            info["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:
            info["driver"] = None
    else:
        info["name"] = f"CPU ({info['cpu']}, {torch.get_num_threads()} threads)"
    return info


def provenance(device: torch.device, command: list[str] | None = None) -> dict[str, Any]:
    return {
        "versions": versions(),
        "device": device_info(device),
        "git_commit": git_commit(),
        "command": command if command is not None else sys.argv,
        "host": platform.node(),
        "platform": platform.platform(),
    }
