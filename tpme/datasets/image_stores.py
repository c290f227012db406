"""Images of real datasets: an IISAN-style LMDB store or a folder of `<item_id>.jpg|.png`,
with a policy for items that have no image.

Sources are described by JSON-able dicts (`kind`, `module`, parameters) so that every
cell's process re-opens them (tpme.datasets.images.open_image_source). LMDB values are
pickles; they are read with `RestrictedUnpickler`, which builds only a plain stand-in for
the `LMDB_Image` class and refuses every other class, so a store can never run code, after
`check_pickle` has bounded the value's size, opcodes and memo, so it cannot exhaust memory.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tpme.datasets.images import register_image_source
from tpme.errors import TpmeError

MISSING_POLICIES = ("error", "blank", "synthetic")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BLANK_LEVEL = 128  # mid-grey: ~0 after the mean 0.5 / std 0.5 normalisation
CACHE_BYTES = 512 * 2**20  # decoded images kept per process (all of Scientific at 64 px is 245 MiB)
# Pillow releases the GIL while it decodes and resizes, so threads decode a batch in parallel
DECODE_THREADS = min(8, os.cpu_count() or 1)
MODULE = __name__


class LMDBImage:
    """Stand-in for IISAN's `LMDB_Image`: raw uint8 pixels (`image`), `channels`, `size` (H, W)."""

    def pixels(self) -> np.ndarray:
        """uint8 [H, W, 3], validated against the declared size and channels."""
        state = vars(self)
        try:
            raw, (h, w), c = state["image"], state["size"], int(state["channels"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"an LMDB_Image needs image, size (H, W) and channels; got fields {sorted(state)}") from None
        if isinstance(raw, np.ndarray):
            raw = raw.tobytes()
        if not isinstance(raw, (bytes, bytearray)) or c not in (1, 3, 4) or len(raw) != int(h) * int(w) * c:
            raise ValueError(f"an LMDB_Image of size {h}x{w}x{c} holds {len(raw) if isinstance(raw, (bytes, bytearray)) else type(raw).__name__} bytes")
        img = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(int(h), int(w), c)
        if c == 1:
            return np.repeat(img, 3, axis=2)
        return np.ascontiguousarray(img[..., :3])


class CorruptValue(pickle.UnpicklingError, ValueError):
    """An image store value that is not a well-formed LMDB_Image."""


MAX_VALUE_BYTES = 64 * 2**20  # a 2048 x 2048 RGB image is 12 MiB
MAX_MEMO = 1 << 16  # memo slots a value may use (an image needs a handful)
MAX_OPS = 1 << 20


def _no_sizes(args: tuple) -> None:
    if any(isinstance(a, int) for a in args):
        raise CorruptValue("an image store value asks for a buffer by size, which an LMDB_Image never does")


def _bytes(*args: Any) -> bytes:
    _no_sizes(args)
    return bytes(*args)


def _bytearray(*args: Any) -> bytearray:
    _no_sizes(args)
    return bytearray(*args)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """How protocols 0-2 store bytes: latin-1 text encoded back (no other codec)."""
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.replace("_", "-").lower() not in ("latin1", "latin-1"):
        raise CorruptValue(f"an image store value calls codec {encoding!r} on a {type(text).__name__}")
    return text.encode("latin-1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """copyreg's object rebuild of protocols 0-1, for the stand-in class only."""
    if cls is not LMDBImage or base is not object:
        raise CorruptValue("an image store value rebuilds something other than an LMDB_Image")
    return object.__new__(LMDBImage)


# the globals a pickled LMDB_Image may reference besides the class itself, each a checked
# stand-in: object reconstruction (protocols 0-1) and bytes encoded as text (protocols 0-2)
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(m, "_reconstructor"): _reconstructor for m in ("copyreg", "copy_reg")},
    **{(m, "object"): object for m in ("builtins", "__builtin__")},
    **{(m, "bytes"): _bytes for m in ("builtins", "__builtin__")},
    **{(m, "bytearray"): _bytearray for m in ("builtins", "__builtin__")},
    ("_codecs", "encode"): _encode,
}
_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}


def check_pickle(value: bytes) -> None:
    """Walk the pickle's opcodes without running them: a value's size, its opcode count,
    its frames and memo indices are bounded before the unpickler allocates anything for them
    (the C unpickler sizes its memo by the largest index a value claims)."""
    if len(value) > MAX_VALUE_BYTES:
        raise CorruptValue(f"an image store value of {len(value):,} bytes is larger than {MAX_VALUE_BYTES:,}")
    memo = 0
    for n, (op, arg, _) in enumerate(pickletools.genops(io.BytesIO(value)), 1):
        if n > MAX_OPS:
            raise CorruptValue(f"an image store value has more than {MAX_OPS:,} pickle opcodes")
        if op.name == "FRAME" and arg > len(value):
            raise CorruptValue(f"a pickle frame claims {arg:,} bytes of a {len(value):,}-byte value")
        if op.name in _MEMO_PUTS or op.name == "MEMOIZE":
            index = memo if op.name == "MEMOIZE" else int(arg)
            if index >= MAX_MEMO:
                raise CorruptValue(f"a pickle memo index {index:,} is beyond {MAX_MEMO:,}")
            memo = max(memo, index + 1)
        if op.name in _MEMO_GETS and int(arg) >= memo:
            raise CorruptValue(f"a pickle reads memo slot {arg} that was never written")


