"""What a report states about where its figures come from: devices, versions, command lines,
presets, commits, configs, which figures were measured, extrapolated or estimated, and the
cells that failed with their errors."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tpme.reports.summary import Summary
from tpme.results.record import Record


@dataclass
class Provenance:
    inputs: list[str]
    devices: list[str]
    versions: dict[str, list[str]]
    commands: list[str]
    presets: list[str]
    commits: list[str]
    hosts: list[str]
    configs: list[dict[str, Any]]
    sources: list[dict[str, Any]]  # per label: epoch time and memory sources
    failures: list[dict[str, Any]] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)  # tpme | official (the recommendation scenario's)

    def items(self) -> list[tuple[str, str]]:
        """Key/value lines for the report's provenance section."""
        vers = "; ".join(f"{k} {'/'.join(v)}" for k, v in self.versions.items())
        return [
            ("inputs", ", ".join(self.inputs) or "-"),
            ("device", "; ".join(self.devices) or "-"),
            ("versions", vers or "-"),
            ("command line", " | ".join(self.commands) or "-"),
            ("preset", ", ".join(self.presets) or "-"),
            ("protocol", ", ".join(self.protocols) or "-"),
            ("git commit", ", ".join(self.commits) or "-"),
            ("host", ", ".join(self.hosts) or "-"),
        ]

    def cautions(self) -> list[str]:
        """What a reader must know before comparing the rows: mixed hardware or settings."""
        out = []
        if len(self.devices) > 1:
            out.append(f"These results come from {len(self.devices)} devices ({'; '.join(self.devices)}): rows measured on different hardware are not comparable.")
        if len(self.protocols) > 1:
            out.append(f"These results mix protocols ({', '.join(self.protocols)}): the official IISAN code's workload, learning rates and evaluation "
                       "differ from tpme's, so rows of different protocols are not comparable.")
        if len(self.configs) > 1:
            out.append(f"These results use {len(self.configs)} different configurations (see Configuration below).")
        return out

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v not in (None, "")))


def _device(rec: Record) -> str | None:
    d = rec.provenance.device
    name = rec.provenance.device_name or rec.device
    if name and d.get("driver"):
        name += f" (driver {d['driver']})"
    return name


def collect(records: list[Record], summary: Summary, inputs: list[str]) -> Provenance:
    provs = [r.provenance for r in records]
    versions: dict[str, list[str]] = {}
    for p in provs:
        for k, v in p.versions.items():
            if v and v not in versions.setdefault(k, []):
                versions[k].append(v)
    configs = _unique([json.dumps(r.config, sort_keys=True) for r in records if r.config])
    sources = [
        {"label": r.label, "epoch_time": r.epoch_time_source, "memory": r.memory_kind, "memory_source": r.memory_source, "effectiveness": "measured" if r.quality else None}
        for r in summary.rows if r.ok
    ]
    failures = [{"label": row.label, **f} for row in summary.rows for f in row.failures]
    return Provenance(
        inputs=inputs,
        devices=_unique([_device(r) for r in records]),
        versions=versions,
        commands=_unique([" ".join(p.command) if isinstance(p.command, list) else p.command for p in provs]),
        presets=_unique([r.preset for r in records]),
        commits=_unique([p.git_commit for p in provs]),
        hosts=_unique([p.host for p in provs]),
        configs=[json.loads(c) for c in configs],
        sources=sources,
        failures=failures,
        protocols=_unique([r.protocol for r in records]),
    )
