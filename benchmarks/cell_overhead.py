"""Launch overhead per cell, and `tpme run` wall time, with and without the preloaded worker.

    .venv/bin/python benchmarks/cell_overhead.py [--cells 4] [--runs 1] [--json]

Both sides of every figure are measured in this one run, alternating, so load on a shared
machine hits both (the load average is printed beside them):
- overhead per cell: the wall time of `CellProcesses.run` for the cheapest ci cell (frozen,
  1 step, no warm-up) minus the seconds the cell reports for itself (provenance.launch.cell_s),
  i.e. process start, imports, spec and result files. The preloaded side is the median over
  warm cells; the one-off start of the preloaded worker is printed apart;
- `tpme run --preset ci --methods all --no-report`, as a subprocess, with TPME_PRELOAD=0 and
  with the default (preloaded) launch; the ratio is fresh / preloaded.
Goals (issue 20): overhead per cell <= 0.5 s; the run >= 2.5x faster.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tpme.bench.cell import CellSpec
from tpme.bench.process import PRELOAD_ENV, CellProcesses
from tpme.scenarios import get_scenario

OVERHEAD_GOAL_S = 0.5
RUN_SPEEDUP_GOAL = 2.5


@dataclass
class Figure:
    name: str
    value: float
    goal: str
    met: bool | None
    note: str = ""


@dataclass
class Side:
    overheads: list[float]  # launch overhead per cell, s
    cell_s: list[float]  # the time each cell reports for itself, s


def timed_cell(launcher: CellProcesses, spec: CellSpec, side: Side) -> None:
    """One cell: its launch overhead (wall time here minus the time the cell spent on itself) and that time."""
    start = time.perf_counter()
    record = launcher.run(spec)
    wall = time.perf_counter() - start
    if record.status != "ok":
        raise SystemExit(f"cell_overhead: the cell failed ({record.status}): {record.error}")
    cell_s = float(record.provenance.extra["launch"]["cell_s"])
    side.overheads.append(wall - cell_s)
    side.cell_s.append(cell_s)


def cell_overheads(cells: int, work: Path) -> tuple[Side, Side, float]:
    """(fresh cells, warm preloaded cells, the first preloaded cell's overhead: the worker's start)."""
    scenario = get_scenario("recommendation")
    cfg = scenario.preset("ci").replace(device="cpu", steps=1, warmup_steps=0, memory_steps=0)
    data = work / "data.npz"
    scenario.prepare_data(cfg, data)
    spec = CellSpec("frozen", cfg.to_dict(), str(data), cache_dir=str(work / "cache"))
    fresh, preloaded = CellProcesses(preload=False), CellProcesses(preload=True)
    first = Side([], [])
    timed_cell(preloaded, spec, first)
    xs, ys = Side([], []), Side([], [])
    for _ in range(cells):
        timed_cell(fresh, spec, xs)
        timed_cell(preloaded, spec, ys)
    return xs, ys, first.overheads[0]


def run_wall(preload: bool, work: Path, index: int) -> tuple[float, int]:
    """Wall seconds of `tpme run --preset ci --methods all` in a fresh process, and its number of cells."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", **{PRELOAD_ENV: "1" if preload else "0"})
    out = work / f"run-{'preloaded' if preload else 'fresh'}-{index}"
    cmd = [sys.executable, "-m", "tpme.cli", "run", "--preset", "ci", "--methods", "all", "--out", str(out),
           "--cache-dir", str(work / "cache"), "--quiet", "--no-report"]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"cell_overhead: {' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return wall, len((out / "results.jsonl").read_text().splitlines())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=4, help="cells per side for the overhead (alternating)")
    ap.add_argument("--runs", type=int, default=1, help="`tpme run` per side (alternating); 0 skips the run figure")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args(argv)
    if args.cells < 1 or args.runs < 0:
        ap.error("--cells must be at least 1 and --runs at least 0")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tpme-cell-overhead-") as tmp:
        work = Path(tmp)
        fresh, warm, first = cell_overheads(args.cells, work)
        walls: dict[bool, list[float]] = {False: [], True: []}
        run_cells = 0
        for i in range(args.runs):
            for preload in (False, True):
                wall, run_cells = run_wall(preload, work, i)
                walls[preload].append(wall)
    load_after = os.getloadavg()

    f, p = statistics.median(fresh.overheads), statistics.median(warm.overheads)
    cell_ratio = statistics.median(warm.cell_s) / statistics.median(fresh.cell_s)
    figures = [
        Figure("overhead per cell, fresh interpreter (s)", f, "reference", None, f"{len(fresh.overheads)} cells"),
        Figure("overhead per cell, preloaded worker (s)", p, f"<= {OVERHEAD_GOAL_S}", p <= OVERHEAD_GOAL_S, f"{len(warm.overheads)} warm cells; its start: {first:.2f} s once"),
        Figure("overhead fresh / preloaded", f / p, "reference", None),
        Figure("the cell's own time, preloaded / fresh", cell_ratio, "about 1", None, "forking must not slow the cell itself"),
    ]
    if args.runs:
        wf, wp = statistics.median(walls[False]), statistics.median(walls[True])
        figures += [
            Figure("tpme run --preset ci --methods all, fresh (s)", wf, "reference", None),
            Figure("tpme run --preset ci --methods all, preloaded (s)", wp, "reference", None),
            Figure("tpme run wall time fresh / preloaded", wf / wp, f">= {RUN_SPEEDUP_GOAL}", wf / wp >= RUN_SPEEDUP_GOAL),
        ]
        if wf > run_cells * f:  # else the overheads were measured under other load than the run
            figures.append(Figure("ceiling of that ratio at zero launch cost", wf / (wf - run_cells * f), "reference", None,
                                  f"fresh run / (fresh run - {run_cells} cells x fresh overhead): what no launcher can beat"))
    doc = {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after,
           "overheads_s": {"fresh": fresh.overheads, "preloaded": warm.overheads, "preloaded_first": first},
           "cell_s": {"fresh": fresh.cell_s, "preloaded": warm.cell_s},
           "run_walls_s": {"fresh": walls[False], "preloaded": walls[True]}, "figures": [asdict(x) for x in figures]}
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        print()
    else:
        print(f"{os.cpu_count()} CPUs; load average (1, 5, 15 min) before {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}, after {load_after[0]:.1f} {load_after[1]:.1f} {load_after[2]:.1f}")
        for x in figures:
            verdict = {True: "met", False: "NOT met", None: ""}[x.met]
            print(f"  {x.name:<50} {x.value:>9.3f}   {x.goal:<10} {verdict}" + (f"   ({x.note})" if x.note else ""))
    return 0 if all(x.met is not False for x in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
