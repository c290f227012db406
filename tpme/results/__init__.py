"""The results contract: the typed result record, its files, and finding, merging and aggregating runs.

Everything that reads results (metrics, reports, the notebook API) depends on this package
and nothing of the harness; the harness and the importers write records through it.
"""
from tpme.results.record import MEMORY_CATEGORIES, SCHEMA, Baseline, Estimate, Memory, Provenance, Quality, QualityValue, Record, Timing
from tpme.results.store import RESULTS_FILE, append_record, load_records

__all__ = [
    "MEMORY_CATEGORIES", "RESULTS_FILE", "SCHEMA", "Baseline", "Estimate", "Memory", "Provenance", "Quality", "QualityValue",
    "Record", "Timing", "append_record", "load_records",
]
