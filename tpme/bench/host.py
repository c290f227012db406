"""The host's state around a cell, and whether it was busy: other work on the CPU cores the
cell needs, or another process on its GPU.

What decides "busy" is the CPU time other processes really used while the cell was timed
(system busy time minus this process's own, from psutil), compared with the cores the cell
leaves free. The load average is recorded too, but it lags by a minute and still holds the
previous cell of the same run, so it would flag every second cell of a sequential run.
"""
from __future__ import annotations

import multiprocessing
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import psutil

MARGIN_CORES = 0.5  # other processes may use this much beyond the free cores before the host counts as busy
TOP_PROCESSES = 5  # busiest other processes named in a reason
KEPT_PROCESSES = 20  # busiest other processes kept in the record
MIN_NAMED_CORES = 0.02  # processes below this average are not named


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def available_cores() -> int:
    """Cores this process may run on (its affinity), else the logical CPU count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return psutil.cpu_count() or 1


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_processes(exclude: set[int], uuids: list[str] | None = None) -> list[dict[str, Any]]:
    """Compute processes other than `exclude` on the GPUs with these NVML UUIDs (every GPU NVML
    sees when None); [] without NVML or a GPU. `gpu` is NVML's index, not CUDA's."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver or no GPU: nothing to report
        return []
    out = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            if uuids is not None and _text(pynvml.nvmlDeviceGetUUID(handle)) not in uuids:
                continue
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if p.pid in exclude:
                    continue
                try:
                    name = psutil.Process(p.pid).name()
                except psutil.Error:
                    name = "?"
                out.append({"gpu": i, "pid": p.pid, "name": name, "used_memory_bytes": p.usedGpuMemory})
    except Exception:  # noqa: BLE001 - a driver that cannot list processes: nothing to report
        return out
    finally:
        pynvml.nvmlShutdown()
    return out


def _text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def cuda_uuid(index: int) -> str | None:
    """NVML's UUID (`GPU-...`) of CUDA device `index` as this process numbers it, so a cell
    looks only at its own GPU; None when torch does not say."""
    import torch

    try:
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    except (RuntimeError, AssertionError):  # no CUDA: every GPU NVML sees is checked instead
        return None
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


def _workers() -> list[psutil.Process]:
    """This process's live multiprocessing children: a cell starts none but its batch-building
    workers (tpme.datasets.workers); subprocesses (a test's load generators) are not among them."""
    out = []
    for child in multiprocessing.active_children():
        try:
            out.append(psutil.Process(child.pid))
        except (psutil.Error, TypeError):  # ended meanwhile, or not started
            continue
    return out


def own_pids() -> set[int]:
    """This process and its batch-building worker processes (its other helpers are threads):
    anything else, a subprocess this process started included, is other work competing with it."""
    return {os.getpid(), *(w.pid for w in _workers())}


@dataclass
class Snapshot:
    """The host at one instant."""

    timestamp: str
    load_avg: list[float]  # 1, 5, 15 minutes
    cpu_count: int  # logical CPUs of the host
    cpu_available: int  # CPUs this process may use
    cpu_physical: int | None
    cpu_model: str
    memory_total_bytes: int
    memory_available_bytes: int
    gpu_processes: list[dict[str, Any]] = field(default_factory=list)  # other processes on a GPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(with_gpu: bool = True, gpu_uuids: list[str] | None = None) -> Snapshot:
    """`gpu_uuids`: only those GPUs' processes (None: every GPU)."""
    mem = psutil.virtual_memory()
    return Snapshot(
        iso_now(), [round(x, 2) for x in psutil.getloadavg()], psutil.cpu_count() or 1, available_cores(), psutil.cpu_count(logical=False),
        cpu_model(), int(mem.total), int(mem.available), gpu_processes(own_pids(), gpu_uuids) if with_gpu else [],
    )


def _busy_seconds() -> tuple[float, float]:
    """(CPU seconds spent running this host's processes, seconds the hypervisor gave to other machines), all CPUs summed."""
    t = psutil.cpu_times()
    steal = getattr(t, "steal", 0.0)
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0) - steal, steal


def _own_seconds() -> float:
    """CPU seconds of this process and its worker processes: live ones read directly, ended
    ones (a finished epoch's loader workers, joined) from the kernel's totals of reaped children."""
    t = psutil.Process().cpu_times()
    live = 0.0
    for worker in _workers():
        try:
            c = worker.cpu_times()
        except psutil.Error:  # ended meanwhile: in the children totals once joined
            continue
        live += c.user + c.system
    return t.user + t.system + t.children_user + t.children_system + live


