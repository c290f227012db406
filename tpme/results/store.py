"""Record files: results.jsonl (one record per line) and attempts.jsonl, written append-safe.

An append is one `write` of one whole line, fsynced, so a crash can only leave an unfinished
last line, never a mixed one; `scan` finds such damage, `repair` moves it aside (nothing is
ever deleted) and `load_records` refuses a damaged file with the line number and the fix.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpme.errors import TpmeError
from tpme.files import check_regular, lines, read_bytes
from tpme.results.record import Record

RESULTS_FILE = "results.jsonl"
ATTEMPTS_FILE = "attempts.jsonl"


RECORD_FILE_LIMIT = 4 * 2**30  # a sweep of 100k cells is well below
RECORD_LINE_LIMIT = 64 * 2**20


def append_record(path: str | Path, record: Record | dict[str, Any]) -> None:
    """Append one whole line. An unfinished last line (a crash mid-write) is first ended, so
    the new record never fuses with it: the damage stays on its own line for `scan`/`repair`."""
    data = record.to_dict() if isinstance(record, Record) else record
    line = (json.dumps(data, default=str, allow_nan=False) + "\n").encode()
    if os.path.lexists(path):
        check_regular(path, "record file")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Scan:
    """A record file read line by line: the good lines (raw and parsed) and the damaged ones."""

    path: Path
    lines: list[bytes] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    bad: list[tuple[int, bytes]] = field(default_factory=list)  # (line number, raw text)


def scan(path: Path) -> Scan:
    out = Scan(path)
    if not os.path.lexists(path):
        return out
    raw = read_bytes(path, RECORD_FILE_LIMIT, "record file").split(b"\n")
    for lineno, line in enumerate(raw, 1):
        if not line.strip():
            continue
        complete = lineno < len(raw)  # the piece after the last newline is an unfinished line
        try:
            rec = json.loads(line) if complete else None
        except (ValueError, RecursionError):
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


def load_records(path: str | Path) -> list[Record]:
    """Validated records of a results.jsonl or of a run directory holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not os.path.lexists(path):
        raise TpmeError(f"no results file at {path}", "give a results.jsonl or a run directory written by `tpme run`")
    records = []
    for lineno, raw in lines(path, RECORD_FILE_LIMIT, RECORD_LINE_LIMIT, "results file"):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError:  # not JSON, not UTF-8, or nested past the parser's depth
            raise TpmeError(f"{path}:{lineno}: not a JSON record (a partial line from an interrupted run?)", "delete that line or re-run the cell") from None
        except RecursionError:
            raise TpmeError(f"{path}:{lineno}: a JSON value nested too deeply", "delete that line or re-run the cell") from None
        records.append(Record.from_dict(data, f"{path}:{lineno}"))
    return records
