"""The notebook API: tpme.load -> DataFrame (one row per record, flat columns, units in the
names), tpme.score, figures from a DataFrame, and `import tpme` staying light."""
from __future__ import annotations

import subprocess
import sys

import pytest
from records_factory import record, write_jsonl, zoo

import tpme
from tpme.metrics.aggregate import entries_from_records
from tpme.metrics.tpme import Weights, score


@pytest.fixture()
def run_dir(tmp_path):
    write_jsonl(tmp_path / "run" / "results.jsonl", zoo())
    return tmp_path / "run"


def test_load_gives_one_row_per_record_with_units_in_the_column_names(tmp_path) -> None:
    write_jsonl(tmp_path / "run" / "results.jsonl", [record("fft", 2.0, 1000, 5e8, hr=0.05), record("frozen", 1.0, 10, 1e8, hr=0.04)])
    df = tpme.load(tmp_path / "run")
    assert type(df).__name__ == "DataFrame" and len(df) == 2
    assert list(df["method"]) == ["fft", "frozen"]
    assert {"epoch_time_s", "trainable_params", "peak_memory_bytes", "adapter_bytes", "energy_per_epoch_j", "hr@10"} <= set(df.columns)
    assert df.loc[0, "peak_memory_bytes"] == 5e8 and df.loc[1, "hr@10"] == 0.04
    assert all(not isinstance(v, (dict, list)) for v in df.iloc[0].tolist())  # flat


def test_score_matches_the_cli_scores_and_takes_weights(run_dir) -> None:
    df = tpme.load(run_dir)
    got = tpme.score(df, weights="equal")
    want = {s.method: s for s in score(entries_from_records(tpme.api.records_of(df)), Weights.parse("equal"))}
    assert list(got["rank"]) == sorted(got["rank"])
    for _, r in got.iterrows():
        assert r["tpme"] == pytest.approx(want[r["label"]].tpme)
    assert "bitfit" not in set(got["label"])  # the oom cell has no score
    three = tpme.score(df, weights=(0.45, 0.1, 0.45))
    assert list(three["tpme"]) == pytest.approx(list(tpme.score(df)["tpme"]))


def test_figures_draw_the_rows_of_a_filtered_frame(run_dir) -> None:
    df = tpme.load(run_dir)
    sub = df[df["method"].isin(["fft", "frozen", "iisan-cached"])]
    fig = tpme.time_memory(sub)
    assert sorted(c.get_gid() for c in fig.axes[0].collections if c.get_gid()) == ["fft", "frozen", "iisan-cached"]
    assert tpme.figure(sub, "sensitivity") is not None and tpme.efficiency(sub) is not None
    with pytest.raises(tpme.TpmeError, match="no figure named"):
        tpme.figure(df, "pie")


def test_a_frame_without_remembered_records_is_drawn_from_its_columns(run_dir) -> None:
    df = tpme.load(run_dir)
    plain = df[df["status"] == "ok"].reset_index(drop=True).copy()
    plain.attrs.clear()
    assert tpme.score(plain)["label"].iloc[0] == "iisan-cached"
    assert tpme.effectiveness(plain) is not None


def test_import_tpme_stays_light() -> None:
    code = "import sys, tpme; print('pandas' in sys.modules, 'matplotlib' in sys.modules, callable(tpme.load))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True"]
