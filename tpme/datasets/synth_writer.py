"""The synthetic dataset written to disk in the IISAN layout, with a folder of PNG images,
so that the real-data path (readers, image folder) can be exercised end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tpme.datasets.readers import DatasetFiles
from tpme.datasets.synthetic import SyntheticCatalog, SyntheticSpec, generate_sequences
from tpme.errors import TpmeError


def item_key(item: int) -> str:
    return f"SYN{item:07d}"


def write_synthetic_dataset(out: Path, size: str, seed: int = 0, image_size: int = 64) -> DatasetFiles:
    """Write `synthetic_items.tsv`, `am_synthetic_users.tsv` and `images/<item_id>.png`."""
    from PIL import Image

    if image_size < 8:
        raise TpmeError("--image-size must be at least 8")
    spec = SyntheticSpec.named(size, seed)
    catalog = SyntheticCatalog(spec)
    files = DatasetFiles(out / "synthetic_items.tsv", out / "am_synthetic_users.tsv", out / "images")
    files.images.mkdir(parents=True, exist_ok=True)
    with files.items.open("w", encoding="utf-8", newline="\n") as f:
        for item in range(1, spec.n_items + 1):
            f.write(f"{item_key(item)}\t{catalog.title(item)}\n")
    with files.users.open("w", encoding="utf-8", newline="\n") as f:
        for user, seq in enumerate(generate_sequences(spec, catalog)):
            f.write(f"U{user:07d}\t{' '.join(item_key(int(i)) for i in np.asarray(seq))}\n")
    for item in range(1, spec.n_items + 1):
        Image.fromarray(catalog.image(item, image_size)).save(files.images / f"{item_key(item)}.png")
    return files
