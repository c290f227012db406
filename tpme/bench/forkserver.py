"""The preloaded worker: a process that imports torch, transformers, peft and tpme once and then
forks a fresh child per cell, so a cell starts in a fraction of a second instead of paying
every import again (about 3.7 s on a 2-core machine).

Each cell is still a process of its own, forked from the same clean, never-used state: the
server never runs a tensor operation, never initialises CUDA and never starts a thread (it
checks all three after preloading and refuses to serve otherwise), so the child starts as a
fresh interpreter would, minus the imports; CUDA is initialised in the child only.

Protocol (one cell at a time per server, over pipes handed over at start):
parent -> server: {"argv", "log", "env", "cwd"}; server -> parent: {"pid"}, then {"exit"}.
The finished child stays a zombie until the next request, so its pid (and process group)
cannot be reused while the parent may still signal it. The parent also holds the write end
of a lifeline pipe the server and every child inherit (tpme.bench.lifeline): when the parent
dies, the children kill themselves and the server reads end-of-file and exits.

Servers are pooled per process (a run, a test session, a Ray worker) and reused only for
cells whose environment, apart from CUDA_VISIBLE_DEVICES, equals the one they started with:
libraries read their environment at import time, CUDA reads its own in the child.
"""
from __future__ import annotations

import gc
import importlib
import json
import os
import pkgutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

PRELOAD = ("torch", "transformers", "peft", "tpme.bench.worker")
PRELOAD_PACKAGES = ("tpme.bench", "tpme.methods", "tpme.scenarios", "tpme.datasets", "tpme.models", "tpme.training", "tpme.estimate")
PER_CELL_ENV = ("CUDA_VISIBLE_DEVICES",)  # read when CUDA initialises, which happens in the child only
START_TIMEOUT_S = 600.0
ERROR_TAIL = 2000


class PreloadUnavailable(RuntimeError):
    """The preloaded worker cannot serve here; the caller launches a fresh interpreter instead."""


# ---- server side: `python -m tpme.bench.forkserver REQ_FD RESP_FD LIFELINE_FD` ----


def _preload() -> str | None:
    """Import everything a cell imports; the reason forking is unsafe afterwards, or None."""
    for name in PRELOAD:
        importlib.import_module(name)
    for package in PRELOAD_PACKAGES:
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            try:
                importlib.import_module(info.name)
            except ImportError:  # an optional requirement of a method: the cell reports it if it needs it
                continue
    from tpme.methods.registry import available_methods

    available_methods()
    import torch

    if torch.cuda.is_initialized():
        return "importing tpme initialised CUDA, and a forked child cannot use it"
    if threading.active_count() > 1:
        return f"importing tpme started threads ({', '.join(t.name for t in threading.enumerate())}), which a fork does not copy"
    return None


def _exit_code(pid: int) -> int:
    """The child's exit, as subprocess reports it (negative: killed by that signal), leaving it a zombie."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _child(request: dict[str, Any], close: tuple[int, ...], lifeline_fd: int) -> None:
    """In the forked child: become the cell's own process (group, output, folder, environment) and run it."""
    code = 1
    try:
        os.setpgid(0, 0)
        for fd in close:
            os.close(fd)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from tpme.bench import worker

        code = worker.main([*request["argv"], str(lifeline_fd)], launch="preloaded")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child must never return into the server's loop
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def serve(req_fd: int, resp_fd: int, lifeline_fd: int) -> int:
    requests, replies = Connection(req_fd, writable=False), Connection(resp_fd, readable=False)
    reason = _preload()
    replies.send_bytes(json.dumps({"ready": reason is None, "reason": reason}).encode())
    if reason is not None:
        return 1
    gc.freeze()  # the children's collections then skip (and never copy) the preloaded objects
    previous = None
    while True:
        try:
            request = json.loads(requests.recv_bytes())
        except EOFError:  # the parent closed the pool or died
            break
        if previous is not None:
            os.waitpid(previous, 0)  # the parent has its exit and will not signal it again
        pid = os.fork()
        if pid == 0:
            _child(request, (req_fd, resp_fd), lifeline_fd)
        try:
            os.setpgid(pid, pid)  # also here: the parent may signal the group before the child ran setpgid
        except OSError:
            pass
        try:
            replies.send_bytes(json.dumps({"pid": pid}).encode())
            replies.send_bytes(json.dumps({"exit": _exit_code(pid)}).encode())
        except OSError:  # the parent is gone; the child dies by its lifeline
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return 0
        previous = pid
    if previous is not None:
        os.waitpid(previous, 0)
    return 0


# ---- parent side ----


def fork_safe() -> str | None:
    """Why this platform cannot use the preloaded worker, or None."""
    if sys.platform != "linux":
        return f"fork without exec is unsafe on {sys.platform} (system frameworks are not fork-safe)"
    if not hasattr(os, "waitid"):
        return "os.waitid is missing"
    return None


