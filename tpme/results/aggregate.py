"""Records to one figure set per label: ok cells only, repeats combined by their median."""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from tpme.results.record import Record


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
