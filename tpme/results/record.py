"""The result record: one typed object per cell (or per published run), schema `tpme.result/2`.

On disk a record is one JSON object per line of results.jsonl. The headline figures that
tables and scores need are flat top-level fields (`epoch_time_s`, `trainable_params`,
`peak_memory_bytes`, ...); details live in typed nested objects (timing, memory,
execution, quality, estimate, provenance). `Record.from_dict` validates every field it
reads (a text where a number belongs is an error naming the field, never a TypeError in a
report) and upgrades schema `tpme.result/1` files written before the scenario axis.
Fields a newer tpme wrote and this one does not know are kept in `extra` and written back.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from tpme.errors import TpmeError
from tpme.results.quality import metric

SCHEMA = "tpme.result/2"
SCHEMA_V1 = "tpme.result/1"
READABLE_SCHEMAS = (SCHEMA, SCHEMA_V1)
STATUSES = ("ok", "oom", "error", "timeout")
SOURCES = ("measured", "published")
# Peak-memory categories of a breakdown, in the order figures stack them.
MEMORY_CATEGORIES = ("parameters", "buffers", "gradients", "optimizer_state", "activations", "temporaries", "batch")
TIME_SOURCES = ("measured", "extrapolated", "estimated", "published")
# The flat top-level fields of a record on disk: what tables, scores and other tools read.
FLAT_FIELDS = (
    "schema", "source", "scenario", "cell_key", "method", "label", "status", "error", "repeat", "seed",
    "epoch_time_s", "epoch_time_source", "step_time_s", "steps_per_epoch", "trainable_params", "total_params",
    "peak_memory_bytes", "memory_source", "prepare_time_s", "device", "precision", "preset", "adapter_bytes",
)


def cell_key(method: str, options: dict[str, Any], config: dict[str, Any], repeat: int) -> str:
    """Deterministic key of a cell: same method, options, config and repeat -> same key."""
    blob = json.dumps({"method": method, "options": options, "config": config, "repeat": repeat}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def label(method: str, options: dict[str, Any]) -> str:
    """How a cell is named in tables: the method, with its non-default options."""
    if not options:
        return method
    return f"{method}({','.join(f'{k}={v}' for k, v in sorted(options.items()))})"


class _Reader:
    """Typed access to one JSON object, every problem named with its place."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise TpmeError(f"{where}: expected a JSON object, got {type(data).__name__}", "a results file holds one JSON object per line")
        self.data, self.where = data, where

    def _fail(self, key: str, want: str) -> TpmeError:
        return TpmeError(f"{self.where}: field {key!r} must be {want}, got {self.data[key]!r:.80}", "fix or delete that record")

    def number(self, key: str, integer: bool = False) -> Any:
        v = self.data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            raise self._fail(key, "an integer" if integer else "a number")
        if not math.isfinite(v):
            raise self._fail(key, "a finite number")
        return int(v) if integer else v

    def text(self, key: str, default: str | None = None) -> str | None:
        v = self.data.get(key, default)
        if v is not None and not isinstance(v, str):
            raise self._fail(key, "a string")
        return v

    def obj(self, key: str) -> dict[str, Any]:
        v = self.data.get(key)
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self._fail(key, "a JSON object")
        return v

    def numbers(self, key: str) -> list[float]:
        v = self.data.get(key)
        if v is None:
            return []
        if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) for x in v):
            raise self._fail(key, "a list of finite numbers")
        return list(v)

    def number_map(self, key: str) -> dict[str, float]:
        v = self.obj(key)
        bad = [k for k, x in v.items() if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x)]
        if bad:
            raise TpmeError(f"{self.where}: {key}.{bad[0]} must be a finite number, got {v[bad[0]]!r:.80}", "fix or delete that record")
        return dict(v)

    def sub(self, key: str) -> "_Reader":
        return _Reader(self.obj(key), f"{self.where}: {key}")


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != {} and v != []}


