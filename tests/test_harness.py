"""Cells produce complete records; failures become statuses; the CPU memory tracker counts right."""
import json
import sys
import textwrap

import pytest
import torch

from tpme.bench.cell import CellSpec, run_cell
from tpme.bench.probes import TensorMemoryTracker
from tpme.bench.process import CellProcesses
from tpme.cli import main
from tpme.errors import TpmeError
from tpme.results.record import FLAT_FIELDS, SCHEMA
from tpme.results.store import load_records

FAILING_PLUGIN = textwrap.dedent(
    '''
    from tpme.methods.registry import Method, register_method

    @register_method("explodes", "raises while building its tower (test plugin)")
    class Explodes(Method):
        def build_tower(self, backbones, embed_dim):
            raise RuntimeError("boom from the test plugin")
    '''
)


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "failing_plugin.py").write_text(FAILING_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")
    return tmp_path


def test_in_process_record_is_complete(ci_config, ci_bundle_path):
    rec = run_cell(CellSpec("frozen", ci_config.to_dict(), str(ci_bundle_path))).to_dict()
    assert rec["status"] == "ok", rec.get("error")
    for key in FLAT_FIELDS:
        assert key in rec
    assert rec["schema"] == SCHEMA and rec["epoch_time_source"] == "extrapolated"
    assert rec["epoch_time_s"] == pytest.approx(rec["step_time_s"] * rec["steps_per_epoch"])
    assert 0 < rec["trainable_params"] < rec["total_params"]
    assert rec["peak_memory_bytes"] > 0 and rec["memory_source"] == "cpu_tensor_peak"
    assert set(rec["timing"]["breakdown_median_s"]) == {"data", "forward", "backward", "optimizer"}
    assert rec["timing"]["steps"] == ci_config.train.steps
    prov = rec["provenance"]
    assert prov["versions"]["torch"] and prov["device"]["type"] == "cpu"


def test_failing_cell_is_recorded_and_the_run_goes_on(ci_config, tmp_path, plugin_dir, capsys):
    code = main(["run", "--preset", "ci", "--methods", "explodes,frozen", "--plugin", "failing_plugin", "--out", str(tmp_path / "run"), "--timeout", "300", "--quiet", "--no-report", "--json"])
    assert code == 1
    records = json.loads(capsys.readouterr().out)
    by = {r["method"]: r for r in records}
    assert by["explodes"]["status"] == "error" and "boom from the test plugin" in by["explodes"]["error"]
    assert by["frozen"]["status"] == "ok"
    assert by["frozen"]["tpme"] == 0.0 and by["explodes"]["tpme"] is None
    assert [r.method for r in load_records(tmp_path / "run")] == ["explodes", "frozen"]
    assert (tmp_path / "run" / "table.md").read_text().count("explodes") == 1


def test_timeout_becomes_a_status(ci_config, ci_bundle_path):
    # a cell that cannot finish in time: a forked cell starts in a fraction of a second, so a
    # few ci steps alone may fit within the timeout on an idle machine
    endless = ci_config.replace(steps=100_000)
    rec = CellProcesses(timeout_s=1.0).run(CellSpec("fft", endless.to_dict(), str(ci_bundle_path)))
    assert rec.status == "timeout" and "timeout" in rec.error


def test_truncated_results_line_is_detected(tmp_path):
    (tmp_path / "results.jsonl").write_text('{"schema": "tpme.result/1", "method": "a", "status": "error"}\n{"schema": "tpme.re')
    with pytest.raises(TpmeError, match="results.jsonl:2"):
        load_records(tmp_path)


def test_tensor_tracker_counts_live_storages_once():
    tracker = TensorMemoryTracker()
    with tracker:
        a = torch.zeros(1000)  # 4000 bytes
        view = a[10:20]  # shares a's storage
        b = torch.ones(500, dtype=torch.float64)  # 4000 bytes
        assert tracker.current == 8000
        del b
        assert tracker.current == 4000
        del view
    assert tracker.peak == 8000 and tracker.current == 4000
