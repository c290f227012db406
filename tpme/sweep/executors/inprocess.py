"""The in-process executor: each cell runs in the driver's own process, one at a time.

Fast to start, for tests and debugging, but cells share allocator state, caches and
imports, and a crash of a cell is a crash of the run: never for measurements to publish.
"""
from __future__ import annotations

from tpme.bench.cell import run_cell
from tpme.bench.worker import failure_record
from tpme.results.record import Record
from tpme.sweep.executors.base import Job


class InProcessExecutor:
    description = "in-process executor (cells share this process: for tests and debugging)"

    def __init__(self) -> None:
        self.pending: list[Job] = []

    def has_room(self) -> bool:
        return not self.pending

    def submit(self, job: Job) -> None:
        self.pending.append(job)

    def wait(self, timeout_s: float) -> list[tuple[Job, Record]]:
        done = []
        while self.pending:
            job = self.pending.pop(0)
            try:
                done.append((job, run_cell(job.spec)))
            except Exception as exc:  # failure_record reads the active traceback
                done.append((job, failure_record(job.spec, exc)))
        return done

    def running(self) -> int:
        return len(self.pending)

    def stop(self) -> None:
        self.pending.clear()

    def close(self) -> None:
        return None
