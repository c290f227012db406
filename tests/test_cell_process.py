"""The cell process: forked by the preloaded worker or a fresh interpreter, with the same record;
it dies with its launcher (SIGKILL included) and leaves no temp folder behind; where the
preloaded worker cannot serve, cells start fresh and the run says why, once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tpme.bench import forkserver
from tpme.bench.cell import CellSpec
from tpme.bench.process import PRELOAD_ENV, CellProcesses

REPO = Path(__file__).resolve().parents[1]

HANG_PLUGIN = textwrap.dedent(
    '''
    import os
    import time
    from pathlib import Path

    from tpme.methods.frozen import Frozen
    from tpme.methods.registry import register_method


    @register_method("test-hang", "frozen, but its first forward writes its process id to $TPME_TEST_PIDFILE and sleeps forever")
    class Hang(Frozen):
        def build_tower(self, backbones, embed_dim):
            tower = super().build_tower(backbones, embed_dim)

            def hang(module, args):
                Path(os.environ["TPME_TEST_PIDFILE"]).write_text(str(os.getpid()))
                while True:
                    time.sleep(0.1)

            tower.register_forward_pre_hook(hang)
            return tower
    '''
)


def deterministic(record) -> dict:
    """Every field of a record that the same seed and config must reproduce exactly."""
    d = record.to_dict()
    return {
        "status": d["status"], "seed": d["seed"], "config": d["config"], "method_options": d["method_options"], "data": d["data"],
        "params": (d["trainable_params"], d["total_params"]), "memory": (d["peak_memory_bytes"], d["memory_source"]),
        "steps": (d["steps_per_epoch"], d["timing"]["steps"]), "losses": d["losses"],
        "quality": {k: v["value"] for k, v in d["quality"].get("metrics", {}).items()},
    }


def test_preloaded_and_fresh_cells_agree_on_every_deterministic_field(ci_config, ci_bundle_path, tmp_path):
    cfg = ci_config.replace(device="cpu", steps=2, warmup_steps=1, memory_steps=1)
    spec = CellSpec("lora", cfg.to_dict(), str(ci_bundle_path), cache_dir=str(tmp_path / "cache"))
    forked = CellProcesses(preload=True).run(spec)
    fresh = CellProcesses(preload=False).run(spec)
    assert forked.status == "ok", forked.error
    assert forked.provenance.extra["launch"]["mode"] == "preloaded" and fresh.provenance.extra["launch"]["mode"] == "fresh"
    assert forked.provenance.device["torch_threads"] == fresh.provenance.device["torch_threads"]
    assert deterministic(forked) == deterministic(fresh)
    assert forked.trainable_params > 0 and forked.peak_memory_bytes > 0 and forked.losses["first"] > 0


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds `marker` (a run and everything it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes() and "Z" not in (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]:
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc to find the run's processes")
@pytest.mark.parametrize("preload", ["1", "0"], ids=["preloaded", "fresh"])
def test_sigkill_of_tpme_run_kills_its_cell_and_leaves_no_temp_folder(tmp_path, preload):
    (tmp_path / "hang_plugin.py").write_text(HANG_PLUGIN)
    tmp, out, pidfile = tmp_path / "tmp", tmp_path / "run", tmp_path / "cell.pid"
    tmp.mkdir()
    marker = f"TPME_TEST_RUN_MARK={os.getpid()}-{preload}-{time.monotonic_ns()}"
    env = dict(os.environ, TMPDIR=str(tmp), TPME_TEST_PIDFILE=str(pidfile), PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]),
               **{PRELOAD_ENV: preload}, **dict([marker.split("=", 1)]))
    run = subprocess.Popen([sys.executable, "-m", "tpme.cli", "run", "--preset", "ci", "--methods", "test-hang", "--plugin", "hang_plugin", "--out", str(out),
                            "--cache-dir", str(tmp_path / "cache"), "--quiet", "--no-report"], env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not pidfile.is_file() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run.poll() is None, run.communicate()[1]
        cell = int(pidfile.read_text())
        assert os.getpgid(cell) == cell  # the cell leads its own process group
        assert list(out.glob("logs/tpme-cell-*"))  # its working folder, in the run's log folder
        run.kill()
        run.wait()
        deadline = time.monotonic() + 60
        while _processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_with(marker) == []  # the cell, the preloaded worker and anything else the run started
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert list(tmp.iterdir()) == [] and list(out.glob("logs/tpme-cell-*")) == []


def test_where_the_preloaded_worker_cannot_serve_cells_start_fresh_and_the_run_says_why_once(ci_config, ci_bundle_path, tmp_path, monkeypatch, capsys):
    """A thread running at start-up (here from a sitecustomize on PYTHONPATH) makes forking unsafe: the server refuses."""
    (tmp_path / "sitecustomize.py").write_text("import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), daemon=True, name='stray').start()\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(forkserver._POOL, "warned", False)
    cfg = ci_config.replace(device="cpu", steps=1, warmup_steps=0, memory_steps=0)
    launcher = CellProcesses()
    records = [launcher.run(CellSpec("frozen", cfg.to_dict(), str(ci_bundle_path), cache_dir=str(tmp_path / "cache"))) for _ in range(2)]
    assert [r.status for r in records] == ["ok", "ok"]
    assert [r.provenance.extra["launch"]["mode"] for r in records] == ["fresh", "fresh"]
    err = capsys.readouterr().err
    assert err.count("cells start as fresh interpreters") == 1 and "stray" in err


def test_a_killed_preloaded_cell_is_that_cells_status_and_the_worker_serves_the_next(ci_config, ci_bundle_path, tmp_path, monkeypatch):
    (tmp_path / "hang_plugin.py").write_text(HANG_PLUGIN)
    pidfile = tmp_path / "cell.pid"
    monkeypatch.setenv("TPME_TEST_PIDFILE", str(pidfile))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")]))
    cfg = ci_config.replace(device="cpu", steps=1, warmup_steps=0, memory_steps=0)
    launcher = CellProcesses(preload=True)
    hang = CellSpec("test-hang", cfg.to_dict(), str(ci_bundle_path), plugins=["hang_plugin"], cache_dir=str(tmp_path / "cache"))
    done = []
    runner = threading.Thread(target=lambda: done.append(launcher.run(hang)))
    runner.start()
    deadline = time.monotonic() + 300
    while not pidfile.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    runner.join(60)
    [killed] = done
    assert killed.status == "error" and "signal 9" in killed.error
    ok = launcher.run(CellSpec("frozen", cfg.to_dict(), str(ci_bundle_path), cache_dir=str(tmp_path / "cache")))
    assert ok.status == "ok" and ok.provenance.extra["launch"]["mode"] == "preloaded"
