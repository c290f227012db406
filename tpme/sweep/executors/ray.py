"""The Ray executor: each cell attempt is a Ray task with the resources it needs (one GPU on
a GPU cluster, one CPU otherwise), on an existing cluster or a local runtime; results stream
back as tasks finish. Inside the task the cell still runs in a process of its own (forked by
the Ray worker's preloaded worker, tpme.bench.forkserver); its log travels back with the record
and is written to the run's log folder like a local cell's.

Cluster nodes need tpme (and any plugin) installed; prepared data bundles travel through
the object store, so only a dataset directory itself must be at the same path on every node.
"""
from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from tpme.bench.cell import CellSpec, empty_record
from tpme.bench.process import CellProcesses
from tpme.errors import TpmeError
from tpme.results.record import Record
from tpme.sweep.executors.base import Job

CANCEL_GRACE_S = 15.0
CANCEL_POLL_S = 0.2
LOG_LIMIT = 1_000_000  # characters of a cell's log sent back (its end)


def run_cell_task(spec_json: str, data: bytes, timeout_s: float | None, log_name: str, log_dir: str | None, driver_host: str) -> dict[str, Any]:
    """Body of the Ray task: the cell's bundle written locally, then the usual cell process.

    The cell process is waited for in a helper thread so that this thread stays in Python code,
    where the KeyboardInterrupt of `ray.cancel` can land; it then kills the cell process. The
    result travels back as {"record": the record's JSON object, "log": the cell's log}. On the
    driver's host the log is written straight into the run's log folder (so it outlives a killed
    worker) and "log" is None.
    """
    with tempfile.TemporaryDirectory(prefix="tpme-ray-cell-") as tmp:
        spec = CellSpec.from_json(spec_json)
        spec.data_path = str(Path(tmp, "data.npz"))
        Path(spec.data_path).write_bytes(data)
        logs_here = log_dir is not None and socket.gethostname() == driver_host and Path(log_dir).is_dir()
        launcher = CellProcesses(timeout_s=timeout_s, log_dir=log_dir if logs_here else tmp)
        result: list[Record] = []
        waiter = threading.Thread(target=lambda: result.append(launcher.run(spec, log_name=log_name)), daemon=True)
        waiter.start()
        try:
            while waiter.is_alive():
                waiter.join(CANCEL_POLL_S)
        except KeyboardInterrupt:
            launcher.stop()
            waiter.join()
            raise
        if not result:
            raise RuntimeError("the cell launcher failed; see the Ray worker log")
        result[0].host = socket.gethostname()
        text = None
        if not logs_here:
            log = Path(tmp, log_name)
            text = log.read_text(errors="replace")[-LOG_LIMIT:] if log.is_file() else ""
        return {"record": result[0].to_dict(), "log": text}


class RayExecutor:
    def __init__(self, address: str | None, max_parallel: int | None, timeout_s: float | None, cpu_only: bool, log_dir: Path | None = None):
        try:
            import ray
        except ImportError:
            raise TpmeError("--executor ray needs the ray package", "pip install 'tpme[ray]'") from None
        self.ray = ray
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max_parallel or 1, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise TpmeError(f"cannot start or reach Ray at {address or 'a local runtime'}: {e}", "check --ray-address (HEAD:6379) and that `ray start --head` runs there") from None
        resources = ray.cluster_resources()
        self.use_gpu = not cpu_only and resources.get("GPU", 0) >= 1
        slots = int(resources.get("GPU", 0)) if self.use_gpu else int(resources.get("CPU", 1))
        self.capacity = max(1, min(slots, max_parallel) if max_parallel else slots)
        self.task = ray.remote(run_cell_task).options(num_gpus=1 if self.use_gpu else 0, num_cpus=1, max_retries=0)
        self.timeout_s = timeout_s
        self.log_dir = log_dir
        self.refs: dict[Any, Job] = {}
        self.data_refs: dict[str, Any] = {}
        where = f"cluster {address}" if address else "local runtime"
        self.description = f"Ray {where}, {self.capacity} cell(s) at a time, {'1 GPU' if self.use_gpu else '1 CPU'} per cell"

    def has_room(self) -> bool:
        return len(self.refs) < self.capacity

    def submit(self, job: Job) -> None:
        path = job.spec.data_path
        if path not in self.data_refs:
            self.data_refs[path] = self.ray.put(Path(path).read_bytes())
        log_dir = str(self.log_dir) if self.log_dir else None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self.refs[self.task.remote(job.spec.to_json(), self.data_refs[path], self.timeout_s, job.log_name, log_dir, socket.gethostname())] = job

    def wait(self, timeout_s: float) -> list[tuple[Job, Record]]:
        if not self.refs:
            return []
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=timeout_s, fetch_local=True)
        out = []
        for ref in ready:
            job = self.refs.pop(ref)
            try:
                result = self.ray.get(ref)
                self._keep_log(job, result["log"])
                out.append((job, Record.from_dict(result["record"], f"Ray result of cell {job.cell.key}")))
            except self.ray.exceptions.RayError as e:  # the task's process or node died
                rec = empty_record(job.spec)
                rec.status, rec.error = "error", f"Ray task failed: {type(e).__name__}: {str(e)[:500]}"
                out.append((job, rec))
        return out

    def _keep_log(self, job: Job, text: str | None) -> None:
        """A log sent back from another host, written where a local cell's would be."""
        if self.log_dir is not None and text is not None:
            (self.log_dir / job.log_name).write_text(text)

    def running(self) -> int:
        return len(self.refs)

    def stop(self) -> None:
        """Cancel every task: the task's KeyboardInterrupt makes the launcher kill its cell process."""
        refs = list(self.refs)
        for ref in refs:
            self.ray.cancel(ref, force=False)
        _, left = self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S) if refs else ([], [])
        for ref in left:
            self.ray.cancel(ref, force=True)
        self.refs.clear()

    def close(self) -> None:
        self.ray.shutdown()
