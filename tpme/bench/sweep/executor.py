"""What the sweep driver asks of an executor: take attempts while it has room, hand back
finished ones as they come, and stop everything it runs on request."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tpme.bench.cell import CellSpec
from tpme.bench.sweep.grid import Cell


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

    def wait(self, timeout_s: float) -> list[tuple[Job, dict[str, Any]]]: ...

    def running(self) -> int: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...
