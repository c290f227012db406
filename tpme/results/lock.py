"""One writer per run folder: an exclusive, non-blocking lock on `<run folder>/.tpme.lock`.

Two `tpme run` (or `tpme sweep`) into one --out would interleave records and overwrite each
other's table, report and logs; the second one is refused (exit 2) naming the lock and the
process holding it. The lock is an flock, so the kernel releases it when its holder dies,
even by SIGKILL: a stale lock file never blocks a later run. Within one process the lock is
re-entrant (the CLI holds it around the driver, which takes it too). A run folder the lock
created is removed again when the block fails with a TpmeError before any record was written.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tpme.errors import TpmeError
from tpme.results.store import RESULTS_FILE

LOCK_FILE = ".tpme.lock"
_held: dict[str, list[int]] = {}  # real path of a lock file -> [fd, depth]


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="utf-8", errors="replace")[:20].strip()
    except OSError:
        return ""
    return f" by process {pid}" if pid.isdigit() else ""


@contextmanager
def run_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the run folder's lock (creating the folder) for the block; refuse when another process holds it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TpmeError(f"--out {out_dir} is a file, not a directory", "give a directory path (it is created when missing)")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TpmeError(f"cannot create the run folder {out_dir}: {e.strerror}", "give a writable --out") from None
    path = out_dir / LOCK_FILE
    key = os.path.realpath(path)
    if key in _held:
        _held[key][1] += 1
        try:
            yield path
        finally:
            _held[key][1] -= 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise TpmeError(f"cannot open the run folder's lock {path}: {e.strerror}", "give a writable --out (the lock must be a plain file)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TpmeError(f"{out_dir} is in use: its lock {path} is held{_holder(path)}", "wait until that run ends, or give another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held[key] = [fd, 1]
    try:
        yield path
    except TpmeError:
        if created and not (out_dir / RESULTS_FILE).exists():
            shutil.rmtree(out_dir, ignore_errors=True)  # refused before any record: leave no run folder behind
        raise
    finally:
        del _held[key]
        os.close(fd)
