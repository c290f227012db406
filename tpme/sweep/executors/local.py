"""The local executor: cells as subprocesses on this machine, one per visible GPU at a time
(CUDA_VISIBLE_DEVICES set per cell, so each sees its GPU as cuda:0), or N at a time on the CPU."""
from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from tpme.bench.process import CellProcesses
from tpme.bench.worker import failure_record
from tpme.results.record import Record
from tpme.sweep.executors.base import Job


def visible_gpus() -> list[str]:
    """GPU ids a child process can be given: CUDA_VISIBLE_DEVICES' entries when set, else 0..n-1."""
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in listed.split(",") if d.strip()] if listed is not None else [str(i) for i in range(count)]
    return ids[:count]


class LocalExecutor:
    def __init__(self, gpus: list[str], max_parallel: int | None, timeout_s: float | None, log_dir: Path):
        if gpus:
            self.slots: list[str | None] = list(gpus[: max_parallel or len(gpus)])
            self.description = f"local executor, {len(self.slots)} GPU(s): {', '.join(self.slots)}"
            self.env: dict[str, str] = {}
        else:
            n = max_parallel or 1
            self.slots = [None] * n
            self.description = f"local executor, {n} CPU process(es) at a time"
            # n processes each taking every core would fight over them
            self.env = {} if n == 1 or "OMP_NUM_THREADS" in os.environ else {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // n))}
        self.launcher = CellProcesses(timeout_s=timeout_s, log_dir=log_dir)
        self.pool = ThreadPoolExecutor(max_workers=len(self.slots), thread_name_prefix="tpme-cell")
        self.futures: dict[Future, tuple[Job, str | None]] = {}

    def has_room(self) -> bool:
        return bool(self.slots)

    def submit(self, job: Job) -> None:
        slot = self.slots.pop(0)
        env = dict(self.env) if slot is None else {"CUDA_VISIBLE_DEVICES": slot}
        self.futures[self.pool.submit(self.launcher.run, job.spec, env, job.log_name)] = (job, slot)

    def wait(self, timeout_s: float) -> list[tuple[Job, Record]]:
        done, _ = wait(list(self.futures), timeout=timeout_s, return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            job, slot = self.futures.pop(fut)
            self.slots.append(slot)
            exc = fut.exception()
            out.append((job, fut.result() if exc is None else _launcher_failure(job, exc)))
        return out

    def running(self) -> int:
        return len(self.futures)

    def stop(self) -> None:
        while self.futures:  # kill again until every cell returned: one may start its process late
            self.launcher.stop()
            done, _ = wait(list(self.futures), timeout=0.2)
            for fut in done:
                self.slots.append(self.futures.pop(fut)[1])

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _launcher_failure(job: Job, exc: BaseException) -> Record:
    try:
        raise exc
    except BaseException as e:  # failure_record reads the active traceback
        return failure_record(job.spec, e)
