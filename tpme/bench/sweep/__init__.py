"""Sweeps: grids of methods x method options x settings x seeds, run cell by cell in their own
processes on a local executor or a Ray cluster, resumable, with one results.jsonl per sweep."""
