"""The method registry: a method is one module that registers itself under a name.

Three ways in: `@register_method` in a module of this package (imported on first use),
a third-party package's entry point in the group `tpme.methods` (loaded on first use;
the entry point names a module or a Method subclass), and `--plugin MODULE`, which
imports a module that registers. Families (`peft:<type>`) register a prefix and a
factory that makes a method from the suffix. A method declares the scenarios it adapts
and the optional packages it needs; a missing package makes that method alone
unavailable, with the install command, never the registry. A method package may also
register a subcommand of `tpme` (IISAN's `tpme cache`).
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from torch import nn

from tpme.errors import TpmeError
from tpme.models.backbones import Backbones
from tpme.models.item_tower import ItemTower

ENTRY_POINT_GROUP = "tpme.methods"


@dataclass(frozen=True)
class NoOptions:
    """A method without options."""


@dataclass
class PrepareContext:
    """What a one-off preprocessing hook may use (e.g. to build a hidden-state cache)."""

    backbones: Backbones
    bundle: Any  # tpme.datasets.bundle.DataBundle
    features: Any  # tpme.datasets.batching.ItemFeatures for both modalities
    device: Any  # torch.device
    precision: str
    cache_dir: str
    progress: bool = False


@dataclass(frozen=True)
class PreparePass:
    """The device work of a method's `prepare`, for estimating its peak memory on fake tensors.

    `run` creates its own inputs (torch.empty, made fake by the estimate's fake mode) and
    returns what the pass holds at its end; `resident` are the modules on the device while it
    runs (their weights count); the estimate runs it without autograd.
    """

    run: Callable[[], Any]
    resident: tuple[nn.Module, ...]
    description: str


class Method:
    """Builds an item tower from the two backbones and marks what trains.

    Subclasses set `name`, `description`, optionally an `Options` dataclass (filled from
    `--method-opt key=value`), and implement `build_tower`. A method that needs a one-off
    pass before training (a cache) overrides `prepare`; its time is recorded apart from
    epoch time, and `estimate_prepare` shapes the same state for GPU-free estimation.
    `uses_backbones_in_training = False` lets the harness free the backbones after
    `prepare`; `cuda_graph_blocker` returning None lets it capture the step as a CUDA graph.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    uses_backbones_in_training: ClassVar[bool] = True
    scenarios: ClassVar[frozenset[str]] = frozenset({"recommendation"})  # the tasks this method adapts
    requires: ClassVar[dict[str, str]] = {}  # optional module -> how to install it
    refusals: ClassVar[dict[str, str]] = {}  # scenario -> why this method makes no sense there
    label: str | None = None  # how records and tables name it, when not by name and options (a peft config file's experiment)

    def __init__(self, options: Any = None):
        self.options = options if options is not None else self.Options()

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        raise NotImplementedError

    def adapt(self, model: nn.Module) -> nn.Module:
        """Apply the method to one whole pretrained model (the causal-lm scenario's decoder):
        mark what trains, inject what it adds; returns the model to train (which may wrap it).
        Only methods that list such a scenario in `scenarios` implement it."""
        raise NotImplementedError(f"{self.name} does not adapt a single model")

    def prepare(self, tower: ItemTower, ctx: PrepareContext) -> dict[str, Any]:
        """One-off work before training; returns facts for the result record."""
        return {}

    def estimate_prepare(self, tower: ItemTower, n_items: int, precision: str) -> None:
        """Stand-in for `prepare` in `tpme estimate`, which never runs backbones or reads data.

        Give the tower the tensors `prepare` would create, with their shapes and dtypes
        (e.g. a hidden-state cache for n_items + 1 items registered as a buffer), created
        on the current default device (meta while estimating). Default: nothing to create.
        """

    def prepare_pass(self, tower: ItemTower, backbones: Backbones, text_len: int, precision: str) -> PreparePass | None:
        """The device work of `prepare` (a cache build), so the estimate can tell its peak memory,
        which may exceed training's; None: `prepare` runs nothing on the device."""
        return None

    def cuda_graph_blocker(self, tower: ItemTower) -> str | None:
        """Why this method's training step cannot be captured as a CUDA graph, or None if it can.

        A capturable step has static shapes given a static batch, never reads a device
        value on the host, and keeps every tensor it reads on the device. Backbones from
        Hugging Face branch on mask contents, so by default no method claims this.
        """
        return "its step runs code with data-dependent control flow (backbones); only methods that declare it are captured"

    def options_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.options) if dataclasses.is_dataclass(self.options) else {}

    def unsupported_reason(self, scenario: str) -> str | None:
        """Why this method cannot run in `scenario`, or None when it can."""
        if scenario in self.scenarios:
            return None
        if scenario in self.refusals:
            return self.refusals[scenario]
        return f"{self.name} is made for the {' and '.join(sorted(self.scenarios))} scenario{'s' if len(self.scenarios) > 1 else ''}"


def missing_requirements(cls: type[Method]) -> list[tuple[str, str]]:
    """(module, install hint) of every optional package the method needs and this Python lacks."""
    return [(m, hint) for m, hint in cls.requires.items() if importlib.util.find_spec(m) is None]


@dataclass(frozen=True)
class Family:
    prefix: str
    description: str
    factory: Callable[[str, dict[str, str]], Method]


_METHODS: dict[str, type[Method]] = {}
_FAMILIES: dict[str, Family] = {}
_COMMANDS: list[Any] = []  # objects with add_parser(subparsers, services), registered by method packages
_BROKEN: dict[str, str] = {}  # built-in module -> why it failed to import
_loaded = False


