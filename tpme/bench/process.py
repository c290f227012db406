"""A cell in its own Python process (`python -m tpme.bench.worker`), so no allocator state,
cache or leak crosses cells; a crash, OOM, timeout or kill of that process becomes the
cell's record and the caller goes on. Executors (local, Ray) run cells through this."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from tpme.bench.cell import CellSpec, empty_record
from tpme.results.record import Record

LOG_TAIL = 2000


class CellProcesses:
    """Runs cells as subprocesses and can kill every one it is running (from another thread)."""

    def __init__(self, timeout_s: float | None = None, log_dir: str | Path | None = None):
        self.timeout_s = timeout_s
        self.log_dir = Path(log_dir) if log_dir else None
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def run(self, spec: CellSpec, env: dict[str, str] | None = None, log_name: str | None = None) -> Record:
        """`env` adds variables for this cell (an executor sets CUDA_VISIBLE_DEVICES); `log_name` names its log."""
        with tempfile.TemporaryDirectory(prefix="tpme-cell-") as tmp:
            spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
            spec_path.write_text(spec.to_json())
            log_name = log_name or f"{spec.method.replace(':', '_')}-r{spec.repeat}.log"
            log_path = (self.log_dir / log_name) if self.log_dir else Path(tmp, "cell.log")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(env or {}))
            with log_path.open("w") as log:
                proc = subprocess.Popen([sys.executable, "-m", "tpme.bench.worker", str(spec_path), str(result_path)], stdout=log, stderr=subprocess.STDOUT, env=env)
                with self._lock:
                    self._running.add(proc)
                try:
                    returncode = proc.wait(timeout=self.timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    returncode = None
                except BaseException:  # Ctrl-C or a cancelled Ray task: never leave the cell running
                    proc.kill()
                    proc.wait()
                    raise
                finally:
                    with self._lock:
                        self._running.discard(proc)
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
            for proc in self._running:
                proc.kill()