class RestrictedUnpickler(pickle.Unpickler):
    """Accepts a class named `LMDB_Image` (from any module, mapped to `LMDBImage`) and the
    few checked builtins its state needs; any other global raises pickle.UnpicklingError."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "LMDB_Image":
            return LMDBImage
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        raise CorruptValue(f"refused to unpickle {module}.{name}: an image store may only hold LMDB_Image objects")


def load_lmdb_image(value: bytes) -> np.ndarray:
    """uint8 [H, W, 3] pixels of one store value. Whatever is wrong with a value (a refused
    global, a bound crossed, or the unpickler's own LookupError, TypeError, MemoryError ...)
    raises pickle.UnpicklingError: a corrupt value is bad data, never an out-of-memory."""
    try:
        check_pickle(value)
        obj = RestrictedUnpickler(io.BytesIO(value)).load()
        if not isinstance(obj, LMDBImage):
            raise CorruptValue(f"an image store value is a {type(obj).__name__}, not an LMDB_Image")
        return obj.pixels()
    except CorruptValue:
        raise
    except (Exception, MemoryError) as e:  # noqa: BLE001 - untrusted bytes: every failure is "corrupt value"
        raise CorruptValue(f"a corrupt value ({type(e).__name__}: {e})") from None


def synthetic_image(key: str, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: colour and stripes derived from the item id alone (deterministic)."""
    seed = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    colour = rng.uniform(0.1, 0.9, size=3).astype(np.float32)
    angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(2.0, 8.0), rng.uniform(0, 2 * np.pi)
    lin = np.linspace(0.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    return (np.clip(colour[None, None, :] * (0.65 + 0.35 * wave[..., None]), 0.0, 1.0) * 255).astype(np.uint8)


def resize(img: Any, size: int) -> np.ndarray:
    """An RGB image (uint8 array, or a PIL image: no array round trip, which holds the GIL)
    as a [size, size, 3] uint8 array, resized bilinearly."""
    from PIL import Image

    if isinstance(img, np.ndarray):
        if img.shape[0] == size and img.shape[1] == size:
            return img
        img = Image.fromarray(img)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img)


class KeyedImages:
    """Images by original item key; dense id i is item_keys[i - 1]. Missing ones follow `missing`."""

    def __init__(self, item_keys: list[str], present: list[bool], missing: str):
        if missing not in MISSING_POLICIES:
            raise TpmeError(f"unknown missing-image policy {missing!r}", f"use one of {', '.join(MISSING_POLICIES)}")
        self.item_keys = ["", *item_keys]
        self.present = [False, *present]
        self.missing = missing
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        self._cached_bytes = 0
        self._pool: ThreadPoolExecutor | None = None  # made on first use: a source is opened in every cell's process
        self._pool_threads = 0

    def load(self, key: str) -> Any:  # pragma: no cover - interface
        """The RGB image of `key`: a uint8 [H, W, 3] array or a PIL image."""
        raise NotImplementedError

    def image(self, item: int, size: int) -> np.ndarray:
        key = self.item_keys[item]
        if self.present[item]:
            return resize(self.load(key), size)
        if self.missing == "synthetic":
            return synthetic_image(key, size)
        if self.missing == "blank":
            return np.full((size, size, 3), BLANK_LEVEL, dtype=np.uint8)
        raise TpmeError(f"item {key!r} has no image", "use --missing-images blank|synthetic")

    def images(self, items: np.ndarray, size: int) -> np.ndarray:
        """Decoded and resized once per item while the cache has room (decoding dominates
        otherwise); the items a batch still needs are decoded by a pool of threads."""
        todo = [i for i in dict.fromkeys(int(i) for i in items) if (i, size) not in self._cache]
        decoded = dict(zip(todo, self._decode_all(todo, size)))
        for item, img in decoded.items():
            if self._cached_bytes + img.nbytes <= CACHE_BYTES:
                self._cache[(item, size)] = img
                self._cached_bytes += img.nbytes
        out = np.empty((len(items), 3, size, size), dtype=np.uint8)
        for row, item in enumerate(items):
            img = decoded.get(int(item))
            out[row] = (img if img is not None else self._cache[(int(item), size)]).transpose(2, 0, 1)
        return out

    def _decode_all(self, items: list[int], size: int) -> list[np.ndarray]:
        if DECODE_THREADS <= 1 or len(items) <= 1:
            return [self.image(i, size) for i in items]
        if self._pool is None or self._pool_threads != DECODE_THREADS:
            self._pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="tpme-decode")
            self._pool_threads = DECODE_THREADS
        return list(self._pool.map(lambda i: self.image(i, size), items))


