"""Budget of `tpme estimate` at the paper preset (BERT-base + ViT-base/224, batch 32):
each method in its own process must stay under 2 GB RSS and 2 minutes.

Not part of the test suite (testpaths = tests); run it with
    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python -m pytest benchmarks/test_estimate_budget.py -q
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import pytest

from tpme.methods.registry import available_methods

RSS_LIMIT_BYTES = 2 * 10**9
TIME_LIMIT_S = 120.0


@pytest.mark.parametrize("method", list(available_methods()))
def test_paper_estimate_within_budget(method):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", "from tpme.cli import main; raise SystemExit(main())", "estimate", "--preset", "paper", "--methods", method, "--gpu", "h100", "--json"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux; the largest child so far (an upper bound)
    rows = json.loads(proc.stdout)
    print(f"{method}: {wall:.1f} s wall, max RSS of children so far {peak_rss / 2**20:.0f} MiB, peak estimate {rows[0]['peak_memory_bytes'] / 2**30:.2f} GiB")
    assert wall < TIME_LIMIT_S
    assert peak_rss < RSS_LIMIT_BYTES
