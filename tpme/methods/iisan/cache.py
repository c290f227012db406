"""The IISAN hidden-state cache: per item, the [CLS] vectors of the used layers of both backbones.

Layout under `<cache_dir>/iisan-hidden/<key>/`: `text.npy` and `image.npy`, one contiguous
array per modality of shape [n_items + 1, n_layers_used, d] (row 0, the padding item,
is zero), and `manifest.json`, written last and atomically, holding the fingerprint,
the shapes and each file's size and sha256. The key is a sha256 fingerprint of
everything the vectors depend on (backbone weights and configs, tokens and tokenizer,
image source, image size, layer lists, compute precision, storage dtype), so a change
of any of them builds a new cache; a missing manifest, a size or checksum mismatch
means a corrupt or interrupted cache, which is rebuilt, never used. So is a manifest with a
field of the wrong type or a file other than its own `<modality>.npy`, a key folder that
is a symbolic link, and an array holding NaN or inf.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tpme.device import autocast, synchronize
from tpme.errors import TpmeError
from tpme.files import read_text
from tpme.methods.iisan.options import STORAGE
from tpme.methods.iisan.towers import cls_states

FORMAT = 1
SUBDIR = "iisan-hidden"
MANIFEST = "manifest.json"
MODALITIES = ("text", "image")
def _hash_tensor(h: "hashlib._Hash", name: str, t: torch.Tensor) -> None:
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)


def fingerprint(backbones, bundle, text_layers: list[int], image_layers: list[int], dtype: str, precision: str) -> str:
    """sha256 over every input the cached vectors depend on."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "text_layers": text_layers, "image_layers": image_layers, "dtype": dtype, "precision": precision, "image_size": backbones.image_size}, sort_keys=True).encode())
    for which, model in (("text", backbones.text), ("image", backbones.image)):
        h.update(model.config.to_json_string(use_diff=False).encode())
        for name, t in sorted(model.state_dict().items()):
            _hash_tensor(h, f"{which}.{name}", t)
    tokens = np.ascontiguousarray(bundle.tokens)
    h.update(f"tokens:{tokens.dtype}:{tokens.shape}".encode())
    h.update(tokens.data)
    h.update(json.dumps({"image_source": bundle.image_source, "info": bundle.info}, sort_keys=True, default=str).encode())
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_root(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / SUBDIR


MANIFEST_LIMIT = 2**20  # a manifest is a few hundred bytes
FINITE_CHUNK = 1 << 22  # elements checked at a time


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (is_int(v) or isinstance(v, float)) and math.isfinite(v)


def parse_manifest(data: Any) -> dict[str, Any]:
    """The manifest when every field it is used for has its type, else ValueError with why.

    A file entry's name must be exactly `<modality>.npy`: a cache never reads a file
    outside its own key folder, whatever the manifest says."""
    if not isinstance(data, dict):
        raise ValueError(f"manifest is a JSON {type(data).__name__}, not an object")
    if data.get("format") != FORMAT:
        raise ValueError(f"format {data.get('format')!r} is not {FORMAT}")
    checks = {
        "fingerprint": lambda v: isinstance(v, str), "dtype": lambda v: v in STORAGE, "precision": lambda v: isinstance(v, str),
        "n_items": lambda v: is_int(v) and v >= 0, "build_time_s": _is_number, "items_per_s": lambda v: v is None or _is_number(v),
        "text_layers": lambda v: isinstance(v, list) and all(map(is_int, v)), "image_layers": lambda v: isinstance(v, list) and all(map(is_int, v)),
        "files": lambda v: isinstance(v, dict), "created": lambda v: v is None or isinstance(v, str),
    }
    for key, ok in checks.items():
        if not ok(data.get(key)):
            raise ValueError(f"manifest field {key!r} is missing or of the wrong type ({type(data.get(key)).__name__})")
    for modality in MODALITIES:
        entry = data["files"].get(modality)
        if not isinstance(entry, dict):
            raise ValueError(f"{modality} array not listed")
        if entry.get("name") != f"{modality}.npy":
            raise ValueError(f"{modality} file is named {entry.get('name')!r}, not {modality}.npy (a cache reads only its own folder)")
        shape = entry.get("shape")
        if not (isinstance(shape, list) and len(shape) == 3 and all(is_int(n) and n >= 0 for n in shape)):
            raise ValueError(f"{modality} shape {shape!r} is not three non-negative integers")
        if not (is_int(entry.get("bytes")) and entry["bytes"] >= 0):
            raise ValueError(f"{modality} bytes {entry.get('bytes')!r} is not a non-negative integer")
        digest = entry.get("sha256")
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise ValueError(f"{modality} sha256 is not 64 hex digits")
    return data


def _finite(path: Path, dtype: str) -> bool:
    """Every stored value finite (a foreign array of NaN must never be a cache hit)."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    flat = arr.reshape(-1)
    for start in range(0, flat.size, FINITE_CHUNK):
        chunk = torch.from_numpy(np.array(flat[start : start + FINITE_CHUNK]))
        if dtype == "bf16":
            chunk = chunk.view(torch.bfloat16)
        if not bool(torch.isfinite(chunk).all()):
            return False
    return True


def read_manifest(directory: Path, fp: str | None, parse: Callable[[Any], dict[str, Any]], limit: int = MANIFEST_LIMIT) -> tuple[dict[str, Any] | None, str]:
    """A key folder's manifest, checked by `parse` and against the fingerprint `fp`: (manifest,
    "ok"), else (manifest or None, why the folder cannot be used). What every layout's verify
    checks before its own files."""
    if directory.is_symlink():
        return None, "key folder is a symbolic link (a cache is a plain folder)"
    path = directory / MANIFEST
    if not path.is_file():
        return None, "missing" if not directory.exists() else "no manifest (interrupted build)"
    try:
        manifest = parse(json.loads(read_text(path, limit, "cache manifest")))
    except (TpmeError, ValueError, RecursionError) as e:
        return None, f"unreadable manifest: {e}"
    if fp is not None and manifest["fingerprint"] != fp:
        return manifest, "fingerprint mismatch"
    return manifest, "ok"


def verify(directory: Path, fp: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """(manifest, "ok") for a usable cache, else (manifest or None, the reason it is not)."""
    manifest, reason = read_manifest(directory, fp, parse_manifest)
    if manifest is None or reason != "ok":
        return manifest, reason
    for modality in MODALITIES:
        entry = manifest["files"][modality]
        f = directory / entry["name"]
        if f.is_symlink() or not f.is_file():
            return manifest, f"{entry['name']} missing" if not f.is_symlink() else f"{entry['name']} is a symbolic link"
        if f.stat().st_size != entry["bytes"]:
            return manifest, f"{entry['name']} has {f.stat().st_size} bytes, manifest says {entry['bytes']} (truncated?)"
        if sha256_file(f) != entry["sha256"]:
            return manifest, f"{entry['name']} checksum mismatch (corrupt)"
        try:
            finite = _finite(f, manifest["dtype"])
        except (ValueError, OSError) as e:
            return manifest, f"{entry['name']} is not a readable array ({e})"
        if not finite:
            return manifest, f"{entry['name']} holds NaN or infinite values"
    return manifest, "ok"


def remove(directory: Path) -> None:
    """Delete one cache key folder; a symbolic link is removed itself, never what it points to."""
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    elif directory.exists():
        shutil.rmtree(directory)


@dataclass
class BuildSpec:
    """What to store and how to compute it."""

    text_layers: list[int]
    image_layers: list[int]
    dtype: str  # storage: fp32 | fp16 | bf16
    precision: str  # autocast precision of the build pass
    batch_size: int = 64


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    tmp = directory / (MANIFEST + ".tmp")
    with tmp.open("w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, directory / MANIFEST)


def build(directory: Path, fp: str, backbones, features, n_items: int, spec: BuildSpec, device: torch.device, progress: bool) -> dict[str, Any]:
    """One no-grad, eval-mode pass over all items; arrays filled in place, manifest written last.

    The backbones are moved to `device` for the pass (and stay there: the caller owns them).
    """
    remove(directory)
    directory.mkdir(parents=True)
    np_dtype, torch_dtype = STORAGE[spec.dtype]
    models = {"text": backbones.text, "image": backbones.image}
    layers = {"text": spec.text_layers, "image": spec.image_layers}
    arrays = {
        m: np.lib.format.open_memmap(directory / f"{m}.npy", mode="w+", dtype=np_dtype, shape=(n_items + 1, len(layers[m]), models[m].config.hidden_size))
        for m in MODALITIES
    }
    for m in MODALITIES:
        arrays[m][0] = 0
    was_training = {m: models[m].training for m in MODALITIES}
    for m in MODALITIES:
        models[m].to(device).eval()
    synchronize(device)
    t0 = time.perf_counter()
    try:
        starts = range(1, n_items + 1, spec.batch_size)
        for start in tqdm(starts, desc="iisan cache", unit="batch", disable=not progress, dynamic_ncols=True):
            ids = np.arange(start, min(start + spec.batch_size, n_items + 1))
            items = features.gather(ids).to(device)
            with autocast(device, spec.precision):
                text = cls_states(models["text"], spec.text_layers, input_ids=items.input_ids, attention_mask=items.attention_mask)
                image = cls_states(models["image"], spec.image_layers, pixel_values=items.pixels)
            for m, states in (("text", text), ("image", image)):
                arrays[m][ids[0] : ids[-1] + 1] = states.to(torch_dtype).cpu().view(torch.int16 if spec.dtype == "bf16" else torch_dtype).numpy()
        synchronize(device)
    finally:
        for m in MODALITIES:
            models[m].train(was_training[m])
    build_time = time.perf_counter() - t0
    shapes = {m: list(arrays[m].shape) for m in MODALITIES}
    for m in MODALITIES:
        arrays[m].flush()
    arrays.clear()  # the last references: unmaps the files
    files = {}
    for m in MODALITIES:
        path = directory / f"{m}.npy"
        files[m] = {"name": path.name, "shape": shapes[m], "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    manifest = {
        "format": FORMAT, "fingerprint": fp, "dtype": spec.dtype, "precision": spec.precision,
        "text_layers": spec.text_layers, "image_layers": spec.image_layers, "n_items": n_items, "files": files,
        "build_time_s": build_time, "items_per_s": n_items / build_time if build_time > 0 else None,
        "build_device": str(device), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_manifest(directory, manifest)
    return manifest


def open_arrays(directory: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Memory-mapped CPU tensors of a verified cache (copy-on-write: never written back)."""
    _, torch_dtype = STORAGE[manifest["dtype"]]
    out = {}
    for m in MODALITIES:
        arr = np.load(directory / manifest["files"][m]["name"], mmap_mode="c", allow_pickle=False)
        if list(arr.shape) != manifest["files"][m]["shape"]:
            raise TpmeError(f"cache array {m} has shape {arr.shape}, manifest says {manifest['files'][m]['shape']}")
        t = torch.from_numpy(arr)
        out[m] = t.view(torch.bfloat16) if manifest["dtype"] == "bf16" else t
    return out


