"""What earlier runs left in a run directory: final records by cell and attempts spent.

results.jsonl holds one final record per cell (ok, oom, or the last failure once its
attempts are spent); attempts.jsonl logs every finished attempt, which is how --retries
counts across resumed runs. Damaged lines (the tail of a write cut short by a crash) are
moved aside on --resume, never dropped; a final attempt whose results line was among
them is recovered from attempts.jsonl.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tpme.errors import TpmeError
from tpme.results.store import ATTEMPTS_FILE, RESULTS_FILE, Scan, append_record, describe_damage, repair, rewrite, scan

FINAL_STATUSES = ("ok", "oom")  # results: never re-run; error and timeout are retried


@dataclass
class RunState:
    results: Scan
    attempts: Scan

    @classmethod
    def open(cls, out_dir: Path, resume: bool, notify: Callable[[str], None]) -> "RunState":
        results, attempts = scan(out_dir / RESULTS_FILE), scan(out_dir / ATTEMPTS_FILE)
        damaged = [s for s in (results, attempts) if s.bad]
        if not resume:
            if results.lines or attempts.lines or damaged:
                found = "; ".join([f"{len(results.records)} result(s) in {results.path}"] + [describe_damage(s) for s in damaged])
                raise TpmeError(f"{out_dir} already holds results: {found}", "add --resume to continue it (damaged lines are then moved aside), or give another --out")
            return cls(results, attempts)
        for s in damaged:
            notify(describe_damage(s) + f"; moved to {repair(s)}")
        return cls(results, attempts)

    def recover(self, retries: int, notify: Callable[[str], None]) -> int:
        """Give a final record back to each cell whose final attempt is in attempts.jsonl but
        whose results line was lost (cut by a crash and moved aside): that attempt was final
        (ok, oom, or its attempts spent), so it is the cell's result, not a failure to re-run."""
        final, spent = self.final(), self.attempts_spent()
        last = {r["cell_key"]: r for r in self.attempts.records}
        lost = [r for key, r in last.items() if key not in final and (r.get("status") in FINAL_STATUSES or spent[key] >= retries)]
        for rec in lost:
            append_record(self.results.path, rec)
        if lost:
            self.results = scan(self.results.path)
            notify(f"{len(lost)} final record(s) missing from {self.results.path} recovered from {self.attempts.path}")
        return len(lost)

    def final(self) -> dict[str, dict[str, Any]]:
        return {r["cell_key"]: r for r in self.results.records}

    def attempts_spent(self) -> Counter:
        return Counter(r["cell_key"] for r in self.attempts.records)

    def forget(self, keys: set[str]) -> None:
        """Drop the final records of cells about to run again, so results.jsonl keeps one per cell."""
        kept = [(line, r) for line, r in zip(self.results.lines, self.results.records) if r["cell_key"] not in keys]
        if len(kept) != len(self.results.records):
            rewrite(self.results.path, [line for line, _ in kept])
            self.results.lines, self.results.records = [line for line, _ in kept], [r for _, r in kept]
