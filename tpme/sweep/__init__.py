"""The one orchestrator: `tpme run` (one configuration x methods x repeats) and `tpme sweep` (a grid
from a spec) plan cells, prepare each distinct dataset once with its reference baselines, and
drive an executor (local subprocesses, Ray, in-process) with retries, resume and one
append-safe results.jsonl."""
