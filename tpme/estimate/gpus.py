"""GPUs the estimate can target: memory, bandwidth, dense peak FLOP/s, and calibration.

Built-in figures are dense (no sparsity) peak rates from NVIDIA's public spec sheets:
- A100 40/80 GB (SXM): NVIDIA A100 Tensor Core GPU datasheet (2021): FP32 19.5, TF32 156,
  FP16/BF16 312 TFLOP/s; 1,555 GB/s (40 GB) and 2,039 GB/s (80 GB).
- H100 SXM 80 GB: NVIDIA H100 Tensor Core GPU datasheet (2023): FP32 67, TF32 494.7,
  FP16/BF16 989.4 TFLOP/s (the sheet's 989/1,979 with sparsity, halved); 3.35 TB/s.
- H200 SXM 141 GB: NVIDIA H200 product page / datasheet (2024): same tensor rates as
  H100 SXM; 4.8 TB/s.
- RTX A6000 48 GB: NVIDIA RTX A6000 datasheet: FP32 38.7, TF32 77.4, FP16/BF16 154.8
  TFLOP/s (dense); 768 GB/s.
- A40 48 GB: NVIDIA A40 datasheet: FP32 37.4, TF32 74.8, FP16/BF16 149.7 TFLOP/s; 696 GB/s.
- L40S 48 GB: NVIDIA L40S datasheet: FP32 91.6, TF32 183, FP16/BF16 362 TFLOP/s dense
  (the sheet's 366/733 with sparsity for TF32 / FP16, halved); 864 GB/s.
- L4 24 GB: NVIDIA L4 datasheet: FP32 30.3, TF32 60, FP16/BF16 121 TFLOP/s; 300 GB/s.
- RTX 4090 24 GB: NVIDIA Ada Lovelace architecture whitepaper (v1.03), table 2: FP32
  82.6, TF32 82.6, FP16/BF16 with FP32 accumulate 165.2 TFLOP/s; 1,008 GB/s.
- RTX 3090 24 GB: NVIDIA Ampere GA102 whitepaper (v2.0), table 9: FP32 35.6, TF32 35.6,
  FP16/BF16 with FP32 accumulate 71 TFLOP/s; 936 GB/s.
Memory is the nominal capacity (GiB); the driver and ECC take a little of it, which the
CUDA-context term of the runtime overhead covers.

Calibration constants: the defaults below are educated guesses. A GPU with published or
measured runs gets fitted constants from `calibrated.json` beside this module, written by
`benchmarks/calibration.py --fit` (estimate/calibration.py) with their provenance: the runs,
the fit, the command; `Gpu.calibration_source` says which applies, and `tpme estimate
--list-gpus` shows it. A --gpu-file overrides either (README, "Estimate without a GPU").
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tpme.errors import TpmeError
from tpme.files import read_text

GIB = 1 << 30
MIB = 1 << 20
GPU_FILE_LIMIT = 4 * MIB  # a GPU table is a few KiB
PRECISION_KEYS = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class Calibration:
    """How far real steps fall short of peak rates, and what a process holds besides tensors."""

    compute_efficiency: float = 0.6  # fraction of peak FLOP/s a matmul-bound op reaches
    memory_efficiency: float = 0.8  # fraction of peak bandwidth an elementwise op reaches
    kernel_overhead_s: float = 6e-6  # launch + eager dispatch per kernel, added per op
    graph_kernel_overhead_s: float = 2e-6  # per kernel replayed from a CUDA graph: no host dispatch, the GPU's own gap
    cuda_context_bytes: int = 512 * MIB  # CUDA context and loaded kernels (nvidia-smi shows it, the allocator does not)
    cublas_workspace_bytes: int = 32 * MIB  # cuBLAS/cuBLASLt workspaces
    fragmentation: float = 0.10  # caching-allocator reserved-but-unused, as a fraction of the tensor peak
    reserved_overhead: float = 0.0  # reserved memory the allocator replay misses, as a fraction of its prediction (negative: the replay over-reserves)


DEFAULT_SOURCE = "defaults (educated guesses, not fitted to measurements)"

# The host's sustained disk write bandwidth that a per-epoch checkpoint (the official protocol's
# `save_model`: model and optimizer state written with torch.save) is timed at, in bytes/s.
# An ASSUMPTION, not measured on the paper's machine (nor on any named GPU's host): a local
# NVMe SSD sustains about 1-3 GB/s of large sequential writes, a SATA SSD about 0.5, so 1 GB/s
# is a middle figure. It belongs to the host, not the GPU, so it is not part of Calibration.
CHECKPOINT_WRITE_BYTES_S = 1.0e9


@dataclass(frozen=True)
class Gpu:
    key: str
    name: str
    memory_bytes: int
    bandwidth_bytes_s: float
    peak_flops: dict[str, float]  # precision key -> dense FLOP/s
    calibration: Calibration = field(default_factory=Calibration)
    calibration_source: str = DEFAULT_SOURCE


CALIBRATED_FILE = Path(__file__).with_name("calibrated.json")


def fitted_calibrations(path: Path = CALIBRATED_FILE) -> dict[str, tuple[dict[str, float], str]]:
    """GPU key -> (fitted Calibration fields, one line saying where they came from)."""
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    known = {f.name for f in fields(Calibration)}
    out = {}
    for key, entry in doc.get("gpus", {}).items():
        values = {k: v for k, v in entry["values"].items() if k in known}
        prov = entry["provenance"]
        out[key] = (values, f"fitted to {prov['runs']} {prov['data']} runs ({prov['fit']}; {prov['command']})")
    return out


def _with_fitted(gpus: dict[str, Gpu]) -> dict[str, Gpu]:
    fitted = fitted_calibrations()
    return {k: replace(g, calibration=replace(g.calibration, **{n: type(getattr(g.calibration, n))(v) for n, v in fitted[k][0].items()}), calibration_source=fitted[k][1]) if k in fitted else g
            for k, g in gpus.items()}


def _gpu(key: str, name: str, memory_gib: float, bandwidth_gb_s: float, fp32: float, tf32: float, fp16: float, bf16: float) -> Gpu:
    tflops = {"fp32": fp32, "tf32": tf32, "fp16": fp16, "bf16": bf16}
    return Gpu(key, name, int(memory_gib * GIB), bandwidth_gb_s * 1e9, {k: v * 1e12 for k, v in tflops.items()})


BUILTIN: dict[str, Gpu] = _with_fitted({
    g.key: g
    for g in (
        _gpu("a100-40gb", "NVIDIA A100 40GB (SXM)", 40, 1555, 19.5, 156, 312, 312),
        _gpu("a100-80gb", "NVIDIA A100 80GB (SXM)", 80, 2039, 19.5, 156, 312, 312),
        _gpu("h100", "NVIDIA H100 SXM 80GB", 80, 3350, 67, 494.7, 989.4, 989.4),
        _gpu("h200", "NVIDIA H200 SXM 141GB", 141, 4800, 67, 494.7, 989.4, 989.4),
        _gpu("a6000", "NVIDIA RTX A6000 48GB", 48, 768, 38.7, 77.4, 154.8, 154.8),
        _gpu("a40", "NVIDIA A40 48GB", 48, 696, 37.4, 74.8, 149.7, 149.7),
        _gpu("l40s", "NVIDIA L40S 48GB", 48, 864, 91.6, 183, 362, 362),
        _gpu("l4", "NVIDIA L4 24GB", 24, 300, 30.3, 60, 121, 121),
        _gpu("rtx4090", "NVIDIA GeForce RTX 4090 24GB", 24, 1008, 82.6, 82.6, 165.2, 165.2),
        _gpu("rtx3090", "NVIDIA GeForce RTX 3090 24GB", 24, 936, 35.6, 35.6, 71, 71),
    )
})
ALIASES = {"h100sxm": "h100", "h100sxm80gb": "h100", "h200sxm": "h200", "a100": "a100-80gb", "rtxa6000": "a6000", "4090": "rtx4090", "3090": "rtx3090"}

SIGNED_FIELDS = ("reserved_overhead",)  # a correction that may go either way
_ENTRY_KEYS = {"name", "memory_gib", "bandwidth_gb_s", "tflops"} | {f.name for f in fields(Calibration)}


def _norm(key: str) -> str:
    return re.sub(r"[\s_\-]", "", key.lower())


def _lookup(key: str, table: dict[str, Gpu]) -> str | None:
    """The table key a user's spelling names: case, spaces, `-` and `_` do not matter."""
    index = {_norm(k): k for k in table}
    n = _norm(key)
    return index.get(n) or index.get(_norm(ALIASES.get(n, "")))


