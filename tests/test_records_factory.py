"""The hand-built records other tests use carry every field a measured ok record does, so a
report test cannot pass only because a field it should render is absent."""
from __future__ import annotations

import dataclasses

from records_factory import record
from tpme.results.record import Provenance, Record, Timing
from tpme.scenarios.recommendation.config import preset

# failure text, Ray node, opt-in estimate, one-off preparation (iisan-cached only), adapter size (its own table column, tested apart)
ABSENT_WHEN_OK = {"error", "traceback", "log_tail", "host", "estimate", "extra", "prepare", "adapter_bytes"}


def _keys(d: dict, prefix: str = "") -> set[str]:
    return {k for key, v in d.items() for k in (_keys(v, f"{prefix}{key}.") if isinstance(v, dict) and v else {prefix + key})}


def test_factory_record_fills_every_field_of_a_measured_record():
    rec = record("lora", 10.0, 1000, 2**20, hr=0.05, ndcg=0.02, options={"r": "8"})
    empty = [f.name for f in dataclasses.fields(Record) if f.name not in ABSENT_WHEN_OK and getattr(rec, f.name) in (None, "", {}, [])]
    assert not empty, f"records_factory leaves {empty} empty"
    official_only = ("epoch_parts_s", "checkpoint_bytes")  # the official epoch's parts; the factory's records are tpme's protocol
    assert not [f.name for f in dataclasses.fields(Timing) if f.name not in ("note", "outlier_steps", *official_only) and getattr(rec.timing, f.name) in (None, {}, [])]
    assert not [f.name for f in dataclasses.fields(Provenance) if f.name != "extra" and getattr(rec.provenance, f.name) in (None, {}, [])]
    assert rec.memory.cpu_tensor_peak_bytes == rec.peak_memory_bytes and rec.quality.evaluation["test"]["hr@10"] == 0.05


def test_factory_config_has_every_current_config_field():
    assert _keys(record("fft", 1.0, 1, 1).config) == _keys(preset("ci").to_dict())


def test_factory_record_round_trips_through_the_reader():
    rec = record("fft", 1.0, 1, 1, hr=0.1)
    assert Record.from_dict(rec.to_dict()).to_dict() == rec.to_dict()
