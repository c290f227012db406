"""Sentences every report format shares: the weights used, and the reference baselines with
the methods they beat (a method that loses to the popularity ranking learnt little)."""
from __future__ import annotations

from tpme.reports.summary import Summary


def weights_sentence(summary: Summary) -> str:
    w = summary.weights
    text = f"TPME weights: a1 (time) = {w.time:g}, a2 (parameters) = {w.params:g}, a3 (memory) = {w.memory:g}"
    return text + (f", a4 (energy per epoch) = {w.energy:g}." if w.energy else ".")


def baseline_sentences(summary: Summary) -> list[str]:
    """Each reference (popularity) with its figures, and how many methods it beats: a method
    that does not beat the popularity ranking has learnt nothing worth its cost."""
    out = []
    for b in summary.baselines:
        figures = []
        for q in summary.quality_metrics:
            if q.name not in b.quality:
                continue
            v = b.quality[q.name].value
            rows = [r for r in summary.scored if q.name in r.quality]
            beaten = [r.label for r in rows if (r.quality[q.name] < v if q.higher_is_better else r.quality[q.name] > v)]
            verdict = f"beats every method ({len(rows)})" if rows and len(beaten) == len(rows) else f"beats {len(beaten)} of {len(rows)}: {', '.join(beaten)}" if beaten else f"beaten by all {len(rows)} methods"
            figures.append(f"{q.title} {v:.4f} ({verdict})")
        if not summary.quality_metrics and b.quality:  # the methods were not evaluated: the reference alone
            figures = [f"{k.upper() if '@' in k else k} {q.value:.4f}" for k, q in b.quality.items()]
            out.append(f"The {b.name} baseline (not trained, not scored): " + ", ".join(figures) + "; the methods were not evaluated (add --eval to compare them with it).")
        elif figures:
            out.append(f"The {b.name} baseline (not trained, not scored): " + "; ".join(figures) + ".")
    return out
