"""Entry point of a cell's own process: `python -m tpme.bench.worker SPEC.json RESULT.json [LIFELINE_FD]`
(a fresh interpreter), or `main` called in a child the preloaded worker forked (tpme.bench.forkserver).

Every outcome becomes a record: ok, oom (an allocator's failure, with the memory at failure) or error (with
the traceback's last line and the full text in the record). The result file is written
atomically (temp file, then rename) so the parent never reads half a record.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from tpme.bench import lifeline
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


def _stamped(record: Record, launch: str, start: float) -> Record:
    """The record with how its process started and the seconds the cell spent in it."""
    data = record.to_dict()
    data.setdefault("provenance", {})["launch"] = {"mode": launch, "cell_s": time.perf_counter() - start}
    return Record.from_dict(data, f"record of cell {record.cell_key}")


def main(argv: list[str], launch: str = "fresh") -> int:
    """Run the cell and write its record. With LIFELINE_FD the cell dies with its launcher and then
    removes the spec file's folder (which the launcher made for this cell alone). `launch` (fresh or
    preloaded) and the seconds spent here go into the record's provenance, so the launch overhead
    (the caller's wall time minus `cell_s`) can be measured."""
    spec_path, result_path, *rest = argv
    if rest:
        lifeline.watch(int(rest[0]), Path(spec_path).parent)
    start = time.perf_counter()
    spec = CellSpec.from_json(Path(spec_path).read_text())
    try:
        record = run_cell(spec, on_step=lambda: print(".", end="", file=sys.stderr, flush=True), workdir=Path(spec_path).parent)
    except BaseException as exc:  # every failure is a result, Ctrl-C included
        write_atomic(result_path, _stamped(failure_record(spec, exc), launch, start))
        if isinstance(exc, KeyboardInterrupt):
            raise
        return 1
    write_atomic(result_path, _stamped(record, launch, start))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
