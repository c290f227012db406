"""tpme: Training-time, Parameter and GPU-Memory Efficiency benchmarking for PEFT methods."""
from tpme.errors import TpmeError

__version__ = "0.1.0"
__all__ = ["TpmeError", "__version__"]
