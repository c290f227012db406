"""Bounded reads of files tpme did not write itself: a regular file, a size limit, a line limit.

A path may name a device (`/dev/zero` never ends), a FIFO (a read blocks forever) or a file
far larger than anything tpme writes; each is refused with a TpmeError naming the file and
the limit, before any byte is read. Files are opened non-blocking, so a path swapped for a
FIFO after the check still cannot hang a read.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from tpme.errors import TpmeError

MiB = 2**20


def check_regular(path: str | Path, what: str) -> os.stat_result:
    """The file's stat; a missing path, a directory, a device or a FIFO is a TpmeError."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        raise TpmeError(f"{what} {path} cannot be read: {e.strerror}", "give an existing regular file") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
        raise TpmeError(f"{what} {path} is {kind}, not a regular file", "give a regular file")
    return st


def check_size(path: str | Path, limit: int, what: str) -> os.stat_result:
    """A regular file of at most `limit` bytes (for a reader that opens the file itself)."""
    st = check_regular(path, what)
    _check_size(Path(path), st.st_size, limit, what)
    return st


def _check_size(path: Path, size: int, limit: int, what: str) -> None:
    if size > limit:
        raise TpmeError(f"{what} {path} has {size:,} bytes, more than the {limit:,} a {what} may have", "check that this is the right file")


def open_regular(path: str | Path, limit: int, what: str):
    """A binary file object of a regular file of at most `limit` bytes."""
    path = Path(path)
    check_regular(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise TpmeError(f"{what} {path} cannot be read: {e.strerror}", "check its permissions") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise TpmeError(f"{what} {path} is not a regular file", "give a regular file")
    try:
        _check_size(path, st.st_size, limit, what)
    except TpmeError:
        os.close(fd)
        raise
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(path: str | Path, limit: int, what: str) -> bytes:
    """The whole of a regular file of at most `limit` bytes (a file growing past it is refused too)."""
    with open_regular(path, limit, what) as f:
        data = f.read(limit + 1)
    _check_size(Path(path), len(data), limit, what)
    return data


def read_text(path: str | Path, limit: int, what: str, encoding: str = "utf-8") -> str:
    data = read_bytes(path, limit, what)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise TpmeError(f"{what} {path}: byte {data[e.start]:#04x} at offset {e.start} is not {encoding}", f"save the file as {encoding}") from None


def lines(path: str | Path, limit: int, line_limit: int, what: str) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line with its newline) of a regular file; a line longer than `line_limit` is a TpmeError."""
    with open_regular(path, limit, what) as f:
        read = 0
        for lineno in range(1, 1 << 62):
            raw = f.readline(line_limit + 1)
            if not raw:
                return
            read += len(raw)
            if len(raw) > line_limit:
                raise TpmeError(f"{path}:{lineno}: line longer than {line_limit:,} bytes", f"is {path} really a {what}?")
            _check_size(Path(path), read, limit, what)
            yield lineno, raw