def place(t: torch.Tensor, device: torch.device, headroom: float = 0.5) -> torch.Tensor:
    """Move a cache array to the device when it takes at most `headroom` of its free memory."""
    if device.type != "cuda":
        return t
    free, _ = torch.cuda.mem_get_info(device)
    if t.numel() * t.element_size() <= headroom * free:
        return t.to(device)
    return t


def ensure(cache_dir: str | Path, backbones, bundle, features, spec: BuildSpec, device: torch.device, progress: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A verified cache for these inputs, built (or rebuilt) when needed; returns the arrays and facts."""
    t0 = time.perf_counter()
    fp = fingerprint(backbones, bundle, spec.text_layers, spec.image_layers, spec.dtype, spec.precision)
    fp_time = time.perf_counter() - t0
    directory = cache_root(cache_dir) / fp[:24]
    manifest, reason = verify(directory, fp)
    info: dict[str, Any] = {"cache_dir": str(directory), "fingerprint": fp, "fingerprint_time_s": fp_time}
    if reason == "ok":
        info.update(cache="hit", build_time_s=0.0, items_per_s=None)
    else:
        stale = reason
        try:
            manifest = build(directory, fp, backbones, features, bundle.n_items, spec, device, progress)
        except OSError as e:
            why = "" if stale == "missing" else f" (it needed a rebuild: {stale})"
            raise TpmeError(f"cannot write the IISAN cache in {directory}{why}: {e.strerror or e}", "make the cache folder writable, or give another --cache-dir") from None
        manifest, reason = verify(directory, fp)
        if reason != "ok":
            raise TpmeError(f"the IISAN cache just built in {directory} does not verify: {reason}", "check the disk (space, errors) and run `tpme cache clear`")
        info.update(cache="built" if stale == "missing" else "rebuilt", rebuild_reason=None if stale == "missing" else stale, build_time_s=manifest["build_time_s"], items_per_s=manifest["items_per_s"])
    info.update(dtype=manifest["dtype"], bytes=sum(f["bytes"] for f in manifest["files"].values()), shapes={m: manifest["files"][m]["shape"] for m in MODALITIES})
    return open_arrays(directory, manifest), info
