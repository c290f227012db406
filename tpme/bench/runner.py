"""A benchmark run: prepare the data once, run each (method, repeat) cell through a
launcher, append each record as it arrives, then score and write the table."""
from __future__ import annotations

import time
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tpme.bench.cell import CellSpec
from tpme.bench.evaluate import write_popularity_baseline
from tpme.bench.launcher import Launcher, SubprocessLauncher
from tpme.bench.record import RESULTS_FILE, append_record
from tpme.config import RunConfig
from tpme.datasets.bundle import build_bundle
from tpme.metrics.aggregate import attach_scores
from tpme.metrics.tpme import Weights
from tpme.models.backbones import BackboneSpec, text_config
from tpme.reports.table import render_markdown

DATA_FILE = "data.npz"
TABLE_FILE = "table.md"
REPORT_DIR = "report"


@dataclass
class RunPlan:
    config: RunConfig
    methods: list[tuple[str, dict[str, str]]]
    out_dir: Path
    repeats: int = 1
    weights: Weights = field(default_factory=lambda: Weights(0.45, 0.1, 0.45))
    plugins: list[str] = field(default_factory=list)
    cache_dir: str = ".tpme-cache"
    command: list[str] = field(default_factory=list)
    report: bool = True  # write <out_dir>/report/ (HTML, Markdown, PNG) at the end
    estimate: bool = False


def default_out_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.preset}"


def prepare_bundle(cfg: RunConfig, path: Path) -> Path:
    """Tokenise and preprocess `cfg`'s data for its backbone and save the bundle at `path`."""
    spec = BackboneSpec.parse(cfg.backbone)
    build_bundle(cfg.data, spec.tokenizer_dir, text_config(spec).vocab_size).save(path)
    return path


def prepare_data(plan: RunPlan) -> Path:
    """Tokenise and preprocess once; every cell's process loads the saved bundle."""
    return prepare_bundle(plan.config, plan.out_dir / DATA_FILE)


def run_benchmark(plan: RunPlan, launcher: Launcher | None = None, progress: bool = True) -> list[dict[str, Any]]:
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    launcher = launcher or SubprocessLauncher(log_dir=plan.out_dir / "logs")
    results_path = plan.out_dir / RESULTS_FILE
    data_path = prepare_data(plan)
    baselines = {"popularity": write_popularity_baseline(data_path, plan.out_dir)}  # reference only, never TPME-scored
    cells = [(m, opts, r) for m, opts in plan.methods for r in range(plan.repeats)]
    records = []
    bar = tqdm(cells, desc="cells", unit="cell", disable=not progress, dynamic_ncols=True)
    for method, options, repeat in bar:
        bar.set_postfix_str(method if plan.repeats == 1 else f"{method} #{repeat}")
        spec = CellSpec(method, plan.config.to_dict(), str(data_path), repeat, options, plan.plugins, plan.cache_dir, plan.command, estimate=plan.estimate)
        record = launcher.run(spec)
        record["baselines"] = baselines
        append_record(results_path, record)
        records.append(record)
        if record["status"] != "ok":
            bar.write(f"{method}: {record['status']}: {(record.get('error') or '')[:200]}")
    scored = attach_scores(records, plan.weights)
    (plan.out_dir / TABLE_FILE).write_text(render_markdown(scored, plan.weights))
    if plan.report:
        write_run_report(plan, records)
    return scored


def write_run_report(plan: RunPlan, records: list[dict[str, Any]]) -> Path | None:
    """The report of the run; a failure to draw is a warning, never a lost run."""
    try:
        from tpme.reports.build import write_report

        result = write_report(records, plan.out_dir / REPORT_DIR, plan.weights, ("html", "md", "png"), inputs=[str(plan.out_dir)])
    except Exception as e:
        print(f"tpme: warning: report not written: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    for w in result.warnings:
        print(f"tpme: warning: {w}", file=sys.stderr)
    return result.path("report.html")
