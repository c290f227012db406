"""A sweep directory's record files: detection and repair of damaged lines, and compaction.

results.jsonl holds one final record per cell (ok, oom, or the last failure once its
attempts are spent); attempts.jsonl logs every finished attempt, which is how --retries
counts across resumed runs. Both are appended one whole line per write (record.append_record);
a line that does not parse can only be the tail of a write cut short by a crash.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpme.bench.record import RESULTS_FILE
from tpme.errors import TpmeError

ATTEMPTS_FILE = "attempts.jsonl"
FINAL_STATUSES = ("ok", "oom")  # results: never re-run; error and timeout are retried


@dataclass
class Scan:
    """A record file read line by line: the good lines (raw and parsed) and the damaged ones."""

    path: Path
    lines: list[bytes] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    bad: list[tuple[int, bytes]] = field(default_factory=list)  # (line number, raw text)


def scan(path: Path) -> Scan:
    out = Scan(path)
    if not path.is_file():
        return out
    raw = path.read_bytes().split(b"\n")
    for lineno, line in enumerate(raw, 1):
        if not line.strip():
            continue
        complete = lineno < len(raw)  # the piece after the last newline is an unfinished line
        try:
            rec = json.loads(line) if complete else None
        except ValueError:
            rec = None
        if isinstance(rec, dict) and "cell_key" in rec:
            out.lines.append(line)
            out.records.append(rec)
        else:
            out.bad.append((lineno, line))
    return out


def describe_damage(s: Scan) -> str:
    where = ", ".join(f"line {n} ({len(text)} bytes)" for n, text in s.bad)
    return f"{s.path}: {len(s.bad)} damaged record line(s), left by an interrupted write: {where}"


def rewrite(path: Path, lines: list[bytes]) -> None:
    """Replace a record file atomically: a crash leaves either the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(b"".join(line + b"\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def repair(s: Scan) -> Path:
    """Move damaged lines aside to FILE.corrupt (appended, never lost) and keep the good ones."""
    corrupt = s.path.with_name(s.path.name + ".corrupt")
    with corrupt.open("ab") as f:
        f.write(b"".join(text + b"\n" for _, text in s.bad))
        f.flush()
        os.fsync(f.fileno())
    rewrite(s.path, s.lines)
    return corrupt


@dataclass
class SweepState:
    """What earlier runs of a sweep left: final records by cell key and attempts spent per key."""

    results: Scan
    attempts: Scan

    @classmethod
    def open(cls, out_dir: Path, resume: bool, notify) -> "SweepState":
        results, attempts = scan(out_dir / RESULTS_FILE), scan(out_dir / ATTEMPTS_FILE)
        damaged = [s for s in (results, attempts) if s.bad]
        if not resume:
            if results.lines or attempts.lines or damaged:
                found = "; ".join([f"{len(results.records)} result(s) in {results.path}"] + [describe_damage(s) for s in damaged])
                raise TpmeError(f"{out_dir} already holds a sweep: {found}", "add --resume to continue it (damaged lines are then moved aside), or give another --out")
            return cls(results, attempts)
        for s in damaged:
            notify(describe_damage(s) + f"; moved to {repair(s)}")
        return cls(results, attempts)

    def final(self) -> dict[str, dict[str, Any]]:
        return {r["cell_key"]: r for r in self.results.records}

    def attempts_spent(self) -> Counter:
        return Counter(r["cell_key"] for r in self.attempts.records)

    def forget(self, keys: set[str]) -> None:
        """Drop the final records of cells about to run again, so results.jsonl keeps one per cell."""
        kept = [(line, r) for line, r in zip(self.results.lines, self.results.records) if r["cell_key"] not in keys]
        if len(kept) != len(self.results.records):
            rewrite(self.results.path, [line for line, _ in kept])
            self.results.lines, self.results.records = [line for line, _ in kept], [r for _, r in kept]
