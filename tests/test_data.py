"""Synthetic generator determinism, preprocessing and split rules, tokenisation, batching."""
import numpy as np
import torch

from tpme.datasets.config import DataConfig
from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures, TrainLoader
from tpme.datasets.build import build_bundle
from tpme.datasets.bundle import DataBundle
from tpme.datasets.preprocess import leave_one_out, pad_left, preprocess
from tpme.datasets.synthetic import SyntheticCatalog, SyntheticSpec, generate_sequences
from tpme.datasets.tokenize import encode_titles, train_wordpiece


def test_generator_is_deterministic_and_seeded():
    spec = SyntheticSpec.named("tiny", seed=3)
    a, b = SyntheticCatalog(spec), SyntheticCatalog(spec)
    assert a.title(7) == b.title(7)
    assert np.array_equal(a.image(7, 32), b.image(7, 32))
    assert all(np.array_equal(x, y) for x, y in zip(generate_sequences(spec, a), generate_sequences(spec, b)))
    other = SyntheticCatalog(SyntheticSpec.named("tiny", seed=4))
    assert other.title(7) != a.title(7) or not np.array_equal(other.image(7, 32), a.image(7, 32))


def test_synthetic_sequences_have_structure():
    spec = SyntheticSpec.named("small")
    cat = SyntheticCatalog(spec)
    seqs = generate_sequences(spec, cat)
    assert len(seqs) == spec.n_users and min(len(s) for s in seqs) >= 5
    assert all(len(set(s.tolist())) == len(s) for s in seqs)
    same_or_next = [((cat.group[b] - cat.group[a]) % spec.n_groups) in (0, 1) for s in seqs for a, b in zip(s, s[1:])]
    assert np.mean(same_or_next) > 0.6  # chance would be 2 / n_groups
    assert sorted(set(np.concatenate(seqs).tolist())) == list(range(1, spec.n_items + 1))  # every item occurs
    img = cat.image(1, 64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8


def test_preprocess_drops_truncates_and_reindexes():
    raw = [["a", "b", "c", "d"], list("abcdefghijklmnopq"), ["x", "y", "z", "a", "b"]]
    pre = preprocess(raw, max_seq_len=10)
    assert len(pre.sequences) == 2  # the 4-item user is dropped
    assert len(pre.sequences[0]) == 13  # last max_seq_len + 3
    assert pre.item_keys[:3] == ["e", "f", "g"]  # re-indexed in order of first occurrence, from 1
    assert pre.sequences[0][0] == 1
    assert pre.item_keys[pre.sequences[1][-1] - 1] == "b"
    assert sorted(set(np.concatenate(pre.sequences).tolist())) == list(range(1, pre.n_items + 1))


def test_leave_one_out_split():
    seqs = [np.arange(1, 14), np.arange(20, 25)]
    sp = leave_one_out(seqs, max_seq_len=10)
    assert sp.train[0].tolist() == list(range(1, 12))
    assert sp.valid_target.tolist() == [12, 23] and sp.test_target.tolist() == [13, 24]
    assert sp.valid_history[0].tolist() == list(range(2, 12))  # at most max_seq_len
    assert sp.test_history[1].tolist() == [20, 21, 22, 23]
    assert pad_left([np.array([5, 6])], 4).tolist() == [[0, 0, 5, 6]]


def test_titles_tokenise_to_exact_length():
    titles = ["alpha beta gamma", "a much longer title " * 10]
    tok = train_wordpiece(titles * 5, vocab_size=200)
    ids = encode_titles(tok, titles, text_len=12)
    assert ids.shape == (3, 12)
    assert (ids[0] == tok.token_to_id("[PAD]")).all()
    assert ids[1, 0] == tok.token_to_id("[CLS]") and ids[2, -1] == tok.token_to_id("[SEP]")


def test_bundle_round_trip_and_batches(tmp_path):
    bundle = build_bundle(DataConfig(dataset="synthetic:tiny", text_len=16), None, 2048)
    path = tmp_path / "d.npz"
    bundle.save(path)
    again = DataBundle.load(path)
    assert again.n_users == bundle.n_users and np.array_equal(again.tokens, bundle.tokens)
    loader = TrainLoader(again, ItemFeatures(again, frozenset({TEXT, IMAGE}), 32), batch_size=8)
    batch = next(loader.epoch(0))
    assert batch.seq_index.shape == (8, 11)
    n_unique = batch.items.item_ids.shape[0]
    assert batch.own.shape == (8, n_unique) and batch.items.pixels.shape == (n_unique, 3, 32, 32)
    # every non-pad position points at its item, and `own` marks exactly the user's items
    samples = loader.samples
    assert int(batch.seq_index.max()) == n_unique - 1
    for row in range(8):
        idx = batch.seq_index[row][batch.seq_index[row] >= 0]
        assert set(idx.tolist()) == set(torch.nonzero(batch.own[row]).flatten().tolist())
    assert len(loader) == -(-bundle.n_users // 8)
    assert samples.shape == (bundle.n_users, 11)
    moved = batch.items.to(torch.device("cpu"))
    assert moved.pixels.dtype == torch.float32 and -1.0 <= float(moved.pixels.min()) and float(moved.pixels.max()) <= 1.0


def test_offline_vocabulary_is_identical_across_processes():
    """Token ids feed cache fingerprints, so they must not change from one process to the next."""
    import subprocess
    import sys

    code = "from tpme.datasets.config import DataConfig; from tpme.datasets.build import build_bundle; import hashlib; print(hashlib.sha256(build_bundle(DataConfig(dataset='synthetic:tiny'), None, 2048).tokens.tobytes()).hexdigest())"
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert len(digests) == 1