@dataclass
class Timing:
    """How the step times were measured, beyond the headline epoch and step time."""

    steps: int | None = None  # timed steps
    warmup_steps: int | None = None
    stats: dict[str, float] = field(default_factory=dict)  # of the step times: median, mean, min, max, p10, p90, std
    step_times_s: list[float] = field(default_factory=list)
    breakdown_median_s: dict[str, float] = field(default_factory=dict)  # data, forward, backward, optimizer
    note: str | None = None  # e.g. what a published training time covers
    median_ci_s: list[float] = field(default_factory=list)  # [low, high]: seeded bootstrap interval of the median step time
    epoch_time_ci_s: list[float] = field(default_factory=list)  # [low, high]: the same interval scaled to the epoch time
    ci_level: float | None = None  # of both intervals, e.g. 0.95
    outlier_steps: list[int] = field(default_factory=list)  # indices into step_times_s flagged as outliers (kept, not dropped)
    # the epoch as a protocol defines it, by part (official: train, validation, test, checkpoint), each timed once;
    # the record's epoch_time_s is their sum. Empty: the epoch is the training alone (tpme's protocol, older records)
    epoch_parts_s: dict[str, float] = field(default_factory=dict)
    checkpoint_bytes: int | None = None  # the size of the checkpoint file the `checkpoint` part wrote

    @property
    def timed_once_s(self) -> float:
        """The epoch parts timed once rather than derived from the steps (all but `train`)."""
        return sum(v for k, v in self.epoch_parts_s.items() if k != "train")

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(dataclasses.asdict(self))

    @classmethod
    def read(cls, r: _Reader) -> "Timing":
        stats_key = "stats" if "stats" in r.data else "step_time_s"  # /1 kept the stats under step_time_s
        stats = r.number_map(stats_key) if isinstance(r.data.get(stats_key), dict) else {}
        return cls(r.number("steps", True), r.number("warmup_steps", True), stats, r.numbers("step_times_s"), r.number_map("breakdown_median_s"), r.text("note"),
                   _pair(r, "median_ci_s"), _pair(r, "epoch_time_ci_s"), r.number("ci_level"), [int(x) for x in r.numbers("outlier_steps")],
                   r.number_map("epoch_parts_s"), r.number("checkpoint_bytes", True))


def _pair(r: _Reader, key: str) -> list[float]:
    """An interval [low, high], or [] when absent (records written before intervals existed)."""
    v = r.numbers(key)
    if v and (len(v) != 2 or v[0] > v[1]):
        raise r._fail(key, "an interval [low, high]")
    return v


@dataclass
class Memory:
    """Every memory figure a cell measured; the headline M is `Record.peak_memory_bytes`."""

    peak_allocated_bytes: int | None = None  # CUDA allocator
    peak_reserved_bytes: int | None = None
    nvml_peak_bytes: int | None = None  # the process as nvidia-smi shows it
    cpu_tensor_peak_bytes: int | None = None
    allocated_at_failure_bytes: int | None = None
    energy_j: float | None = None  # NVML energy counter over the timed window

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(dataclasses.asdict(self))

    @classmethod
    def read(cls, r: _Reader) -> "Memory":
        return cls(**{f.name: r.number(f.name, integer=f.name.endswith("_bytes")) for f in dataclasses.fields(cls)})


@dataclass
class QualityValue:
    value: float
    higher_is_better: bool
    split: str | None = None  # test, valid, ...

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(dataclasses.asdict(self))


@dataclass
class Quality:
    """Named quality metrics with their direction, and the scenario's evaluation details."""

    metrics: dict[str, QualityValue] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)  # per epoch, best epoch, masking, time, ...

    def value(self, name: str) -> float | None:
        q = self.metrics.get(name)
        return None if q is None else q.value

    def to_dict(self) -> dict[str, Any]:
        return _drop_none({"metrics": {k: v.to_dict() for k, v in self.metrics.items()}, "evaluation": self.evaluation})

    @classmethod
    def read(cls, r: _Reader) -> "Quality":
        metrics = {}
        for name, raw in r.obj("metrics").items():
            q = _Reader(raw, f"{r.where}.metrics.{name}")
            value = q.number("value")
            if value is None:
                continue
            hib = q.data.get("higher_is_better", metric(name).higher_is_better)
            if not isinstance(hib, bool):
                raise TpmeError(f"{q.where}: higher_is_better must be true or false", "fix or delete that record")
            metrics[name] = QualityValue(value, hib, q.text("split"))
        return cls(metrics, r.obj("evaluation"))


@dataclass
class Estimate:
    """The GPU-free estimate stored beside a measurement (or printed by `tpme estimate`)."""

    peak_memory_bytes: int | None = None
    breakdown: dict[str, int] = field(default_factory=dict)  # MEMORY_CATEGORIES -> bytes live at the peak
    predicted_reserved_bytes: int | None = None
    flops_per_step: float | None = None
    kernels_per_step: int | None = None
    predicted_step_time_s: float | None = None
    predicted_epoch_time_s: float | None = None
    target: str | None = None  # cpu | cuda
    gpu: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # everything else the estimator reports

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        details = d.pop("details")
        return {"source": "estimate", **_drop_none(d), **details}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "estimate") -> "Estimate":
        r = _Reader(data, where)
        known = {f.name for f in dataclasses.fields(cls)} | {"source"}
        raw_breakdown = r.number_map("breakdown")
        unknown = [k for k in raw_breakdown if k not in MEMORY_CATEGORIES]
        if unknown:
            raise TpmeError(f"{where}: breakdown has unknown categories {unknown}", f"categories are {', '.join(MEMORY_CATEGORIES)}")
        return cls(
            r.number("peak_memory_bytes", True), {k: int(v) for k, v in raw_breakdown.items()}, r.number("predicted_reserved_bytes", True),
            r.number("flops_per_step"), r.number("kernels_per_step", True), r.number("predicted_step_time_s"), r.number("predicted_epoch_time_s"),
            r.text("target"), r.text("gpu"), r.text("error"), {k: v for k, v in data.items() if k not in known},
        )


