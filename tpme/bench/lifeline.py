"""A cell process dies with the process that launched it.

The launcher keeps the write end of a pipe and never writes to it; the cell holds the read
end. When the launcher exits for any reason, SIGKILL included, the kernel closes the write
end and the cell's read returns end-of-file: the cell then removes its working folder and
kills its own process group (itself and anything it started). A pipe works on every POSIX
system and does not depend on which thread started the cell, unlike PR_SET_PDEATHSIG.
"""
from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path


def _die_with_launcher(fd: int, workdir: Path | None) -> None:
    while True:
        try:
            if not os.read(fd, 1):  # end-of-file: every write end is closed, the launcher is gone
                break
        except InterruptedError:
            continue
        except OSError:
            break
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)
    if os.getpgrp() == os.getpid():  # the cell leads its own group: take its children with it
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def watch(fd: int, workdir: Path | None = None) -> threading.Thread:
    """Start the daemon thread that ends this process (and removes `workdir`) once the launcher is gone."""
    thread = threading.Thread(target=_die_with_launcher, args=(fd, workdir), name="tpme-lifeline", daemon=True)
    thread.start()
    return thread
