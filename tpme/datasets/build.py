"""A prepared dataset from its config: generated (synthetic) or read (a dataset directory), tokenised."""
from __future__ import annotations

from pathlib import Path

from tpme.datasets.bundle import DataBundle
from tpme.datasets.config import DataConfig
from tpme.datasets.preprocess import Preprocessed, preprocess, subsample_users
from tpme.datasets.readers import read_dataset_dir
from tpme.datasets.synthetic import SyntheticCatalog, SyntheticSpec, generate_sequences
from tpme.datasets.tokenize import tokenize
from tpme.errors import TpmeError


def build_bundle(cfg: DataConfig, tokenizer_dir: str | None, vocab_size: int) -> DataBundle:
    """Read or generate the dataset named by `cfg.dataset` and tokenise its titles."""
    kind, _, arg = cfg.dataset.partition(":")
    if kind == "synthetic":
        return _synthetic_bundle(arg or "small", cfg, tokenizer_dir, vocab_size)
    path = Path(cfg.dataset)
    if not path.exists():
        raise TpmeError(f"dataset path {cfg.dataset!r} does not exist", "use synthetic[:tiny|small|medium|scientific] or a directory holding an items file and a users file")
    return read_dataset_dir(path, cfg, tokenizer_dir, vocab_size)


def _synthetic_bundle(size: str, cfg: DataConfig, tokenizer_dir: str | None, vocab_size: int) -> DataBundle:
    spec = SyntheticSpec.named(size, cfg.seed)
    catalog = SyntheticCatalog(spec)
    raw, users = subsample_users(generate_sequences(spec, catalog), range(spec.n_users), cfg.max_users, cfg.seed)
    pre: Preprocessed = preprocess(raw, cfg.max_seq_len, users)
    titles = [catalog.title(int(k)) for k in pre.item_keys]
    tokens, tok_info = tokenize(titles, cfg.text_len, tokenizer_dir, vocab_size)
    source = {"kind": "synthetic", "n_users": spec.n_users, "n_items": spec.n_items, "n_groups": spec.n_groups, "seed": spec.seed, "item_keys": [int(k) for k in pre.item_keys]}
    return DataBundle(f"synthetic:{size}", tokens, pre.sequences, cfg.max_seq_len, source, tok_info)
