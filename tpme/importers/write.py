"""Imported records into a run directory through the results store, all or nothing.

A fresh RUN_DIR (missing or empty) gets a new results.jsonl. An existing non-empty one is
refused unless `append`: then its records are kept, a run already there (same cell key,
i.e. the same published file imported before) is skipped, and the new records are added.
The file is replaced atomically (`store.rewrite`), so an interrupted import leaves the old
file or the new one, never a part of either.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tpme.errors import TpmeError
from tpme.results.record import Record
from tpme.results.store import RESULTS_FILE, describe_damage, rewrite, scan


@dataclass
class Written:
    path: Path
    added: list[Record] = field(default_factory=list)
    already_there: list[Record] = field(default_factory=list)
    kept: int = 0  # records the file held before


def check_target(out_dir: Path, append: bool) -> None:
    """Refuse what the import must not write into, before anything is read."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TpmeError(f"--out {out_dir} is a file, not a directory", "give a directory path (it is created when missing)")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not append:
        raise TpmeError(f"--out {out_dir} exists and is not empty", "give a new or empty directory, or add --append to add these runs to the records there")


def write_records(out_dir: Path, records: list[Record], append: bool) -> Written:
    check_target(out_dir, append)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS_FILE
    existing = scan(path)
    if existing.bad:
        raise TpmeError(describe_damage(existing), "delete or fix the damaged line(s) named, or import into another directory")
    keys = {r["cell_key"] for r in existing.records}
    out = Written(path, kept=len(existing.records))
    lines = list(existing.lines)
    for rec in records:
        if rec.cell_key in keys:
            out.already_there.append(rec)
            continue
        keys.add(rec.cell_key)
        lines.append(json.dumps(rec.to_dict(), default=str, allow_nan=False).encode())
        out.added.append(rec)
    rewrite(path, lines)
    return out
