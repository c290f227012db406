"""Memory probes with a fake torch.cuda and a fake NVML: what each reads, when, and what it
reports (the real ones run only on a GPU; these check the logic everywhere)."""
from __future__ import annotations

import os
import sys
import threading
import types
from dataclasses import dataclass

import torch

from tpme.bench import probes

CUDA0 = torch.device("cuda", 0)


def test_cuda_allocator_probe_resets_the_peak_at_start_and_reads_it_after_a_sync(monkeypatch):
    calls: list[str] = []
    peak = {"allocated": 0, "reserved": 0}
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(f"sync {device}"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: (calls.append(f"reset {device}"), peak.update(allocated=0, reserved=0)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: (calls.append("read allocated"), peak["allocated"])[1])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: (calls.append("read reserved"), peak["reserved"])[1])
    probe = probes.CudaAllocatorProbe(CUDA0)
    peak.update(allocated=999, reserved=999)  # a peak from before the timed window
    probe.start()
    assert calls == ["sync cuda:0", "reset cuda:0"]  # queued work finishes before the reset
    peak.update(allocated=300, reserved=512)
    calls.clear()
    assert probe.stop() == {"peak_allocated_bytes": 300, "peak_reserved_bytes": 512}
    assert calls[0] == "sync cuda:0" and set(calls[1:]) == {"read allocated", "read reserved"}


@dataclass
class _Proc:
    pid: int
    usedGpuMemory: int | None


class _FakeNvml(types.ModuleType):
    """pynvml's calls the probe makes; this process's memory follows `series`, then stays at its last value."""

    class NVMLError(Exception):
        pass

    def __init__(self, series: list[int], energy_mj: list[int] | None, listed: bool = True):
        super().__init__("pynvml")
        self.series, self.energy_mj, self.listed = list(series), energy_mj, listed
        self.reads = 0
        self.read_event = threading.Event()
        self.inited = False

    def nvmlInit(self):
        self.inited = True

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def _now(self) -> int:
        value = self.series[min(self.reads, len(self.series) - 1)]
        self.reads += 1
        if self.reads >= len(self.series):
            self.read_event.set()
        return value

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        others = [_Proc(os.getpid() + 1, 10**12)]
        return others + ([_Proc(os.getpid(), self._now())] if self.listed else [])

    def nvmlDeviceGetMemoryInfo(self, handle):
        return types.SimpleNamespace(used=self._now())

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if self.energy_mj is None:
            raise self.NVMLError("not supported")
        return self.energy_mj.pop(0)


def _run(monkeypatch, nvml: _FakeNvml) -> dict:
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    probe = probes.NvmlProbe(CUDA0, interval_s=0.001)
    assert nvml.inited and probe.handle == ("handle", 0)
    probe.start()
    assert nvml.read_event.wait(10), "the sampling thread never read the series"
    return probe.stop()


def test_nvml_probe_keeps_the_peak_between_samples_and_the_energy_in_joules(monkeypatch):
    nvml = _FakeNvml([100, 250, 700, 300, 150], energy_mj=[10_000, 12_500])
    out = _run(monkeypatch, nvml)
    assert out == {"nvml_peak_bytes": 700, "energy_j": 2.5}  # the transient 700 seen only by the thread; other processes ignored


def test_nvml_probe_falls_back_to_device_memory_and_no_energy(monkeypatch):
    nvml = _FakeNvml([100, 400, 200], energy_mj=None, listed=False)
    assert _run(monkeypatch, nvml) == {"nvml_peak_bytes": 400, "energy_j": None}


def test_memory_probes_by_device(monkeypatch):
    assert probes.memory_probes(torch.device("cpu")) == []
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML not installed: the allocator probe alone
    [only] = probes.memory_probes(CUDA0)
    assert isinstance(only, probes.CudaAllocatorProbe)
    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml([1], energy_mj=[0, 0]))
    assert [type(p) for p in probes.memory_probes(CUDA0)] == [probes.CudaAllocatorProbe, probes.NvmlProbe]
