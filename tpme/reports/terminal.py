"""The one terminal table renderer every CLI command prints through (built on rich).

Numbers right-aligned, text left-aligned, a rule under the header, the unit of a column in
its header (never in its cells), notes below. Colour and bold only on a terminal that wants
them: with NO_COLOR set, or when stdout is not a TTY (a pipe, a file, a test), the output is
plain ASCII text with no escape codes. Lines are never folded to the terminal's width: a
wide table wraps like any long line, so its columns stay intact when piped or copied.
"""
from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

# A header rule of ASCII dashes and nothing else: what a plain pipe or file gets.
PLAIN_BOX = box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)
MARKS = frozenset("*~+?")  # the marks of reports.table: extrapolated, estimated, mixed, unknown
UNBOUNDED = 100_000  # console width: rich never folds a cell


@dataclass
class TextTable:
    """Headers, cell strings, which columns are numbers, notes printed under the table."""

    headers: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    failed_rows: set[int] = field(default_factory=set)  # drawn in red on a colour terminal
    title: str | None = None


def use_colour(stream: object = None) -> bool:
    """Colour only for a TTY, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def render(table: TextTable, colour: bool | None = None) -> str:
    """The table as text; `colour` None decides from stdout (see `use_colour`)."""
    colour = use_colour() if colour is None else colour
    t = RichTable(
        box=box.SIMPLE_HEAD if colour else PLAIN_BOX, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True,
        header_style="bold" if colour else "", title=table.title, title_justify="left", title_style="bold" if colour else "",
    )
    headers, rows = _align(table)
    for h in headers:
        t.add_column(Text(h), no_wrap=True)
    for r, cells in enumerate(rows):
        t.add_row(*(Text(c) for c in cells), style="red" if colour and r in table.failed_rows else None)
    buf = io.StringIO()
    console = Console(file=buf, width=UNBOUNDED, force_terminal=colour, no_color=not colour, color_system="standard" if colour else None,
                      highlight=False, emoji=False, markup=False, legacy_windows=False)
    console.print(t)
    lines = [line.rstrip() for line in buf.getvalue().splitlines()]
    if not colour:
        lines = _drop_blank_edges(lines)
    text = "\n".join(lines)
    if table.notes:
        text += "\n\n" + "\n".join(table.notes)
    return text


def _align(table: TextTable) -> tuple[list[str], list[list[str]]]:
    """Number columns padded here, right-aligned to the column's width; where some cells end
    in a mark (`44.0*`), unmarked numbers get a trailing space so the digits line up."""
    headers, rows = list(table.headers), [list(r) for r in table.rows]
    for i in table.numeric:
        column = [r[i] for r in rows if i < len(r)]
        marked = any(c[-1:] in MARKS for c in column)
        cells = [c + " " if marked and c[-1:] not in MARKS and (c[-1:].isdigit() or c == "-") else c for c in column]
        width = max([len(headers[i]), *(len(c) for c in cells)])
        headers[i] = headers[i].rjust(width)
        for r, c in zip((r for r in rows if i < len(r)), cells):
            r[i] = c.rjust(width)
    return headers, rows


def _drop_blank_edges(lines: Sequence[str]) -> list[str]:
    out = list(lines)
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    return out


def print_table(table: TextTable, file: object = None) -> None:
    """Print to stdout (or `file`), in colour only where `use_colour` says so."""
    stream = sys.stdout if file is None else file
    print(render(table, use_colour(stream)), file=stream)  # type: ignore[call-overload]
