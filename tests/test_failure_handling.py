"""Hostile input and crashes (issue 19): no false `ok`, no bare NaN on disk, no lost or
mixed records, bounded parsing of untrusted files, and exit-2 messages instead of tracebacks."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tpme.cli import main
from tpme.errors import TpmeError
from tpme.results.record import Record
from tpme.results.store import ATTEMPTS_FILE, RESULTS_FILE, append_record

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FAST = ["--preset", "ci", "--device", "cpu", "--steps", "1", "--warmup-steps", "0", "--quiet", "--no-report"]


@pytest.fixture
def hostile_plugin(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.syspath_prepend(str(TESTS))


def strict_json_lines(path: Path) -> list[dict]:
    """Every line parsed as strict JSON: NaN and Infinity are not JSON."""
    def refuse(name):
        raise AssertionError(f"bare {name} in {path}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines() if line.strip()]


# --- non-finite numbers -------------------------------------------------------------

def test_nan_target_score_is_never_a_hit_and_ties_never_rank_below_zero():
    from tpme.scenarios.recommendation.ranking import hit_ndcg, target_ranks

    scores = torch.full((2, 5), float("nan"))
    ranks = target_ranks(scores, torch.tensor([1, 3]))
    assert ranks.tolist() == [4, 4]
    hit, ndcg = hit_ndcg(ranks, 3)
    assert hit.tolist() == [0.0, 0.0] and ndcg.tolist() == [0.0, 0.0]
    # a NaN candidate counts above a finite target; a lone target never gets rank -1
    assert target_ranks(torch.tensor([[0.0, float("nan"), 0.5]]), torch.tensor([2])).tolist() == [1]
    assert target_ranks(torch.tensor([[float("-inf"), 0.5]]), torch.tensor([1])).min() >= 0


def test_evaluator_refuses_non_finite_scores():
    from tpme.scenarios.recommendation.evaluate import _rank_all

    hist = torch.tensor([[0, 1, 2]]).numpy()
    target = torch.tensor([3]).numpy()
    with pytest.raises(TpmeError, match="NaN or infinite"):
        _rank_all(lambda h: torch.full((len(h), 5), float("nan")), hist, target, torch.device("cpu"))


def test_diverged_method_is_an_error_and_results_hold_strict_json(tmp_path, hostile_plugin, capsys):
    out = tmp_path / "run"
    code = main(["run", "--methods", "test-nan", "--plugin", "hostile_plugin", "--eval", "--executor", "inprocess", "--out", str(out), *FAST])
    assert code == 1
    [rec] = strict_json_lines(out / RESULTS_FILE)
    assert rec["status"] == "error" and "NonFiniteError" in rec["error"] and "NaN" in rec["error"]
    assert strict_json_lines(out / ATTEMPTS_FILE)[0]["status"] == "error"


def test_a_non_finite_record_from_any_executor_is_failed_and_stored_without_nan():
    from tpme.results.finite import fail_non_finite

    rec = Record("m", status="ok", cell_key="k", epoch_time_s=1.0, trainable_params=1, peak_memory_bytes=1, losses={"first": 1.0, "last": float("nan")})
    failed = fail_non_finite(rec)
    assert failed.status == "error" and "losses.last" in failed.error and failed.losses["last"] is None
    assert fail_non_finite(Record("m", status="ok", cell_key="k", epoch_time_s=1.0, trainable_params=1, peak_memory_bytes=1)).status == "ok"


# --- oom classification -------------------------------------------------------------

def _cell_spec():
    from tpme.bench.cell import CellSpec

    return CellSpec("frozen", {"preset": "ci", "train": {"seed": 0, "precision": "fp32"}}, "data.npz")


def _classified(exc: BaseException):
    from tpme.bench.worker import failure_record

    try:
        raise exc
    except BaseException as e:  # noqa: BLE001 - the worker's own handler, replayed
        return failure_record(_cell_spec(), e)


@pytest.mark.parametrize("exc", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                 RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes")],
                         ids=["cuda", "cpu-allocator"])
def test_worker_classifies_allocator_failures_as_oom(exc):
    rec = _classified(exc)
    assert rec.status == "oom" and type(exc).__name__ in rec.error and rec.traceback


@pytest.mark.parametrize("exc", [MemoryError(), ValueError("pixel size 99999 out of memory layout"), RuntimeError("the image is out of memory bounds")],
                         ids=["memoryerror-from-corrupt-value", "valueerror", "runtimeerror-not-allocator"])
def test_worker_does_not_call_corrupt_data_an_oom(exc):
    rec = _classified(exc)
    assert rec.status == "error"


# --- record files -------------------------------------------------------------------

def _ok_record(key="k0", **over) -> dict:
    rec = Record("fft", status="ok", cell_key=key, epoch_time_s=1.0, trainable_params=10, peak_memory_bytes=100, config={"preset": "ci"}).to_dict()
    rec.update(over)
    return rec


def test_append_after_a_half_written_line_keeps_the_new_record_whole(tmp_path):
    from tpme.results.store import scan

    results = tmp_path / RESULTS_FILE
    append_record(results, _ok_record("k0"))
    with results.open("ab") as f:
        f.write(b'{"schema": "tpme.result/2", "cell_k')
    append_record(results, _ok_record("k1"))
    s = scan(results)
    assert [r["cell_key"] for r in s.records] == ["k0", "k1"]
    assert [n for n, _ in s.bad] == [2]


def test_run_into_a_folder_with_a_damaged_last_line_is_refused_without_resume(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / RESULTS_FILE).write_bytes(json.dumps(_ok_record()).encode() + b'\n{"schema": "tpme.res')
    before = (out / RESULTS_FILE).read_bytes()
    assert main(["run", "--methods", "frozen", "--executor", "inprocess", "--out", str(out), *FAST]) == 2
    assert "damaged record line" in capsys.readouterr().err
    assert (out / RESULTS_FILE).read_bytes() == before


@pytest.mark.parametrize("line", [b"[1, 2, 3]", b'"text"', b"[" * 100000, b'{"schema": "tpme.result/2", "method": "fft", "status": "ok", "epoch_time_s": "fast", "trainable_params": 1, "peak_memory_bytes": 1}'],
                         ids=["json-list", "json-string", "deep-nesting", "text-for-number"])
@pytest.mark.parametrize("command", ["score", "report"])
def test_bad_results_lines_are_exit_2_with_the_line_number(tmp_path, capsys, line, command):
    results = tmp_path / RESULTS_FILE
    results.write_bytes(json.dumps(_ok_record()).encode() + b"\n" + line + b"\n")
    argv = [command, str(results)] + (["--out", str(tmp_path / "report")] if command == "report" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{results}:2" in err and "Traceback" not in err


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_record_files_that_are_not_regular_files_are_refused(tmp_path, kind):
    from tpme.results.store import load_records, scan

    path = tmp_path / RESULTS_FILE
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(TpmeError, match="not a regular file"):
        load_records(path)
    with pytest.raises(TpmeError, match="not a regular file"):
        scan(path)
    with pytest.raises(TpmeError, match="not a regular file"):
        append_record(path, _ok_record())


# --- one writer per run folder ------------------------------------------------------

@pytest.fixture
def locked_run_dir(tmp_path):
    """A run folder whose lock another process holds (as a running `tpme run` would)."""
    import subprocess
    import sys

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; from tpme.results.lock import run_lock\n"
                               "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(120)", str(out)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    yield out, holder.pid
    holder.kill()
    holder.wait()


def test_second_run_into_a_locked_folder_exits_2_naming_the_lock(locked_run_dir, capsys):
    out, pid = locked_run_dir
    assert main(["run", "--methods", "frozen", "--executor", "inprocess", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert ".tpme.lock" in err and f"process {pid}" in err and "another --out" in err
    assert not (out / RESULTS_FILE).exists() and not (out / "table.md").exists()


def test_second_sweep_into_a_locked_folder_exits_2(locked_run_dir, tmp_path, capsys):
    out, _ = locked_run_dir
    spec = tmp_path / "s.yaml"
    spec.write_text("preset: ci\nsettings:\n  device: cpu\n  steps: 1\n  warmup_steps: 0\naxes:\n  method: [frozen]\n")
    assert main(["sweep", str(spec), "--executor", "inprocess", "--out", str(out), "--quiet"]) == 2
    assert ".tpme.lock" in capsys.readouterr().err


def test_lock_is_released_when_the_run_ends_and_rerun_needs_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--methods", "frozen", "--executor", "inprocess", "--out", str(out), *FAST]) == 0
    before = (out / RESULTS_FILE).read_bytes()
    assert main(["run", "--methods", "frozen", "--executor", "inprocess", "--out", str(out), *FAST]) == 2
    assert "--resume" in capsys.readouterr().err and (out / RESULTS_FILE).read_bytes() == before
    assert main(["run", "--methods", "frozen", "--executor", "inprocess", "--out", str(out), "--resume", *FAST]) == 0
    assert (out / RESULTS_FILE).read_bytes() == before  # the finished cell is not run again


@pytest.mark.parametrize("argv", [["--timeout", "0"], ["--timeout", "-1"], ["--timeout", "nan"], ["--timeout", "inf"], ["--retries", "0"], ["--max-parallel", "0"]])
@pytest.mark.parametrize("command", ["run", "sweep"])
def test_numeric_options_are_refused_before_any_work(tmp_path, capsys, argv, command):
    out = tmp_path / "out"
    spec = tmp_path / "s.yaml"
    spec.write_text("preset: ci\naxes:\n  method: [frozen]\n")
    head = ["run", "--methods", "frozen", *FAST] if command == "run" else ["sweep", str(spec), "--quiet"]
    assert main([*head, "--out", str(out), *argv]) == 2
    assert argv[0] in capsys.readouterr().err
    assert not out.exists()


def test_out_naming_a_file_is_exit_2(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("keep me")
    assert main(["run", "--methods", "frozen", "--out", str(out), *FAST]) == 2
    assert "is a file" in capsys.readouterr().err and out.read_text() == "keep me"


# --- resume -------------------------------------------------------------------------

def test_resume_recovers_an_ok_cell_whose_results_line_was_cut(tmp_path):
    """The ok attempt is in attempts.jsonl but the results line was cut by a crash: the cell is
    done (its record recovered), not failed with its attempts spent, and is not re-run."""
    from tpme.sweep import driver
    from tpme.sweep.spec import load_spec

    spec_path = tmp_path / "s.yaml"
    spec_path.write_text("preset: ci\nsettings:\n  device: cpu\n  steps: 1\n  warmup_steps: 0\n  memory_steps: 0\naxes:\n  method: [frozen]\n")
    spec = load_spec(spec_path)
    [cell] = spec.cells()
    out = tmp_path / "sweep"
    out.mkdir()
    ok = _ok_record(cell.key, attempt=1)
    line = json.dumps(ok).encode()
    (out / RESULTS_FILE).write_bytes(line[: len(line) // 2])  # the results append cut short
    append_record(out / ATTEMPTS_FILE, ok)
    outcome = driver.run(driver.Plan("sweep s", spec.cells(), spec_path=spec.path), driver.DriverOptions(out, executor="inprocess", retries=1, resume=True, progress=False), notify=lambda m: None)
    assert outcome.launched == 0
    assert [r.status for r in outcome.records] == ["ok"] and outcome.records[0].cell_key == cell.key
    assert [r["cell_key"] for r in strict_json_lines(out / RESULTS_FILE)] == [cell.key]


# --- the IISAN cache ----------------------------------------------------------------

@pytest.fixture(scope="module")
def cache_setup(ci_bundle_path):
    from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures
    from tpme.datasets.bundle import DataBundle
    from tpme.models.backbones import Backbones, BackboneSpec

    bundle = DataBundle.load(ci_bundle_path)
    torch.manual_seed(0)
    backbones = Backbones.build(BackboneSpec.parse("tiny"))
    return bundle, backbones, ItemFeatures(bundle, frozenset({TEXT, IMAGE}), backbones.image_size, int(bundle.info["pad_id"]))


def _built_cache(tmp_path, cache_setup):
    from tpme.methods.iisan import cache as hc

    bundle, backbones, features = cache_setup
    spec = hc.BuildSpec([0, 2], [0, 2], "fp32", "fp32", batch_size=32)
    _, info = hc.ensure(tmp_path, backbones, bundle, features, spec, torch.device("cpu"))
    return Path(info["cache_dir"]), info, lambda: hc.ensure(tmp_path, backbones, bundle, features, spec, torch.device("cpu"))


def _edit_manifest(directory: Path, edit) -> None:
    path = directory / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_naming_a_file_outside_its_key_folder_is_never_used(tmp_path, cache_setup):
    directory, info, ensure = _built_cache(tmp_path, cache_setup)
    outside = tmp_path / "elsewhere.npy"
    outside.write_bytes((directory / "text.npy").read_bytes())  # same bytes, same sha: only the place differs
    (directory / "text.npy").unlink()
    _edit_manifest(directory, lambda m: m["files"]["text"].update(name=str(outside)))
    again, info2 = ensure()
    assert info2["cache"] == "rebuilt" and "text.npy" in info2["rebuild_reason"]
    assert (directory / "text.npy").is_file()


def test_foreign_array_of_nan_with_a_matching_manifest_is_rebuilt(tmp_path, cache_setup):
    import numpy as np

    directory, info, ensure = _built_cache(tmp_path, cache_setup)
    good = np.load(directory / "text.npy")
    np.save(directory / "text.npy", np.full_like(good, np.nan))
    _edit_manifest(directory, lambda m: m["files"]["text"].update(bytes=(directory / "text.npy").stat().st_size, sha256=_sha256(directory / "text.npy")))
    arrays, info2 = ensure()
    assert info2["cache"] == "rebuilt" and "NaN" in info2["rebuild_reason"]
    assert bool(torch.isfinite(arrays["text"]).all())


@pytest.mark.parametrize("edit", [lambda m: m.update(files=["text.npy", "image.npy"]), lambda m: m["files"]["text"].update(bytes="many"),
                                  lambda m: m["files"]["image"].update(shape="big"), lambda m: m.update(dtype=7), lambda m: m.update(text_layers="0,2")],
                         ids=["files-list", "bytes-text", "shape-text", "dtype-int", "layers-text"])
def test_wrongly_typed_manifest_is_a_status_and_can_be_cleared(tmp_path, cache_setup, capsys, edit):
    directory, _, _ = _built_cache(tmp_path, cache_setup)
    _edit_manifest(directory, edit)
    assert main(["cache", "info", "--cache-dir", str(tmp_path), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["status"].startswith("unreadable manifest")
    assert main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert not directory.exists()


def test_symlinked_key_folder_is_listed_and_cleared_without_touching_its_target(tmp_path, cache_setup, capsys):
    directory, _, _ = _built_cache(tmp_path / "real", cache_setup)
    link_root = tmp_path / "linked" / "iisan-hidden"
    link_root.mkdir(parents=True)
    (link_root / directory.name).symlink_to(directory, target_is_directory=True)
    assert main(["cache", "info", "--cache-dir", str(tmp_path / "linked"), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert "symbolic link" in row["status"]
    assert main(["cache", "clear", "--cache-dir", str(tmp_path / "linked")]) == 0
    assert not (link_root / directory.name).exists() and (directory / "manifest.json").is_file()


def test_cache_that_needs_a_rebuild_in_a_read_only_folder_names_the_reason(tmp_path, cache_setup, monkeypatch):
    from tpme.methods.iisan import cache as hc

    directory, _, ensure = _built_cache(tmp_path, cache_setup)
    (directory / "text.npy").write_bytes(b"\x93NUMPY")  # truncated
    def read_only(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(hc.shutil, "rmtree", read_only)
    with pytest.raises(TpmeError) as e:
        ensure()
    assert "Permission denied" in str(e.value) and "truncated" in str(e.value) and "--cache-dir" in str(e.value)


def test_cache_build_takes_runs_dataset_flags(tmp_path, capsys):
    """Its own error names --missing-images; `cache build` must accept it (and the other dataset flags of run)."""
    from tpme.datasets.synth_writer import write_synthetic_dataset

    files = write_synthetic_dataset(tmp_path / "data", "tiny", image_size=8)
    for png in sorted(files.images.iterdir())[::2]:
        png.unlink()  # half the items lose their image
    base = ["cache", "build", "--preset", "ci", "--dataset", str(tmp_path / "data"), "--device", "cpu", "--cache-dir", str(tmp_path / "cache"), "--json"]
    assert main(base) == 2
    assert "--missing-images" in capsys.readouterr().err
    assert main([*base, "--missing-images", "blank", "--max-users", "40"]) == 0
    assert json.loads(capsys.readouterr().out)["cache"] == "built"


# --- LMDB image values --------------------------------------------------------------

def _peak_bytes_while(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    except Exception:  # noqa: BLE001 - only the memory is measured here
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.parametrize("value", [
    b"\x80\x02cbuiltins\nbytearray\nJ\x00\x00\x00\x10\x85R.",  # bytearray(256 MiB) from 27 bytes
    b"\x80\x02K\x01r\x00\x00\x00\x01.",  # LONG_BINPUT at index 2**24: the C unpickler sizes its memo by it (128 MiB)
], ids=["bytearray-by-size", "huge-memo-index"])
def test_lmdb_value_cannot_allocate_by_a_size_it_claims(value):
    from tpme.datasets.image_stores import load_lmdb_image

    assert _peak_bytes_while(lambda: load_lmdb_image(value)) < 8 * 2**20
    with pytest.raises(ValueError, match="size|memo"):
        load_lmdb_image(value)


@pytest.mark.parametrize("value", [
    b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x07\x00\x00\x00nocodec\x86R.",
    b"\x80\x02cbuiltins\nbytes\nX\x01\x00\x00\x00x\x85R.",
    b"\x80\x02cbuiltins\nobject\n)R}X\x01\x00\x00\x00aK\x01sb.",
    b"\x80\x02cbuiltins\nbytearray\n\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01\x85R.",
    b"\x80\x02]q\x00.",
], ids=["LookupError", "TypeError", "AttributeError", "OverflowError", "not-an-image"])  # ids: what the bare unpickler raised
def test_corrupt_lmdb_values_are_a_message_not_a_traceback(tmp_path, value):
    """Each value is a TpmeError from the store (exit 2 from a command, an error status in a cell)."""
    lmdb = pytest.importorskip("lmdb")
    from tpme.datasets.image_stores import LmdbImages

    store = tmp_path / "images.lmdb"
    env = lmdb.open(str(store), map_size=2**22, subdir=False)
    with env.begin(write=True) as txn:
        txn.put(b"I1", value)
    env.close()
    with pytest.raises(TpmeError, match="image of item 'I1'"):
        LmdbImages(str(store), ["I1"], [True], "error").load("I1")


# --- untrusted files: type, size, structure -----------------------------------------

@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_users_file_that_never_ends_or_blocks_is_refused(tmp_path, capsys, kind):
    from tpme.datasets.synth_writer import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", "tiny", image_size=8)
    users = tmp_path / "users.tsv"
    if kind == "fifo":
        os.mkfifo(users)
    else:
        users.symlink_to("/dev/zero")
    assert main(["data", "check", str(tmp_path / "data"), "--users", str(users)]) == 2
    err = capsys.readouterr().err
    assert "not a regular file" in err and str(users) in err


def test_dataset_line_longer_than_the_limit_is_refused(tmp_path, monkeypatch, capsys):
    from tpme.datasets import readers
    from tpme.datasets.synth_writer import write_synthetic_dataset

    write_synthetic_dataset(tmp_path / "data", "tiny", image_size=8)
    monkeypatch.setattr(readers, "DATASET_LINE_LIMIT", 64)
    assert main(["data", "check", str(tmp_path / "data")]) == 2
    assert "line longer than 64 bytes" in capsys.readouterr().err


@pytest.mark.parametrize("text,why", [
    ("name: x\npreset: ci\naxes: &a\n  method: [frozen]\n  more: *a\n", "contains it"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "preset: ci\n", "values once its aliases"),
    ("axes: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
], ids=["self-referencing-anchor", "billion-laughs", "deep-nesting"])
def test_yaml_spec_structure_is_bounded(tmp_path, capsys, text, why):
    import time

    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    t0 = time.perf_counter()
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert why in err and "Traceback" not in err
    assert time.perf_counter() - t0 < 60  # guards against a hang only; the bound is MAX_NODES


def test_oversized_spec_is_refused(tmp_path, capsys):
    spec = tmp_path / "big.yaml"
    spec.write_text("preset: ci\n" + "# padding\n" * 200_000)
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "more than the" in capsys.readouterr().err


def test_plugin_raising_on_import_is_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "--plugin", "broken_plugin", "--methods", "frozen", "--out", str(tmp_path / "out"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "broken_plugin" in err and "boom at import" in err and "Traceback" not in err


# --- output escaping ----------------------------------------------------------------

HOSTILE_LABELS = ['=HYPERLINK("http://x","y")', "+1+2", "-2+3", "@SUM(A1)", "\tTAB", "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))"]


def _hostile_results(tmp_path) -> Path:
    path = tmp_path / RESULTS_FILE
    for i, label in enumerate(HOSTILE_LABELS):
        append_record(path, _ok_record(f"k{i}", method=f"m{i}", label=label, epoch_time_s=1.0 + i))
    return path


def test_table_csv_cells_never_start_a_formula(tmp_path):
    import csv

    assert main(["report", str(_hostile_results(tmp_path)), "--out", str(tmp_path / "rep"), "--format", "csv"]) == 0
    [csv_file] = list((tmp_path / "rep").glob("*.csv"))
    rows = list(csv.reader(csv_file.open()))
    labels = [r[0] for r in rows[1:]]
    assert sorted(labels) == sorted("'" + label if label[0] in "=+-@\t" else label for label in HOSTILE_LABELS)
    assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for r in rows[1:] for cell in r if not cell.lstrip("-").replace(".", "", 1).replace("e", "", 1).replace("-", "").isdigit())


def test_report_md_and_table_md_carry_no_live_html_or_links(tmp_path):
    from tpme.metrics.tpme import Weights
    from tpme.reports.table import render_markdown
    from tpme.results.store import load_records

    results = _hostile_results(tmp_path)
    assert main(["report", str(results), "--out", str(tmp_path / "rep"), "--format", "md"]) == 0
    for text in ((tmp_path / "rep" / "report.md").read_text(), render_markdown(load_records(results), Weights.parse("paper"))):
        assert "<script" not in text and "<img" not in text and "[x](javascript:" not in text
        assert "&lt;script&gt;" in text and "\\[x\\](javascript:" in text


def test_spec_name_cannot_move_the_sweep_folder_out_of_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "s.yaml"
    spec.write_text("name: ../../../escaped\npreset: ci\nsettings:\n  device: cpu\n  steps: 1\n  warmup_steps: 0\n  memory_steps: 0\naxes:\n  method: [frozen]\n")
    assert main(["sweep", str(spec), "--executor", "inprocess", "--quiet"]) == 0
    [folder] = list((tmp_path / "runs").iterdir())
    assert folder.resolve().parent == (tmp_path / "runs").resolve() and (folder / RESULTS_FILE).is_file()
    assert not (tmp_path.parent / "escaped").exists()


def test_score_refuses_a_median_across_configurations(tmp_path, capsys):
    path = tmp_path / RESULTS_FILE
    for key, batch, seed in (("a", 32, 0), ("b", 32, 1), ("c", 64, 0)):
        append_record(path, _ok_record(key, config={"preset": "ci", "train": {"batch_size": batch, "seed": seed}}))
    assert main(["score", str(path)]) == 2
    err = capsys.readouterr().err
    assert "different configurations" in err and "train.batch_size" in err
    (tmp_path / "same").mkdir()
    for line in path.read_text().splitlines()[:2]:  # two seeds of one configuration: repeats, combined
        append_record(tmp_path / "same" / RESULTS_FILE, json.loads(line))
    assert main(["score", str(tmp_path / "same")]) == 0


# --- executors ----------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")  # a zombie has ended


@pytest.mark.ray
def test_ray_executor_stop_cancels_the_task_and_kills_its_cell_process(tmp_path, hostile_plugin, ci_bundle_path):
    import time

    pytest.importorskip("ray")
    from tpme.bench.cell import CellSpec
    from tpme.scenarios import get_scenario
    from tpme.sweep.executors.base import Job
    from tpme.sweep.executors.ray import RayExecutor
    from tpme.sweep.grid import run_cells

    scenario = get_scenario("recommendation")
    cfg = scenario.preset("ci")
    marker = tmp_path / "cell.pid"
    [cell] = run_cells(scenario, cfg, [("test-hang", {"marker": str(marker)})], 1)
    spec = CellSpec(cell.method, cfg.to_dict(), str(ci_bundle_path), options=cell.options, plugins=["hostile_plugin"])
    executor = RayExecutor(None, 1, None, cpu_only=True)
    try:
        executor.submit(Job(cell, spec, 1))
        deadline = time.monotonic() + 240
        while not (marker.is_file() and marker.read_text()) and time.monotonic() < deadline:
            assert not executor.wait(0.5), "the hanging cell finished"
        pid = int(marker.read_text())
        assert _alive(pid) and executor.running() == 1
        executor.stop()
        assert executor.running() == 0 and executor.has_room()
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(pid), "the cell process outlived the stopped Ray task"
    finally:
        executor.close()
