"""The one orchestrator: plan what is left, prepare each distinct dataset once (with the
scenario's reference baselines), feed the executor, record each attempt as it finishes,
retry failures, and stop cleanly on Ctrl-C. `tpme run` and `tpme sweep` both drive it.

Progress and failure lines go to stderr only, so a command's `--json` stays pure JSON.
"""
from __future__ import annotations

import json
import math
import shutil
import signal
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from tpme.bench.cell import CellSpec
from tpme.errors import TpmeError
from tpme.results.finite import fail_non_finite
from tpme.results.lock import run_lock
from tpme.results.record import Baseline, Record
from tpme.results.store import ATTEMPTS_FILE, RESULTS_FILE, append_record
from tpme.sweep.executors.base import Executor, Job
from tpme.sweep.grid import Cell
from tpme.sweep.state import FINAL_STATUSES, RunState

MANIFEST_FILE = "sweep.json"
DATA_DIR = "data"
BASELINE_FILE = "baseline.json"
POLL_S = 0.5
EXECUTORS = ("local", "ray", "inprocess")


@dataclass
class Plan:
    """What to run: the cells, and what every cell process needs besides its own config."""

    name: str
    cells: list[Cell]
    plugins: list[str] = field(default_factory=list)
    cache_dir: str = ".tpme-cache"
    estimate: bool = False  # store each cell's GPU-free estimate beside its measurement
    spec_path: Path | None = None  # a sweep's spec file, copied into the directory
    resume_hint: str = ""  # the command that resumes this run


@dataclass
class DriverOptions:
    out_dir: Path
    executor: str = "local"  # local | ray | inprocess
    ray_address: str | None = None
    max_parallel: int | None = None
    resume: bool = False
    retries: int = 2  # attempts per cell in total, over every run into this directory
    timeout_s: float | None = None
    progress: bool = True
    command: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    records: list[Record]  # the final record of every cell that has one, in plan order
    cells: int
    launched: int  # attempts started by this run
    interrupted: bool = False
    baselines: dict[str, dict[str, Baseline]] = field(default_factory=dict)  # data key -> baselines


def stderr(msg: str) -> None:
    print(f"tpme: {msg}", file=sys.stderr)


def validate(opts: DriverOptions) -> None:
    """Every numeric option checked before any work starts."""
    if opts.retries < 1:
        raise TpmeError("--retries must be at least 1 (attempts per cell in total)")
    if opts.timeout_s is not None and not (opts.timeout_s > 0 and math.isfinite(opts.timeout_s)):
        raise TpmeError(f"--timeout must be a positive number of seconds, got {opts.timeout_s:g}", "give seconds, e.g. --timeout 3600, or leave it out for no limit")
    if opts.max_parallel is not None and opts.max_parallel < 1:
        raise TpmeError("--max-parallel must be at least 1")
    if opts.executor not in EXECUTORS:
        raise TpmeError(f"unknown executor {opts.executor!r}", f"use one of {', '.join(EXECUTORS)}")
    if opts.ray_address and opts.executor != "ray":
        raise TpmeError("--ray-address is for the Ray executor", "add --executor ray")
    if opts.out_dir.exists() and not opts.out_dir.is_dir():
        raise TpmeError(f"--out {opts.out_dir} is a file, not a directory", "give a directory path (it is created when missing)")


def make_executor(opts: DriverOptions, cells: list[Cell]) -> Executor:
    cpu_only = all(c.config.train.device == "cpu" for c in cells)
    if opts.executor == "ray":
        from tpme.sweep.executors.ray import RayExecutor

        return RayExecutor(opts.ray_address, opts.max_parallel, opts.timeout_s, cpu_only, opts.out_dir / "logs")
    if opts.executor == "inprocess":
        from tpme.sweep.executors.inprocess import InProcessExecutor

        return InProcessExecutor()
    from tpme.sweep.executors.local import LocalExecutor, visible_gpus

    return LocalExecutor([] if cpu_only else visible_gpus(), opts.max_parallel, opts.timeout_s, opts.out_dir / "logs")


