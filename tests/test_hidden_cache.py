"""The IISAN hidden-state cache: hits, fingerprint changes, corrupt and truncated files."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures
from tpme.datasets.bundle import DataBundle
from tpme.methods.iisan import cache as hc
from tpme.models.backbones import Backbones, BackboneSpec

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(ci_bundle_path):
    bundle = DataBundle.load(ci_bundle_path)
    torch.manual_seed(0)
    backbones = Backbones.build(BackboneSpec.parse("tiny"))
    features = ItemFeatures(bundle, frozenset({TEXT, IMAGE}), backbones.image_size, int(bundle.info["pad_id"]))
    return bundle, backbones, features


SPEC = hc.BuildSpec([0, 2], [0, 2], "fp32", "fp32", batch_size=32)


def ensure(tmp_path, setup, spec=SPEC):
    bundle, backbones, features = setup
    return hc.ensure(tmp_path, backbones, bundle, features, spec, CPU)


def test_build_then_hit_with_identical_arrays(tmp_path, setup):
    arrays, info = ensure(tmp_path, setup)
    assert info["cache"] == "built" and info["build_time_s"] > 0
    assert arrays["text"].shape == (setup[0].n_items + 1, 2, 64) and arrays["text"].is_contiguous()
    assert torch.count_nonzero(arrays["image"][0]) == 0  # padding row
    again, info2 = ensure(tmp_path, setup)
    assert info2["cache"] == "hit" and info2["fingerprint"] == info["fingerprint"]
    assert torch.equal(again["text"], arrays["text"]) and torch.equal(again["image"], arrays["image"])
    manifest = json.loads((Path(info["cache_dir"]) / hc.MANIFEST).read_text())
    assert manifest["files"]["text"]["shape"] == [setup[0].n_items + 1, 2, 64]


def _only_entry(tmp_path) -> Path:
    (d,) = list(hc.cache_root(tmp_path).iterdir())
    return d


@pytest.mark.parametrize(
    "damage,reason",
    [
        (lambda d: (d / "text.npy").write_bytes((d / "text.npy").read_bytes()[:-100]), "truncated"),
        (lambda d: _flip_byte(d / "image.npy"), "checksum mismatch"),
        (lambda d: (d / hc.MANIFEST).unlink(), "no manifest"),
        (lambda d: (d / hc.MANIFEST).write_text("{not json"), "unreadable manifest"),
    ],
)
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, setup, damage, reason):
    good, info = ensure(tmp_path, setup)
    good = {k: v.clone() for k, v in good.items()}
    damage(_only_entry(tmp_path))
    assert reason in hc.verify(_only_entry(tmp_path), info["fingerprint"])[1]
    rebuilt, info2 = ensure(tmp_path, setup)
    assert info2["cache"] == "rebuilt" and reason in info2["rebuild_reason"]
    assert torch.equal(rebuilt["text"], good["text"]) and torch.equal(rebuilt["image"], good["image"])
    assert hc.verify(_only_entry(tmp_path), info["fingerprint"])[1] == "ok"


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_input_changes_the_fingerprint(setup):
    bundle, backbones, _ = setup
    base = hc.fingerprint(backbones, bundle, [0, 2], [0, 2], "fp32", "fp32")
    assert hc.fingerprint(backbones, bundle, [0, 2], [0, 2], "fp32", "fp32") == base
    assert hc.fingerprint(backbones, bundle, [0, 1], [0, 2], "fp32", "fp32") != base
    assert hc.fingerprint(backbones, bundle, [0, 2], [0, 2], "fp16", "fp32") != base
    assert hc.fingerprint(backbones, bundle, [0, 2], [0, 2], "fp32", "fp16") != base
    tokens = bundle.tokens.copy()
    tokens[1, 1] += 1
    assert hc.fingerprint(backbones, replace(bundle, tokens=tokens), [0, 2], [0, 2], "fp32", "fp32") != base
    other_images = dict(bundle.image_source, seed=bundle.image_source["seed"] + 1)
    assert hc.fingerprint(backbones, replace(bundle, image_source=other_images), [0, 2], [0, 2], "fp32", "fp32") != base
    with torch.no_grad():
        w = backbones.image.layers[0].mlp.fc1.weight
        w[0, 0] += 1.0
        try:
            assert hc.fingerprint(backbones, bundle, [0, 2], [0, 2], "fp32", "fp32") != base
        finally:
            w[0, 0] -= 1.0


def test_fp16_and_bf16_storage(tmp_path, setup):
    full, _ = ensure(tmp_path, setup)
    for dtype, torch_dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        arrays, info = ensure(tmp_path, setup, replace(SPEC, dtype=dtype))
        assert info["cache"] == "built" and arrays["text"].dtype == torch_dtype
        torch.testing.assert_close(arrays["text"].float(), full["text"], atol=0.05, rtol=0.02)
    assert len(list(hc.cache_root(tmp_path).iterdir())) == 3


def test_cache_cli_build_info_clear(tmp_path, capsys):
    from tpme.cli import main

    cache_dir = str(tmp_path / "c")
    assert main(["cache", "build", "--preset", "ci", "--cache-dir", cache_dir, "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["cache"] == "built" and built["items_per_s"] > 0
    assert main(["cache", "info", "--cache-dir", cache_dir, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["status"] == "ok" and entry["key"] == Path(built["cache_dir"]).name
    (Path(built["cache_dir"]) / "text.npy").write_bytes(b"\x93NUMPY")
    assert main(["cache", "info", "--cache-dir", cache_dir, "--json"]) == 0
    assert "truncated" in json.loads(capsys.readouterr().out)[0]["status"]
    assert main(["cache", "clear", "--cache-dir", cache_dir]) == 0
    assert not list(hc.cache_root(cache_dir).iterdir())
    assert main(["cache", "build", "--preset", "ci", "--cache-dir", cache_dir, "--method-opt", "cache_dtype=int4"]) == 2
