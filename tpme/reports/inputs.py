"""Result records for reports: several inputs merged, fields read by dotted path, and
labels regrouped by a field (e.g. `method_options.r`) so that variants line up by value."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tpme.bench.record import RESULTS_FILE, label, load_records
from tpme.errors import TpmeError

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


def load_inputs(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Records of every input, in order; a record present twice (the same file given twice) counts once."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    for p in paths:
        for f in find_results(Path(p)):
            for rec in load_records(f):
                key = json.dumps(rec, sort_keys=True, default=str)
                if key not in seen:
                    seen.add(key)
                    records.append(rec)
    if not records:
        raise TpmeError("the inputs hold no records", "run `tpme run` first, or check the paths")
    return records


def get_field(record: dict[str, Any], path: str, default: Any = MISSING) -> Any:
    """`a.b.c` into nested dicts; a top-level key containing dots (none today) is tried first."""
    if path in record:
        return record[path]
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def group_label(record: dict[str, Any], field: str, value: Any) -> str:
    """The method (with its other options) and the group value, e.g. `lora [r=8]`."""
    options = dict(record.get("method_options") or {})
    leaf = field.rsplit(".", 1)[-1]
    if field.startswith("method_options."):
        options.pop(leaf, None)
    base = label(record["method"], options) if record.get("method") else record.get("label", "?")
    return f"{base} [{leaf}={value}]"


def apply_group_by(records: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Copies of the records relabelled by `field`; records without the field keep their label
    (they are the references a trend is drawn against) and get `group_value` None."""
    if not any(get_field(r, field) is not MISSING for r in records):
        known = sorted(p for p in _paths(records[0]) if p.startswith(("method_options.", "axes.", "config."))) if records else []
        raise TpmeError(f"no record has the field {field!r}", "use a dotted path into a record, e.g. " + ", ".join(known[:8] or ["config.train.batch_size"]))
    out = []
    for r in records:
        value = get_field(r, field)
        if value is MISSING or isinstance(value, (dict, list)):
            out.append({**r, "group_value": None})
        else:
            out.append({**r, "label": group_label(r, field, value), "group_value": value})
    return out


def _paths(record: dict[str, Any], prefix: str = "") -> Iterable[str]:
    for k, v in record.items():
        if isinstance(v, dict):
            yield from _paths(v, f"{prefix}{k}.")
        elif not isinstance(v, list):
            yield f"{prefix}{k}"
