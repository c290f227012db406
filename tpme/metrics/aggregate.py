"""From result records to TPME entries and scores: ok cells only, repeats of a label combined by median."""
from __future__ import annotations

from typing import Any

from tpme.metrics.tpme import Entry, Score, Weights, score
from tpme.results.aggregate import label_figures
from tpme.results.record import Record


def entries_from_records(records: list[Record]) -> list[Entry]:
    return [Entry(f.label, f.epoch_time_s, f.trainable_params, f.peak_memory_bytes, f.energy_j) for f in label_figures(records)]


def score_records(records: list[Record], weights: Weights) -> dict[str, Score]:
    """Scores by label; records that did not finish get none."""
    return {s.method: s for s in score(entries_from_records(records), weights)}


def scored_dicts(records: list[Record], weights: Weights) -> list[dict[str, Any]]:
    """Each record as written to disk, with `tpme`, `tpme_rank` and `tpme_weights` from its label's score."""
    scores = score_records(records, weights)
    out = []
    for r in records:
        s = scores.get(r.label)
        out.append({**r.to_dict(), "tpme": s.tpme if s else None, "tpme_rank": s.rank if s else None, "tpme_weights": list(weights.given())})
    return out