@dataclass
class Provenance:
    """Where and with what a figure was made."""

    versions: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)  # type, name, driver, memory, ...
    git_commit: str | None = None
    command: list[str] | str | None = None
    host: str | None = None
    platform: str | None = None
    timestamp: str | None = None  # ISO 8601, UTC
    seed: int | None = None  # the seed this repeat really trained with
    host_state: dict[str, Any] = field(default_factory=dict)  # tpme.bench.host: load, CPU, memory, GPU processes before/after, busy and why
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device_name(self) -> str | None:
        name = self.device.get("name")
        return name if isinstance(name, str) else None

    @property
    def host_busy(self) -> bool:
        """The host was busy while this cell was measured (False when not recorded)."""
        return self.host_state.get("busy") is True

    @property
    def host_reasons(self) -> list[str]:
        reasons = self.host_state.get("reasons")
        return [str(x) for x in reasons] if isinstance(reasons, list) else []

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        return {**_drop_none(d), **extra}

    @classmethod
    def read(cls, r: _Reader) -> "Provenance":
        names = {f.name for f in dataclasses.fields(cls)}
        command = r.data.get("command")
        if command is not None and not isinstance(command, (str, list)):
            raise TpmeError(f"{r.where}: command must be a list or a string", "fix or delete that record")
        return cls(r.obj("versions"), r.obj("device"), r.text("git_commit"), command, r.text("host"), r.text("platform"), r.text("timestamp"),
                   r.number("seed", True), r.obj("host_state"), {k: v for k, v in r.data.items() if k not in names})


@dataclass
class Baseline:
    """A reference a scenario evaluates once per dataset (popularity ranking); never TPME-scored."""

    name: str
    quality: dict[str, QualityValue] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.name, "quality": {k: v.to_dict() for k, v in self.quality.items()}, **self.details}

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any], where: str) -> "Baseline":
        r = _Reader(data, where)
        quality = Quality.read(_Reader({"metrics": r.obj("quality")}, where)).metrics
        if not quality:  # schema /1: hr@10 and ndcg@10 at the top of the baseline
            quality = {k: QualityValue(v, True, "test") for k in ("hr@10", "ndcg@10") if (v := r.number(k)) is not None}
        return cls(name, quality, {k: v for k, v in data.items() if k not in ("method", "quality")})


