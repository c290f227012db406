"""Image sources: an LMDB store written the IISAN way, a refused malicious store, a PNG
folder, the missing-image policies, and re-opening from the descriptor (as a worker does)."""
import os
import pickle

import lmdb
import numpy as np
import pytest
from PIL import Image

from tpme.datasets.config import DataConfig
from tpme.datasets.image_stores import describe_images, load_lmdb_image, synthetic_image
from tpme.datasets.images import open_image_source
from tpme.datasets.readers import read_dataset_dir
from tpme.errors import TpmeError


class LMDB_Image:  # noqa: N801 - the name IISAN's stores carry
    """As in IISAN's data preparation: raw pixels as bytes, channels and (H, W)."""

    def __init__(self, image: np.ndarray, id: str):
        self.channels = image.shape[2]
        self.size = image.shape[:2]
        self.image = image.tobytes()
        self.id = id


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def pixels(seed: int, h: int = 8, w: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_lmdb(path, values: dict[str, bytes]) -> None:
    env = lmdb.open(str(path), map_size=2**24)
    with env.begin(write=True) as txn:
        for key, value in values.items():
            txn.put(key.encode(), value)
    env.close()


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_iisan_lmdb_store_read_back(tmp_path, protocol):
    store = tmp_path / "images.lmdb"
    write_lmdb(store, {f"I{i}": pickle.dumps(LMDB_Image(pixels(i), f"I{i}"), protocol=protocol) for i in (1, 2)})
    desc, missing = describe_images(store, ["I1", "I2", "I3"], "blank")
    assert desc["kind"] == "lmdb" and missing == 1
    source = open_image_source(desc)
    img = source.images(np.array([1, 3]), 8)
    resized = np.asarray(Image.fromarray(pixels(1)).resize((8, 8), Image.Resampling.BILINEAR))
    assert np.array_equal(img[0], resized.transpose(2, 0, 1))
    assert (img[1] == 128).all()  # blank policy for I3


def test_store_with_another_class_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    store = tmp_path / "evil.lmdb"
    write_lmdb(store, {"I1": pickle.dumps(Evil(marker))})
    source = open_image_source(describe_images(store, ["I1"], "error")[0])
    with pytest.raises(TpmeError, match="refused to unpickle posix.system|refused to unpickle os.system"):
        source.images(np.array([1]), 4)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        load_lmdb_image(pickle.dumps({"image": np.zeros(3)}))  # numpy's reconstructors are refused too


def test_lmdb_image_with_inconsistent_size_rejected():
    bad = LMDB_Image(pixels(0), "I1")
    bad.size = (9, 9)
    with pytest.raises(ValueError, match="9x9x3"):
        load_lmdb_image(pickle.dumps(bad))


def test_folder_and_missing_policies(tmp_path):
    Image.fromarray(pixels(5, 4, 4)).save(tmp_path / "A.png")
    Image.fromarray(pixels(6, 4, 4)).save(tmp_path / "B.jpg")
    desc, missing = describe_images(tmp_path, ["A", "B", "C"], "synthetic")
    assert missing == 1 and desc["files"] == ["A.png", "B.jpg", None]
    imgs = open_image_source(desc).images(np.array([1, 2, 3]), 4)
    assert np.array_equal(imgs[0], pixels(5, 4, 4).transpose(2, 0, 1))  # PNG is lossless
    assert np.array_equal(imgs[2], synthetic_image("C", 4).transpose(2, 0, 1))
    assert np.array_equal(synthetic_image("C", 16), synthetic_image("C", 16))
    assert not np.array_equal(synthetic_image("C", 16), synthetic_image("D", 16))


def test_dataset_with_lmdb_found_and_counted(tmp_path):
    (tmp_path / "x_items.tsv").write_text("".join(f"I{i}\tt{i}\n" for i in range(1, 7)))
    (tmp_path / "am_x_users.tsv").write_text("U1\tI1 I2 I3 I4 I5 I6\n")
    write_lmdb(tmp_path / "x_image.lmdb", {f"I{i}": pickle.dumps(LMDB_Image(pixels(i), f"I{i}")) for i in range(1, 5)})
    bundle = read_dataset_dir(tmp_path, DataConfig(missing_images="synthetic"), None, 256)
    assert bundle.stats()["images_found"] == 4 and bundle.stats()["images_missing"] == 2
    assert open_image_source(bundle.image_source).images(np.arange(1, 7), 8).shape == (6, 3, 8, 8)


def test_decode_pool_gives_the_serial_pixels_in_batch_order(tmp_path, monkeypatch):
    """Threads decode a batch's missing items; repeats, cache hits and order are kept."""
    from tpme.datasets import image_stores

    keys = [f"k{i}" for i in range(12)]
    for i, k in enumerate(keys):
        Image.fromarray(pixels(i, 20, 14)).save(tmp_path / f"{k}.png")
    desc, _ = describe_images(tmp_path, keys, "error")
    batch = np.array([3, 1, 3, 12, 7, 1, 2])
    monkeypatch.setattr(image_stores, "DECODE_THREADS", 1)
    serial = open_image_source(desc).images(batch, 10)
    monkeypatch.setattr(image_stores, "DECODE_THREADS", 4)
    source = open_image_source(desc)
    pooled = source.images(batch, 10)
    assert source._pool is not None  # the pool decoded them
    assert np.array_equal(pooled, serial) and np.array_equal(pooled[0], pooled[2])
    again = source.images(np.array([12, 5, 3]), 10)  # 12 and 3 from the cache, 5 decoded
    assert np.array_equal(again[0], serial[3]) and np.array_equal(again[2], serial[0])
    assert np.array_equal(again[1], np.asarray(Image.fromarray(pixels(4, 20, 14)).resize((10, 10), Image.Resampling.BILINEAR)).transpose(2, 0, 1))