def _write_manifest(plan: Plan, opts: DriverOptions) -> None:
    if plan.spec_path is not None:
        copy = opts.out_dir / f"spec{plan.spec_path.suffix}"
        if plan.spec_path.resolve() != copy.resolve():
            shutil.copyfile(plan.spec_path, copy)
    manifest = {
        "name": plan.name, "spec": str(plan.spec_path) if plan.spec_path else None, "command": opts.command,
        "scenario": plan.cells[0].scenario.name if plan.cells else None,
        "cells": [{"cell_key": c.key, "axes": c.axes, "options": c.options} for c in plan.cells],
    }
    tmp = opts.out_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=str))
    tmp.replace(opts.out_dir / MANIFEST_FILE)


def _baselines_path(out_dir: Path, key: str) -> Path:
    return out_dir / DATA_DIR / f"{key}.baselines.json"


def prepare_data(cells: list[Cell], out_dir: Path, notify: Callable[[str], None]) -> tuple[dict[str, Path], dict[str, dict[str, Baseline]]]:
    """One data file per distinct data config, with its baselines; kept across resumed runs (saves are atomic)."""
    paths: dict[str, Path] = {}
    baselines: dict[str, dict[str, Baseline]] = {}
    for cell in cells:
        key = cell.data_key
        if key in paths:
            continue
        path = out_dir / DATA_DIR / f"{key}.npz"
        scenario = cell.scenario
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            notify(f"preparing data: {scenario.describe(cell.config)}")
            scenario.prepare_data(cell.config, path)
        paths[key] = path
        bpath = _baselines_path(out_dir, key)
        if bpath.is_file():
            raw = json.loads(bpath.read_text())
            baselines[key] = {name: Baseline.from_dict(name, d, str(bpath)) for name, d in raw.items()}
        else:
            baselines[key] = scenario.baselines(path)  # reference only, never TPME-scored
            _write_json(bpath, {name: b.to_dict() for name, b in baselines[key].items()})
    if len(baselines) == 1 and next(iter(baselines.values())):
        _write_json(out_dir / BASELINE_FILE, {name: b.to_dict() for name, b in next(iter(baselines.values())).items()})
    return paths, baselines


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def run(plan: Plan, opts: DriverOptions, executor: Executor | None = None, notify: Callable[[str], None] = stderr) -> Outcome:
    validate(opts)
    with run_lock(opts.out_dir):  # one writer per run folder (the CLI holds it already, around its table and report too)
        return _run_locked(plan, opts, executor, notify)


def _run_locked(plan: Plan, opts: DriverOptions, executor: Executor | None, notify: Callable[[str], None]) -> Outcome:
    cells = plan.cells
    state = RunState.open(opts.out_dir, opts.resume, notify)
    state.recover(opts.retries, notify)
    final, spent = state.final(), state.attempts_spent()
    todo = [c for c in cells if final.get(c.key, {}).get("status") not in FINAL_STATUSES and spent[c.key] < opts.retries]
    done_earlier = sum(1 for c in cells if final.get(c.key, {}).get("status") in FINAL_STATUSES)
    exhausted = len(cells) - done_earlier - len(todo)  # failed, attempts spent: --retries higher runs them again
    state.forget({c.key for c in todo})
    final = state.final()
    _write_manifest(plan, opts)
    notify(f"{plan.name}: {len(cells)} cell(s), {done_earlier} done earlier, {exhausted} failed with attempts spent, {len(todo)} to run -> {opts.out_dir}")
    outcome = Outcome([], len(cells), 0)
    if todo:
        data, outcome.baselines = prepare_data(todo, opts.out_dir, notify)  # on failure, run_lock removes a run folder it created
        executor = executor or make_executor(opts, todo)
        notify(executor.description)
        try:
            outcome.launched, outcome.interrupted = _drive(plan, opts, executor, todo, data, outcome.baselines, spent, final, notify)
        finally:
            executor.close()
    outcome.records = [Record.from_dict(final[c.key], f"{opts.out_dir / RESULTS_FILE}: cell {c.key}") for c in cells if c.key in final]
    return outcome