def register_method(name: str, description: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: `@register_method("lora", "LoRA r=8 on Q/V ...")`."""

    def deco(cls: type[Method]) -> type[Method]:
        if name in _METHODS and _METHODS[name] is not cls:
            raise TpmeError(f"method name {name!r} is registered twice ({_METHODS[name].__module__} and {cls.__module__})", "pick another name")
        cls.name, cls.description = name, description
        _METHODS[name] = cls
        return cls

    return deco


def register_family(prefix: str, description: str, factory: Callable[[str, dict[str, str]], Method]) -> None:
    _FAMILIES[prefix] = Family(prefix, description, factory)


def register_command(command: Any) -> None:
    """A `tpme` subcommand a method package provides: an object with `add_parser(subparsers, services)`."""
    if command not in _COMMANDS:
        _COMMANDS.append(command)


def commands() -> list[Any]:
    _load_builtin_and_entry_points()
    return list(_COMMANDS)


def _load_builtin_and_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import tpme.methods as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in ("registry",) and not mod.name.startswith("_"):
            try:
                importlib.import_module(f"{pkg.__name__}.{mod.name}")
            except ImportError as e:  # one module's missing package never hides the other methods
                _BROKEN[mod.name] = f"{type(e).__name__}: {e}"
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:
            raise TpmeError(f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP} failed to load: {e}", "fix or uninstall that plugin") from e
        if isinstance(obj, type) and issubclass(obj, Method) and obj.name not in _METHODS:
            register_method(obj.name or ep.name, obj.description or ep.name)(obj)


def load_plugins(modules: Iterable[str]) -> None:
    """Import modules named by `--plugin`; importing them registers their methods."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise TpmeError(f"cannot import plugin module {name!r}: {e}", "check the module name and that it is on PYTHONPATH") from e
        except Exception as e:  # a plugin that raises while importing: its fault, named, never a traceback
            raise TpmeError(f"plugin module {name!r} failed while importing: {type(e).__name__}: {e}", "fix the plugin, or drop --plugin") from e


def available_methods(scenario: str | None = None) -> dict[str, str]:
    """Concrete registered methods, name -> description, in registration order; with a scenario,
    those that adapt it and whose optional packages are installed (what `--methods all` runs)."""
    _load_builtin_and_entry_points()
    return {
        name: cls.description for name, cls in _METHODS.items()
        if scenario is None or (scenario in cls.scenarios and not missing_requirements(cls))
    }


def method_classes() -> dict[str, type[Method]]:
    _load_builtin_and_entry_points()
    return dict(_METHODS)


def families() -> dict[str, str]:
    _load_builtin_and_entry_points()
    return {f"{f.prefix}:<type>": f.description for f in _FAMILIES.values()}


def parse_options(cls: type, raw: dict[str, str], method: str) -> Any:
    """Fill an Options dataclass from strings, converting by the field's type."""
    if not dataclasses.is_dataclass(cls):
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - fields
    if unknown:
        known = ", ".join(sorted(fields)) or "none"
        raise TpmeError(f"method {method!r} has no option(s) {', '.join(sorted(unknown))}", f"its options: {known}")
    values = {k: _convert(v, hints[k], k, method) for k, v in raw.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise TpmeError(f"bad options for {method!r}: {e}") from e


def _convert(value: str, hint: Any, key: str, method: str) -> Any:
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        if value.lower() in ("none", "null"):
            return None
        hint = args[0]
        origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        if hint in (int, float, str):
            return hint(value)
        if origin in (tuple, list):
            inner = typing.get_args(hint)[0] if typing.get_args(hint) else str
            items = [inner(v) for v in value.split(",") if v]
            return tuple(items) if origin is tuple else items
    except ValueError:
        raise TpmeError(f"option {key}={value!r} of {method!r} is not a valid {getattr(hint, '__name__', hint)}") from None
    return value


def get_method(name: str, options: dict[str, str] | None = None) -> Method:
    """Instantiate a registered method (or a family member) with its options."""
    _load_builtin_and_entry_points()
    options = options or {}
    if name in _METHODS:
        cls = _METHODS[name]
        missing = missing_requirements(cls)
        if missing:
            raise TpmeError(f"method {name!r} needs the package(s) {', '.join(m for m, _ in missing)}, which are not installed", "; ".join(h for _, h in missing))
        return cls(parse_options(cls.Options, options, name))
    prefix, sep, suffix = name.partition(":")
    if sep and prefix in _FAMILIES:
        return _FAMILIES[prefix].factory(suffix, options)
    known = ", ".join([*_METHODS, *(f"{p}:<type>" for p in _FAMILIES)])
    broken = "".join(f"; module {m} failed to load ({why})" for m, why in _BROKEN.items())
    raise TpmeError(f"unknown method {name!r}", f"known methods: {known}; add one with --plugin MODULE{broken}")


def resolve_method_names(spec: str, scenario: str | None = None) -> list[str]:
    """`all` (every method of the scenario that can run here) or a comma list -> method names, each checked to exist."""
    names = list(available_methods(scenario)) if spec.strip() == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise TpmeError("no methods given", "use --methods all or a comma-separated list")
    for n in names:
        get_method(n)  # raises with the list of known methods
    return names


def parse_method_opts(items: list[str], methods: list[str]) -> dict[str, dict[str, str]]:
    """`KEY=VALUE` applies to every selected method; `METHOD.KEY=VALUE` to that method only."""
    per: dict[str, dict[str, str]] = {m: {} for m in methods}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TpmeError(f"bad --method-opt {item!r}", "use KEY=VALUE or METHOD.KEY=VALUE")
        target, dot, name = key.rpartition(".")
        if dot and target:
            if target not in per:
                raise TpmeError(f"--method-opt {item!r} names method {target!r}, which is not selected", f"selected: {', '.join(methods)}")
            per[target][name] = value
        else:
            for m in methods:
                per[m][key] = value
    return per
