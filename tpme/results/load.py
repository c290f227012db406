"""Finding and merging runs: a results.jsonl, a run directory or a directory of runs (a sweep),
several inputs merged with duplicates counted once; fields read by dotted path; labels
regrouped by a field (e.g. `method_options.r`) so that variants line up by value."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tpme.errors import TpmeError
from tpme.results.record import Record, label
from tpme.results.store import RESULTS_FILE, load_records

MISSING = object()


def find_results(path: Path) -> list[Path]:
    """A results.jsonl, a run directory, or a directory holding run directories (a sweep)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TpmeError(f"{path} does not exist", "give a results.jsonl, a run directory or a sweep directory")
    if (path / RESULTS_FILE).is_file():
        return [path / RESULTS_FILE]
    found = sorted(path.rglob(RESULTS_FILE))
    if not found:
        raise TpmeError(f"no {RESULTS_FILE} in {path} or below it", "give a directory written by `tpme run` or `tpme sweep`")
    return found


def load_inputs(paths: Iterable[str | Path]) -> list[Record]:
    """Records of every input, in order; a record present twice (the same file given twice) counts once."""
    records: list[Record] = []
    seen: set[str] = set()
    for p in paths:
        for f in find_results(Path(p)):
            for rec in load_records(f):
                key = json.dumps(rec.to_dict(), sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    records.append(rec)
    if not records:
        raise TpmeError("the inputs hold no records", "run `tpme run` first, or check the paths")
    return records


def get_field(record: Record, path: str, default: Any = MISSING) -> Any:
    """`a.b.c` into the record as written to disk (`config.train.batch_size`, `axes.r`, `timing.steps`)."""
    node: Any = record.to_dict()
    if path in node:
        return node[path]
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def group_label(record: Record, field: str, value: Any) -> str:
    """The method (with its other options) and the group value, e.g. `lora [r=8]`."""
    options = dict(record.method_options)
    leaf = field.rsplit(".", 1)[-1]
    if field.startswith("method_options."):
        options.pop(leaf, None)
    return f"{label(record.method, options)} [{leaf}={value}]"


def apply_group_by(records: list[Record], field: str) -> tuple[list[Record], dict[str, Any]]:
    """Copies of the records relabelled by `field`, and each new label's value; records
    without the field keep their label (they are the references a trend is drawn against)."""
    values = [get_field(r, field) for r in records]
    if all(v is MISSING for v in values):
        known = sorted(p for p in _paths(records[0].to_dict()) if p.startswith(("method_options.", "axes.", "config."))) if records else []
        raise TpmeError(f"no record has the field {field!r}", "use a dotted path into a record, e.g. " + ", ".join(known[:8] or ["config.train.batch_size"]))
    out, by_label = [], {}
    for r, v in zip(records, values):
        if v is MISSING or isinstance(v, (dict, list)):
            out.append(r)
        else:
            relabelled = dataclasses.replace(r, label=group_label(r, field, v))
            by_label[relabelled.label] = v
            out.append(relabelled)
    return out, by_label


def _paths(record: dict[str, Any], prefix: str = "") -> Iterable[str]:
    for k, v in record.items():
        if isinstance(v, dict):
            yield from _paths(v, f"{prefix}{k}.")
        elif not isinstance(v, list):
            yield f"{prefix}{k}"
