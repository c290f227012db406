"""The sweep specification: a YAML or TOML file with fixed settings and the axes of a grid.

Validation collects every problem in the file, each with its key path and (for YAML)
its line, and raises them together, so that one edit can fix them all.
"""
from __future__ import annotations

import itertools
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tpme.errors import TpmeError
from tpme.files import read_text
from tpme.scenarios import get_scenario
from tpme.scenarios.base import Scenario
from tpme.sweep.grid import METHOD_AXIS, Cell, make_cell, product

TOP_KEYS = ("name", "scenario", "preset", "settings", "axes", "method_options", "repeats", "plugins", "cache_dir")
SWEEP_DEVICES = ("auto", "cpu", "cuda")
Path_ = tuple[str | int, ...]


def config_fields(scenario: Scenario) -> dict[str, Any]:
    """Settable fields of the scenario's config by flat name, except the preset (a top-level key)."""
    return {k: v for k, v in scenario.config_class.field_types().items() if k != "preset"}


@dataclass
class SweepSpec:
    """A validated spec: the base config and the values of every axis."""

    path: Path
    name: str
    scenario: Scenario
    base: Any  # the scenario's config
    methods: list[str]
    methods_all: bool
    config_axes: dict[str, list[Any]]  # flat config field -> values, in file order
    option_axes: dict[str, dict[str, list[Any]]]  # method -> option -> values
    fixed_options: dict[str, dict[str, Any]]  # method -> option -> value
    repeats: int = 1
    plugins: list[str] = field(default_factory=list)
    cache_dir: str = ".tpme-cache"
    warnings: list[str] = field(default_factory=list)

    def cells(self) -> list[Cell]:
        """Every cell of the grid, in file order of the axes."""
        out = []
        for method in self.methods:
            fixed = self.fixed_options.get(method, {})
            for config_values in product(self.config_axes):
                cfg = self.base.replace(**config_values)
                for option_values in product(self.option_axes.get(method, {})):
                    options = {k: option_text(v) for k, v in {**fixed, **option_values}.items()}
                    for repeat in range(self.repeats):
                        axes = {METHOD_AXIS: method, **config_values, **option_values}
                        if self.repeats > 1:
                            axes["repeat"] = repeat
                        out.append(make_cell(self.scenario, method, options, cfg, repeat, axes))
        return out


