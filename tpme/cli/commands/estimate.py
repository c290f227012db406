"""`tpme estimate`: peak memory, FLOPs and epoch time of methods on named GPUs, without a GPU."""
from __future__ import annotations

import argparse
import sys
import time

from tpme.cli.common import add_scenario_args, parse_method_opts, print_json, scenario_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate",
        help="estimate peak GPU memory, FLOPs and epoch time per method, on CPU (no GPU needed)",
        description="Estimate, per method, the peak training memory (parameters, gradients, optimizer state, activations, "
        "temporaries, batch) plus the runtime overhead, the FLOPs of a training step, and the step and epoch time on "
        "named GPUs. One training step runs on fake tensors (shapes only): nothing of model size is allocated.",
    )
    p.add_argument("--methods", default="all", help="comma-separated method names, or `all` (default)")
    p.add_argument("--preset", default="paper", help="ci, default or paper (default: paper, the IISAN paper's shapes, data size and batch)")
    add_scenario_args(p)
    p.add_argument("--batch-size", type=int, help="samples (users, sequences) per batch")
    p.add_argument("--precision", help="fp32, fp16, bf16 or a comma list of them (default: the preset's)")
    p.add_argument("--cuda-graphs", choices=["auto", "off"], help="auto (default): predict the time of methods the harness captures as CUDA graphs (iisan-cached) with graph replay; off: every method eager")
    p.add_argument("--gpu", help="GPU key, a comma list or `all` (default h100; with --list-gpus, all); see --list-gpus")
    p.add_argument("--gpu-file", metavar="FILE", help="JSON or TOML file adding GPUs or overriding built-in figures and calibration")
    p.add_argument("--list-gpus", action="store_true", help="print the GPU table (with --gpu-file entries) and exit")
    p.add_argument("--method-opt", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="a method option (repeatable)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import MODULE, which registers methods (repeatable)")
    p.add_argument("--json", action="store_true", help="print a JSON list: one object per method x precision x GPU")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.errors import TpmeError
    from tpme.estimate.api import estimate_records
    from tpme.estimate.gpus import resolve_gpus
    from tpme.methods.registry import get_method, load_plugins, resolve_method_names
    from tpme.scenarios.config import PRECISIONS

    if args.list_gpus:
        return _list_gpus(resolve_gpus(args.gpu or "all", args.gpu_file), args.json)
    gpus = resolve_gpus(args.gpu or "h100", args.gpu_file)
    given = [p.strip() for p in (args.precision or "").split(",") if p.strip()]
    bad = [p for p in given if p not in PRECISIONS]
    if bad or (args.precision is not None and not given):
        raise TpmeError(f"unknown precision {', '.join(bad) or '(none)'}", f"use one or more of {', '.join(PRECISIONS)}")
    scenario, cfg = scenario_config(argparse.Namespace(**{**vars(args), "precision": None}))
    precisions = given or [cfg.train.precision]
    load_plugins(args.plugin)
    names = resolve_method_names(args.methods, scenario.name)
    options = parse_method_opts(args.method_opt, names)
    for name in names:
        scenario.check_method(get_method(name, options[name]))
    data = scenario.data_shape(cfg)
    rows, failed = [], False
    for precision in precisions:
        pcfg = cfg.replace(precision=precision)
        for name in names:
            t0 = time.perf_counter()
            batch = scenario.config_for_method(pcfg, name).train.batch_size
            print(f"tpme: estimating {name} ({scenario.describe(pcfg)}, batch {batch}, {precision}) ...", file=sys.stderr, end="", flush=True)
            try:
                recs = estimate_records(scenario, pcfg, name, options[name], gpus, data)
                rows += [{**r, "status": "ok"} for r in recs]
                print(f" {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            except TpmeError:
                raise
            except Exception as e:  # noqa: BLE001 - a method the fake step cannot run; the others still get estimated
                failed = True
                rows.append({"method": name, "precision": precision, "status": "error", "error": f"{type(e).__name__}: {e}"})
                print(f" failed: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
    if args.json:
        print_json(rows)
    else:
        print(render(rows, data.samples, scenario.samples_name))
    return 1 if failed else 0


MEMORY_COLUMNS = (  # header, bytes of an estimate row
    ("params", lambda r: r["breakdown"]["parameters"] + r["breakdown"]["buffers"]), ("grads", lambda r: r["breakdown"]["gradients"]),
    ("optim", lambda r: r["breakdown"]["optimizer_state"]), ("activ", lambda r: r["breakdown"]["activations"]),
    ("temp", lambda r: r["breakdown"]["temporaries"]), ("batch", lambda r: r["breakdown"]["batch"]), ("overhead", lambda r: r["overhead_bytes"]),
)


def render(rows: list[dict], n_samples: int, noun: str = "samples", colour: bool | None = None) -> str:
    """One unit per memory column (the largest that column reaches), numbers right-aligned."""
    from tpme.reports.format import byte_unit, fmt_seconds
    from tpme.reports.terminal import TextTable
    from tpme.reports.terminal import render as render_table

    ok = [r for r in rows if r["status"] == "ok"]
    gib = 2**30
    units = [byte_unit(get(r) for r in ok) for _, get in MEMORY_COLUMNS]
    headers = ["method", "precision", "gpu", "fits", "needs (GiB)", "has (GiB)", *(u.header(h) for (h, _), u in zip(MEMORY_COLUMNS, units)),
               "TFLOP/step", "step (s)", "epoch (s)"]
    table = TextTable(headers, [], set(range(4, len(headers))))
    for r in rows:
        if r["status"] != "ok":
            table.failed_rows.add(len(table.rows))
            table.rows.append([r["method"], r["precision"], "-", "error: " + r["error"][:60]] + ["-"] * (len(headers) - 4))
            continue
        table.rows.append([
            r["method"], r["precision"], r["gpu"], "yes" if r["fits"] else "NO", f"{r['total_memory_bytes'] / gib:.2f}", f"{r['gpu_memory_bytes'] / gib:.2f}",
            *(u.cell(get(r)) for (_, get), u in zip(MEMORY_COLUMNS, units)),
            f"{r['flops_per_step'] / 1e12:.3g}", fmt_seconds(r["predicted_step_time_s"]), fmt_seconds(r["predicted_epoch_time_s"]),
        ])
    if ok:
        steps = ok[0]["steps_per_epoch"]
        table.notes.append(f"Estimates, not measurements. needs = tensor peak + overhead; memory columns: live at the peak (params include buffers); "
                           f"overhead: CUDA context + cuBLAS workspace + allocator fragmentation. Epoch = {steps} steps ({n_samples} {noun} / batch {ok[0]['batch_size']}), data loading excluded.")
        graphed = sorted({r["method"] for r in ok if r["cuda_graphs"]})
        if graphed:
            table.notes.append(f"Timed as replayed from CUDA graphs (as `tpme run` captures them; --cuda-graphs off for eager): {', '.join(graphed)}.")
    return render_table(table, colour)


def _list_gpus(gpus: list, as_json: bool) -> int:
    from dataclasses import asdict

    rows = [{"key": g.key, "name": g.name, "memory_gib": g.memory_bytes / 2**30, "bandwidth_gb_s": g.bandwidth_bytes_s / 1e9, "tflops": {k: v / 1e12 for k, v in g.peak_flops.items()}, **asdict(g.calibration)} for g in gpus]
    if as_json:
        print_json(rows)
        return 0
    from tpme.reports.terminal import TextTable, print_table

    headers = ["key", "name", "memory (GiB)", "bandwidth (GB/s)", "fp32 (TFLOP/s)", "tf32 (TFLOP/s)", "fp16 (TFLOP/s)", "bf16 (TFLOP/s)"]
    cells = [[r["key"], r["name"], f"{r['memory_gib']:.0f}", f"{r['bandwidth_gb_s']:.0f}", *(f"{r['tflops'][k]:g}" for k in ("fp32", "tf32", "fp16", "bf16"))] for r in rows]
    print_table(TextTable(headers, cells, set(range(2, len(headers)))))
    return 0
