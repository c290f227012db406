"""Image sources: item id -> uint8 RGB pixels at the image backbone's resolution.

A source is described by a small JSON-able dict so that a worker process can re-open
it; kinds register themselves in IMAGE_SOURCES (readers for folders and LMDB stores
add theirs). A descriptor may name the `module` that registers its kind: it is
imported before the lookup, so a worker needs no other import to re-open the source.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from tpme.datasets.synthetic import SyntheticCatalog, SyntheticSpec
from tpme.errors import TpmeError


class ImageSource(Protocol):
    def images(self, items: np.ndarray, size: int) -> np.ndarray:
        """uint8 [len(items), 3, size, size] for dense item ids (>= 1)."""


IMAGE_SOURCES: dict[str, Callable[..., ImageSource]] = {}


def register_image_source(kind: str) -> Callable:
    def deco(factory: Callable[..., ImageSource]) -> Callable[..., ImageSource]:
        IMAGE_SOURCES[kind] = factory
        return factory

    return deco


def open_image_source(descriptor: dict[str, Any]) -> ImageSource:
    kind = descriptor.get("kind")
    if descriptor.get("module"):
        importlib.import_module(descriptor["module"])
    if kind not in IMAGE_SOURCES:
        raise TpmeError(f"unknown image source kind {kind!r}", f"known kinds: {', '.join(IMAGE_SOURCES)}")
    params = {k: v for k, v in descriptor.items() if k not in ("kind", "module")}
    return IMAGE_SOURCES[kind](**params)


@register_image_source("synthetic")
class SyntheticImages:
    """Images of synthetic items, generated from (seed, item id) on every request."""

    def __init__(self, n_users: int, n_items: int, n_groups: int, seed: int, item_keys: list[int]):
        self.catalog = SyntheticCatalog(SyntheticSpec(n_users, n_items, n_groups, seed))
        self.item_keys = np.asarray([0, *item_keys], dtype=np.int64)

    def images(self, items: np.ndarray, size: int) -> np.ndarray:
        out = np.empty((len(items), 3, size, size), dtype=np.uint8)
        for row, item in enumerate(items):
            self.catalog.image_chw(int(self.item_keys[item]), size, out=out[row])
        return out
