"""From result records to TPME entries: ok cells only, repeats of a label combined by median."""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from tpme.metrics.tpme import Entry, Score, Weights, score


def entries_from_records(records: list[dict[str, Any]]) -> list[Entry]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r.get("status") == "ok":
            groups[r.get("label") or r["method"]].append(r)
    return [
        Entry(
            label,
            statistics.median(r["epoch_time_s"] for r in rs),
            statistics.median(r["trainable_params"] for r in rs),
            statistics.median(r["peak_memory_bytes"] for r in rs),
        )
        for label, rs in groups.items()
    ]


def score_records(records: list[dict[str, Any]], weights: Weights) -> dict[str, Score]:
    """Scores by label; records that did not finish get none."""
    return {s.method: s for s in score(entries_from_records(records), weights)}


def attach_scores(records: list[dict[str, Any]], weights: Weights) -> list[dict[str, Any]]:
    """Each record with `tpme` (and its terms) set from its label's score, or None."""
    scores = score_records(records, weights)
    out = []
    for r in records:
        s = scores.get(r.get("label") or r["method"])
        out.append({**r, "tpme": s.tpme if s else None, "tpme_rank": s.rank if s else None, "tpme_weights": list(weights.as_tuple())})
    return out
