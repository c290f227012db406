"""Which dataset a run reads or generates, and how its sequences are cut."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tpme.errors import TpmeError

MISSING_IMAGE_POLICIES = ("error", "blank", "synthetic")


@dataclass(frozen=True)
class DataConfig:
    """Where items and users come from and how sequences are cut."""

    dataset: str = "synthetic:small"  # synthetic[:SIZE] or a directory path
    max_seq_len: int = 10
    text_len: int = 30
    seed: int = 0
    items_file: str | None = None  # explicit items / users files (else found in the directory)
    users_file: str | None = None
    images: str | None = None  # an LMDB store or a folder of <item_id>.jpg|.png (else found)
    missing_images: str = "error"  # error | blank | synthetic
    max_users: int | None = None  # a seeded random subset of the users (before preprocessing)

    def validate(self) -> None:
        if self.max_seq_len < 1 or self.text_len < 3:
            raise TpmeError("max_seq_len must be >= 1 and text_len >= 3")
        kind, _, _ = self.dataset.partition(":")
        if kind != "synthetic" and not Path(self.dataset).exists():
            raise TpmeError(f"dataset path {self.dataset!r} does not exist", "use synthetic[:tiny|small|medium|scientific] or a directory holding an items file and a users file")
        if self.missing_images not in MISSING_IMAGE_POLICIES:
            raise TpmeError(f"unknown missing-image policy {self.missing_images!r}", f"use {', '.join(MISSING_IMAGE_POLICIES)}")
        if self.max_users is not None and self.max_users < 1:
            raise TpmeError("max_users must be at least 1")