@register_image_source("none")
class NoImages(KeyedImages):
    """A dataset without images: every item gets the missing-image policy's picture."""

    def __init__(self, item_keys: list[str], missing: str):
        super().__init__(item_keys, [False] * len(item_keys), missing)


@register_image_source("folder")
class FolderImages(KeyedImages):
    """`<item_id>.jpg|.jpeg|.png` files in one folder, decoded with Pillow."""

    def __init__(self, path: str, item_keys: list[str], files: list[str | None], missing: str):
        super().__init__(item_keys, [f is not None for f in files], missing)
        self.path = Path(path)
        self.files = [None, *files]
        self._index = {k: f for k, f in zip(self.item_keys, self.files) if f is not None}

    def load(self, key: str) -> Any:
        from PIL import Image

        file = self.path / self._index[key]
        try:
            with Image.open(file) as im:
                return im.convert("RGB")
        except OSError as e:
            raise TpmeError(f"{file}: not a readable image ({e})", "replace or delete the file") from e


@register_image_source("lmdb")
class LmdbImages(KeyedImages):
    """An IISAN-style LMDB store: key = item id (UTF-8 bytes), value = a pickled LMDB_Image."""

    def __init__(self, path: str, item_keys: list[str], present: list[bool], missing: str):
        super().__init__(item_keys, present, missing)
        self.path = path
        self._env = None
        self._pid = -1
        self._open_lock = threading.Lock()

    def _txn(self):
        with self._open_lock:  # decode threads share one env; LMDB refuses a second in a process
            if self._env is None or self._pid != os.getpid():  # an env must not cross a fork
                self._env = open_lmdb(self.path)
                self._pid = os.getpid()
        return self._env.begin(buffers=False)

    def load(self, key: str) -> np.ndarray:
        with self._txn() as txn:
            value = txn.get(key.encode())
        if value is None:
            raise TpmeError(f"{self.path}: key {key!r} disappeared from the image store", "re-run so that the store is inspected again")
        try:
            return load_lmdb_image(value)
        except pickle.UnpicklingError as e:
            raise TpmeError(f"{self.path}: image of item {key!r}: {e}", "use a store written with IISAN's LMDB_Image class") from e


def open_lmdb(path: str | Path):
    import lmdb

    path = Path(path)
    try:
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir(), max_readers=64)
    except lmdb.Error as e:
        raise TpmeError(f"{path}: not a readable LMDB store ({e})", "point --images at the store's directory or data file") from e


def is_lmdb(path: Path) -> bool:
    return (path.is_dir() and (path / "data.mdb").is_file()) or (path.is_file() and path.suffix == ".lmdb")


def lmdb_keys(path: Path) -> set[str]:
    env = open_lmdb(path)
    try:
        with env.begin() as txn:
            return {bytes(k).decode("utf-8", "replace") for k in txn.cursor().iternext(values=False)}
    finally:
        env.close()


def folder_files(path: Path) -> dict[str, str]:
    """item key -> file name for every image file in the folder (first by name when several)."""
    out: dict[str, str] = {}
    for name in sorted(os.listdir(path)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() in IMAGE_SUFFIXES:
            out.setdefault(stem, name)
    return out


def describe_images(images: Path | None, item_keys: list[str], missing: str) -> tuple[dict[str, Any], int]:
    """The image-source descriptor for these items and how many of them have no image."""
    if missing not in MISSING_POLICIES:
        raise TpmeError(f"unknown missing-image policy {missing!r}", f"use one of {', '.join(MISSING_POLICIES)}")
    base = {"module": MODULE, "item_keys": item_keys, "missing": missing}
    if images is None:
        return {"kind": "none", **base}, len(item_keys)
    if is_lmdb(images):
        keys = lmdb_keys(images)
        present = [k in keys for k in item_keys]
        return {"kind": "lmdb", "path": str(images), "present": present, **base}, present.count(False)
    if images.is_dir():
        index = folder_files(images)
        files = [index.get(k) for k in item_keys]
        return {"kind": "folder", "path": str(images), "files": files, **base}, files.count(None)
    raise TpmeError(f"{images}: neither an LMDB store nor a folder of images", "give --images an LMDB directory (with data.mdb) or a folder of <item_id>.jpg|.png")
