"""The package's dependencies point one way: a walk over every import (function-level ones
included) of every module, mapped to tpme's top-level parts, fails on a forbidden arrow.

Layers, top to bottom: cli > sweep > importers > bench > estimate > reports > scenarios > training >
methods > models > datasets > metrics > results > device > files > errors. A part may import itself
and the parts below it, never one above; the issue's named rules follow as well.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tpme"
LAYERS = [
    {"cli"}, {"sweep"}, {"importers"}, {"bench"}, {"estimate"}, {"reports"}, {"scenarios"}, {"training"}, {"methods"},
    {"models"}, {"datasets"}, {"metrics"}, {"results"}, {"device"}, {"files"}, {"errors"},
]
RANK = {part: i for i, layer in enumerate(LAYERS) for part in layer}
FORBIDDEN = {  # the rules the architecture issue names, checked on their own so a reordering of LAYERS cannot drop them
    "reports": {"bench", "sweep", "estimate", "scenarios", "training", "methods"},
    "metrics": {"bench", "sweep", "estimate", "scenarios", "training", "methods", "reports"},
    "results": set(RANK) - {"results", "files", "errors"},
    "importers": set(RANK) - {"importers", "results", "metrics", "files", "errors"},
    "methods": {"bench", "sweep", "estimate", "scenarios", "cli"},
    "scenarios": {"cli", "sweep", "bench", "estimate"},
}


def part_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "tpme" and len(parts) > 1 else None


def imports() -> dict[str, set[tuple[str, str]]]:
    """part -> {(imported part, 'file:line')} over every import statement of every module."""
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent)
        module = ".".join(rel.with_suffix("").parts)
        src = part_of(module) or "tpme"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                dst = part_of(name)
                if dst and dst != src:
                    out[src].add((dst, f"{rel}:{node.lineno}"))
    return out


def test_every_part_is_in_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if not p.name.startswith("__") and (p.suffix == ".py" or p.is_dir()) and p.name != "__pycache__"}
    assert parts - {"api"} <= set(RANK), f"parts without a layer: {sorted(parts - set(RANK))}"


def test_no_arrow_points_up():
    bad = sorted(f"{where}: {src} -> {dst}" for src, arrows in imports().items() if src in RANK for dst, where in arrows if dst in RANK and RANK[dst] <= RANK[src])
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_named_rules():
    bad = sorted(f"{where}: {src} -> {dst}" for src, arrows in imports().items() for dst, where in arrows if dst in FORBIDDEN.get(src, set()))
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_cli():
    bad = sorted(where for src, arrows in imports().items() for dst, where in arrows if dst == "cli" and src != "tpme")
    assert not bad, bad


def test_no_cycle_between_parts():
    graph = {src: {dst for dst, _ in arrows} for src, arrows in imports().items()}
    seen: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        seen[node] = 1
        for nxt in graph.get(node, ()):
            assert seen.get(nxt) != 1, f"import cycle: {' -> '.join(stack + [node, nxt])}"
            if nxt not in seen:
                visit(nxt, stack + [node])
        seen[node] = 2

    for node in list(graph):
        if node not in seen:
            visit(node, [])


def test_the_check_catches_a_planted_arrow(tmp_path, monkeypatch):
    """A reports module that imports the harness inside a function is found (the test can fail)."""
    fake = tmp_path / "tpme"
    (fake / "reports").mkdir(parents=True)
    (fake / "reports" / "bad.py").write_text("def f():\n    from tpme.bench.cell import run_cell\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert ("bench", "tpme/reports/bad.py:2") in imports()["reports"]