@dataclass
class Record:
    """One cell's result (or one published run): headline T, P, M and every detail, typed."""

    method: str
    label: str = ""
    status: str = "error"
    schema: str = SCHEMA
    source: str = "measured"  # measured | published
    scenario: str = "recommendation"
    cell_key: str = ""
    method_options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    repeat: int = 0
    seed: int | None = None  # the seed this repeat really used
    epoch_time_s: float | None = None
    epoch_time_source: str | None = None  # measured | extrapolated | estimated | published
    step_time_s: float | None = None
    steps_per_epoch: int | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    adapter_bytes: int | None = None  # the trainable state saved as safetensors (file size); absent in older records
    peak_memory_bytes: int | None = None
    memory_source: str | None = None  # cuda_allocator | cpu_tensor_peak | cuda_reserved | estimate
    prepare_time_s: float | None = None
    device: str | None = None
    precision: str | None = None
    preset: str | None = None
    protocol: str = "tpme"  # the workload/settings protocol (recommendation: tpme | official); records before it: tpme
    timing: Timing = field(default_factory=Timing)
    memory: Memory = field(default_factory=Memory)
    execution: dict[str, Any] = field(default_factory=dict)
    quality: Quality = field(default_factory=Quality)
    estimate: Estimate | None = None
    provenance: Provenance = field(default_factory=Provenance)
    data: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, Any] = field(default_factory=dict)
    prepare: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, Baseline] = field(default_factory=dict)
    axes: dict[str, Any] = field(default_factory=dict)
    attempt: int | None = None
    host: str | None = None  # the node a Ray task ran on
    traceback: str | None = None
    log_tail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know, kept verbatim

    def __post_init__(self) -> None:
        if not self.label:
            self.label = label(self.method, self.method_options)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def energy_j(self) -> float | None:
        """Energy over the timed window (all timed steps), from the NVML counter."""
        return self.memory.energy_j

    @property
    def energy_per_epoch_j(self) -> float | None:
        """The timed window's energy scaled to one epoch (timed steps -> steps per epoch)."""
        if self.memory.energy_j is None or not self.timing.steps or not self.steps_per_epoch:
            return None
        return self.memory.energy_j * self.steps_per_epoch / self.timing.steps

    def quality_value(self, name: str) -> float | None:
        return self.quality.value(name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to results.jsonl: flat headline fields, nested details."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "extra":
                continue
            if f.name == "baselines":
                v = {k: b.to_dict() for k, b in v.items()}
            elif f.name == "estimate":
                v = None if v is None else v.to_dict()
            elif hasattr(v, "to_dict"):
                v = v.to_dict()
            out[f.name] = v
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> "Record":
        """A validated record from its JSON object (schema /2, or /1 upgraded)."""
        r = _Reader(data, where)
        schema = r.text("schema")
        if schema not in READABLE_SCHEMAS:
            raise TpmeError(f"{where}: schema {schema!r} is not one of {', '.join(READABLE_SCHEMAS)}", "was it written by a newer tpme? upgrade tpme")
        method = r.text("method")
        if not method:
            raise TpmeError(f"{where}: no method name", "fix or delete that record")
        status = r.text("status")
        if status not in STATUSES:
            raise TpmeError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}", "fix or delete that record")
        source = r.text("source", "measured")
        if source not in SOURCES:
            raise TpmeError(f"{where}: source {source!r} is not one of {', '.join(SOURCES)}", "fix or delete that record")
        estimate = r.data.get("estimate")
        names = {f.name for f in dataclasses.fields(cls)}
        legacy = {"hr@10", "ndcg@10", "evaluation"} if schema == SCHEMA_V1 else set()
        rec = cls(
            method=method, label=r.text("label") or "", status=status, schema=SCHEMA, source=source,
            scenario=r.text("scenario", "recommendation") or "recommendation", cell_key=r.text("cell_key") or "",
            method_options=r.obj("method_options"), error=r.text("error"), repeat=r.number("repeat", True) or 0, seed=r.number("seed", True),
            epoch_time_s=r.number("epoch_time_s"), epoch_time_source=r.text("epoch_time_source"), step_time_s=r.number("step_time_s"),
            steps_per_epoch=r.number("steps_per_epoch", True), trainable_params=r.number("trainable_params", True),
            total_params=r.number("total_params", True), adapter_bytes=r.number("adapter_bytes", True), peak_memory_bytes=r.number("peak_memory_bytes", True),
            memory_source=r.text("memory_source"), prepare_time_s=r.number("prepare_time_s"), device=r.text("device"),
            precision=r.text("precision"), preset=r.text("preset"), protocol=r.text("protocol", "tpme") or "tpme", timing=Timing.read(r.sub("timing")), memory=Memory.read(r.sub("memory")),
            execution=r.obj("execution"), quality=_quality_v1(r) if schema == SCHEMA_V1 else Quality.read(r.sub("quality")),
            estimate=None if estimate is None else Estimate.from_dict(r.obj("estimate"), f"{where}: estimate"),
            provenance=Provenance.read(r.sub("provenance")), data=r.obj("data"), config=r.obj("config"), losses=r.obj("losses"),
            prepare=r.obj("prepare"), baselines={k: Baseline.from_dict(k, v, f"{where}: baselines.{k}") for k, v in r.obj("baselines").items()},
            axes=r.obj("axes"), attempt=r.number("attempt", True), host=r.text("host"), traceback=r.text("traceback"), log_tail=r.text("log_tail"),
            extra={k: v for k, v in r.data.items() if k not in names and k not in legacy},
        )
        if rec.ok:
            missing = [k for k in ("epoch_time_s", "trainable_params", "peak_memory_bytes") if getattr(rec, k) is None]
            if missing:
                raise TpmeError(f"{where}: status ok but {', '.join(missing)} missing", "an ok record carries T, P and M; fix or delete it")
        return rec


def _quality_v1(r: _Reader) -> Quality:
    """Schema /1 kept test HR@10 / NDCG@10 flat and the evaluation details beside them."""
    metrics = {k: QualityValue(v, True, "test") for k in ("hr@10", "ndcg@10") if (v := r.number(k)) is not None}
    return Quality(metrics, r.obj("evaluation"))
