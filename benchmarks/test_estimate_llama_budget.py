"""Budget of `tpme estimate` on a real LLM shape: Llama-3.2-3B, batch 4 x 768 tokens, bf16
weights (peft's method-comparison setting); each method in its own process must finish in
under a minute and stay under 4 GB of RSS on the 2-core development machine.

Not part of the test suite (testpaths = tests); run it with
    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python -m pytest benchmarks/test_estimate_llama_budget.py -q -s
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

RSS_LIMIT_BYTES = 4 * 10**9
TIME_LIMIT_S = 60.0
PEFT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "peft-method-comparison"
CONFIG = PEFT_DATA / "llama-3.2-3b" / "config.json"
EXPERIMENTS = PEFT_DATA / "experiments"

CASES = {  # a method, or a peft experiment's config under EXPERIMENTS
    "fft": ["--methods", "fft"],
    "peft:lora": ["--methods", "peft:lora", "--method-opt", "r=32"],
    "lora/llama-3.2-3B-rank32": [],
    "prefixtuning/llama-3.2-3B-lr_0.001": [],
}


def _peak_rss_bytes(pid_status: str) -> int:
    """VmHWM of /proc/<pid>/status: the process's own peak resident set."""
    for line in pid_status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc status")


@pytest.mark.parametrize("case", list(CASES))
def test_llama_3b_estimate_within_budget(case):
    args = CASES[case]
    if not args:
        config = EXPERIMENTS / case / "adapter_config.json"
        if not config.is_file():
            pytest.skip("../shared/data is not present")
        args = ["--peft-config", str(config)]
    model = str(CONFIG) if CONFIG.is_file() else "llama-3.2-3b"
    code = ("import atexit, os, sys; from tpme.cli import main; "
            "atexit.register(lambda: sys.stderr.write('VMSTATUS ' + open('/proc/self/status').read().replace(chr(10), ' | ') + chr(10))); "
            "raise SystemExit(main())")
    cmd = [sys.executable, "-c", code, "estimate", "--scenario", "causal-lm", "--model", model, "--batch-size", "4", "--seq-len", "768",
           "--precision", "bf16", "--weights-dtype", "bf16", "--gpu", "l40s,h100,rtx4090", "--json", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = proc.stderr.rsplit("VMSTATUS ", 1)[1].replace(" | ", "\n")
    rss = _peak_rss_bytes(status)
    rows = json.loads(proc.stdout)
    print(f"\n{case}: {wall:.1f} s wall (process start to exit), peak RSS {rss / 2**20:.0f} MiB; "
          + "; ".join(f"{r['gpu']}: peak {r['peak_memory_bytes'] / 2**30:.2f} GiB, reserved {r['predicted_reserved_bytes'] / 2**30:.2f} GiB, step {r['predicted_step_time_s']:.3f} s" for r in rows))
    assert wall < TIME_LIMIT_S
    assert rss < RSS_LIMIT_BYTES