def _drive(plan: Plan, opts: DriverOptions, executor: Executor, todo: list[Cell], data: dict[str, Path], baselines: dict[str, dict[str, Baseline]],
           spent: Counter, final_records: dict[str, dict], notify: Callable[[str], None]) -> tuple[int, bool]:
    """Run `todo` to the end (or Ctrl-C); each final record goes to results.jsonl and `final_records`."""
    results_path, attempts_path = opts.out_dir / RESULTS_FILE, opts.out_dir / ATTEMPTS_FILE

    def spec_of(c: Cell) -> CellSpec:
        return CellSpec(c.method, c.config.to_dict(), str(data[c.data_key]), c.repeat, c.options, plan.plugins, plan.cache_dir, opts.command, plan.estimate, c.scenario.name)

    queue = deque(Job(c, spec_of(c), spent[c.key] + 1) for c in todo)
    launched = done = failed = 0
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not opts.progress, dynamic_ncols=True, file=sys.stderr)
    shown = [""]

    def status() -> None:
        text = f"running {executor.running()}, failed {failed}, retrying {sum(1 for j in queue if j.attempt > 1)}"
        if text != shown[0]:
            shown[0] = text
            bar.set_postfix_str(text)

    def say(msg: str) -> None:
        bar.write(f"tpme: {msg}", file=sys.stderr)

    try:
        while queue or executor.running():
            while queue and executor.has_room():
                executor.submit(queue.popleft())
                launched += 1
            status()
            for job, record in executor.wait(POLL_S):
                if (record.error or "").startswith("KeyboardInterrupt"):
                    raise KeyboardInterrupt  # the cell saw the terminal's Ctrl-C before this process did
                record = fail_non_finite(record)  # whatever the executor, a NaN is never ok nor stored bare
                record.axes, record.attempt = job.cell.axes, job.attempt
                record.baselines = baselines.get(job.cell.data_key, {})
                is_final = record.status in FINAL_STATUSES or job.attempt >= opts.retries
                if is_final:  # results first: a crash between the two appends never re-runs a finished cell
                    append_record(results_path, record)
                    final_records[job.cell.key] = record.to_dict()
                append_record(attempts_path, record)
                what = f"{job.cell.method}" + (f" ({', '.join(f'{k}={v}' for k, v in job.cell.axes.items() if k != 'method')})" if len(job.cell.axes) > 1 else "")
                if not is_final:
                    say(f"{what}: attempt {job.attempt} {record.status}: {(record.error or '')[:200]}; retrying")
                    queue.appendleft(Job(job.cell, job.spec, job.attempt + 1))
                    continue
                done += 1
                if record.provenance.host_busy:
                    say(f"warning: {what}: the host was busy while it was measured ({'; '.join(record.provenance.host_reasons)[:300]}); its times may be inflated")
                if record.status != "ok":
                    failed += 1
                    say(f"{what}: {record.status}" + (f" after {job.attempt} attempt(s)" if opts.retries > 1 else "") + f": {(record.error or '')[:200]}")
                bar.update(1)
                status()
    except KeyboardInterrupt:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        try:
            running = executor.running()
            executor.stop()
        finally:
            signal.signal(signal.SIGINT, previous)
        bar.close()
        notify(f"interrupted: {done} cell(s) finished in this run, {running} running cell(s) stopped and not recorded, {len(queue) + running} left")
        if plan.resume_hint:
            notify(f"resume with: {plan.resume_hint}")
        return launched, True
    bar.close()
    return launched, False
