"""Quality metrics by name, each with its direction, so no report hard-codes HR@10.

A scenario names the metrics its evaluation produces; a record carries each value with
its direction and split, so reports and `tpme compare` know which way is better even for
a metric they have never seen (an imported accuracy, a plugin's score).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QualityMetric:
    name: str  # the key in records: hr@10, ndcg@10, loss, perplexity, accuracy, forgetting, ...
    title: str  # how tables and figures head it
    higher_is_better: bool


KNOWN: dict[str, QualityMetric] = {
    m.name: m
    for m in (
        QualityMetric("hr@10", "HR@10", True),
        QualityMetric("ndcg@10", "NDCG@10", True),
        QualityMetric("loss", "held-out loss", False),
        QualityMetric("perplexity", "perplexity", False),
        QualityMetric("accuracy", "accuracy", True),
        QualityMetric("forgetting", "forgetting", False),
        QualityMetric("dino_similarity", "DINOv2 similarity", True),
        QualityMetric("drift", "drift", False),
    )
}


def metric(name: str, higher_is_better: bool | None = None) -> QualityMetric:
    """The known metric of that name, or a new one with the direction given (higher by default)."""
    if name in KNOWN:
        return KNOWN[name]
    return QualityMetric(name, name, True if higher_is_better is None else higher_is_better)
