"""What the driver asks of an executor: take attempts while it has room, hand back finished
ones as they come, and stop everything it runs on request. The one launch abstraction."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tpme.bench.cell import CellSpec
from tpme.results.record import Record
from tpme.sweep.grid import Cell


@dataclass
class Job:
    """One attempt at one cell."""

    cell: Cell
    spec: CellSpec
    attempt: int  # 1-based, counted over every run of the sweep

    @property
    def log_name(self) -> str:
        return f"{self.cell.key}-{self.cell.method.replace(':', '_')}-a{self.attempt}.log"


class Executor(Protocol):
    description: str

    def has_room(self) -> bool: ...

    def submit(self, job: Job) -> None: ...

    def wait(self, timeout_s: float) -> list[tuple[Job, Record]]: ...

    def running(self) -> int: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...
