"""Entry point of a cell's own process: `python -m tpme.bench.worker SPEC.json RESULT.json`.

Every outcome becomes a record: ok, oom (an allocator's failure, with the memory at failure) or error (with
the traceback's last line and the full text in the record). The result file is written
atomically (temp file, then rename) so the parent never reads half a record.
"""
from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import torch

from tpme.bench.cell import CellSpec, empty_record, run_cell
from tpme.results.record import Memory, Record


# what an allocator that ran out of device or host memory says; nothing else is an oom
ALLOCATOR_OOM = ("CUDA out of memory", "HIP out of memory", "MPS backend out of memory", "DefaultCPUAllocator: can't allocate memory")


def is_oom(exc: BaseException) -> bool:
    """Only a real allocator failure is `oom` (a result, never retried). A bare MemoryError is
    not: Python raises it for absurd sizes read from corrupt data too, which is an error."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in ALLOCATOR_OOM)


def failure_record(spec: CellSpec, exc: BaseException) -> Record:
    """The cell's record for a failure: its status, the error and the traceback (read from the active exception)."""
    rec = empty_record(spec)
    rec.status = "oom" if is_oom(exc) else "error"
    rec.error = f"{type(exc).__name__}: {exc}".strip()
    rec.traceback = traceback.format_exc()
    if rec.status == "oom" and torch.cuda.is_available():
        rec.memory = Memory(allocated_at_failure_bytes=torch.cuda.memory_allocated(), peak_allocated_bytes=torch.cuda.max_memory_allocated())
    return rec


def write_atomic(path: str | Path, record: Record) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record.to_dict(), default=str))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    spec = CellSpec.from_json(Path(spec_path).read_text())
    try:
        record = run_cell(spec, on_step=lambda: print(".", end="", file=sys.stderr, flush=True))
    except BaseException as exc:  # every failure is a result, Ctrl-C included
        record = failure_record(spec, exc)
        write_atomic(result_path, record)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return 1
    write_atomic(result_path, record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