def _process_seconds(exclude: set[int]) -> dict[int, tuple[str, float]]:
    out = {}
    for p in psutil.process_iter(["pid", "name", "cpu_times"]):
        t = p.info.get("cpu_times")
        if p.info["pid"] in exclude or t is None:
            continue
        out[p.info["pid"]] = (p.info.get("name") or "?", t.user + t.system)
    return out


@dataclass
class Usage:
    """CPU use by other processes over a window, in cores on average."""

    seconds: float
    other_cores: float
    top: list[dict[str, Any]]  # pid, name, cores; busiest first
    steal_cores: float = 0.0  # CPU a hypervisor gave to other virtual machines

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CpuWindow:
    """Measures the CPU time other processes use between `start` and `stop`."""

    def start(self) -> "CpuWindow":
        self._t0, self._busy0, self._own0 = time.monotonic(), _busy_seconds(), _own_seconds()
        self._procs0 = _process_seconds(own_pids())
        return self

    def stop(self) -> Usage:
        wall = max(time.monotonic() - self._t0, 1e-6)
        busy, steal = _busy_seconds()
        other = max(busy - self._busy0[0] - (_own_seconds() - self._own0), 0.0)
        now = _process_seconds(own_pids())
        top = []
        for pid, (name, secs) in now.items():
            before = self._procs0.get(pid, (name, 0.0))[1]
            cores = (secs - before) / wall
            if cores >= MIN_NAMED_CORES:
                top.append({"pid": pid, "name": name, "cores": round(cores, 2)})
        top.sort(key=lambda p: -p["cores"])
        return Usage(round(wall, 3), round(other / wall, 3), top[:KEPT_PROCESSES], round(max(steal - self._busy0[1], 0.0) / wall, 3))


def _fmt_top(top: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['name']} (pid {p['pid']}, {p['cores']:.2f} cores)" for p in top)


def busy_reasons(usage: Usage | None, cell_cores: int, snapshots: list[Snapshot]) -> list[str]:
    """Why the host counts as busy for a cell that uses `cell_cores` cores; [] when idle."""
    reasons = []
    free = max(snapshots[0].cpu_available - cell_cores, 0) if snapshots else 0
    if usage is not None and usage.other_cores > free + MARGIN_CORES:
        reasons.append(f"other processes used {usage.other_cores:.2f} CPU cores on average over {usage.seconds:.1f} s, "
                       f"above the {free} the cell leaves free" + (f": {_fmt_top(usage.top[:TOP_PROCESSES])}" if usage.top else ""))
    if usage is not None and usage.steal_cores > MARGIN_CORES:
        reasons.append(f"the hypervisor gave {usage.steal_cores:.2f} of this machine's CPU cores to other machines (steal time)")
    seen = set()
    for s in snapshots:
        for p in s.gpu_processes:
            if (p["gpu"], p["pid"]) not in seen:
                seen.add((p["gpu"], p["pid"]))
                mem = p.get("used_memory_bytes")
                reasons.append(f"another process on GPU {p['gpu']}: {p['name']} (pid {p['pid']}" + (f", {mem / 2**30:.2f} GiB)" if mem else ")"))
    return reasons


@dataclass
class HostState:
    """What a record keeps: snapshots before and after, other processes' CPU use over the timed window, the verdict."""

    before: Snapshot
    after: Snapshot | None = None
    window: Usage | None = None
    cell_cores: int = 1
    reasons: list[str] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "busy": self.busy, "reasons": self.reasons, "cell_cores": self.cell_cores,
            "other_cpu_load": None if self.window is None else self.window.other_cores,
            "window": None if self.window is None else self.window.to_dict(),
            "before": self.before.to_dict(), "after": None if self.after is None else self.after.to_dict(),
        }


class HostMonitor:
    """Before / after snapshots of a cell and the other processes' CPU use while it is timed."""

    def __init__(self, cell_cores: int, gpu: bool, gpu_uuids: list[str] | None = None):
        self.gpu, self.gpu_uuids = gpu, gpu_uuids
        self.state = HostState(snapshot(gpu, gpu_uuids), cell_cores=cell_cores)
        self._window: CpuWindow | None = None

    def start_window(self) -> None:
        self._window = CpuWindow().start()

    def stop_window(self) -> None:
        if self._window is not None:
            self.state.window = self._window.stop()
            self._window = None

    def finish(self) -> HostState:
        self.stop_window()
        self.state.after = snapshot(self.gpu, self.gpu_uuids)
        self.state.reasons = busy_reasons(self.state.window, self.state.cell_cores, [self.state.before, self.state.after])
        return self.state


def idle_check(cell_cores: int, seconds: float = 1.0, gpu: bool = True) -> list[str]:
    """What makes the host busy right now for cells of `cell_cores` cores ([] when idle): `seconds` of sampling."""
    window = CpuWindow().start()
    time.sleep(seconds)
    return busy_reasons(window.stop(), cell_cores, [snapshot(gpu)])
