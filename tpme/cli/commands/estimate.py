"""`tpme estimate`: peak memory, FLOPs and epoch time of methods on named GPUs, without a GPU."""
from __future__ import annotations

import argparse
import sys
import time

from tpme.cli.common import add_methods_arg, add_scenario_args, method_names, parse_method_opts, print_json, scenario_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "estimate",
        help="estimate peak GPU memory, FLOPs and epoch time per method, on CPU (no GPU needed)",
        description="Estimate, per method, the peak training memory (parameters, gradients, optimizer state, activations, "
        "temporaries, batch) plus the runtime overhead, the FLOPs of a training step, and the step and epoch time on "
        "named GPUs. One training step runs on fake tensors (shapes only): nothing of model size is allocated.",
    )
    add_methods_arg(p)
    p.add_argument("--preset", help="the scenario's preset (default: its real scale: paper for recommendation, the IISAN paper's shapes, data size and batch; "
                   "peft for causal-lm, peft's method-comparison setting)")
    add_scenario_args(p)
    p.add_argument("--batch-size", type=int, help="samples (users, sequences) per batch")
    p.add_argument("--precision", help="fp32, fp16, bf16 or a comma list of them (default: the preset's)")
    p.add_argument("--cuda-graphs", choices=["auto", "off"], help="auto (default): predict the time of methods the harness captures as CUDA graphs (iisan-cached) with graph replay; off: every method eager")
    p.add_argument("--gpu", help="GPU key, a comma list or `all` (default h100; with --list-gpus, all); see --list-gpus")
    p.add_argument("--gpu-file", metavar="FILE", help="JSON or TOML file adding GPUs or overriding built-in figures and calibration")
    p.add_argument("--list-gpus", action="store_true", help="print the GPU table (with --gpu-file entries) and exit")
    p.add_argument("--method-opt", action="append", default=[], metavar="[METHOD.]KEY=VALUE", help="a method option (repeatable)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE", help="import MODULE, which registers methods (repeatable)")
    p.add_argument("--peft-experiment", action="append", metavar="DIR", help="causal-lm: a peft experiment folder (<root>/experiments/<method>/<name>/, "
                   "<root>/default_training_params.json beside it) estimated as written: its adapter_config.json (none: full fine-tuning) and its training "
                   "params set batch, max length (the peak is at it), weight dtype, optimizer, clipping, checkpointing; the rest from the peft preset (repeatable)")
    p.add_argument("--mean-tokens", type=float, metavar="N", help="with --peft-experiment: also the step time at N tokens per sample (the data's mean length) and the time of max_steps such steps")
    p.add_argument("--json", action="store_true", help="print a JSON list: one object per method x precision x GPU")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tpme.errors import TpmeError
    from tpme.estimate.api import estimate_records
    from tpme.estimate.gpus import resolve_gpus
    from tpme.methods.registry import get_method, load_plugins
    from tpme.scenarios import get_scenario
    from tpme.scenarios.config import PRECISIONS

    if args.list_gpus:
        return _list_gpus(resolve_gpus(args.gpu or "all", args.gpu_file), args.json)
    gpus = resolve_gpus(args.gpu or "h100", args.gpu_file)
    if args.peft_experiment or args.mean_tokens is not None:
        return _run_experiments(args, gpus)
    given = [p.strip() for p in (args.precision or "").split(",") if p.strip()]
    bad = [p for p in given if p not in PRECISIONS]
    if bad or (args.precision is not None and not given):
        raise TpmeError(f"unknown precision {', '.join(bad) or '(none)'}", f"use one or more of {', '.join(PRECISIONS)}")
    preset = args.preset or get_scenario(args.scenario).estimate_preset
    scenario, cfg = scenario_config(argparse.Namespace(**{**vars(args), "preset": preset, "precision": given[0] if given else None}))
    precisions = given or [cfg.train.precision]
    load_plugins(args.plugin)
    names = method_names(args, scenario)
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
                rows.append({"method": name, "label": name, "precision": precision, "status": "error", "error": f"{type(e).__name__}: {e}"})
                print(f" failed: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
    if args.json:
        print_json(rows)
    else:
        print(render(rows, data.samples, scenario.samples_name))
    return 1 if failed else 0


def _run_experiments(args: argparse.Namespace, gpus: list) -> int:
    """`--peft-experiment DIR ...`: one estimate per folder, its settings from its files."""
    from tpme.errors import TpmeError
    from tpme.estimate.experiments import estimate_experiment, experiment_records, mean_length
    from tpme.scenarios.causal_lm.experiment_run import experiment_config
    from tpme.scenarios.causal_lm.peft_experiment import load_experiment

    if not args.peft_experiment:
        raise TpmeError("--mean-tokens needs --peft-experiment", "add --peft-experiment DIR, or drop --mean-tokens")
    clashes = [f for f, v in (("--methods", args.methods), ("--batch-size", args.batch_size), ("--precision", args.precision), ("--seq-len", getattr(args, "seq_len", None))) if v is not None]
    if clashes:
        raise TpmeError(f"{', '.join(clashes)} cannot be combined with --peft-experiment, whose files set them", f"drop {', '.join(clashes)}, or edit the experiment's training_params.json")
    scenario, base = scenario_config(argparse.Namespace(**{**vars(args), "preset": "peft"}))
    if scenario.name != "causal-lm":
        raise TpmeError(f"--peft-experiment estimates causal-lm experiments, and this is --scenario {scenario.name}", "add --scenario causal-lm")
    experiments = [load_experiment(d) for d in args.peft_experiment]  # every folder read and checked before the first (slow) estimate
    for exp in experiments:
        experiment_config(exp, base)
        if args.mean_tokens is not None:
            mean_length(args.mean_tokens, exp.max_seq_length)
    rows, failed = [], False
    for exp in experiments:
        t0 = time.perf_counter()
        print(f"tpme: estimating {exp.label} ({base.model}) ...", file=sys.stderr, end="", flush=True)
        try:
            rows += experiment_records(estimate_experiment(scenario, base, exp, args.mean_tokens), gpus)
            print(f" {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        except TpmeError:
            raise
        except Exception as e:  # noqa: BLE001 - an adapter the fake step cannot run; the other experiments still get estimated
            failed = True
            rows.append({"label": exp.label, "method": exp.label, "experiment": str(exp.path), "precision": "-", "status": "error", "error": f"{type(e).__name__}: {e}"})
            print(f" failed: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
    if args.json:
        print_json(rows)
        return 1 if failed else 0
    ok = [r for r in rows if r["status"] == "ok"]
    print(render(rows, ok[0]["max_steps"] * ok[0]["batch_size"] if ok else 0, "sequences"))
    for r in ok:
        if "predicted_step_time_at_mean_s" in r:
            print(f"{r['label']} on {r['gpu']}: {r['predicted_step_time_at_mean_s']:.3f} s/step at {r['mean_seq_len']} tokens per sample, {r['predicted_train_time_at_mean_s']:.0f} s for {r['max_steps']} steps")
    return 1 if failed else 0


MEMORY_COLUMNS = (  # header, bytes of an estimate row
    ("params", lambda r: r["breakdown"]["parameters"] + r["breakdown"]["buffers"]), ("grads", lambda r: r["breakdown"]["gradients"]),
    ("optim", lambda r: r["breakdown"]["optimizer_state"]), ("activ", lambda r: r["breakdown"]["activations"]),
    ("temp", lambda r: r["breakdown"]["temporaries"]), ("batch", lambda r: r["breakdown"]["batch"]), ("overhead", lambda r: r["overhead_bytes"]),
)


PART_HEADERS = {"validation": "valid", "checkpoint": "ckpt"}  # epoch parts' column names


def render(rows: list[dict], n_samples: int, noun: str = "samples", colour: bool | None = None) -> str:
    """One unit per memory column (the largest that column reaches), numbers right-aligned."""
    from tpme.reports.format import byte_unit, fmt_seconds
    from tpme.reports.terminal import TextTable
    from tpme.reports.terminal import render as render_table

    ok = [r for r in rows if r["status"] == "ok"]
    gib = 2**30
    units = [byte_unit(get(r) for r in ok) for _, get in MEMORY_COLUMNS]
    parts = list(dict.fromkeys(p for r in ok for p in r.get("epoch_parts_s", {})))
    prepared = any("prepare_total_memory_bytes" in r for r in ok)
    headers = ["method", "precision", "gpu", "fits", "needs (GiB)", *(["prepare needs (GiB)"] if prepared else []), "has (GiB)", "reserved (GiB)", *(u.header(h) for (h, _), u in zip(MEMORY_COLUMNS, units)),
               "TFLOP/step", "step (s)", "epoch (s)", *(f"{PART_HEADERS.get(p, p)} (s)" for p in parts)]
    table = TextTable(headers, [], set(range(4, len(headers))))
    for r in rows:
        if r["status"] != "ok":
            table.failed_rows.add(len(table.rows))
            table.rows.append([r.get("label", r["method"]), r["precision"], "-", "error: " + r["error"][:60]] + ["-"] * (len(headers) - 4))
            continue
        table.rows.append([
            r.get("label", r["method"]), r["precision"], r["gpu"], "yes" if r["fits"] else "NO", f"{r['total_memory_bytes'] / gib:.2f}",
            *([f"{r['prepare_total_memory_bytes'] / gib:.2f}" if "prepare_total_memory_bytes" in r else "-"] if prepared else []), f"{r['gpu_memory_bytes'] / gib:.2f}",
            f"{r['predicted_reserved_bytes'] / gib:.2f}" if "predicted_reserved_bytes" in r else "-",
            *(u.cell(get(r)) for (_, get), u in zip(MEMORY_COLUMNS, units)),
            f"{r['flops_per_step'] / 1e12:.3g}", fmt_seconds(r["predicted_step_time_s"]), fmt_seconds(r["predicted_epoch_time_s"]),
            *(fmt_seconds(r["epoch_parts_s"][p]) if p in r.get("epoch_parts_s", {}) else "-" for p in parts),
        ])
    if ok:
        epochs = ", ".join(f"batch {b}: {n} steps" for b, n in dict.fromkeys((r["batch_size"], r["steps_per_epoch"]) for r in ok))
        table.notes.append(f"Estimates, not measurements. needs = tensor peak + overhead; memory columns: live at the peak (params include buffers); "
                           f"overhead: CUDA context + cuBLAS workspace + allocator fragmentation; "
                           f"reserved: torch.cuda.max_memory_reserved() predicted by replaying the caching allocator (no CUDA context). Epoch = {n_samples} {noun} / batch ({epochs}), data loading excluded.")
        if prepared:
            passes = "; ".join(f"{r.get('label', r['method'])}: {r['prepare']['pass']}" for r in dict((r["method"], r) for r in ok if "prepare" in r).values())
            table.notes.append(f"prepare needs: the one-off preparation pass before training (its peak + overhead), which can need more than training: {passes}.")
        if parts:
            from tpme.estimate.gpus import CHECKPOINT_WRITE_BYTES_S

            table.notes.append(f"Where a part is shown, epoch = {' + '.join(PART_HEADERS.get(p, p) for p in parts)} (train: the steps above), as the official code's epoch "
                               f"time (the paper's) counts it: valid/test embed every item and score every user (forward only); ckpt writes the model's and the "
                               f"optimizer's state at an assumed {CHECKPOINT_WRITE_BYTES_S / 1e9:g} GB/s (none for cached IISAN: the official Code_Cached saves no per-epoch checkpoint).")
        graphed = sorted({r["method"] for r in ok if r["cuda_graphs"]})
        if graphed:
            table.notes.append(f"Timed as replayed from CUDA graphs (as `tpme run` captures them; --cuda-graphs off for eager): {', '.join(graphed)}.")
    return render_table(table, colour)


def _list_gpus(gpus: list, as_json: bool) -> int:
    from dataclasses import asdict

    rows = [{"key": g.key, "name": g.name, "memory_gib": g.memory_bytes / 2**30, "bandwidth_gb_s": g.bandwidth_bytes_s / 1e9, "tflops": {k: v / 1e12 for k, v in g.peak_flops.items()}, **asdict(g.calibration), "calibration_source": g.calibration_source} for g in gpus]
    if as_json:
        print_json(rows)
        return 0
    from tpme.reports.terminal import TextTable, print_table

    headers = ["key", "name", "memory (GiB)", "bandwidth (GB/s)", "fp32 (TFLOP/s)", "tf32 (TFLOP/s)", "fp16 (TFLOP/s)", "bf16 (TFLOP/s)"]
    cells = [[r["key"], r["name"], f"{r['memory_gib']:.0f}", f"{r['bandwidth_gb_s']:.0f}", *(f"{r['tflops'][k]:g}" for k in ("fp32", "tf32", "fp16", "bf16"))] for r in rows]
    print_table(TextTable(headers, cells, set(range(2, len(headers)))))
    for source in sorted({r["calibration_source"] for r in rows}):
        print(f"calibration of {', '.join(r['key'] for r in rows if r['calibration_source'] == source)}: {source}")
    return 0
