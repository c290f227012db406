"""The header of a committed GPU result: when, on what, with which command (JSON on stdout)."""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from tpme.device import resolve_device
from tpme.bench.provenance import provenance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--command", required=True, help="the command whose results this header describes")
    args = ap.parse_args(argv)
    device = resolve_device("auto")
    env = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": args.command,
        "cuda_available": torch.cuda.is_available(),
        "provenance": provenance(device, [args.command]),
    }
    json.dump(env, sys.stdout, indent=2, default=str)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
