"""Escaping of record text (labels, errors, options, titles) for the formats reports write.

A label is user input: a method option, a plugin's name, a spec value. Written as it is,
`=HYPERLINK(...)` in a CSV cell runs as a spreadsheet formula, and `<script>` or
`[x](javascript:...)` in Markdown runs or links in whatever renders it.
"""
from __future__ import annotations

import html
from typing import Any

CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MARKDOWN_ACTIVE = "\\`*_[]|#!"


def csv_cell(value: Any) -> Any:
    """A CSV value that no spreadsheet reads as a formula: text starting with = + - @ tab or
    CR gets a leading apostrophe (OWASP's advice); numbers and empty cells pass unchanged."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(CSV_FORMULA_START):
        return "'" + value
    return value


def markdown_text(text: Any) -> str:
    """Text as literal Markdown: & < > become entities (no inline HTML tag survives) and every
    character Markdown acts on is backslash-escaped (no link, image or emphasis survives)."""
    text = html.escape(str(text), quote=False).replace("\n", " ")
    return "".join("\\" + c if c in MARKDOWN_ACTIVE else c for c in text)
