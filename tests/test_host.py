"""Host state around a cell: CPU burners this test starts and stops itself must be seen, named,
warned about, and refused by --require-idle. The machine is shared, so the tests assert what
the burners cause (busy, their CPU time counted and named), never that the host is otherwise idle."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from records_factory import record

from tpme.bench.host import HostMonitor, Usage, available_cores, busy_reasons, snapshot
from tpme.cli import main
from tpme.results.record import Provenance, Record


@contextmanager
def burners(per_core: int = 1) -> Iterator[list[psutil.Process]]:
    """`per_core` busy-looping processes per available core, stopped on exit; yields once every one
    is looping (a loaded machine can take seconds to start an interpreter)."""
    procs = [subprocess.Popen([sys.executable, "-S", "-c", "print('ready', flush=True)\nwhile True: pass"], stdout=subprocess.PIPE, text=True)
             for _ in range(per_core * available_cores())]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        yield [psutil.Process(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def cpu_seconds(procs: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_busy_rule_counts_the_cores_a_cell_leaves_free() -> None:
    s = snapshot(with_gpu=False)
    s.cpu_available = 8
    quiet = Usage(2.0, 1.2, [])
    assert busy_reasons(quiet, cell_cores=6, snapshots=[s]) == []  # 2 cores free, 1.2 used by others
    assert busy_reasons(quiet, cell_cores=8, snapshots=[s])  # no core free: 1.2 > 0 + margin
    s.gpu_processes = [{"gpu": 0, "pid": 7, "name": "trainer", "used_memory_bytes": 2**30}]
    assert busy_reasons(quiet, cell_cores=6, snapshots=[s]) == ["another process on GPU 0: trainer (pid 7, 1.00 GiB)"]


def test_snapshot_has_load_cpu_and_memory() -> None:
    s = snapshot(with_gpu=False)
    assert len(s.load_avg) == 3 and s.cpu_count >= s.cpu_available >= 1 and s.cpu_model
    assert 0 < s.memory_available_bytes <= s.memory_total_bytes and s.timestamp.endswith("+00:00")


def test_monitor_counts_and_names_the_burners_beside_a_workload() -> None:
    """Whatever else the shared machine runs, the CPU the burners got is counted as other load, and named."""
    with burners() as procs:
        monitor = HostMonitor(cell_cores=available_cores(), gpu=False)
        before = cpu_seconds(procs)
        monitor.start_window()
        _spin(2.0)
        state = monitor.finish()
        burned = (cpu_seconds(procs) - before) / state.window.seconds
    assert state.busy and "other processes used" in state.reasons[0]
    assert state.window.other_cores >= 0.9 * burned
    named = {p["pid"] for p in state.window.top}
    assert burned < 0.02 * len(procs) or {p.pid for p in procs} & named, f"burners got {burned:.2f} cores, not among {state.window.top}"


def test_contention_warning_fires_beside_a_cell(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    # three burners per core: beside the cell's own thread they take well over the cores it leaves
    # free plus the rule's half-core margin, whatever the scheduler does within a short window
    with burners(per_core=3):
        code = main(["run", "--preset", "ci", "--methods", "frozen", "--steps", "6", "--executor", "inprocess", "--out", str(out), "--no-report", "--quiet",
                     "--cache-dir", str(tmp_path / "cache")])
    captured = capsys.readouterr()
    assert code == 0
    assert "frozen: the host was busy while it was measured" in captured.err
    assert "WARNING: the host was busy while these were measured" in captured.out
    rec = Record.from_dict(json.loads((out / "results.jsonl").read_text().splitlines()[0]))
    host = rec.provenance.host_state
    assert rec.provenance.host_busy and host["other_cpu_load"] > 0.5 and host["window"]["top"]
    assert rec.provenance.timestamp and rec.provenance.seed == rec.seed == 0
    assert host["before"]["cpu_model"] and host["before"]["memory_total_bytes"] > 0 and len(host["after"]["load_avg"]) == 3
    assert len(rec.timing.epoch_time_ci_s) == 2 and rec.timing.epoch_time_ci_s[0] <= rec.epoch_time_s <= rec.timing.epoch_time_ci_s[1]


def test_require_idle_refuses_a_busy_host_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    with burners():
        code = main(["run", "--preset", "ci", "--methods", "frozen", "--require-idle", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "host is busy" in err and "other processes used" in err and "--require-idle" in err


def test_older_records_read_and_new_provenance_round_trips() -> None:
    old = record("fft", 10.0, 1, 1).to_dict()  # the factory writes current records: made old by dropping the newer fields
    for key in ("host_state", "seed"):
        old["provenance"].pop(key, None)
    for key in ("median_ci_s", "epoch_time_ci_s", "ci_level", "outlier_steps"):
        old["timing"].pop(key, None)
    assert "host_state" not in old["provenance"] and "epoch_time_ci_s" not in old["timing"]
    r = Record.from_dict(old)
    assert not r.provenance.host_busy and r.provenance.host_reasons == [] and r.timing.epoch_time_ci_s == []
    r.provenance = Provenance(timestamp="2026-01-01T00:00:00+00:00", seed=3, host_state={"busy": True, "reasons": ["x"]})
    r.timing.epoch_time_ci_s, r.timing.outlier_steps = [9.0, 11.0], [2]
    back = Record.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.provenance.seed == 3 and back.provenance.host_busy and back.provenance.host_reasons == ["x"]
    assert back.timing.epoch_time_ci_s == [9.0, 11.0] and back.timing.outlier_steps == [2]
