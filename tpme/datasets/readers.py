"""Real datasets in the IISAN layout: an items file `ITEM_ID<TAB>title` and a users file
`USER_ID<TAB>ITEM ITEM ...` (chronological), plus optional images.

Every problem is reported with file and line. Fatal problems make the dataset unusable
(the files must be fixed); warnings are counted and the offending part is skipped:

    encoding        fatal    bytes that are not UTF-8 (re-encode the file)
    malformed       fatal    a line without a tab or an id
    duplicate-user  fatal    a user listed twice (the order of its items is ambiguous)
    empty           fatal    no user with 5 or more known items
    missing-image   fatal    items without an image under `--missing-images error`
    unknown-item    warning  an id missing from the items file: dropped from the sequence
    duplicate-item  warning  an item listed twice: the first title is kept
    empty-title     warning  the item keeps an empty text
    truncated       warning  the last line has no newline: read as it is

Blank lines are skipped. Titles have HTML entities decoded (`&amp;` -> `&`). A path that is
not a regular file (a FIFO, `/dev/zero`), a file over 8 GiB or a line over 16 MiB is refused.
"""
from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tpme.datasets.config import DataConfig
from tpme.datasets.bundle import DataBundle
from tpme.datasets.image_stores import describe_images, is_lmdb
from tpme.datasets.preprocess import Preprocessed, preprocess, subsample_users
from tpme.datasets.tokenize import tokenize
from tpme.errors import TpmeError
from tpme.files import lines

ITEMS_GLOBS = ("*_items.tsv",)
USERS_GLOBS = ("am_*_users.tsv", "am_*_users_10K.tsv")
IMAGE_FOLDERS = ("images",)
SHOWN_FATAL = 10
DATASET_FILE_LIMIT = 8 * 2**30  # Amazon's full users files are a few hundred MiB
DATASET_LINE_LIMIT = 16 * 2**20  # a user with 100k items is about 1.2 MiB


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    kind: str
    message: str
    fatal: bool

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {'error' if self.fatal else 'warning'}: {self.message}"


@dataclass(frozen=True)
class DatasetFiles:
    items: Path
    users: Path
    images: Path | None


@dataclass
class DatasetReport:
    """What a dataset directory holds after reading, validation and preprocessing."""

    files: DatasetFiles
    problems: list[Problem] = field(default_factory=list)
    pre: Preprocessed | None = None
    titles: list[str] = field(default_factory=list)  # per dense item 1..n
    image_source: dict[str, Any] | None = None
    raw: dict[str, int] = field(default_factory=dict)
    missing_images: int = 0

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]

    @property
    def usable(self) -> bool:
        return not self.fatal

    def warning_counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems if not p.fatal))

    def stats(self) -> dict[str, Any]:
        pre = self.pre
        lengths = np.asarray([len(s) for s in pre.sequences]) if pre and pre.sequences else np.zeros(0)
        dist = {}
        if len(lengths):
            dist = {"min": int(lengths.min()), "p25": float(np.percentile(lengths, 25)), "median": float(np.median(lengths)), "mean": float(lengths.mean()), "p75": float(np.percentile(lengths, 75)), "p90": float(np.percentile(lengths, 90)), "max": int(lengths.max())}
        n_items = pre.n_items if pre else 0
        return {
            "items_file": str(self.files.items),
            "users_file": str(self.files.users),
            "images": str(self.files.images) if self.files.images else None,
            "users": len(pre.sequences) if pre else 0,
            "items": n_items,
            "interactions": pre.n_interactions if pre else 0,
            "sequence_length": dist,
            "raw": self.raw,
            "images_found": n_items - self.missing_images,
            "images_missing": self.missing_images,
            "missing_image_policy": self.image_source["missing"] if self.image_source else None,
            "usable": self.usable,
            "warnings": self.warning_counts(),
            "problems": [asdict(p) for p in self.problems],
        }


def find_files(path: Path, cfg: DataConfig) -> DatasetFiles:
    """The items, users and image files: explicit ones first, else found in the directory."""
    directory = path if path.is_dir() else path.parent
    items = _explicit(cfg.items_file, directory, "--items") or _one(directory, ITEMS_GLOBS, "items", "--items FILE")
    users = _explicit(cfg.users_file, directory, "--users") or _one(directory, USERS_GLOBS, "users", "--users FILE")
    images = _explicit(cfg.images, directory, "--images") if cfg.images else _find_images(directory)
    return DatasetFiles(items, users, images)


def _explicit(name: str | None, directory: Path, flag: str) -> Path | None:
    if not name:
        return None
    for candidate in (Path(name), directory / name):
        if candidate.exists():
            return candidate
    raise TpmeError(f"{flag} {name!r} does not exist (nor in {directory})", f"give an existing path to {flag}")


def _one(directory: Path, globs: tuple[str, ...], what: str, flag: str) -> Path:
    found = sorted({p for g in globs for p in directory.glob(g) if p.is_file()})
    if not found:
        raise TpmeError(f"no {what} file in {directory} (looked for {', '.join(globs)})", f"name the file with {flag}")
    if len(found) > 1:
        raise TpmeError(f"several {what} files in {directory}: {', '.join(p.name for p in found)}", f"choose one with {flag}")
    return found[0]


def _find_images(directory: Path) -> Path | None:
    found = [p for p in sorted(directory.iterdir()) if is_lmdb(p) or (p.name in IMAGE_FOLDERS and p.is_dir())]
    if len(found) > 1:
        raise TpmeError(f"several image sources in {directory}: {', '.join(p.name for p in found)}", "choose one with --images PATH")
    return found[0] if found else None


