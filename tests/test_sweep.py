"""Sweeps: spec validation, the grid, damaged record files, and ci-preset sweeps on the local
executor and a local Ray runtime (killed workers, retries, Ctrl-C and --resume)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tpme.cli import main
from tpme.errors import TpmeError
from tpme.results.record import Record
from tpme.results.store import ATTEMPTS_FILE, RESULTS_FILE, append_record
from tpme.sweep import driver
from tpme.sweep.driver import DriverOptions as SweepOptions
from tpme.sweep.spec import SpecErrors, load_spec
from tpme.sweep.state import RunState as SweepState

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FAST = "  device: cpu\n  steps: 1\n  warmup_steps: 0\n  memory_steps: 0\n"  # the cheapest ci cell


@pytest.fixture
def plugin_path(monkeypatch):
    """Cell subprocesses (and Ray workers) find tests/sweep_plugin.py through PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(TESTS))


def expand(spec):
    return spec.cells()


def run_sweep(spec, opts, notify=lambda m: None):
    """The driver on a spec's cells, as `tpme sweep` calls it; records as written to disk."""
    outcome = driver.run(driver.Plan(f"sweep {spec.name}", spec.cells(), spec.plugins, spec.cache_dir, spec_path=spec.path), opts, notify=notify)
    outcome.records = [r.to_dict() for r in outcome.records]
    return outcome


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_malformed_spec_reports_every_error_with_its_location(tmp_path, capsys):
    spec = write(tmp_path / "bad.yaml", """\
preset: nope
settings:
  batch_size: eight
  lr: 1e-4
  colour: red
axes:
  method: [fft, no-such-method]
  seed: [0, 0]
  device: [cuda:1]
method_options:
  fft: {rank: [4]}
repeats: 0
extra: 1
""")
    with pytest.raises(SpecErrors) as info:
        load_spec(spec)
    problems = "\n".join(info.value.problems)
    expected = [
        ("bad.yaml:1: preset:", "unknown preset"),
        ("bad.yaml:3: settings.batch_size:", "must be an integer"),
        ("bad.yaml:4: settings.lr:", "write 1.0e-4"),
        ("bad.yaml:5: settings.colour:", "unknown setting"),
        ("bad.yaml:7: axes.method[1]:", "unknown method 'no-such-method'"),
        ("bad.yaml:8: axes.seed[1]:", "duplicate value 0"),
        ("bad.yaml:9: axes.device[0]:", "places each cell"),
        ("bad.yaml:11: method_options.fft.rank[0]:", "no option(s) rank"),
        ("bad.yaml:12: repeats:", "integer >= 1"),
        ("bad.yaml:13: extra:", "unknown key"),
    ]
    for where, what in expected:
        assert any(where in p and what in p for p in info.value.problems), f"{where} {what} not in:\n{problems}"
    assert len(info.value.problems) == len(expected)
    assert main(["sweep", str(spec)]) == 2  # bad input: exit 2, every problem printed
    err = capsys.readouterr().err
    assert sum(1 for line in err.splitlines() if line.startswith("  ") and "bad.yaml:" in line) == len(expected)


def test_toml_spec_errors_name_the_key_path(tmp_path):
    spec = write(tmp_path / "bad.toml", '[settings]\nsteps = "x"\n[axes]\nmethod = ["fft"]\nbatch_size = 4\n')
    with pytest.raises(SpecErrors) as info:
        load_spec(spec)
    assert [p.split(": ")[1] for p in info.value.problems] == ["settings.steps", "axes.batch_size"]


def test_boolean_settings_are_accepted_and_yaml_off_is_explained(tmp_path):
    spec = load_spec(write(tmp_path / "ok.yaml", "preset: ci\nsettings:\n  compile: false\n  eval: true\naxes:\n  method: [fft]\n  cuda_graphs: [auto, 'off']\n"))
    assert spec is not None
    with pytest.raises(SpecErrors) as info:
        load_spec(write(tmp_path / "bad.yaml", "preset: ci\naxes:\n  method: [fft]\n  cuda_graphs: [auto, off]\n"))
    assert "axes.cuda_graphs[1]: must be a string, got False (YAML reads on/off/yes/no as true/false: quote it)" in info.value.problems[0]


def test_option_axes_apply_to_their_method_only_and_keys_are_deterministic(tmp_path, plugin_path):
    spec = write(tmp_path / "grid.toml", """\
preset = "ci"
plugins = ["sweep_plugin"]
[axes]
method = ["fft", "test-ranked"]
seed = [0, 1]
[method_options.test-ranked]
rank = [4, 8, 16]
""")
    cells = expand(load_spec(spec))
    assert len(cells) == 2 * (1 + 3)
    assert {c.axes["rank"] for c in cells if c.method == "test-ranked"} == {4, 8, 16}
    assert all("rank" not in c.axes and not c.options for c in cells if c.method == "fft")
    assert len({c.key for c in cells}) == len(cells)
    assert [c.key for c in cells] == [c.key for c in expand(load_spec(spec))]
    ranked = next(c for c in cells if c.method == "test-ranked")
    assert ranked.options == {"rank": str(ranked.axes["rank"])} and ranked.config.train.seed == ranked.axes["seed"]


