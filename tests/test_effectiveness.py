"""End to end: `tpme data synth` -> `tpme run --dataset DIR`, and trained models against the
popularity baseline (full-ranking HR@10, test at the best validation epoch)."""
import json
from pathlib import Path

from tpme.cli import main
from tpme.results.store import load_records
from tpme.sweep.driver import BASELINE_FILE


def run(out_dir: Path, *args: str) -> list[dict]:
    """The run's records as written to disk, with each quality metric's value at the top as well."""
    assert main(["run", "--preset", "ci", "--in-process", "--quiet", "--out", str(out_dir), *args]) == 0
    out = []
    for rec in load_records(out_dir):
        d = rec.to_dict()
        d.update({name: q.value for name, q in rec.quality.metrics.items()})
        d.setdefault("hr@10", None)
        d.setdefault("ndcg@10", None)
        d["evaluation"] = rec.quality.evaluation or None
        d["baselines"] = {k: {**b.to_dict(), **{n: q.value for n, q in b.quality.items()}} for k, b in rec.baselines.items()}
        out.append(d)
    return out


def test_synth_dir_runs_end_to_end_with_eval(tmp_path, capsys):
    data = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(data), "--size", "tiny", "--image-size", "32"]) == 0
    assert main(["data", "check", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images_found"] > 0
    (rec,) = run(tmp_path / "run", "--dataset", str(data), "--methods", "frozen", "--steps", "2", "--eval")
    assert rec["status"] == "ok" and rec["data"]["images_missing"] == 0 and rec["data"]["images_found"] == rec["data"]["items"]
    assert 0.0 <= rec["ndcg@10"] <= rec["hr@10"] <= 1.0
    assert rec["evaluation"]["mode"] == "after-timed-steps" and rec["evaluation"]["eval_time_s"] > 0
    saved = json.loads((tmp_path / "run" / BASELINE_FILE).read_text())["popularity"]
    assert {k: v for k, v in rec["baselines"]["popularity"].items() if k not in ("hr@10", "ndcg@10")} == saved


def test_without_eval_metrics_are_null(tmp_path):
    (rec,) = run(tmp_path, "--methods", "frozen")
    assert rec["hr@10"] is None and rec["ndcg@10"] is None and rec["evaluation"] is None
    assert rec["baselines"]["popularity"]["hr@10"] > 0


def test_trained_model_beats_popularity_on_synthetic(tmp_path):
    (rec,) = run(tmp_path, "--dataset", "synthetic:small", "--methods", "fft", "--epochs", "4", "--early-stop", "2", "--batch-size", "16", "--lr", "1e-3", "--warmup-steps", "0")
    ev = rec["evaluation"]
    assert ev["best_epoch"] == max(range(1, ev["epochs_run"] + 1), key=lambda e: ev["epochs"][e - 1]["valid"]["hr@10"])
    assert rec["hr@10"] == ev["epochs"][ev["best_epoch"] - 1]["test"]["hr@10"]
    assert rec["hr@10"] > 1.5 * rec["baselines"]["popularity"]["hr@10"]


def test_scientific_subset_beats_popularity(shared_data, tmp_path):
    """Real text, blank images, 4,000 users, tiny random-init backbones, 8 epochs (about
    two minutes on two cores): test HR@10 at the best validation epoch beats popularity."""
    (rec,) = run(
        tmp_path, "--dataset", str(shared_data / "amazon-scientific"), "--missing-images", "blank", "--max-users", "4000",
        "--methods", "fft", "--epochs", "8", "--early-stop", "3", "--batch-size", "32", "--lr", "1e-3",
    )
    assert rec["data"]["users"] == 4000 and rec["data"]["images_missing"] == rec["data"]["items"]
    assert rec["hr@10"] > rec["baselines"]["popularity"]["hr@10"]


def test_explicit_items_and_users_files(tmp_path):
    data = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(data), "--size", "tiny", "--image-size", "16"]) == 0
    items, users = data / "catalogue.txt", data / "histories.txt"
    (data / "synthetic_items.tsv").rename(items)
    (data / "am_synthetic_users.tsv").rename(users)
    assert main(["data", "check", str(data)]) == 2  # nothing found by name
    assert main(["data", "check", str(data), "--items", str(items), "--users", str(users)]) == 0
    (rec,) = run(tmp_path / "run", "--items", str(items), "--users", str(users), "--methods", "frozen", "--steps", "1")
    assert rec["status"] == "ok" and rec["data"]["images_found"] == rec["data"]["items"]