def _lines(path: Path, problems: list[Problem]) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank lines; bad encodings and a missing final newline reported."""
    for lineno, raw in lines(path, DATASET_FILE_LIMIT, DATASET_LINE_LIMIT, "dataset file"):
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.endswith(b"\n") and raw.strip():
            problems.append(Problem(str(path), lineno, "truncated", "last line has no newline (a truncated copy?)", False))
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            problems.append(Problem(str(path), lineno, "encoding", f"byte {raw[e.start]:#04x} at column {e.start + 1} is not UTF-8", True))
            continue
        if text.strip():
            yield lineno, text


def read_items(path: Path, problems: list[Problem]) -> dict[str, str]:
    titles: dict[str, str] = {}
    for lineno, text in _lines(path, problems):
        key, sep, title = text.partition("\t")
        key = key.strip()
        if not sep or not key:
            problems.append(Problem(str(path), lineno, "malformed", "expected ITEM_ID<TAB>title", True))
            continue
        title = html.unescape(title).strip()
        if key in titles:
            problems.append(Problem(str(path), lineno, "duplicate-item", f"item {key!r} listed again; the first title is kept", False))
            continue
        if not title:
            problems.append(Problem(str(path), lineno, "empty-title", f"item {key!r} has an empty title", False))
        titles[key] = title
    return titles


def read_users(path: Path, titles: dict[str, str], problems: list[Problem]) -> tuple[list[list[str]], list[str]]:
    sequences: list[list[str]] = []
    users: list[str] = []
    first_line: dict[str, int] = {}
    for lineno, text in _lines(path, problems):
        user, sep, rest = text.partition("\t")
        user = user.strip()
        if not sep or not user:
            problems.append(Problem(str(path), lineno, "malformed", "expected USER_ID<TAB>ITEM ITEM ...", True))
            continue
        if user in first_line:
            problems.append(Problem(str(path), lineno, "duplicate-user", f"user {user!r} already on line {first_line[user]}; merge the lines in chronological order", True))
            continue
        first_line[user] = lineno
        seq = []
        for item in rest.split():
            if item in titles:
                seq.append(item)
            else:
                problems.append(Problem(str(path), lineno, "unknown-item", f"item {item!r} is not in the items file; dropped", False))
        sequences.append(seq)
        users.append(user)
    return sequences, users


def inspect_dataset(path: str | Path, cfg: DataConfig, missing_images_fatal: bool = True) -> DatasetReport:
    """Read, validate and preprocess a dataset; every problem is collected, none raised.

    With `missing_images_fatal=False` (a check without an explicit policy) missing images
    under the `error` policy are a warning that names the fix, not a reason to refuse."""
    files = find_files(Path(path), cfg)
    report = DatasetReport(files)
    problems = report.problems
    titles = read_items(files.items, problems)
    raw_seqs, user_keys = read_users(files.users, titles, problems)
    report.raw = {"items_listed": len(titles), "users_listed": len(raw_seqs), "interactions_listed": sum(map(len, raw_seqs))}
    raw_seqs, user_keys = subsample_users(raw_seqs, user_keys, cfg.max_users, cfg.seed)
    pre = preprocess(raw_seqs, cfg.max_seq_len, user_keys)
    report.pre = pre
    if not pre.sequences:
        problems.append(Problem(str(files.users), None, "empty", "no user has 5 or more known items", True))
        return report
    report.titles = [titles[k] for k in pre.item_keys]
    keys = [str(k) for k in pre.item_keys]
    report.image_source, report.missing_images = describe_images(files.images, keys, cfg.missing_images)
    if report.missing_images and cfg.missing_images == "error":
        where = str(files.images) if files.images else str(files.items.parent)
        hint = "" if missing_images_fatal else "; a run needs --missing-images blank|synthetic or --images PATH"
        problems.append(Problem(where, None, "missing-image", f"{report.missing_images} of {len(keys)} items have no image{hint}", missing_images_fatal))
    return report


def read_dataset_dir(path: str | Path, cfg: DataConfig, tokenizer_dir: str | None, vocab_size: int) -> DataBundle:
    """A DataBundle from a dataset directory; fatal problems raise a TpmeError listing them."""
    report = inspect_dataset(path, cfg)
    if not report.usable:
        shown = "\n  ".join(str(p) for p in report.fatal[:SHOWN_FATAL])
        more = len(report.fatal) - SHOWN_FATAL
        fix = "fix the files (`tpme data check PATH` lists every problem)"
        if any(p.kind == "missing-image" for p in report.fatal):
            fix = "use --missing-images blank|synthetic, or provide the images (--images PATH)"
        raise TpmeError(f"dataset {path} is not usable:\n  {shown}" + (f"\n  ... and {more} more" if more > 0 else ""), fix)
    tokens, tok_info = tokenize(report.titles, cfg.text_len, tokenizer_dir, vocab_size)
    stats = report.stats()
    info = {
        **tok_info,
        "items_file": stats["items_file"],
        "users_file": stats["users_file"],
        "images": stats["images"],
        "images_found": stats["images_found"],
        "images_missing": stats["images_missing"],
        "missing_image_policy": stats["missing_image_policy"],
        "warnings": stats["warnings"],
    }
    name = Path(path).name if Path(path).is_dir() else report.files.users.stem
    return DataBundle(name, tokens, report.pre.sequences, cfg.max_seq_len, report.image_source, info)
