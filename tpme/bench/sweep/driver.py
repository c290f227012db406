"""Running a sweep: plan what is left, prepare each distinct dataset once, feed the executor,
record each attempt as it finishes, retry failures, and stop cleanly on Ctrl-C."""
from __future__ import annotations

import json
import shutil
import signal
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from tpme.bench.cell import CellSpec
from tpme.bench.record import RESULTS_FILE, append_record
from tpme.bench.runner import prepare_bundle
from tpme.bench.sweep.executor import Executor, Job
from tpme.bench.sweep.grid import Cell, expand
from tpme.bench.sweep.spec import SweepSpec
from tpme.bench.sweep.store import ATTEMPTS_FILE, FINAL_STATUSES, SweepState
from tpme.errors import TpmeError

MANIFEST_FILE = "sweep.json"
DATA_DIR = "data"
POLL_S = 0.5


@dataclass
class SweepOptions:
    out_dir: Path
    executor: str = "local"  # local | ray
    ray_address: str | None = None
    max_parallel: int | None = None
    resume: bool = False
    retries: int = 2  # attempts per cell in total, over every run of the sweep
    timeout_s: float | None = None
    progress: bool = True
    command: list[str] = field(default_factory=list)


@dataclass
class SweepOutcome:
    records: list[dict[str, Any]]  # the final record of every cell that has one, in grid order
    cells: int
    launched: int  # attempts started by this run
    interrupted: bool = False


def _stderr(msg: str) -> None:
    print(f"tpme: {msg}", file=sys.stderr)


def make_executor(opts: SweepOptions, cells: list[Cell]) -> Executor:
    cpu_only = all(c.config.train.device == "cpu" for c in cells)
    if opts.executor == "ray":
        from tpme.bench.sweep.ray_executor import RayExecutor

        return RayExecutor(opts.ray_address, opts.max_parallel, opts.timeout_s, cpu_only)
    if opts.executor == "local":
        from tpme.bench.sweep.local import LocalExecutor, visible_gpus

        return LocalExecutor([] if cpu_only else visible_gpus(), opts.max_parallel, opts.timeout_s, opts.out_dir / "logs")
    raise TpmeError(f"unknown executor {opts.executor!r}", "use local or ray")


def _write_manifest(spec: SweepSpec, cells: list[Cell], opts: SweepOptions) -> None:
    copy = opts.out_dir / f"spec{spec.path.suffix}"
    if spec.path.resolve() != copy.resolve():
        shutil.copyfile(spec.path, copy)
    manifest = {
        "name": spec.name, "spec": str(spec.path), "command": opts.command,
        "cells": [{"cell_key": c.key, "axes": c.axes, "options": c.options} for c in cells],
    }
    tmp = opts.out_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=str))
    tmp.replace(opts.out_dir / MANIFEST_FILE)


def _prepare_data(cells: list[Cell], out_dir: Path, notify: Callable[[str], None]) -> dict[str, Path]:
    """One bundle per distinct data config, kept across resumed runs (saves are atomic)."""
    paths: dict[str, Path] = {}
    for cell in cells:
        if cell.data_key in paths:
            continue
        path = out_dir / DATA_DIR / f"{cell.data_key}.npz"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            notify(f"preparing data {cell.config.data.dataset} (seed {cell.config.data.seed}, backbone {cell.config.backbone})")
            prepare_bundle(cell.config, path)
        paths[cell.data_key] = path
    return paths


def run_sweep(spec: SweepSpec, opts: SweepOptions, executor: Executor | None = None, notify: Callable[[str], None] = _stderr) -> SweepOutcome:
    if opts.retries < 1:
        raise TpmeError("--retries must be at least 1 (attempts per cell in total)")
    cells = expand(spec)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    state = SweepState.open(opts.out_dir, opts.resume, notify)
    final, spent = state.final(), state.attempts_spent()
    todo = [c for c in cells if final.get(c.key, {}).get("status") not in FINAL_STATUSES and spent[c.key] < opts.retries]
    done_earlier = sum(1 for c in cells if final.get(c.key, {}).get("status") in FINAL_STATUSES)
    exhausted = len(cells) - done_earlier - len(todo)  # failed, attempts spent: --retries higher runs them again
    state.forget({c.key for c in todo})
    final = state.final()
    _write_manifest(spec, cells, opts)
    for w in spec.warnings:
        notify(f"warning: {w}")
    notify(f"sweep {spec.name}: {len(cells)} cell(s), {done_earlier} done earlier, {exhausted} failed with attempts spent, {len(todo)} to run -> {opts.out_dir}")
    outcome = SweepOutcome([], len(cells), 0)
    if todo:
        data = _prepare_data(todo, opts.out_dir, notify)
        executor = executor or make_executor(opts, todo)
        notify(executor.description)
        try:
            outcome.launched, outcome.interrupted = _drive(spec, opts, executor, todo, data, spent, final, notify)
        finally:
            executor.close()
    outcome.records = [final[c.key] for c in cells if c.key in final]
    return outcome


def _drive(spec: SweepSpec, opts: SweepOptions, executor: Executor, todo: list[Cell], data: dict[str, Path], spent: Counter, final_records: dict[str, dict[str, Any]], notify: Callable[[str], None]) -> tuple[int, bool]:
    """Run `todo` to the end (or Ctrl-C); each final record goes to results.jsonl and `final_records`."""
    results_path, attempts_path = opts.out_dir / RESULTS_FILE, opts.out_dir / ATTEMPTS_FILE
    queue = deque(Job(c, CellSpec(c.method, c.config.to_dict(), str(data[c.data_key]), c.repeat, c.options, spec.plugins, spec.cache_dir, opts.command), spent[c.key] + 1) for c in todo)
    launched = done = failed = 0
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=not opts.progress, dynamic_ncols=True, file=sys.stderr)

    shown = [""]

    def status() -> None:
        text = f"running {executor.running()}, failed {failed}, retrying {sum(1 for j in queue if j.attempt > 1)}"
        if text != shown[0]:
            shown[0] = text
            bar.set_postfix_str(text)

    try:
        while queue or executor.running():
            while queue and executor.has_room():
                executor.submit(queue.popleft())
                launched += 1
            status()
            for job, record in executor.wait(POLL_S):
                if (record.get("error") or "").startswith("KeyboardInterrupt"):
                    raise KeyboardInterrupt  # the cell saw the terminal's Ctrl-C before this process did
                record.update(axes=job.cell.axes, attempt=job.attempt)
                final = record["status"] in FINAL_STATUSES or job.attempt >= opts.retries
                if final:  # results first: a crash between the two appends never re-runs a finished cell
                    append_record(results_path, record)
                    final_records[job.cell.key] = record
                append_record(attempts_path, record)
                what = f"{job.cell.key} {', '.join(f'{k}={v}' for k, v in job.cell.axes.items())}"
                if not final:
                    bar.write(f"tpme: {what}: attempt {job.attempt} {record['status']}: {(record.get('error') or '')[:200]}; retrying")
                    queue.appendleft(Job(job.cell, job.spec, job.attempt + 1))
                    continue
                done += 1
                if record["status"] != "ok":
                    failed += 1
                    bar.write(f"tpme: {what}: {record['status']} after {job.attempt} attempt(s): {(record.get('error') or '')[:200]}")
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
        notify(f"resume with: tpme sweep {spec.path} --out {opts.out_dir} --resume" + (" --executor ray" if opts.executor == "ray" else ""))
        return launched, True
    bar.close()
    return launched, False
