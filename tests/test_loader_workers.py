"""Under the official protocol, training batches are built by worker processes, as the official
code's DataLoader (`--num_workers 4`) builds them: the same batches, bit for bit and in the same
order, as the main process builds; the record says how; the workers end with their batches, and
with a cell that is killed or times out; a bad setting is refused with its fix."""
from __future__ import annotations

import copy
import json
import os
import threading
import time
from pathlib import Path

import psutil
import pytest
import torch

from tpme.bench.cell import CellSpec
from tpme.bench.process import CellProcesses
from tpme.cli import main
from tpme.datasets.bundle import DataBundle
from tpme.datasets.prefetch import Prefetcher
from tpme.errors import TpmeError
from tpme.methods.registry import get_method
from tpme.scenarios.recommendation import protocol
from tpme.scenarios.recommendation.config import preset
from tpme.scenarios.recommendation.training import build_training
from tpme.training.batches import tensor_items

CPU = torch.device("cpu")
LINUX_PROC = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc to follow the worker processes")


def official(**changes):
    return preset("ci").replace(protocol="official", **changes)


@pytest.fixture(scope="module")
def bundle(ci_bundle_path):
    return DataBundle.load(ci_bundle_path)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def cached_setup(bundle, cache_dir):
    """Official iisan-cached on the ci preset: batches read the per-item state files (built here once)."""
    return build_training(official(), get_method("iisan-cached"), bundle, CPU, str(cache_dir))


def same_batches(a: list, b: list) -> None:
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        xs, ys = tensor_items(x), tensor_items(y)
        assert [name for name, _ in xs] == [name for name, _ in ys]
        for (name, s), (_, t) in zip(xs, ys):
            assert s.dtype == t.dtype and s.shape == t.shape and torch.equal(s, t), name
        assert (x.own is None) == (y.own is None)


def new_children(before: set[int]) -> list[psutil.Process]:
    return [c for c in psutil.Process().children() if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("method", ["iisan-cached", "fft"])
def test_worker_batches_equal_the_main_process_batches_in_order(bundle, tmp_path, method):
    setup = build_training(official(batch_size=6), get_method(method), bundle, CPU, str(tmp_path))
    loader = setup.loader
    assert loader.workers == protocol.LOADER_WORKERS == 4  # the official default
    assert len(loader.samples) % loader.batch_size  # a short last batch is part of what must match
    alone = copy.copy(loader)
    alone.workers = 0
    for epoch in (0, 3):
        same_batches(list(loader.epoch(epoch)), list(alone.epoch(epoch)))
    n = len(loader) + 2  # across an epoch boundary
    endless, single = loader.forever(), alone.forever()
    same_batches([next(endless) for _ in range(n)], [next(single) for _ in range(n)])
    endless.close()
    items = list(alone.epoch(0))[0].items
    assert (items.text_states is not None) == (method == "iisan-cached") and (items.pixels is not None) == (method == "fft")


def test_the_record_says_how_batches_were_prepared(cached_setup, bundle, tmp_path):
    facts = cached_setup.execution["loader"]
    assert facts["workers"] == 4 and facts["built_in"] == "worker processes" and facts["library"] == "torch.utils.data.DataLoader"
    assert facts["prefetch_factor"] == 2 and facts["prefetch_depth"] == preset("ci").train.prefetch and facts["pinned"] is False
    none = build_training(official(loader_workers=0), get_method("iisan-cached"), bundle, CPU, str(tmp_path))
    assert none.loader.workers == 0 and none.execution["loader"]["workers"] == 0
    tpme = build_training(preset("ci"), get_method("iisan-cached"), bundle, CPU, str(tmp_path))
    assert tpme.execution["loader"]["workers"] == 0 and not hasattr(tpme.loader, "workers")  # tpme's loader: unchanged


@LINUX_PROC
def test_workers_end_when_the_prefetcher_closes_and_when_an_epoch_ends(cached_setup):
    """What a cell does with its batches: `forever` closed at the end, an epoch drained."""
    before = {c.pid for c in psutil.Process().children()}
    batches = Prefetcher(cached_setup.loader.forever(), depth=2)
    next(batches)
    assert len(new_children(before)) == 4
    batches.close()
    deadline = time.monotonic() + 30
    while new_children(before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert new_children(before) == []
    with Prefetcher(cached_setup.loader.epoch(0), depth=2) as epoch:
        assert len(list(epoch)) == len(cached_setup.loader)
    assert new_children(before) == []


def _descendants_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@LINUX_PROC
@pytest.mark.parametrize("preload", [True, False], ids=["preloaded", "fresh"])
def test_no_worker_outlives_a_cell_that_times_out(ci_bundle_path, cached_setup, cache_dir, preload):
    """A cell of endless steps (its state files built already) is killed at its timeout; every
    loader worker it forked goes with it."""
    cfg = official(device="cpu", steps=10**6, warmup_steps=0, memory_steps=0)
    spec = CellSpec("iisan-cached", cfg.to_dict(), str(ci_bundle_path), cache_dir=str(cache_dir))
    launcher = CellProcesses(timeout_s=30, preload=preload)
    me = os.getpid()
    before = {p.pid for p in _descendants_of(me)}
    done: list = []
    runner = threading.Thread(target=lambda: done.append(launcher.run(spec)))
    runner.start()
    workers: dict[int, psutil.Process] = {}
    while runner.is_alive():
        for p in _descendants_of(me):
            try:
                if p.pid not in before and p.name() == "pt_data_worker":  # the name torch gives its DataLoader workers
                    workers[p.pid] = p
            except psutil.Error:
                continue
        time.sleep(0.2)
    runner.join()
    [record] = done
    assert record.status == "timeout", record.error
    assert len(workers) >= 4, "the cell never started its loader workers before its timeout"
    deadline = time.monotonic() + 10
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p.pid for p in workers.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


def test_run_with_workers_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--preset", "ci", "--protocol", "official", "--methods", "iisan-cached", "--steps", "2", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache"), "--json", "--quiet", "--no-report"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["status"] == "ok" and record["protocol"] == "official", record.get("error")
    assert record["execution"]["loader"]["workers"] == 4 and record["config"]["train"]["loader_workers"] is None
    assert not any("pt_data_worker" in r for r in record["provenance"]["host_state"]["reasons"])  # its own workers are the cell's work


@pytest.mark.parametrize("value, words", [(-1, "0 or more"), (2.5, "whole number"), (True, "whole number")])
def test_a_bad_worker_count_is_refused_with_its_fix(value, words):
    with pytest.raises(TpmeError) as e:
        official(loader_workers=value)
    assert words in str(e.value) and "--loader-workers 0" in e.value.fix


def test_workers_under_tpmes_protocol_are_refused_with_the_fix(tmp_path, capsys):
    with pytest.raises(TpmeError) as e:
        preset("ci").replace(loader_workers=2)
    assert "official protocol" in str(e.value) and "--protocol official" in e.value.fix
    assert main(["run", "--preset", "ci", "--methods", "iisan-cached", "--loader-workers", "2", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "--protocol official" in capsys.readouterr().err and not (tmp_path / "run" / "results.jsonl").exists()