def test_partial_trailing_line_is_detected_and_moved_aside_on_resume(tmp_path):
    results = tmp_path / RESULTS_FILE
    record = Record("fft", status="error", cell_key="k0", config={"preset": "ci"}).to_dict()
    append_record(results, record)
    with results.open("ab") as f:
        f.write(b'{"schema": "tpme.result/1", "cell_k')  # a write cut short by a crash
    with pytest.raises(TpmeError, match=r"damaged record line\(s\).*line 2"):
        SweepState.open(tmp_path, resume=False, notify=print)
    messages: list[str] = []
    state = SweepState.open(tmp_path, resume=True, notify=messages.append)
    assert list(state.final()) == [record["cell_key"]]
    assert "line 2" in messages[0] and "moved to" in messages[0]
    assert (tmp_path / (RESULTS_FILE + ".corrupt")).read_bytes().startswith(b'{"schema": "tpme.result/1", "cell_k')
    assert lines_of(results) == [record]


def test_killed_worker_is_recorded_failed_then_retried_on_resume(tmp_path, plugin_path):
    marker = tmp_path / "killed-once"
    spec = load_spec(write(tmp_path / "kill.yaml", f"preset: ci\nplugins: [sweep_plugin]\nsettings:\n{FAST}axes:\n  method: [test-kill-once]\nmethod_options:\n  test-kill-once: {{marker: '{marker}'}}\n"))
    out = tmp_path / "sweep"
    first = run_sweep(spec, SweepOptions(out, retries=1, progress=False))
    assert marker.exists() and first.launched == 1
    [failed] = first.records
    assert failed["status"] == "error" and "signal 9" in failed["error"] and failed["attempt"] == 1
    again = run_sweep(spec, SweepOptions(out, retries=1, resume=True, progress=False))
    assert again.launched == 0  # attempts spent: stays failed
    retried = run_sweep(spec, SweepOptions(out, retries=2, resume=True, progress=False))
    assert retried.launched == 1
    [ok] = retried.records
    assert ok["status"] == "ok" and ok["attempt"] == 2 and ok["cell_key"] == failed["cell_key"]
    assert [r["status"] for r in lines_of(out / ATTEMPTS_FILE)] == ["error", "ok"]
    assert lines_of(out / RESULTS_FILE) == [ok]


def test_interrupted_sweep_resumes_with_only_what_is_missing(tmp_path):
    spec_path = write(tmp_path / "two.yaml", f"preset: ci\nsettings:\n{FAST}axes:\n  method: [frozen]\n  seed: [0, 1]\n")
    out = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from tpme.cli import main; sys.exit(main())", "sweep", str(spec_path), "--out", str(out), "--quiet"], stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 300
    while not ((out / RESULTS_FILE).is_file() and (out / RESULTS_FILE).read_text().count("\n")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    os.kill(proc.pid, signal.SIGINT)  # the driver only: it must stop its running cell itself
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume with: tpme sweep" in err
    done = lines_of(out / RESULTS_FILE)  # every line whole
    assert len(done) == 1 and done[0]["status"] == "ok"
    with (out / RESULTS_FILE).open("ab") as f:
        f.write(b'{"cut')
    outcome = run_sweep(load_spec(spec_path), SweepOptions(out, resume=True, progress=False), notify=lambda m: None)
    assert outcome.launched == 1
    keys = [c.key for c in expand(load_spec(spec_path))]
    assert [r["cell_key"] for r in outcome.records] == keys and all(r["status"] == "ok" for r in outcome.records)
    assert sorted(r["cell_key"] for r in lines_of(out / RESULTS_FILE)) == sorted(keys)
    assert (out / (RESULTS_FILE + ".corrupt")).read_bytes() == b'{"cut\n'


@pytest.mark.ray
def test_ray_local_runtime_yields_the_local_executors_cell_keys(tmp_path):
    pytest.importorskip("ray")
    spec_path = write(tmp_path / "ray.yaml", f"preset: ci\nsettings:\n{FAST}axes:\n  method: [fft, frozen]\n")
    spec = load_spec(spec_path)
    outcome = run_sweep(spec, SweepOptions(tmp_path / "ray", executor="ray", max_parallel=1, progress=False), notify=lambda m: None)
    assert [r["status"] for r in outcome.records] == ["ok", "ok"]
    assert [r["cell_key"] for r in outcome.records] == [c.key for c in expand(spec)]
    assert [r["axes"] for r in outcome.records] == [{"method": "fft"}, {"method": "frozen"}]


@pytest.mark.parametrize("example", sorted((REPO / "examples" / "sweeps").glob("*.*")), ids=lambda p: p.name)
def test_shipped_example_specs_are_valid(example):
    assert expand(load_spec(example))


def test_run_and_sweep_of_one_configuration_write_the_same_fields(tmp_path):
    """`tpme run` is a sweep of one configuration: its records and a sweep's carry the same fields."""
    spec_path = write(tmp_path / "one.yaml", "preset: ci\nsettings:\n  device: cpu\n  steps: 1\n  warmup_steps: 0\naxes:\n  method: [frozen]\n")
    assert main(["sweep", str(spec_path), "--out", str(tmp_path / "s"), "--executor", "inprocess", "--quiet"]) == 0
    assert main(["run", "--preset", "ci", "--methods", "frozen", "--device", "cpu", "--steps", "1", "--warmup-steps", "0",
                 "--out", str(tmp_path / "r"), "--executor", "inprocess", "--quiet", "--no-report"]) == 0
    (swept,), (ran,) = lines_of(tmp_path / "s" / RESULTS_FILE), lines_of(tmp_path / "r" / RESULTS_FILE)

    def shape(d: dict) -> dict:
        return {k: shape(v) if isinstance(v, dict) and k not in ("axes", "extra", "details") else type(v).__name__ for k, v in d.items()}

    assert set(swept) == set(ran)
    for key in ("timing", "memory", "quality", "provenance", "execution", "config"):
        assert set(shape(swept[key])) == set(shape(ran[key])), key
    assert swept["baselines"].keys() == ran["baselines"].keys() == {"popularity"}
