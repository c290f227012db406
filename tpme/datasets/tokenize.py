"""Titles to exactly `text_len` WordPiece ids, with a local tokenizer or one trained offline."""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from tpme.errors import TpmeError
from tpme.files import check_size, lines

TOKENIZER_LIMIT = 256 * 2**20  # the largest Hugging Face tokenizer.json files are tens of MiB
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """A BERT-style tokenizer from `tokenizer.json` or `vocab.txt` in a local model directory."""
    directory = Path(directory)
    if (directory / "tokenizer.json").is_file():
        check_size(directory / "tokenizer.json", TOKENIZER_LIMIT, "tokenizer file")
        tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    elif (directory / "vocab.txt").is_file():
        vocab = {raw.decode("utf-8", "replace").rstrip("\n"): i for i, (_, raw) in enumerate(lines(directory / "vocab.txt", TOKENIZER_LIMIT, 4096, "vocabulary file"))}
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    else:
        raise TpmeError(f"no tokenizer.json or vocab.txt in {directory}", "point --backbone at a Hugging Face model directory")
    tok.no_truncation()
    tok.no_padding()
    return tok


def train_wordpiece(titles: Sequence[str], vocab_size: int) -> Tokenizer:
    """A lowercase WordPiece vocabulary built from the titles themselves, offline and
    deterministically: special tokens, every character (alone and as a `##` continuation,
    so no word is ever [UNK]), then whole words by frequency, ties broken alphabetically.

    Deterministic on purpose: the `tokenizers` trainer breaks ties differently in every
    process, which would change token ids, and so every fingerprint (caches), between runs.
    """
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for title in titles:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(title)))
    chars = sorted({c for word in counts for c in word})
    vocab = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    if len(vocab) > vocab_size:
        raise TpmeError(f"the titles use {len(chars)} distinct characters, more than a {vocab_size}-token vocabulary holds", "use a text backbone with a larger vocabulary or its own tokenizer")
    known = set(vocab)
    words = sorted((w for w in counts if w not in known), key=lambda w: (-counts[w], w))
    vocab += words[: vocab_size - len(vocab)]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab.index("[SEP]")), ("[CLS]", vocab.index("[CLS]")))
    return tok


def encode_titles(tok: Tokenizer, titles: Sequence[str], text_len: int) -> np.ndarray:
    """[len(titles) + 1, text_len] int32; row 0 (the padding item) is all [PAD]."""
    pad_id = tok.token_to_id("[PAD]")
    if pad_id is None:
        raise TpmeError("the tokenizer has no [PAD] token", "use a BERT-style WordPiece tokenizer")
    tok.enable_truncation(max_length=text_len)
    tok.enable_padding(length=text_len, pad_id=pad_id, pad_token="[PAD]")
    try:
        out = np.full((len(titles) + 1, text_len), pad_id, dtype=np.int32)
        for row, enc in enumerate(tok.encode_batch(list(titles)), start=1):
            out[row] = enc.ids
    finally:
        tok.no_truncation()
        tok.no_padding()
    return out


def tokenize(titles: list[str], text_len: int, tokenizer_dir: str | None, vocab_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    if tokenizer_dir:
        tok, origin = load_tokenizer(tokenizer_dir), str(tokenizer_dir)
    else:
        tok, origin = train_wordpiece(titles, vocab_size), "wordpiece trained on item titles"
    if tok.get_vocab_size() > vocab_size:
        raise TpmeError(
            f"tokenizer vocabulary ({tok.get_vocab_size()}) exceeds the text backbone's ({vocab_size})",
            "use the tokenizer that belongs to the text backbone",
        )
    return encode_titles(tok, titles, text_len), {"tokenizer": origin, "tokenizer_vocab": tok.get_vocab_size(), "pad_id": tok.token_to_id("[PAD]")}
