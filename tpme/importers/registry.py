"""The importer registry: one module per published source, registering itself by name.

An importer turns a folder of someone else's result files into typed records
(`source = "published"`). It never raises on one bad file: the file and its problem go
into `ImportResult.refused` and the other files are still read, so a single malformed
or foreign JSON costs that file only.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tpme.errors import TpmeError
from tpme.results.record import Record

BUILTIN_MODULES = ("tpme.importers.peft_method_comparison",)


class Refused(Exception):
    """One input file cannot be imported; the message names the problem."""


@dataclass(frozen=True)
class Refusal:
    file: str
    problem: str


@dataclass
class ImportResult:
    """What one importer read: a record per accepted run, and the refused files with why."""

    records: list[tuple[str, Record]] = field(default_factory=list)  # (file, record)
    refused: list[Refusal] = field(default_factory=list)


class Importer:
    """Reads a published results folder. Subclasses set `name`, `description` and implement `read_file`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    pattern: ClassVar[str] = "*.json"  # the files of a folder the importer reads; others are not its concern

    def read_file(self, path: Path) -> Record:
        """One record from one file, or `Refused` naming the problem."""
        raise NotImplementedError

    def files(self, source: Path) -> list[Path]:
        if source.is_file():
            return [source]
        if not source.is_dir():
            raise TpmeError(f"{source} does not exist", f"give a folder of {self.name} result files (or one such file)")
        found = sorted(p for p in source.glob(self.pattern) if p.is_file())
        if not found:
            raise TpmeError(f"no {self.pattern} file in {source}", f"give the folder holding the {self.name} result files (e.g. its results/)")
        return found

    def read(self, source: Path) -> ImportResult:
        out = ImportResult()
        for path in self.files(source):
            try:
                out.records.append((str(path), self.read_file(path)))
            except Refused as e:
                out.refused.append(Refusal(str(path), str(e)))
        return out


_REGISTRY: dict[str, type[Importer]] = {}


def register_importer(cls: type[Importer]) -> type[Importer]:
    """Class decorator: make `cls` available as `tpme import <cls.name>`."""
    if not cls.name:
        raise TpmeError(f"importer {cls.__qualname__} has no name", "set the class attribute `name`")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TpmeError(f"two importers are named {cls.name!r}", "rename one of them")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def available_importers() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_importer(name: str) -> Importer:
    _load_builtins()
    if name not in _REGISTRY:
        raise TpmeError(f"unknown source {name!r}", f"choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]()