def load_gpu_file(path: str | Path) -> dict[str, Gpu]:
    """GPUs from a JSON or TOML file: `{"gpus": {"KEY": {...}}}` / `[gpus.KEY]` tables.

    An entry has name, memory_gib, bandwidth_gb_s and tflops = {fp32, tf32, fp16, bf16},
    plus any calibration field. An entry whose key names a built-in GPU may give only
    the fields it changes (e.g. a measured compute_efficiency).
    """
    path = Path(path)
    if not path.is_file():
        raise TpmeError(f"GPU file {path} does not exist", "give a JSON or TOML file with a `gpus` table")
    text = read_text(path, GPU_FILE_LIMIT, "GPU file")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            doc = tomllib.loads(text)
        else:
            doc = json.loads(text)
    except ImportError:
        raise TpmeError("reading TOML needs Python 3.11 or later", "write the GPU file as JSON") from None
    except (ValueError, RecursionError) as e:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise TpmeError(f"GPU file {path} does not parse: {e}", "fix its syntax (JSON, or TOML for a .toml file)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("gpus"), dict) or not doc["gpus"]:
        raise TpmeError(f"GPU file {path} has no `gpus` table", 'write {"gpus": {"my-gpu": {"name": ..., "memory_gib": ..., "bandwidth_gb_s": ..., "tflops": {...}}}}')
    gpus = [_entry(k, v, path) for k, v in doc["gpus"].items()]
    return {g.key: g for g in gpus}


def _entry(key: str, raw: Any, path: Path) -> Gpu:
    where = f"GPU {key!r} in {path}"
    if not isinstance(raw, dict):
        raise TpmeError(f"{where} is not a table")
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise TpmeError(f"{where} has unknown field(s) {', '.join(sorted(unknown))}", f"known fields: {', '.join(sorted(_ENTRY_KEYS))}")
    builtin_key = _lookup(key, BUILTIN)
    base = BUILTIN[builtin_key] if builtin_key else None
    for f in ("name", "memory_gib", "bandwidth_gb_s", "tflops"):
        if f not in raw and base is None:
            raise TpmeError(f"{where} lacks {f!r}", "a new GPU needs name, memory_gib, bandwidth_gb_s and tflops = {fp32, tf32, fp16, bf16}")
    numbers = {k: v for k, v in raw.items() if k not in ("name", "tflops")}
    for k, v in numbers.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (v < 0 and k not in SIGNED_FIELDS) or (v == 0 and k in ("memory_gib", "bandwidth_gb_s")):
            raise TpmeError(f"{where}: {k} = {v!r} is not a positive number")
    for k in ("compute_efficiency", "memory_efficiency"):
        if k in raw and not 0 < raw[k] <= 1:
            raise TpmeError(f"{where}: {k} = {raw[k]} must be in (0, 1]")
    peak = dict(base.peak_flops) if base else {}
    if "tflops" in raw:
        t = raw["tflops"]
        if not isinstance(t, dict) or set(t) - set(PRECISION_KEYS):
            raise TpmeError(f"{where}: tflops must be a table with keys among {', '.join(PRECISION_KEYS)}")
        for k, v in t.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise TpmeError(f"{where}: tflops.{k} = {v!r} is not a positive number")
            peak[k] = float(v) * 1e12
    missing = set(PRECISION_KEYS) - set(peak)
    if missing:
        raise TpmeError(f"{where}: tflops lacks {', '.join(sorted(missing))}", "give dense peak TFLOP/s for fp32, tf32, fp16 and bf16")
    calib = replace(base.calibration if base else Calibration(), **{k: type(getattr(Calibration(), k))(v) for k, v in numbers.items() if k in {f.name for f in fields(Calibration)}})
    return Gpu(
        key=base.key if base else key.strip().lower(),
        name=str(raw.get("name", base.name if base else key)),
        memory_bytes=int(raw["memory_gib"] * GIB) if "memory_gib" in raw else base.memory_bytes,
        bandwidth_bytes_s=float(raw["bandwidth_gb_s"]) * 1e9 if "bandwidth_gb_s" in raw else base.bandwidth_bytes_s,
        peak_flops=peak,
        calibration=calib,
        calibration_source=f"--gpu-file {path}" if set(numbers) & {f.name for f in fields(Calibration)} else (base.calibration_source if base else DEFAULT_SOURCE),
    )


def resolve_gpus(spec: str, gpu_file: str | Path | None = None) -> list[Gpu]:
    """`all`, one key or a comma list -> GPUs; a file's entries add to or override the built-ins."""
    table = dict(BUILTIN)
    extra = load_gpu_file(gpu_file) if gpu_file else {}
    table.update(extra)
    if spec.strip().lower() == "all":
        return list(table.values())
    out = []
    for raw in (s for s in spec.split(",") if s.strip()):
        key = _lookup(raw, table)
        if key is None:
            raise TpmeError(f"unknown GPU {raw.strip()!r}", f"use one of {', '.join(table)}, `all`, or describe it in --gpu-file")
        out.append(table[key])
    if not out:
        raise TpmeError("no GPU given", "use --gpu NAME, a comma list or all")
    return out


_DEVICE_PATTERNS = (
    (r"h200", "h200"),
    (r"h100", "h100"),
    (r"a100.*40gb", "a100-40gb"),
    (r"a100", "a100-80gb"),
    (r"a6000", "a6000"),
    (r"a40(?!\d)", "a40"),
    (r"l40s", "l40s"),
    (r"l4(?!\d)", "l4"),
    (r"4090", "rtx4090"),
    (r"3090", "rtx3090"),
)


def match_device_name(device_name: str) -> Gpu | None:
    """The built-in GPU that `torch.cuda.get_device_name()` names, if any."""
    n = _norm(device_name)
    for pattern, key in _DEVICE_PATTERNS:
        if re.search(pattern, n):
            return BUILTIN[key]
    return None
