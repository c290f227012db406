"""Known values for the small integer tensors of a fake training step.

Fake tensors carry shapes, not values, so an op whose output shape depends on data
(`logits[valid]` with a boolean mask, `nonzero`, `bool(mask.all())`) cannot run in
FakeTensorMode. The batch's index tensors are small, so this mode keeps a real copy
("shadow") beside each of them and beside everything computed only from them; when a
data-dependent op meets a shadowed input, the shadow supplies the shape or the scalar.
Large tensors (pixels, activations) never get a shadow: nothing real of model size is
ever allocated.
"""
from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakIdKeyDictionary

aten = torch.ops.aten
MAX_SHADOW_NUMEL = 1 << 20  # tensors larger than this are never mirrored
_MASK_INDEXED = (aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default)


class KnownValues(TorchDispatchMode):
    """Mirror small tensors with real values so data-dependent shapes resolve.

    Enter it above (after) FakeTensorMode. `know(fake, real)` registers an input.
    """

    def __init__(self) -> None:
        super().__init__()
        self._real = WeakIdKeyDictionary()

    def know(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if real.numel() <= MAX_SHADOW_NUMEL:
            with _disable_current_modes():
                self._real[fake] = real.detach().clone()
        return fake

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is aten._local_scalar_dense.default and args[0] in self._real:
            with _disable_current_modes():
                return self._real[args[0]].item()
        if func is aten.nonzero.default and args[0] in self._real:
            return self._nonzero(args[0])
        if func in _MASK_INDEXED and any(_is_mask(i) for i in args[1] if i is not None):
            args = (args[0], self._masks_to_indices(args[1]), *args[2:])
        out = func(*args, **kwargs)
        self._propagate(func, args, kwargs, out)
        return out

    def _nonzero(self, mask: torch.Tensor) -> torch.Tensor:
        """nonzero of a mask with a known value: a fake result of the real shape (this mode
        is off while it handles an op, so torch calls here reach the modes below it)."""
        with _disable_current_modes():
            real = self._real[mask].nonzero()
        return self.know(torch.empty(real.shape, dtype=real.dtype, device=mask.device), real)

    def _masks_to_indices(self, indices: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """A boolean mask over k dims is the same index as k integer tensors of its true positions."""
        converted: list[torch.Tensor | None] = []
        for i in indices:
            if _is_mask(i):
                if i not in self._real:
                    raise NotImplementedError("boolean-mask indexing with a mask computed from model outputs has a data-dependent shape")
                converted.extend(self._nonzero(i).unbind(1))
            else:
                converted.append(i)
        return converted

    def _propagate(self, func, args, kwargs, out) -> None:
        """Compute the real output when every tensor input has a real value and the output is small."""
        if torch.Tag.nondeterministic_seeded in func.tags:
            return
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        known = all(t in self._real for t in inputs)
        if not known or not outputs or any(t.numel() > MAX_SHADOW_NUMEL for t in outputs):
            for t in inputs:  # a mutated input whose new value is unknown loses its shadow
                if _mutated(func, t, args) and t in self._real:
                    del self._real[t]
            return
        real_args, real_kwargs = tree_map(lambda t: self._real[t] if isinstance(t, torch.Tensor) else t, (args, kwargs))
        with _disable_current_modes():
            real_out = func(*real_args, **real_kwargs)
        for fake, real in zip(outputs, [t for t in tree_flatten(real_out)[0] if isinstance(t, torch.Tensor)]):
            if fake.shape == real.shape:
                self._real[fake] = real


def _is_mask(t: torch.Tensor | None) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8)


def _mutated(func, t: torch.Tensor, args) -> bool:
    for arg, schema in zip(args, func._schema.arguments):
        if arg is t and schema.alias_info is not None and schema.alias_info.is_write:
            return True
    return False
