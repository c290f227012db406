"""Human-readable numbers for tables, and the one unit a whole column is printed in."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

BYTE_UNITS = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
COUNT_UNITS = (("B", 1e9), ("M", 1e6), ("K", 1e3))


@dataclass(frozen=True)
class Unit:
    """A column's unit: its name for the header and the size one of it stands for."""

    name: str
    size: float

    def header(self, title: str) -> str:
        """`peak memory (MiB)`; a count in units of one keeps its bare title."""
        return f"{title} ({self.name})" if self.name else title

    def cell(self, value: float | None, digits: int = 2) -> str:
        """`digits` decimals; below 1 of the unit three significant digits (0.0370, not 0.04)."""
        if value is None:
            return "-"
        x = value / self.size
        if self.size == 1 and float(x).is_integer():
            return f"{x:.0f}"
        return f"{x:.3g}" if 0 < abs(x) < 1 else f"{x:.{digits}f}"


def byte_unit(values: Iterable[float | None]) -> Unit:
    """The largest binary unit the column's largest value reaches (one unit per column)."""
    top = max((v for v in values if v is not None), default=0)
    return next((Unit(n, s) for n, s in BYTE_UNITS if top >= s), Unit("B", 1))


def count_unit(values: Iterable[float | None]) -> Unit:
    top = max((v for v in values if v is not None), default=0)
    return next((Unit(n, s) for n, s in COUNT_UNITS if top >= s), Unit("", 1))


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in BYTE_UNITS:
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def fmt_params(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in COUNT_UNITS:
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.3g}" if s < 10 else f"{s:.1f}"


def fmt_float(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
