"""tpme: Training-time, Parameter and GPU-Memory Efficiency benchmarking for PEFT methods.

In a notebook: `tpme.load(run)` (a pandas DataFrame, one row per record), `tpme.score(df)`
and the report's figures (`tpme.figure(df, "time_memory")`, `tpme.efficiency(df)`, ...).
They are imported on first use, so `import tpme` stays light (no pandas, no matplotlib)."""
from typing import Any

from tpme.errors import TpmeError

__version__ = "0.1.0"
API = ("load", "score", "figure", "efficiency", "time_memory", "effectiveness", "sensitivity_map")
__all__ = ["TpmeError", "__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        from tpme import api

        return getattr(api, name)
    raise AttributeError(f"module 'tpme' has no attribute {name!r}")
