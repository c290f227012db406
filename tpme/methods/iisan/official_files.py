"""The official cached IISAN's per-item state files (GAIR-Lab/IISAN, `Code_Cached`).

The official `preprocess_vectors.py` runs both frozen backbones once (eval mode, fp32, no
grad) and saves per item, with `torch.save`, the [CLS] row of every hidden state (embedding
output and each layer) as one fp32 tensor [n_states, d]: `bert_outputs/bert_<item>.pt` and
`vit_outputs/vit_<item>.pt`. Its training loader then `torch.load`s both files of every
real item of every sample, every step. Under the official protocol `iisan-cached` does the
same, so what the paper's cached figures measured is what runs.

Layout under `<cache_dir>/iisan-official/<key>/`: the two folders of files (item ids are
tpme's dense ids, 1..n_items; the padding item has none) and `manifest.json`, written last
and atomically, holding the fingerprint, the shapes, every file's size and one sha256 over
all files of a modality. The states come from the hidden-state cache's own build (all
layers, fp32 compute and storage) in a scratch folder that is deleted once exported, so the
fingerprint and the state values are exactly that cache's. A missing manifest, a missing,
resized or changed file means an interrupted or corrupt export, which is rebuilt, never used;
a file that breaks after that check is refused when read (TpmeError).
"""
from __future__ import annotations

import hashlib
import io
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tpme.errors import TpmeError
from tpme.methods.iisan import cache as hidden_cache

FORMAT = 1
SUBDIR = "iisan-official"
SCRATCH = "arrays"  # the hidden-state cache built on the way, deleted after the export
PREFIX = {"text": "bert", "image": "vit"}  # the official folder and file prefixes
DTYPE = "fp32"  # the official files hold fp32 states computed in fp32
MANIFEST_LIMIT = 2**26  # two sizes per item: about 20 bytes each


def all_layers(model: torch.nn.Module) -> list[int]:
    """Every hidden state: 0 (embedding output) to the last layer."""
    return list(range(model.config.num_hidden_layers + 1))


def file_path(directory: Path, modality: str, item: int) -> Path:
    prefix = PREFIX[modality]
    return directory / f"{prefix}_outputs" / f"{prefix}_{item}.pt"


def fingerprint(backbones, bundle) -> str:
    """The hidden-state cache's fingerprint for all layers in fp32, tagged with this layout."""
    fp = hidden_cache.fingerprint(backbones, bundle, all_layers(backbones.text), all_layers(backbones.image), DTYPE, DTYPE)
    return hashlib.sha256(f"official-files:{FORMAT}:{fp}".encode()).hexdigest()


def root(cache_dir: str | Path) -> Path:
    return Path(cache_dir) / SUBDIR


def parse_manifest(data: Any) -> dict[str, Any]:
    """The manifest when every field it is used for has its type, else ValueError with why."""
    if not isinstance(data, dict):
        raise ValueError(f"manifest is a JSON {type(data).__name__}, not an object")
    if data.get("format") != FORMAT:
        raise ValueError(f"format {data.get('format')!r} is not {FORMAT}")
    if not isinstance(data.get("fingerprint"), str) or data.get("dtype") != DTYPE:
        raise ValueError("fingerprint or dtype missing or of the wrong type")
    n = data.get("n_items")
    if not (hidden_cache.is_int(n) and n >= 0):
        raise ValueError(f"n_items {n!r} is not a non-negative integer")
    if not isinstance(data.get("build_time_s"), (int, float)):
        raise ValueError("build_time_s missing")
    for modality in PREFIX:
        entry = data.get("files", {}).get(modality) if isinstance(data.get("files"), dict) else None
        if not isinstance(entry, dict):
            raise ValueError(f"{modality} files not listed")
        shape = entry.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(hidden_cache.is_int(s) and s > 0 for s in shape)):
            raise ValueError(f"{modality} shape {shape!r} is not two positive integers")
        sizes = entry.get("bytes")
        if not (isinstance(sizes, list) and len(sizes) == n and all(hidden_cache.is_int(s) and s > 0 for s in sizes)):
            raise ValueError(f"{modality} bytes is not one positive size per item")
        digest = entry.get("sha256")
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise ValueError(f"{modality} sha256 is not 64 hex digits")
    return data


