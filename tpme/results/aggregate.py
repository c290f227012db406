"""Records to one figure set per label: ok cells only, repeats combined by their median."""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from tpme.errors import TpmeError
from tpme.results.record import Record

REPEAT_FIELDS = ("train.seed",)  # what repeats of one configuration differ in


@dataclass(frozen=True)
class LabelFigures:
    """The median T, P and M over a label's ok repeats (and energy per epoch where every repeat measured it)."""

    label: str
    epoch_time_s: float
    trainable_params: float
    peak_memory_bytes: float
    energy_j: float | None = None
    repeats: int = 1


def by_label(records: list[Record]) -> dict[str, list[Record]]:
    """Records grouped by label, in first-seen order."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[r.label].append(r)
    return dict(groups)


def label_figures(records: list[Record]) -> list[LabelFigures]:
    out = []
    for name, rs in by_label(records).items():
        ok = [r for r in rs if r.ok]
        if not ok:
            continue
        energy = [r.energy_per_epoch_j for r in ok]
        out.append(LabelFigures(
            name,
            statistics.median(r.epoch_time_s for r in ok),
            statistics.median(r.trainable_params for r in ok),
            statistics.median(r.peak_memory_bytes for r in ok),
            statistics.median(energy) if all(e is not None for e in energy) else None,
            len(ok),
        ))
    return out


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_fingerprint(record: Record) -> str:
    """The record's configuration without what repeats differ in: equal for repeats of one cell."""
    flat = {k: v for k, v in _flat(record.config).items() if k not in REPEAT_FIELDS}
    return json.dumps(flat, sort_keys=True, default=str)


def check_one_configuration(records: list[Record]) -> None:
    """Refuse to combine a label's ok records measured under different configurations: their
    median would be a figure no configuration produced (e.g. two batch sizes in one run folder)."""
    for name, rs in by_label(records).items():
        configs = {config_fingerprint(r): r for r in rs if r.ok}
        if len(configs) > 1:
            flats = [_flat(r.config) for r in configs.values()]
            differ = sorted(k for k in set().union(*flats) if k not in REPEAT_FIELDS and len({json.dumps(f.get(k), default=str) for f in flats}) > 1)
            raise TpmeError(f"{name}: {len(configs)} different configurations among its results (they differ in {', '.join(differ[:6]) or 'the config'}); "
                            "a median over them is not a measurement", "score one configuration at a time, or compare them with `tpme report --group-by FIELD`")
