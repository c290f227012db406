"""Non-finite numbers in a record: never `ok`, never written as bare NaN.

A diverged model gives NaN/inf losses or scores; JSON has no NaN, so a record holding one
could not be stored, and a metric computed from one is meaningless. `non_finite_fields`
names every such number; `fail_non_finite` turns a record holding any into a failed one
with those numbers removed, so the store always receives valid JSON.
"""
from __future__ import annotations

import math
from typing import Any

from tpme.results.record import Record

NON_FINITE_FIX = "the method diverged (NaN/inf loss or scores): lower the learning rate, use fp32 or bf16, or fix the method"


def non_finite_fields(obj: Any, where: str = "") -> list[str]:
    """Dotted paths of every NaN or infinite float in a JSON-like structure."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "(value)"]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite_fields(v, f"{where}.{k}" if where else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite_fields(v, f"{where}[{i}]")]
    return []


def _scrub(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_scrub(v) for v in obj]
    return obj


def describe(paths: list[str], shown: int = 5) -> str:
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return f"non-finite value(s) (NaN or inf) in {', '.join(paths[:shown])}{more}"


def fail_non_finite(record: Record) -> Record:
    """The record itself when every number is finite, else a failed copy without those numbers."""
    data = record.to_dict()
    paths = non_finite_fields(data)
    if not paths:
        return record
    data = _scrub(data)
    data["status"] = "error"
    previous = f"; {record.error}" if record.error else ""
    data["error"] = f"NonFiniteError: {describe(paths)} ({NON_FINITE_FIX}){previous}"
    return Record.from_dict(data, f"record of cell {record.cell_key}")
