"""Human-readable numbers for tables."""
from __future__ import annotations


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def fmt_params(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.3g}" if s < 10 else f"{s:.1f}"


def fmt_float(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
