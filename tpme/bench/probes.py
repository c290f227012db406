"""What is measured besides time: memory probes that wrap the timed loop, and the
CPU tensor-level tracker that runs in its own untimed phase (tracking slows steps).

A probe has start() and stop() -> dict of facts; stop() must be cheap and may only
read counters, so probes add nothing measurable to step time.
"""
from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class Probe(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> dict[str, Any]: ...


class CudaAllocatorProbe:
    """Peak allocated (what tensors hold) and reserved (what the caching allocator holds)."""

    name = "cuda_allocator"

    def __init__(self, device: torch.device):
        self.device = device

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def stop(self) -> dict[str, Any]:
        torch.cuda.synchronize(self.device)
        return {
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(self.device),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
        }


class NvmlProbe:
    """The process's device memory as nvidia-smi shows it (sampled in a thread) and energy used."""

    name = "nvml"

    def __init__(self, device: torch.device, interval_s: float = 0.02):
        import pynvml  # nvidia-ml-py

        self.nvml = pynvml
        pynvml.nvmlInit()
        index = device.index if device.index is not None else torch.cuda.current_device()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.interval_s = interval_s
        self.pid = os.getpid()
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy0: int | None = None

    def _process_bytes(self) -> int:
        for proc in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
            if proc.pid == self.pid and proc.usedGpuMemory is not None:
                return int(proc.usedGpuMemory)
        return int(self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self._process_bytes())

    def start(self) -> None:
        self.peak = self._process_bytes()
        try:
            self._energy0 = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except self.nvml.NVMLError:
            self._energy0 = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._process_bytes())
        energy = None
        if self._energy0 is not None:
            energy = (self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self._energy0) / 1000.0
        return {"nvml_peak_bytes": self.peak, "energy_j": energy}


def memory_probes(device: torch.device) -> list[Probe]:
    """The probes that can run alongside timing on this device."""
    if device.type != "cuda":
        return []
    probes: list[Probe] = [CudaAllocatorProbe(device)]
    try:
        probes.append(NvmlProbe(device))
    except Exception:  # no NVML library or no permission: the allocator figures still stand
        pass
    return probes


class TensorMemoryTracker(TorchDispatchMode):
    """Live bytes of tensor storages, and their peak, while the mode is active.

    Storages that exist before tracking starts (parameters, gradients, optimizer state,
    the batch) are registered with `add_existing`; every op output is registered as it
    appears, and released when its storage is freed. Views share their base's storage
    and count once. This is the CPU counterpart of the CUDA allocator's peak: tensor
    bytes, not process RSS.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[weakref.ref, int]] = {}
        self.current = 0
        self.peak = 0

    def _add(self, t: torch.Tensor) -> None:
        if not isinstance(t, torch.Tensor) or t.device.type == "meta":
            return
        storage = t.untyped_storage()
        key = id(storage)
        if key in self._live and self._live[key][0]() is storage:
            return
        nbytes = storage.nbytes()
        self._live[key] = (weakref.ref(storage, lambda _, k=key, n=nbytes: self._free(k, n)), nbytes)
        self.current += nbytes
        self.peak = max(self.peak, self.current)

    def _free(self, key: int, nbytes: int) -> None:
        self._live.pop(key, None)
        self.current -= nbytes

    def add_existing(self, tensors: Iterable[torch.Tensor]) -> None:
        for t in tensors:
            self._add(t)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            self._add(t)
        return out