class SpecErrors(TpmeError):
    """Every problem found in a spec file, one per line with its location."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in sweep spec {path}:\n  " + "\n  ".join(problems), "fix them and run again; README section Sweeps documents the schema")


class _Collector:
    def __init__(self, path: Path, lines: dict[Path_, int]):
        self.path, self.lines = path, lines
        self.found: list[tuple[int, str]] = []

    def add(self, where: Path_, message: str) -> None:
        line = next((self.lines[where[:i]] for i in range(len(where), -1, -1) if where[:i] in self.lines), None)
        loc = f"{self.path}:{line}" if line else str(self.path)
        self.found.append((line or 0, f"{loc}: {_dotted(where) or '(top level)'}: {message}"))

    @property
    def problems(self) -> list[str]:
        """In file order (a stable sort keeps the order of checks within a line)."""
        return [text for _, text in sorted(self.found, key=lambda f: f[0])]


def _dotted(where: Path_) -> str:
    out = ""
    for part in where:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


SPEC_LIMIT = 2**20  # bytes; a large grid spec is a few KiB
MAX_NODES = 100_000  # YAML nodes after aliases are expanded (a billion-laughs file is refused)
MAX_DEPTH = 64


class _TooBig(Exception):
    pass


def _yaml_lines(text: str, col: list[tuple[Path_, str]]) -> dict[Path_, int]:
    """Line of every key and list item; duplicate keys (which YAML loaders silently merge) reported.

    The walk is bounded: an alias that contains itself, nesting deeper than MAX_DEPTH, or more
    than MAX_NODES nodes once aliases are expanded raise _TooBig (the loader would build the
    same structure, and validation would walk it)."""
    lines: dict[Path_, int] = {}
    visited = [0]

    def walk(node: yaml.Node, where: Path_, open_nodes: set[int]) -> None:
        visited[0] += 1
        if visited[0] > MAX_NODES:
            raise _TooBig(f"more than {MAX_NODES:,} values once its aliases (*name) are expanded")
        if len(where) > MAX_DEPTH:
            raise _TooBig(f"values nested deeper than {MAX_DEPTH} levels")
        if id(node) in open_nodes:
            raise _TooBig(f"an alias at line {node.start_mark.line + 1} refers to a node that contains it")
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in node.value:
                key = str(k.value)
                if key in seen:
                    col.append((where + (key,), "duplicate key (YAML keeps the last one silently): keep one"))
                seen.add(key)
                lines.setdefault(where + (key,), k.start_mark.line + 1)
                walk(v, where + (key,), open_nodes | {id(node)})
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines.setdefault(where + (i,), v.start_mark.line + 1)
                walk(v, where + (i,), open_nodes | {id(node)})

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, (), set())
    return lines


def read_spec_file(path: Path) -> tuple[Any, dict[Path_, int], list[tuple[Path_, str]]]:
    """Parse YAML or TOML; syntax errors are fatal (one error, with its location)."""
    if not path.is_file():
        raise TpmeError(f"no sweep spec at {path}", "give a .yaml, .yml or .toml file")
    text = read_text(path, SPEC_LIMIT, "sweep spec")
    early: list[tuple[Path_, str]] = []
    if path.suffix in (".yaml", ".yml"):
        try:
            lines = _yaml_lines(text, early)
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise SpecErrors(path, [f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}"]) from None
        except _TooBig as e:
            raise SpecErrors(path, [f"{path}: a spec is plain settings and lists; this one has {e}"]) from None
        except RecursionError:
            raise SpecErrors(path, [f"{path}: a spec is plain settings and lists; this one is nested too deeply"]) from None
        return data, lines, early
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text), {}, early
        except tomllib.TOMLDecodeError as e:
            raise SpecErrors(path, [f"{path}: not valid TOML: {e}"]) from None
        except RecursionError:
            raise SpecErrors(path, [f"{path}: nested too deeply"]) from None
    raise TpmeError(f"sweep spec {path} is neither YAML nor TOML", "name it *.yaml, *.yml or *.toml")


def _type_name(hint: Any) -> str:
    names = [getattr(a, "__name__", str(a)) for a in (typing.get_args(hint) or (hint,)) if a is not type(None)]
    return " or ".join({"int": "an integer", "float": "a number", "str": "a string"}.get(n, n) for n in names)


def check_value(fields: dict[str, Any], name: str, value: Any) -> str | None:
    """Why `value` does not fit config field `name`, or None when it does."""
    hint = fields[name]
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        return None if type(None) in allowed else f"must be {_type_name(hint)}, not empty"
    if isinstance(value, bool):
        if bool in allowed:
            return None
        yaml_hint = " (YAML reads on/off/yes/no as true/false: quote it)" if str in allowed else ""
        return f"must be {_type_name(hint)}, got {value!r}{yaml_hint}"
    if (int in allowed and isinstance(value, int)) or (float in allowed and isinstance(value, (int, float))) or (str in allowed and isinstance(value, str)):
        if name == "device" and value not in SWEEP_DEVICES:
            return f"{value!r}: a sweep places each cell on a device itself; use one of {', '.join(SWEEP_DEVICES)}"
        return None
    hint_text = " (YAML reads 1e-4 as text: write 1.0e-4)" if float in allowed and isinstance(value, str) else ""
    return f"must be {_type_name(hint)}, got {value!r}{hint_text}"


def option_text(value: Any) -> str:
    """Method options travel as strings, like `--method-opt KEY=VALUE`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def _check_list(col: _Collector, where: Path_, values: Any, single: str) -> list[Any] | None:
    """An axis: a non-empty list without repeats; `single` says where one value belongs instead."""
    if not isinstance(values, list):
        col.add(where, f"an axis is a list of values, got {values!r}; {single}")
        return None
    if not values:
        col.add(where, "an axis needs at least one value")
        return None
    seen: list[Any] = []
    for i, v in enumerate(values):
        if v in seen:
            col.add(where + (i,), f"duplicate value {v!r}")
        seen.append(v)
    return values


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec; raise SpecErrors listing every problem."""
    from tpme.methods.registry import available_methods, get_method, load_plugins

    path = Path(path)
    data, lines, early = read_spec_file(path)
    col = _Collector(path, lines)
    for where, msg in early:
        col.add(where, msg)
    if not isinstance(data, dict):
        col.add((), f"the spec must be a mapping with keys {', '.join(TOP_KEYS)}")
        raise SpecErrors(path, col.problems)
    for key in data:
        if key not in TOP_KEYS:
            col.add((key,), f"unknown key; known keys: {', '.join(TOP_KEYS)}")

    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        col.add(("name",), "must be a non-empty string")
    scenario_name = data.get("scenario")
    try:
        scenario = get_scenario(scenario_name if isinstance(scenario_name, str) else None)
    except TpmeError as e:
        col.add(("scenario",), e.problem + (f" ({e.fix})" if e.fix else ""))
        scenario = get_scenario(None)
    if scenario_name is not None and not isinstance(scenario_name, str):
        col.add(("scenario",), "must be a scenario name")
    fields = config_fields(scenario)
    presets = scenario.presets()
    preset_name = data.get("preset", "default")
    if preset_name not in presets:
        col.add(("preset",), f"unknown preset {preset_name!r}; use one of {', '.join(presets)}")
        preset_name = "default" if "default" in presets else next(iter(presets))
    repeats = data.get("repeats", 1)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        col.add(("repeats",), f"must be an integer >= 1, got {repeats!r}")
        repeats = 1
    cache_dir = data.get("cache_dir", ".tpme-cache")
    if not isinstance(cache_dir, str):
        col.add(("cache_dir",), "must be a string")
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list):
        col.add(("plugins",), "must be a list of module names")
        plugins = []
    for i, mod in enumerate(plugins):
        if not isinstance(mod, str):
            col.add(("plugins", i), "must be a module name")
            continue
        try:
            load_plugins([mod])
        except TpmeError as e:
            col.add(("plugins", i), e.problem)

    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        col.add(("settings",), "must be a mapping of config fields to values")
        settings = {}
    good_settings: dict[str, Any] = {}
    for key, value in settings.items():
        if key in ("method", "methods"):
            col.add(("settings", key), "methods are an axis: list them under axes.method")
        elif key not in fields:
            col.add(("settings", key), f"unknown setting; known: {', '.join(fields)}")
        elif (msg := check_value(fields, key, value)) is not None:
            col.add(("settings", key), msg)
        else:
            good_settings[key] = value

    axes = data.get("axes")
    methods: list[str] = []
    methods_all = False
    config_axes: dict[str, list[Any]] = {}
    if not isinstance(axes, dict):
        col.add(("axes",), "required: a mapping with at least `method` (a list of method names, or all)")
        axes = {}
    method_keys = [k for k in ("method", "methods") if k in axes]
    if len(method_keys) > 1:
        col.add(("axes", "methods"), "give the method axis once (method or methods)")
    if not method_keys and data.get("axes") is not None:
        col.add(("axes",), "missing the method axis: add `method: all` or a list of method names")
    for key, values in axes.items():
        where = ("axes", key)
        if key in ("method", "methods"):
            if values == "all":
                methods_all = True
                methods = list(available_methods(scenario.name))
                continue
            values = _check_list(col, where, values, "use `all` or a list of names")
            for i, m in enumerate(values or []):
                if not isinstance(m, str):
                    col.add(where + (i,), f"must be a method name, got {m!r}")
                    continue
                try:
                    scenario.check_method(get_method(m))
                    methods.append(m)
                except TpmeError as e:
                    col.add(where + (i,), e.problem + (f" ({e.fix})" if e.fix else ""))
            continue
        if key not in fields:
            col.add(where, f"unknown axis; an axis is method or a config field: {', '.join(fields)}")
            continue
        if key in settings:
            col.add(where, f"{key} is both a setting and an axis; keep one")
        values = _check_list(col, where, values, "a single value belongs under settings")
        if values is None:
            continue
        ok = True
        for i, v in enumerate(values):
            if (msg := check_value(fields, key, v)) is not None:
                col.add(where + (i,), msg)
                ok = False
        if ok:
            config_axes[key] = values

    option_axes: dict[str, dict[str, list[Any]]] = {}
    fixed_options: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    method_options = data.get("method_options", {})
    if not isinstance(method_options, dict):
        col.add(("method_options",), "must be a mapping: method name -> {option: value or list of values}")
        method_options = {}
    for m, opts in method_options.items():
        where = ("method_options", m)
        if m not in methods:
            if methods_all:
                warnings.append(f"method_options.{m}: method {m!r} is not registered here, so its options are unused")
            elif method_keys:
                col.add(where, f"method {m!r} is not on the method axis ({', '.join(methods) or 'none'})")
            continue
        if not isinstance(opts, dict):
            col.add(where, "must be a mapping of option names to a value or a list of values")
            continue
        for opt, value in opts.items():
            ow = where + (str(opt),)
            if opt in (METHOD_AXIS, "repeat") or opt in config_axes:
                col.add(ow, f"option {opt!r} has the name of another axis; the record's axes would clash")
                continue
            values = _check_list(col, ow, value, "") if isinstance(value, list) else [value]
            for i, v in enumerate(values or []):
                vw = ow + (i,) if isinstance(value, list) else ow
                if not _scalar(v):
                    col.add(vw, f"must be a string, number or boolean, got {v!r}")
                    continue
                try:
                    get_method(m, {str(opt): option_text(v)})
                except TpmeError as e:
                    col.add(vw, e.problem + (f" ({e.fix})" if e.fix else ""))
            if isinstance(value, list) and values:
                option_axes.setdefault(m, {})[str(opt)] = values
            elif not isinstance(value, list):
                fixed_options.setdefault(m, {})[str(opt)] = value

    base = presets[preset_name]
    overrides = dict(good_settings)
    given = set(settings) | set(axes)
    if "epochs" in given and "steps" not in given:
        overrides["steps"] = None
    if "steps" in given and "epochs" not in given:
        overrides["epochs"] = None
    try:
        base = base.replace(**overrides)
    except TpmeError as e:
        col.add(("settings",), e.problem)
    seen_msgs: set[str] = set()
    names = list(config_axes)
    for combo in itertools.product(*config_axes.values()):
        try:
            base.replace(**dict(zip(names, combo)))
        except TpmeError as e:
            if e.problem not in seen_msgs:
                seen_msgs.add(e.problem)
                col.add(("axes",), f"{e.problem} (for {', '.join(f'{n}={v}' for n, v in zip(names, combo))})")
    if col.problems:
        raise SpecErrors(path, col.problems)
    return SweepSpec(path, name, scenario, base, methods, methods_all, config_axes, option_axes, fixed_options, repeats, plugins, cache_dir, warnings)
