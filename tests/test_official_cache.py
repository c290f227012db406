"""The official cached IISAN (GAIR-Lab/IISAN `Code_Cached`) under `--protocol official`:
per-item fp32 state files of every hidden state, `torch.load`ed per real slot every step
and for the evaluation's item embeddings; no cache resident anywhere; the estimate carries
the states in the batch instead of a cache."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tpme.cli import main
from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures
from tpme.datasets.bundle import DataBundle
from tpme.errors import TpmeError
from tpme.methods.iisan import cache as hidden_cache
from tpme.methods.iisan import official_files
from tpme.methods.registry import PrepareContext, get_method
from tpme.scenarios import get_scenario
from tpme.scenarios.base import DataShape
from tpme.scenarios.recommendation.config import preset
from tpme.scenarios.recommendation.model import assemble
from tpme.scenarios.recommendation.training import build_training

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def bundle(ci_bundle_path):
    return DataBundle.load(ci_bundle_path)


def cfg(proto: str = "official", **changes):
    return preset("ci").replace(protocol=proto, embed_dim=32, batch_size=8, **changes)


class CountingLoad:
    """torch.load, counted."""

    def __init__(self, real):
        self.real, self.calls = real, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.real(*args, **kwargs)


@pytest.fixture
def loads(monkeypatch):
    counter = CountingLoad(torch.load)
    monkeypatch.setattr(torch, "load", counter)
    return counter


def prepared(bundle, cache_dir):
    """The official tower with its files prepared, its backbones and the features of both modalities."""
    torch.manual_seed(0)
    assembly = assemble(cfg(), get_method("iisan-cached"))
    backbones, tower = assembly.extras["backbones"], assembly.part
    features = ItemFeatures(bundle, frozenset({TEXT, IMAGE}), backbones.image_size, int(bundle.info.get("pad_id", 0)))
    info = get_method("iisan-cached").prepare(tower, PrepareContext(backbones, bundle, features, CPU, "fp32", str(cache_dir)))
    return tower, backbones, features, info


def test_files_in_the_official_layout_and_dtype(bundle, tmp_path):
    tower, backbones, _, info = prepared(bundle, tmp_path)
    directory = official_files.root(tmp_path) / info["fingerprint"][:24]
    assert info["cache"] == "built" and info["cache_dir"] == str(directory) and info["resident"] == {"text": "files", "image": "files"}
    assert (directory / "manifest.json").is_file() and not (directory / official_files.SCRATCH).exists()
    n = bundle.n_items
    assert info["files"] == 2 * n
    for modality, prefix, model in (("text", "bert", backbones.text), ("image", "vit", backbones.image)):
        names = {p.name for p in (directory / f"{prefix}_outputs").iterdir()}
        assert names == {f"{prefix}_{i}.pt" for i in range(1, n + 1)}  # no file for the padding item 0
        states = torch.load(directory / f"{prefix}_outputs" / f"{prefix}_7.pt", weights_only=True)
        assert states.dtype == torch.float32 and tuple(states.shape) == (model.config.num_hidden_layers + 1, model.config.hidden_size)
        assert info["shapes"][modality] == [n, *states.shape]
    assert tower.text_cache.shape[0] == tower.image_cache.shape[0] == 0  # nothing resident


def test_a_second_prepare_is_a_hit(bundle, tmp_path, loads):
    prepared(bundle, tmp_path)
    _, _, _, info = prepared(bundle, tmp_path)
    assert info["cache"] == "hit" and loads.calls == 0  # verification reads bytes, never unpickles


def test_training_batches_load_two_files_per_real_slot(bundle, tmp_path, loads):
    # loads are counted in this process: batches built here (workers build the same ones, test_loader_workers.py)
    setup = build_training(cfg(loader_workers=0), get_method("iisan-cached"), bundle, CPU, str(tmp_path))
    assert setup.execution["cuda_graphs"]["used"] is False
    before = loads.calls
    batch = next(setup.loader.epoch(0))
    real = int(batch.real.sum())
    assert loads.calls - before == 2 * real  # repeated items once per occurrence, padding slots never
    b, seq = batch.seq_index.shape
    tower = setup.model.tower
    for states, shape in ((batch.items.text_states, tower.state_shapes()["text"]), (batch.items.image_states, tower.state_shapes()["image"])):
        assert states.dtype == torch.float32 and tuple(states.shape) == (b * seq, *shape)
        assert not states[~batch.real].any() and states[batch.real].abs().sum(-1).all()  # zeros exactly in the padding slots
    slot = int(torch.nonzero(batch.real)[0])
    item = int(batch.items.item_ids[slot])
    assert torch.equal(batch.items.text_states[slot], torch.load(tower.state_source.directory / "bert_outputs" / f"bert_{item}.pt", weights_only=True))
    assert torch.isfinite(setup.trainer.step(batch))


def test_tpme_protocol_batches_carry_no_states(bundle, tmp_path, loads):
    setup = build_training(cfg("tpme"), get_method("iisan-cached"), bundle, CPU, str(tmp_path))
    batch = next(setup.loader.epoch(0))
    assert batch.items.text_states is None and batch.items.image_states is None and loads.calls == 0
    assert setup.model.tower.text_cache.shape[0] == bundle.n_items + 1
    assert not (tmp_path / official_files.SUBDIR).exists()


def test_embeddings_from_the_files_equal_the_tpme_cache_at_fp32(bundle, tmp_path, loads):
    from tpme.scenarios.recommendation.evaluate import Evaluator
    from tpme.scenarios.recommendation.model import Recommender

    tower, backbones, features, _ = prepared(bundle, tmp_path)
    spec = hidden_cache.BuildSpec(tower.text_layers, tower.image_layers, "fp32", "fp32")
    arrays, _ = hidden_cache.ensure(tmp_path, backbones, bundle, features, spec, CPU)
    ids = np.arange(1, bundle.n_items + 1)
    tower.eval()
    with torch.no_grad():
        from_files = tower(ItemFeatures(bundle, tower.needs, 32, states=tower.state_source).gather(ids))
        from_cache = tower.side(arrays["text"][ids], arrays["image"][ids])
    assert torch.equal(from_files, from_cache)
    # the evaluation embeds every item from the same files: two loads per item
    model = Recommender(tower, 32, bundle.max_seq_len)
    before = loads.calls
    emb = Evaluator(bundle, ItemFeatures(bundle, tower.needs, 32, states=tower.state_source), CPU, "fp32", "official").item_embeddings(model)
    assert loads.calls - before == 2 * bundle.n_items
    assert torch.equal(emb[1:], from_cache) and not emb[0].any()


def _file(tmp_path, info, name: str):
    prefix = name.split("_")[0]
    return official_files.root(tmp_path) / info["fingerprint"][:24] / f"{prefix}_outputs" / name


@pytest.mark.parametrize("damage, reason", [
    (lambda f: f.unlink(), "bert_3.pt missing"),
    (lambda f: f.write_bytes(f.read_bytes()[:-5]), "truncated"),
    (lambda f: f.write_bytes(bytes(b ^ 0xFF for b in f.read_bytes())), "checksum mismatch"),
])
def test_a_damaged_export_is_rebuilt(bundle, tmp_path, damage, reason):
    _, _, _, info = prepared(bundle, tmp_path)
    damage(_file(tmp_path, info, "bert_3.pt"))
    tower, _, _, again = prepared(bundle, tmp_path)
    assert again["cache"] == "rebuilt" and reason in again["rebuild_reason"]
    assert official_files.verify(official_files.root(tmp_path) / info["fingerprint"][:24], info["fingerprint"])[1] == "ok"
    assert tower.state_source.read(np.array([3]))[0].shape == (1, *tower.state_shapes()["text"])


def test_an_interrupted_export_is_rebuilt(bundle, tmp_path):
    _, _, _, info = prepared(bundle, tmp_path)
    (official_files.root(tmp_path) / info["fingerprint"][:24] / "manifest.json").unlink()
    _, _, _, again = prepared(bundle, tmp_path)
    assert again["cache"] == "rebuilt" and "no manifest" in again["rebuild_reason"]


def test_a_file_damaged_after_verification_is_refused(bundle, tmp_path):
    tower, _, _, info = prepared(bundle, tmp_path)
    _file(tmp_path, info, "vit_5.pt").write_bytes(b"not a torch file")
    with pytest.raises(TpmeError, match="cannot read the official IISAN state file .*vit_5.pt") as e:
        tower.state_source.read(np.array([4, 5]))
    assert "tpme cache clear" in e.value.fix
    torch.save(torch.zeros(2, 2), _file(tmp_path, info, "bert_6.pt"))
    with pytest.raises(TpmeError, match=r"bert_6.pt holds torch.float32 \(2, 2\), not float32"):
        tower.state_source.read(np.array([6]))


def test_an_unwritable_cache_folder_is_a_clear_error(bundle, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with pytest.raises(TpmeError, match="cannot write the official IISAN state files"):
        prepared(bundle, blocked)


def test_estimate_counts_the_states_in_the_batch_not_a_cache():
    from tpme.estimate.estimator import estimate_step

    scenario, method = get_scenario("recommendation"), get_method("iisan-cached")
    shape = DataShape(64, {"items": 5000})
    official_cfg = scenario.config_for_method(cfg(), "iisan-cached")
    official = estimate_step(scenario, official_cfg, method, shape)
    plain = estimate_step(scenario, scenario.config_for_method(cfg("tpme"), "iisan-cached"), method, shape)
    c = official_cfg.train.batch_size * (official_cfg.data.max_seq_len + 1)
    text, image = official.batch_shapes["items.text_states"], official.batch_shapes["items.image_states"]
    assert text[0] == image[0] == c and len(text) == len(image) == 3
    states_bytes = 4 * c * (text[1] * text[2] + image[1] * image[2])
    assert official.memory.breakdown["batch"] >= states_bytes
    assert official.memory.breakdown["buffers"] < plain.memory.breakdown["buffers"] // 10  # no cache of 5001 rows
    assert "items.text_states" not in plain.batch_shapes


def test_estimate_equals_the_cpu_tensor_peak_of_an_official_cell(ci_bundle_path, tmp_path):
    from tpme.bench.cell import CellSpec, run_cell

    run_cfg = preset("ci").replace(protocol="official", batch_size=4, steps=1, warmup_steps=1, memory_steps=1)
    rec = run_cell(CellSpec("iisan-cached", run_cfg.to_dict(), str(ci_bundle_path), cache_dir=str(tmp_path), estimate=True)).to_dict()
    assert rec["status"] == "ok", rec.get("error")
    est = rec["estimate"]
    assert "error" not in est, est
    assert est["peak_memory_bytes"] == pytest.approx(rec["peak_memory_bytes"], rel=0.02)  # the states in the batch, no cache
    assert est["batch"]["items.text_states"][0] == run_cfg.train.batch_size * (run_cfg.data.max_seq_len + 1)


def test_run_official_cached_end_to_end(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["run", "--preset", "ci", "--protocol", "official", "--methods", "iisan-cached", "--steps", "2",
                 "--out", str(out), "--cache-dir", str(cache), "--json", "--quiet"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["status"] == "ok" and record["protocol"] == "official"
    facts = record["prepare"]
    assert facts["layout"] == "official per-item torch.save files" and facts["cache"] == "built"
    assert facts["resident"] == {"text": "files", "image": "files"}
    assert (cache / official_files.SUBDIR).is_dir() and not (cache / hidden_cache.SUBDIR).exists()


def test_cache_cli_builds_lists_and_clears_the_official_files(tmp_path, capsys):
    cache_dir = str(tmp_path / "c")
    assert main(["cache", "build", "--preset", "ci", "--protocol", "official", "--cache-dir", cache_dir, "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["cache"] == "built" and built["layout"] == "official per-item torch.save files"
    assert main(["cache", "info", "--cache-dir", cache_dir, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["layout"], row["status"], row["path"]) == ("official", "ok", built["cache_dir"])
    assert row["bytes"] == built["bytes"] + (Path(built["cache_dir"]) / "manifest.json").stat().st_size and row["shapes"] == built["shapes"]
    bert = Path(built["cache_dir"]) / "bert_outputs" / "bert_2.pt"
    bert.write_bytes(bytes(b ^ 1 for b in bert.read_bytes()))
    assert main(["cache", "info", "--cache-dir", cache_dir, "--json"]) == 0
    assert "checksum mismatch" in json.loads(capsys.readouterr().out)[0]["status"]
    assert main(["cache", "clear", "--cache-dir", cache_dir]) == 0
    assert not list(official_files.root(cache_dir).iterdir())
