"""The result record: one JSON object per cell, schema `tpme.result/1`, in results.jsonl.

Flat top-level fields carry what tables and scores need; nested objects carry details.
Appends are a single write of one line, flushed and fsynced, so a crash never leaves
a record half-written without it being detectable (a last line that does not parse).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tpme.errors import TpmeError

SCHEMA = "tpme.result/1"
FLAT_FIELDS = (
    "schema", "cell_key", "method", "label", "status", "error", "repeat",
    "epoch_time_s", "epoch_time_source", "step_time_s", "steps_per_epoch",
    "trainable_params", "total_params", "peak_memory_bytes", "memory_source",
    "prepare_time_s", "hr@10", "ndcg@10", "device", "precision", "preset",
)
RESULTS_FILE = "results.jsonl"


def cell_key(method: str, options: dict[str, Any], config: dict[str, Any], repeat: int) -> str:
    """Deterministic key of a cell: same method, options, config and repeat -> same key."""
    blob = json.dumps({"method": method, "options": options, "config": config, "repeat": repeat}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def label(method: str, options: dict[str, str]) -> str:
    """How a cell is named in tables: the method, with its non-default options."""
    if not options:
        return method
    return f"{method}({','.join(f'{k}={v}' for k, v in sorted(options.items()))})"


def empty_record(method: str, options: dict[str, str], config: dict[str, Any], repeat: int) -> dict[str, Any]:
    rec: dict[str, Any] = dict.fromkeys(FLAT_FIELDS)
    rec.update(
        schema=SCHEMA,
        cell_key=cell_key(method, options, config, repeat),
        method=method,
        label=label(method, options),
        repeat=repeat,
        preset=config.get("preset"),
        precision=config.get("train", {}).get("precision"),
        method_options=options,
        config=config,
    )
    return rec


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a results.jsonl or a run directory holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise TpmeError(f"no results file at {path}", "give a results.jsonl or a run directory written by `tpme run`")
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise TpmeError(f"{path}:{lineno}: not a JSON record (a partial line from an interrupted run?)", "delete that line or re-run the cell") from None
            if rec.get("schema") != SCHEMA:
                raise TpmeError(f"{path}:{lineno}: schema {rec.get('schema')!r} is not {SCHEMA!r}")
            records.append(rec)
    return records