def _pool_key(env: dict[str, str], cwd: str) -> tuple:
    return (sys.executable, cwd, tuple(sorted((k, v) for k, v in env.items() if k not in PER_CELL_ENV)))


class ForkServer:
    """One preloaded worker process, driven by one thread at a time."""

    def __init__(self, env: dict[str, str], cwd: str):
        self.key = _pool_key(env, cwd)
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        self._lifeline_r, self._lifeline_w = os.pipe()
        self._errors = tempfile.TemporaryFile()  # the server's own output; unlinked already, so never left behind
        server_env = {k: v for k, v in env.items() if k not in PER_CELL_ENV}
        server_env["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # a stray torch.cuda.is_available() must not initialise the driver
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tpme.bench.forkserver", str(req_r), str(resp_w), str(self._lifeline_r)],
                pass_fds=(req_r, resp_w, self._lifeline_r), stdin=subprocess.DEVNULL, stdout=self._errors, stderr=self._errors,
                env=server_env, cwd=cwd, start_new_session=True,  # no terminal Ctrl-C: the driver stops cells itself
            )
        finally:
            for fd in (req_r, resp_w, self._lifeline_r):
                os.close(fd)
        self._requests, self._replies = Connection(req_w, readable=False), Connection(resp_r, writable=False)
        hello = self._recv(START_TIMEOUT_S, "starting")
        if not hello.get("ready"):
            self.close()
            raise PreloadUnavailable(hello.get("reason") or "the preloaded worker refused to serve")
        self.pid: int | None = None  # the running cell's
        self._lock = threading.Lock()

    def _recv(self, timeout_s: float | None, doing: str) -> dict[str, Any]:
        try:
            if timeout_s is not None and not self._replies.poll(timeout_s):
                raise TimeoutError
            return json.loads(self._replies.recv_bytes())
        except (EOFError, OSError, TimeoutError):
            self.close()
            self._errors.seek(0)
            tail = self._errors.read().decode(errors="replace")[-ERROR_TAIL:].strip()
            raise PreloadUnavailable(f"the preloaded worker failed while {doing}" + (f": {tail}" if tail else "")) from None

    def start(self, argv: list[str], log: str, env: dict[str, str], cwd: str) -> int:
        """Fork a child that runs `tpme.bench.worker.main(argv)`; its pid (and process group)."""
        self._requests.send_bytes(json.dumps({"argv": argv, "log": log, "env": env, "cwd": cwd}).encode())
        with self._lock:
            self.pid = int(self._recv(START_TIMEOUT_S, "forking a cell")["pid"])
        return self.pid

    def wait(self, timeout_s: float | None) -> int | None:
        """The child's exit code (negative: the signal that killed it), or None when `timeout_s` passed first."""
        if timeout_s is not None and not self._replies.poll(timeout_s):
            return None
        try:
            code = int(self._recv(None, "running a cell")["exit"])
        except PreloadUnavailable:  # the server died under its child: end the child, report what is known
            self.kill()
            with self._lock:
                self.pid = None
            return -signal.SIGKILL
        with self._lock:
            self.pid = None
        return code

    def kill(self) -> None:
        """SIGKILL the running cell's process group (a no-op once its exit was read)."""
        with self._lock:
            if self.pid is not None:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """End the server: closing its request pipe and lifeline makes it exit (its idle child is reaped)."""
        for conn in ("_requests", "_replies"):
            c = getattr(self, conn, None)
            if c is not None and not c.closed:
                c.close()
        if self._lifeline_w is not None:
            os.close(self._lifeline_w)
            self._lifeline_w = None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._errors.close()


@dataclass
class _Pool:
    idle: list[ForkServer]
    lock: threading.Lock
    warned: bool = False


_POOL = _Pool([], threading.Lock())


def acquire(env: dict[str, str], cwd: str) -> ForkServer:
    """An idle server for this environment, or a new one (raises PreloadUnavailable)."""
    key = _pool_key(env, cwd)
    with _POOL.lock:
        for server in list(_POOL.idle):
            _POOL.idle.remove(server)
            if server.key == key and server.alive():
                return server
            server.close()  # another environment (a test's PYTHONPATH, another thread count) or dead
    reason = fork_safe()
    if reason:
        raise PreloadUnavailable(reason)
    return ForkServer(env, cwd)


def release(server: ForkServer) -> None:
    with _POOL.lock:
        _POOL.idle.append(server)


def warn_once(reason: str) -> None:
    """Say once per process why cells start as fresh interpreters."""
    with _POOL.lock:
        if _POOL.warned:
            return
        _POOL.warned = True
    print(f"tpme: cells start as fresh interpreters (slower): {reason}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(serve(*(int(a) for a in sys.argv[1:4])))