def verify(directory: Path, fp: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """(manifest, "ok") when every file is there with its size and the checksums match, else the reason."""
    manifest, reason = hidden_cache.read_manifest(directory, fp, parse_manifest, MANIFEST_LIMIT)
    if manifest is None or reason != "ok":
        return manifest, reason
    for modality in PREFIX:
        entry = manifest["files"][modality]
        h = hashlib.sha256()
        for item, size in enumerate(entry["bytes"], start=1):
            f = file_path(directory, modality, item)
            if f.is_symlink() or not f.is_file():
                return manifest, f"{f.name} is a symbolic link" if f.is_symlink() else f"{f.name} missing"
            if f.stat().st_size != size:
                return manifest, f"{f.name} has {f.stat().st_size} bytes, manifest says {size} (truncated?)"
            h.update(f.read_bytes())
        if h.hexdigest() != entry["sha256"]:
            return manifest, f"{PREFIX[modality]}_outputs checksum mismatch (a file is corrupt)"
    return manifest, "ok"


def _export(directory: Path, states: torch.Tensor, modality: str, progress: bool) -> dict[str, Any]:
    """One torch.save file per item (row 0, the padding item, has none); sizes and one checksum."""
    file_path(directory, modality, 1).parent.mkdir(parents=True, exist_ok=True)
    h, sizes = hashlib.sha256(), []
    for item in tqdm(range(1, len(states)), desc=f"official {PREFIX[modality]} files", unit="item", disable=not progress, dynamic_ncols=True):
        buffer = io.BytesIO()
        torch.save(states[item].clone(), buffer)  # its own storage, as the official `.cpu()` copy
        data = buffer.getvalue()
        file_path(directory, modality, item).write_bytes(data)
        h.update(data)
        sizes.append(len(data))
    return {"shape": list(states.shape[1:]), "bytes": sizes, "sha256": h.hexdigest()}


def build(directory: Path, fp: str, backbones, features, n_items: int, batch_size: int, device: torch.device, progress: bool) -> dict[str, Any]:
    """The hidden-state cache's build (all layers, fp32) into a scratch folder, exported per item."""
    hidden_cache.remove(directory)
    directory.mkdir(parents=True)
    scratch = directory / SCRATCH
    spec = hidden_cache.BuildSpec(all_layers(backbones.text), all_layers(backbones.image), DTYPE, DTYPE, batch_size)
    built = hidden_cache.build(scratch, fp, backbones, features, n_items, spec, device, progress)
    manifest, reason = hidden_cache.verify(scratch, fp)
    if reason != "ok" or manifest is None:
        raise TpmeError(f"the hidden states built for the official files in {scratch} do not verify: {reason}", "check the backbones (NaN states) and the disk, then run again")
    t0 = time.perf_counter()
    arrays = hidden_cache.open_arrays(scratch, manifest)
    files = {m: _export(directory, arrays[m], m, progress) for m in PREFIX}
    arrays.clear()
    hidden_cache.remove(scratch)
    build_time = built["build_time_s"] + time.perf_counter() - t0
    out = {
        "format": FORMAT, "fingerprint": fp, "dtype": DTYPE, "n_items": n_items, "files": files,
        "build_time_s": build_time, "items_per_s": n_items / build_time if build_time > 0 else None,
        "build_device": str(device), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    hidden_cache.write_manifest(directory, out)
    return out


@dataclass(frozen=True)
class StateFiles:
    """Reads items' states from a verified export, one `torch.load` per item and modality,
    as the official training loader and item-embedding pass do."""

    directory: Path
    shapes: dict[str, tuple[int, int]]  # modality -> (n_states, d)

    def read(self, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows: dict[str, list[torch.Tensor]] = {m: [] for m in PREFIX}
        for item in items.tolist():
            for m in PREFIX:  # bert then vit, as the official __getitem__
                rows[m].append(self._load(m, int(item)))
        text, image = (torch.stack(rows[m]) if rows[m] else torch.zeros(0, *self.shapes[m]) for m in PREFIX)
        return text, image

    def _load(self, modality: str, item: int) -> torch.Tensor:
        path = file_path(self.directory, modality, item)
        fix = "the file changed after the cache was verified: run again (a damaged export is rebuilt at start) or `tpme cache clear`"
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:  # a missing or damaged file
            raise TpmeError(f"cannot read the official IISAN state file {path}: {e}", fix) from None
        if not isinstance(t, torch.Tensor) or t.dtype != torch.float32 or tuple(t.shape) != self.shapes[modality]:
            what = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TpmeError(f"official IISAN state file {path} holds {what}, not float32 {self.shapes[modality]}", fix)
        return t


def ensure(cache_dir: str | Path, backbones, bundle, features, batch_size: int, device: torch.device, progress: bool = False) -> tuple[StateFiles, dict[str, Any]]:
    """A verified export for these inputs, built (or rebuilt) when needed; the reader and facts."""
    t0 = time.perf_counter()
    fp = fingerprint(backbones, bundle)
    info: dict[str, Any] = {"fingerprint_time_s": time.perf_counter() - t0, "fingerprint": fp}
    directory = root(cache_dir) / fp[:24]
    manifest, reason = verify(directory, fp)
    info["cache_dir"] = str(directory)
    if reason == "ok":
        info.update(cache="hit", build_time_s=0.0, items_per_s=None)
    else:
        stale = reason
        try:
            manifest = build(directory, fp, backbones, features, bundle.n_items, batch_size, device, progress)
        except OSError as e:
            why = "" if stale == "missing" else f" (it needed a rebuild: {stale})"
            raise TpmeError(f"cannot write the official IISAN state files in {directory}{why}: {e.strerror or e}", "make the cache folder writable, or give another --cache-dir") from None
        manifest, reason = verify(directory, fp)
        if reason != "ok" or manifest is None:
            raise TpmeError(f"the official IISAN state files just written in {directory} do not verify: {reason}", "check the disk (space, errors) and run again")
        info.update(cache="built" if stale == "missing" else "rebuilt", rebuild_reason=None if stale == "missing" else stale,
                    build_time_s=manifest["build_time_s"], items_per_s=manifest["items_per_s"])
    files = manifest["files"]
    shapes = {m: (files[m]["shape"][0], files[m]["shape"][1]) for m in PREFIX}
    info.update(dtype=DTYPE, layout="official per-item torch.save files", files=2 * manifest["n_items"],
                bytes=sum(sum(files[m]["bytes"]) for m in PREFIX), shapes={m: [manifest["n_items"], *shapes[m]] for m in PREFIX})
    return StateFiles(directory, shapes), info
