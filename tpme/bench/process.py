"""A cell in its own process, so no allocator state, cache or leak crosses cells; a crash, OOM,
timeout or kill of that process becomes the cell's record and the caller goes on. Executors
(local, Ray) run cells through this.

The process is forked by a preloaded worker (tpme.bench.forkserver) where fork is safe, else
a fresh `python -m tpme.bench.worker` (say so once on stderr; TPME_PRELOAD=0 asks for it).
Either way it leads its own process group, dies with this process (tpme.bench.lifeline) and
works in a folder of its own that it removes if this process dies first; the folder lives in
the run's log folder when there is one.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Protocol

from tpme.bench import forkserver
from tpme.bench.cell import CellSpec, empty_record
from tpme.results.record import Record

LOG_TAIL = 2000
PRELOAD_ENV = "TPME_PRELOAD"  # 0: every cell starts a fresh interpreter


def preload_wanted() -> bool:
    return os.environ.get(PRELOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


class _Cell(Protocol):
    def wait(self, timeout_s: float | None) -> int | None: ...

    def kill(self) -> None: ...


class _FreshCell:
    """A cell in a fresh interpreter started here."""

    def __init__(self, argv: list[str], log, env: dict[str, str]):
        lifeline_r, lifeline_w = os.pipe()
        self._lifeline_w: int | None = lifeline_w
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "tpme.bench.worker", *argv, str(lifeline_r)], stdout=log, stderr=subprocess.STDOUT,
                                         env=env, pass_fds=(lifeline_r,), start_new_session=True)
        except BaseException:
            os.close(lifeline_w)
            raise
        finally:
            os.close(lifeline_r)

    def wait(self, timeout_s: float | None) -> int | None:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
        if self._lifeline_w is not None:
            os.close(self._lifeline_w)
            self._lifeline_w = None
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:  # not yet reaped: its pid is still its group's
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class _ForkedCell:
    """A cell forked by a preloaded worker, which goes back to the pool when the cell ends."""

    def __init__(self, server: forkserver.ForkServer, argv: list[str], log_path: Path, env: dict[str, str]):
        self.server = server
        server.start(argv, str(log_path), env, os.getcwd())

    def wait(self, timeout_s: float | None) -> int | None:
        code = self.server.wait(timeout_s)
        if code is not None and self.server.alive():
            forkserver.release(self.server)
        return code

    def kill(self) -> None:
        self.server.kill()


class CellProcesses:
    """Runs cells as processes of their own and can kill every one it is running (from another thread)."""

    def __init__(self, timeout_s: float | None = None, log_dir: str | Path | None = None, preload: bool | None = None):
        self.timeout_s = timeout_s
        self.log_dir = Path(log_dir) if log_dir else None
        self.preload = preload_wanted() if preload is None else preload
        self._running: set[_Cell] = set()
        self._lock = threading.Lock()

    def _launch(self, argv: list[str], log_path: Path, log, env: dict[str, str]) -> _Cell:
        if self.preload:
            try:
                return _ForkedCell(forkserver.acquire(env, os.getcwd()), argv, log_path, env)
            except forkserver.PreloadUnavailable as e:
                forkserver.warn_once(str(e))
        return _FreshCell(argv, log, env)

    def run(self, spec: CellSpec, env: dict[str, str] | None = None, log_name: str | None = None) -> Record:
        """`env` adds variables for this cell (an executor sets CUDA_VISIBLE_DEVICES); `log_name` names its log."""
        log_name = log_name or f"{spec.method.replace(':', '_')}-r{spec.repeat}.log"
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tpme-cell-", dir=self.log_dir) as tmp:
            spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
            spec_path.write_text(spec.to_json())
            log_path = (self.log_dir / log_name) if self.log_dir else Path(tmp, "cell.log")
            env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(env or {}))
            with log_path.open("w") as log:
                cell = self._launch([str(spec_path), str(result_path)], log_path, log, env)
                with self._lock:
                    self._running.add(cell)
                try:
                    returncode = cell.wait(self.timeout_s)
                    if returncode is None:
                        cell.kill()
                        cell.wait(None)
                except BaseException:  # Ctrl-C or a cancelled Ray task: never leave the cell running
                    cell.kill()
                    cell.wait(None)
                    raise
                finally:
                    with self._lock:
                        self._running.discard(cell)
            if result_path.is_file():
                return Record.from_dict(json.loads(result_path.read_text()), f"result of cell {spec.key}")
            rec = empty_record(spec)
            tail = log_path.read_text(errors="replace")[-LOG_TAIL:]
            if returncode is None:
                rec.status, rec.error = "timeout", f"cell exceeded its timeout of {self.timeout_s:g} s"
            elif returncode < 0:
                rec.status, rec.error = "error", f"cell process killed by signal {-returncode}" + (" (SIGKILL: possibly out of host memory)" if returncode == -9 else "")
            else:
                rec.status, rec.error = "error", f"cell process exited {returncode} without a result: {tail.strip()[-500:]}"
            rec.log_tail = tail
            return rec

    def stop(self) -> None:
        """Kill every cell process this object is running; their `run` calls return."""
        with self._lock:
            for cell in self._running:
                cell.kill()
