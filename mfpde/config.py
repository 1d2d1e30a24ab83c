"""Load and validate a run configuration (TOML, YAML or a dict) into typed objects.

The config file (docs/config.md) becomes a frozen
:class:`Config` holding a :class:`mfpde.model.Model` and one option object per
section (:mod:`mfpde.options`).  Everything is checked before any work starts; every
problem is a :class:`ConfigError` whose message is one line::

    run.toml: solver.dt: must be a number > 0, got 0

naming the file (``<dict>`` for a dict, ``<command line>`` for a ``--set`` override),
the key and what was expected.

Matrices Q, K, V accept ``"identity"``, a number c (c I), a d x d nested list, or a
random spec ``{ random = "gaussian", seed = 1, scale = 1.0 }``: entries i.i.d.
N(0, 1) * scale / sqrt(d), drawn as ``numpy.random.default_rng(seed).standard_normal((d, d))``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
from collections.abc import Sequence
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .model import MAX_ENTRY, NORMALIZATIONS, ZERO_TEMPERATURE_FIELDS, Model
from .options import (
    InitialOptions,
    OutputOptions,
    SolverOptions,
    StudyOptions,
    WassersteinOptions,
)

__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "config_from_dict",
    "parse_override",
    "set_dotted",
    "check_dotted_key",
    "SECTIONS",
    "MAX_D",
    "MAX_STEPS",
    "MAX_SNAPSHOTS",
    "MAX_YAML_VALUES",
]

#: Largest accepted ``model.d`` (three d x d float64 matrices must fit in memory).
MAX_D = 4096

#: Most time steps t_end / dt a run may take: at 1e12 steps t + dt keeps only about four
#: digits of dt in float64, and no run of that length finishes.
MAX_STEPS = 10**12

#: Most snapshots t_end / save_every + 1 a run may write (the time grid is built in memory).
MAX_SNAPSHOTS = 10**7

#: Most values a YAML file may expand to through its aliases (``*name``): beyond it the
#: file is refused rather than walked (an "alias bomb").
MAX_YAML_VALUES = 10**6

_MODEL_KEYS = ("d", "beta", "normalization", "zero_temperature", "Q", "K", "V")
_MATRICES = ("Q", "K", "V")
_RANDOM_KEYS = ("random", "seed", "scale")
_RANDOM_KINDS = ("gaussian",)

_OPTION_CLASSES = {
    "initial": InitialOptions,
    "solver": SolverOptions,
    "output": OutputOptions,
    "wasserstein": WassersteinOptions,
    "study": StudyOptions,
}

#: section name -> the keys it accepts, in documentation order.
SECTIONS: dict[str, tuple[str, ...]] = {"model": _MODEL_KEYS}
SECTIONS.update({name: tuple(f.name for f in dataclasses.fields(cls)) for name, cls in _OPTION_CLASSES.items()})

_INITIAL_FILE_SUFFIXES = (".h5", ".hdf5", ".npy")


# ----------------------------------------------------------------------------- errors


class ConfigError(ValueError):
    """A bad configuration: ``"{file}: {key}: {what was expected}, got {what}"``, one line.

    Attributes
    ----------
    file : str
        The config file, ``"<dict>"`` or ``"<command line>"``.
    key : str or None
        The dotted key (``"solver.dt"``), or None for a problem with the file as a whole.
    message : str
        The text after the key.
    """

    def __init__(self, file: str, key: str | None, message: str):
        self.file = str(file)
        if key is not None:
            key = str(key)
            if not key.isprintable() or not key.strip():
                key = repr(key)
        self.key = key
        self.message = _one_line(message)
        text = f"{self.file}: {key}: {self.message}" if key else f"{self.file}: {self.message}"
        super().__init__(text)

    def __reduce__(self):  # picklable (errors cross process boundaries in studies)
        return (type(self), (self.file, self.key, self.message))

    def with_file(self, file: str) -> "ConfigError":
        return ConfigError(file, self.key, self.message)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show(value, limit: int = 80) -> str:
    """repr() of a value, on one line and at most ``limit`` characters."""
    try:
        text = _one_line(repr(value))
    except Exception:  # pragma: no cover - a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value) -> str:
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a number",
             list: "a list", dict: "a table", type(None): "nothing"}
    return names.get(type(value), f"a {type(value).__name__}")


def _got(value) -> str:
    if isinstance(value, bool):  # as written in TOML / YAML
        return "true" if value else "false"
    return _show(value)


_KEY_MESSAGE = re.compile(r"^(?P<key>[A-Za-z_][\w.\-]*)(?::)? (?P<rest>.*)$")


def _wrap(file: str, exc: Exception, default_key: str) -> ConfigError:
    """Turn ``ValueError("solver.dt must be > 0, got 0")`` into a ConfigError for ``file``."""
    text = _one_line(str(exc))
    m = _KEY_MESSAGE.match(text)
    if m and "." in m["key"] and m["key"].split(".")[0] in SECTIONS:
        return ConfigError(file, m["key"], m["rest"])
    return ConfigError(file, default_key, text)


def _did_you_mean(word: str, choices, prefix: str = "") -> str | None:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return prefix + match[0] if match else None


def _unknown_key(file: str, section: str, key) -> ConfigError:
    key_s = str(key)
    hint = _did_you_mean(key_s, SECTIONS[section], f"{section}.")
    if hint is None:  # a key put in the wrong section?
        others = [f"{s}.{key_s}" for s, keys in SECTIONS.items() if s != section and key_s in keys]
        hint = others[0] if others else None
    if hint:
        return ConfigError(file, f"{section}.{key_s}", f"unknown key; did you mean {hint}?")
    return ConfigError(file, f"{section}.{key_s}",
                       f"unknown key; [{section}] accepts {', '.join(SECTIONS[section])}")


def _unknown_section(file: str, name) -> ConfigError:
    name_s = str(name)
    hint = _did_you_mean(name_s, SECTIONS)
    if hint is None:
        owners = [s for s, keys in SECTIONS.items() if name_s in keys]
        if owners:
            return ConfigError(file, name_s, f"unknown section; a key {name_s!r} belongs in [{owners[0]}]")
        return ConfigError(file, name_s, f"unknown section; the sections are {', '.join(SECTIONS)}")
    return ConfigError(file, name_s, f"unknown section; did you mean [{hint}]?")


# ----------------------------------------------------------------------------- the Config object


def _plain(x):
    """Deep copy into plain JSON-able data: tuples -> lists, numpy scalars/arrays -> Python."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and math.isinf(x) and x > 0:
        return "inf"
    return x


@dataclass(frozen=True, eq=False)
class Config:
    """A validated run configuration: the model and one option object per section.

    Build it with :func:`load_config` (file or dict); ``to_dict()`` gives back the
    resolved config (defaults filled in, matrices as nested lists, ``beta = "inf"``),
    which :func:`load_config` accepts again and which the HDF5 writer stores.
    Two configs compare equal when their ``to_dict()`` are equal.
    """

    model: Model
    initial: InitialOptions = InitialOptions()
    solver: SolverOptions = SolverOptions()
    output: OutputOptions = OutputOptions()
    wasserstein: WassersteinOptions = WassersteinOptions()
    study: StudyOptions | None = None
    source: str = "<dict>"

    def to_dict(self) -> dict:
        """The resolved config as plain JSON-able data (every key, defaults filled in)."""
        out = {
            "model": _plain(self.model.to_dict()),
            "initial": _plain(self.initial.to_dict()),
            "solver": _plain(self.solver.to_dict()),
            "output": _plain(self.output.to_dict()),
            "wasserstein": _plain(self.wasserstein.to_dict()),
        }
        if self.study is not None:
            out["study"] = _plain(self.study.to_dict())
        return out

    def to_json(self) -> str:
        """``to_dict()`` as JSON text (what the HDF5 writer stores in the ``config`` attribute)."""
        return json.dumps(self.to_dict(), allow_nan=False)

    def replace(self, **changes) -> "Config":
        """A copy with some sections replaced (``cfg.replace(solver=cfg.solver.replace(dt=0.1))``)
        or some dotted keys set and re-validated (``cfg.replace(**{"model.beta": 50})``)."""
        dotted = {k: v for k, v in changes.items() if "." in k}
        sections = {k: v for k, v in changes.items() if "." not in k}
        cfg = dataclasses.replace(self, **sections) if sections else self
        if dotted:
            d = cfg.to_dict()
            for key, value in dotted.items():
                set_dotted(d, key, value, source=self.source)
            cfg = config_from_dict(d, source=self.source)
        return cfg

    def __repr__(self) -> str:
        m, s = self.model, self.solver
        beta = "inf" if m.is_zero_temperature else f"{m.beta:g}"
        size = f"cells={s.cells}" if s.method == "fv" else f"n={self.initial.n}"
        study = f", study={list(self.study.sweep)}" if self.study is not None else ""
        return (f"Config(source={self.source!r}, d={m.d}, beta={beta}, method={s.method!r}, {size}, "
                f"t_end={s.t_end:g}, output={self.output.path!r}{study})")

    def _repr_html_(self) -> str:
        """Every resolved key, one table row per key (Jupyter)."""
        import html

        rows = []
        for section, keys in self.to_dict().items():
            for key, value in keys.items():
                text = json.dumps(value)
                if len(text) > 80:
                    text = text[:77] + "..."
                rows.append(f"<tr><td><code>{section}.{key}</code></td><td><code>{html.escape(text)}</code></td></tr>")
        return (f"<b>mfpde Config</b> <code>{html.escape(self.source)}</code>"
                f"<table>{''.join(rows)}</table>")

    def __eq__(self, other):
        if not isinstance(other, Config):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(json.dumps(self.to_dict(), sort_keys=True))


# ----------------------------------------------------------------------------- dotted keys


def check_dotted_key(key: str, source: str = "<dict>") -> tuple[str, ...]:
    """Split a dotted config key into its path, or raise ConfigError if no such key exists.

    Valid keys are ``section.key`` (``model.beta``), a random-matrix field
    (``model.Q.seed``) and a study axis (``study.sweep.model.beta``).
    """
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(source, _show(key), "must be a dotted key such as model.beta")
    key = key.strip()
    parts = key.split(".")
    section = parts[0]
    if section not in SECTIONS:
        hint = _did_you_mean(section, SECTIONS)
        more = f"did you mean {hint}?" if hint else f"the sections are {', '.join(SECTIONS)}"
        raise ConfigError(source, key, f"unknown section {section!r}; {more}")
    if len(parts) < 2 or not parts[1]:
        raise ConfigError(source, key, f"must name a key of [{section}], such as {section}.{SECTIONS[section][0]}")
    name = parts[1]
    if name not in SECTIONS[section]:
        raise _unknown_key(source, section, name)
    if len(parts) == 2:
        return (section, name)
    if section == "study" and name == "sweep":
        axis = ".".join(parts[2:])
        _check_sweep_axis(axis, source)
        return ("study", "sweep", axis)
    if section == "model" and name in _MATRICES and len(parts) == 3:
        if parts[2] not in _RANDOM_KEYS:
            hint = _did_you_mean(parts[2], _RANDOM_KEYS, f"model.{name}.")
            more = f"did you mean {hint}?" if hint else f"a random matrix takes {', '.join(_RANDOM_KEYS)}"
            raise ConfigError(source, key, f"unknown key; {more}")
        return tuple(parts)
    raise ConfigError(source, key, f"{section}.{name} has no sub-keys")


def set_dotted(config_dict: dict, key: str, value: object, *, source: str = "<dict>") -> dict:
    """Set ``config_dict[section][key] = value`` for a dotted key, in place; returns the dict.

    ``set_dotted(d, "model.beta", 50)``; ``set_dotted(d, "model.Q.seed", 3)``;
    ``set_dotted(d, "study.sweep.model.beta", [10, 30])``.  The key must exist
    (ConfigError otherwise); the value is checked when the dict is loaded.
    """
    path = check_dotted_key(key, source)
    section = config_dict.get(path[0])
    if section is None:
        section = config_dict[path[0]] = {}
    if not isinstance(section, dict):
        raise ConfigError(source, path[0], f"must be a table, got {_got(section)}")
    if len(path) == 2:
        section[path[1]] = value
        return config_dict
    sub = section.get(path[1])
    if not isinstance(sub, dict):
        sub = section[path[1]] = {}
    sub[path[2]] = value
    return config_dict


def parse_override(item: str) -> tuple[str, object]:
    """Parse one ``--set`` item ``"section.key=value"`` into ``(key, value)``.

    The value is read as a TOML value when it is one (``50``, ``"inf"``, ``[[1,0],[0,1]]``,
    ``true``); anything else (a bare word such as ``uniform`` or ``x.h5``) is a string.
    """
    src = "<command line>"
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(src, None, f"--set takes section.key=value, got {_show(item)}")
    key, _, text = item.partition("=")
    key = key.strip()
    check_dotted_key(key, src)
    text = text.strip()
    try:
        parsed = tomllib.loads(f"value = {text}")
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return key, text
    if set(parsed) != {"value"}:
        return key, text
    return key, parsed["value"]


# ----------------------------------------------------------------------------- loading


def load_config(path_or_dict: str | os.PathLike | dict, overrides: Sequence[str] = ()) -> Config:
    """Read, validate and resolve a config.

    Parameters
    ----------
    path_or_dict : str, os.PathLike or dict
        A ``.toml`` file, a ``.yaml``/``.yml`` file with the same keys, or a dict
        with the config's shape (then relative paths resolve against the current
        directory and errors name ``<dict>``).
    overrides : iterable of str
        ``"section.key=value"`` items (the CLI's ``--set``), applied in order and
        checked like file values; their errors name ``<command line>``.

    Raises
    ------
    ConfigError
        For any problem with the input, with a one-line message.
    """
    if isinstance(path_or_dict, Config):
        path_or_dict = path_or_dict.to_dict()
    if isinstance(path_or_dict, dict):
        data, source, base = copy.deepcopy(path_or_dict), "<dict>", Path.cwd()
    elif isinstance(path_or_dict, (str, os.PathLike)):
        data, source = _read_file(path_or_dict), os.fspath(path_or_dict)
        base = Path(source).resolve().parent
    else:
        raise ConfigError("<config>", None,
                          f"must be a .toml/.yaml file name or a dict, got {_type_name(path_or_dict)}")
    if isinstance(overrides, str):
        overrides = [overrides]
    overridden = []
    for item in overrides or ():
        key, value = parse_override(item)
        if not isinstance(data, dict):
            break  # the file's own error comes first
        set_dotted(data, key, value, source="<command line>")
        overridden.append(key)
    try:
        return _build(data, source, base, overridden)
    except ConfigError as err:
        if source.lower().endswith((".yaml", ".yml")):
            hint = _yaml_number_hint(data, err.message)
            if hint:
                err = ConfigError(err.file, err.key, err.message + hint)
        if err.key and any(err.key == k or err.key.startswith(k + ".") or err.key.startswith(k + "[")
                           for k in overridden):
            raise err.with_file("<command line>") from None
        raise err from None


def config_from_dict(d: dict, source: str = "<dict>", base_dir: str | os.PathLike | None = None) -> Config:
    """Validate a dict with the config's shape; ``source`` names it in error messages."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _build(copy.deepcopy(d), source, base, [])


def _read_file(path) -> dict:
    source = os.fspath(path)
    suffix = Path(source).suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(source, None, f"config file must end in .toml, .yaml or .yml, got {suffix or 'no suffix'!r}")
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(source, None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, None, f"must be UTF-8 text, got a byte {raw[exc.start]:#04x} at offset {exc.start}") from None
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, None, f"invalid TOML: {exc}") from None
        except (ValueError, RecursionError) as exc:  # pragma: no cover - defensive
            raise ConfigError(source, None, f"invalid TOML: {exc}") from None
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, None, f"invalid YAML: {problem}{where}") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(source, None, f"invalid YAML: {exc}") from None
    if data is None:
        data = {}
    _check_yaml_size(source, data)
    return data


def _check_yaml_size(source: str, data) -> None:
    """Refuse YAML whose aliases make it recursive or expand it past MAX_YAML_VALUES values.

    PyYAML builds one object per anchor and shares it at every alias, so a small file can
    stand for an exponentially large tree.  The expanded size is counted once per distinct
    object (memoised by id), iteratively, in time linear in the file.
    """
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()
    stack = [(data, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, (list, dict)):
            continue
        key = id(node)
        children = list(node.values()) if isinstance(node, dict) else node
        if done:
            open_ids.discard(key)
            total = 1 + sum(sizes.get(id(c), 1) if isinstance(c, (list, dict)) else 1 for c in children)
            sizes[key] = total
            if total > MAX_YAML_VALUES:
                raise ConfigError(source, None, f"its aliases (*name) expand to more than {MAX_YAML_VALUES} "
                                                "values; write the values out or use fewer aliases")
            continue
        if key in sizes:
            continue
        if key in open_ids:
            raise ConfigError(source, None, "an alias (*name) refers to a value that contains it; "
                                            "a config cannot be recursive")
        open_ids.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if isinstance(c, (list, dict)))


_YAML11_NUMBER = re.compile(r"[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+")


def _yaml_number_hint(data, message: str) -> str:
    """A hint when ``message`` shows a string that YAML 1.1 left unread as a number (``1e2``)."""
    seen, stack = set(), [data]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, dict)):
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.extend(node.values() if isinstance(node, dict) else node)
        elif isinstance(node, str) and _YAML11_NUMBER.fullmatch(node.strip()) and repr(node) in message:
            mantissa, _, exponent = node.strip().replace("E", "e").partition("e")
            if "." not in mantissa:
                mantissa += ".0"
            if exponent[0] not in "+-":
                exponent = "+" + exponent
            return (f" (YAML 1.1 reads {node} as a string, not a number: write {mantissa}e{exponent} "
                    f"or {float(node)!r})")
    return ""


def _build(data, source: str, base: Path, overridden) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(source, None, f"must be a table of sections ([model], [solver], ...), got {_type_name(data)}")
    for name, section in data.items():
        if name not in SECTIONS:
            raise _unknown_section(source, name)
        if not isinstance(section, dict):
            raise ConfigError(source, name, f"must be a table of keys, got {_got(section)}")
        for key in section:
            if key not in SECTIONS[name]:
                raise _unknown_key(source, name, key)
    if "model" not in data:
        raise ConfigError(source, "model", "a [model] section is required (it sets d)")

    model = _build_model(data["model"], source)
    initial = _build_options(source, "initial", data.get("initial", {}))
    initial = _check_initial(initial, model.d, source, base, "initial.path" in overridden)
    solver = _build_options(source, "solver", data.get("solver", {}))
    output = _build_options(source, "output", data.get("output", {}))
    wasserstein = _build_options(source, "wasserstein", data.get("wasserstein", {}))
    study = None
    if "study" in data:
        study = _build_study(data, source, base, overridden)
        if study.metric not in output.diagnostics:  # the study needs its metric recorded
            output = output.replace(diagnostics=tuple(output.diagnostics) + (study.metric,))
    _check_diagnostics(output.diagnostics, source, "output.diagnostics")
    _check_counts(solver, output, source)
    config = Config(model=model, initial=initial, solver=solver, output=output,
                    wasserstein=wasserstein, study=study, source=source)
    check_method(config)
    return config


# ----------------------------------------------------------------------------- sizes and keys per method


def _check_counts(solver: SolverOptions, output: OutputOptions, source: str) -> None:
    """Steps t_end / dt and snapshots t_end / save_every must be finite and within bounds."""
    steps = solver.t_end / solver.dt
    if not steps <= MAX_STEPS:  # also catches inf
        raise ConfigError(source, "solver.dt",
                          f"must allow t_end / dt <= {MAX_STEPS:.0e} steps, got t_end / dt = {steps:.3g} "
                          f"(t_end = {solver.t_end!r}, dt = {solver.dt!r})")
    snapshots = solver.t_end / output.save_every
    if not snapshots <= MAX_SNAPSHOTS:
        raise ConfigError(source, "output.save_every",
                          f"must allow t_end / save_every <= {MAX_SNAPSHOTS:.0e} snapshots, got "
                          f"{snapshots:.3g} (t_end = {solver.t_end!r}, save_every = {output.save_every!r})")


def check_method(config: Config) -> None:
    """A key the chosen method would ignore must stay at its default (``Method.unused`` says
    why it has no effect); then the method's own rules (``Method.check``)."""
    from .methods import get_method

    try:
        method = get_method(config.solver.method)
    except ValueError as exc:
        raise _wrap(config.source, exc, "solver.method") from None
    where = method.describe(config)
    for section in ("initial", "solver"):
        options = getattr(config, section)
        defaults = type(options)()
        for key in SECTIONS[section]:
            value, default = getattr(options, key), getattr(defaults, key)
            if value == default:
                continue
            why = method.unused(section, key, config)
            if why is not None:
                raise ConfigError(config.source, f"{section}.{key}",
                                  f"is not used by {where}: {why}; remove it or "
                                  f"leave it at its default {_got(default)}, got {_got(value)}")
    accepted = method.integrators
    if accepted is not None and config.solver.integrator not in accepted:
        raise ConfigError(config.source, "solver.integrator",
                          f"must be one of {', '.join(accepted)} for {where}, got {_got(config.solver.integrator)}")
    method.check(config)


# ----------------------------------------------------------------------------- [model]


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _finite_float(x) -> float | None:
    """float(x) for a finite number, else None (bools, NaN, inf, ints too large)."""
    if not _is_number(x):
        return None
    try:
        f = float(x)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


_MATRIX_EXPECTED = ('"identity", a number c (c I), a d x d list of numbers '
                    'or { random = "gaussian", seed = ..., scale = ... }')


def _matrix_shape(source, name, value):
    """Validate a nested-list matrix; return it as a float64 array (square, finite)."""
    key = f"model.{name}"
    if not value or not all(isinstance(row, list) for row in value):
        raise ConfigError(source, key, f"must be {_MATRIX_EXPECTED}, got {_got(value)}")
    rows = []
    for i, row in enumerate(value):
        vals = [_finite_float(x) for x in row]
        if any(v is None for v in vals):
            bad = next(x for x, v in zip(row, vals) if v is None)
            raise ConfigError(source, key, f"must hold finite numbers, got {_got(bad)} in row {i + 1}")
        rows.append(vals)
    n = len(rows)
    if any(len(r) != n for r in rows):
        shape = f"{n} rows of lengths {', '.join(str(len(r)) for r in rows)}"
        raise ConfigError(source, key, f"must be a square d x d matrix, got {shape}")
    return np.array(rows, dtype=np.float64).reshape(n, n)


def _random_spec(source, name, spec):
    key = f"model.{name}"
    for k in spec:
        if k not in _RANDOM_KEYS:
            hint = _did_you_mean(str(k), _RANDOM_KEYS, f"{key}.")
            more = f"did you mean {hint}?" if hint else f"a random matrix takes {', '.join(_RANDOM_KEYS)}"
            raise ConfigError(source, f"{key}.{k}", f"unknown key; {more}")
    if "random" not in spec:
        raise ConfigError(source, f"{key}.random", f"is required in a random matrix, one of {', '.join(_RANDOM_KINDS)}")
    if spec["random"] not in _RANDOM_KINDS:
        raise ConfigError(source, f"{key}.random", f"must be one of {', '.join(_RANDOM_KINDS)}, got {_got(spec['random'])}")
    seed = spec.get("seed", 0)
    if not _is_int(seed) or seed < 0:
        raise ConfigError(source, f"{key}.seed", f"must be an integer >= 0, got {_got(seed)}")
    scale = spec.get("scale", 1.0)
    if _finite_float(scale) is None:
        raise ConfigError(source, f"{key}.scale", f"must be a finite number, got {_got(scale)}")
    return ("random", seed, float(scale))


def _build_model(section: dict, source: str) -> Model:
    # d first (explicit), then each matrix spec
    d = section.get("d")
    if d is not None and (not _is_int(d) or not 2 <= d <= MAX_D):
        raise ConfigError(source, "model.d", f"must be an integer in [2, {MAX_D}], got {_got(d)}")
    if "d" in section and d is None:
        raise ConfigError(source, "model.d", f"must be an integer in [2, {MAX_D}], got None")
    specs = {}
    for name in _MATRICES:
        if name not in section:
            specs[name] = ("identity",)
            continue
        value = section[name]
        if isinstance(value, str):
            if value.strip().lower() != "identity":
                raise ConfigError(source, f"model.{name}", f"must be {_MATRIX_EXPECTED}, got {_got(value)}")
            specs[name] = ("identity",)
        elif _is_number(value):
            c = _finite_float(value)
            if c is None:
                raise ConfigError(source, f"model.{name}", f"must be a finite number, got {_got(value)}")
            specs[name] = ("scalar", c)
        elif isinstance(value, list):
            specs[name] = ("matrix", _matrix_shape(source, name, value))
        elif isinstance(value, dict):
            specs[name] = _random_spec(source, name, value)
        else:
            raise ConfigError(source, f"model.{name}", f"must be {_MATRIX_EXPECTED}, got {_got(value)}")
    # the size: model.d, else the first explicit matrix
    sized = [(name, spec[1].shape[0]) for name, spec in specs.items() if spec[0] == "matrix"]
    if d is None:
        if not sized:
            raise ConfigError(source, "model.d",
                              "is required when Q, K and V are all \"identity\", numbers or random")
        d_from, d = sized[0]
        if not 2 <= d <= MAX_D:
            raise ConfigError(source, f"model.{d_from}", f"must be d x d with d in [2, {MAX_D}], got {d} x {d}")
        where = f"the size of model.{d_from}"
    else:
        where = f"model.d = {d}"
    for name, n in sized:
        if n != d:
            raise ConfigError(source, f"model.{name}", f"must be {d} x {d} ({where}), got {n} x {n}")
    mats = {}
    for name, spec in specs.items():
        if spec[0] == "identity":
            mats[name] = None
        elif spec[0] == "scalar":
            mats[name] = spec[1] * np.eye(d)
        elif spec[0] == "matrix":
            mats[name] = spec[1]
        else:
            _, seed, scale = spec
            with np.errstate(over="ignore"):
                mats[name] = np.random.default_rng(seed).standard_normal((d, d)) * (scale / math.sqrt(d))
            if not np.abs(mats[name]).max() <= MAX_ENTRY:
                raise ConfigError(source, f"model.{name}.scale",
                                  f"must keep the entries <= {MAX_ENTRY:.0e} in size, got {_got(scale)}")
    # beta (the Model's own rule, the value shown as written), normalization, zero_temperature
    from .model import parse_beta  # here, not at the top: the edits of the loader stay apart

    try:
        beta = parse_beta(section.get("beta", 1.0), show=_got)
    except ValueError as exc:
        raise _wrap(source, exc, "model.beta") from None
    norm = section.get("normalization", "softmax")
    if norm not in NORMALIZATIONS:
        raise ConfigError(source, "model.normalization", f"must be one of {', '.join(NORMALIZATIONS)}, got {_got(norm)}")
    zt = section.get("zero_temperature", "continuum")
    if zt not in ZERO_TEMPERATURE_FIELDS:
        raise ConfigError(source, "model.zero_temperature",
                          f"must be one of {', '.join(ZERO_TEMPERATURE_FIELDS)}, got {_got(zt)}")
    try:
        return Model(Q=mats["Q"], K=mats["K"], V=mats["V"], beta=beta, d=d, normalization=norm, zero_temperature=zt)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _wrap(source, exc, "model") from None


# ----------------------------------------------------------------------------- option sections


def _check_type(source, section, key, annotation, value):
    """Check a value against an option field's declared type; return it (floats coerced)."""
    k = f"{section}.{key}"
    if annotation == "float":
        if not _is_number(value):
            raise ConfigError(source, k, f"must be a number, got {_got(value)}")
        try:
            float(value)
        except OverflowError:
            raise ConfigError(source, k, "must be a finite number, got an integer too large for a float") from None
        return value
    if annotation == "int":
        if not _is_int(value):
            raise ConfigError(source, k, f"must be an integer, got {_got(value)}")
        return value
    if annotation == "str":
        if not isinstance(value, str):
            raise ConfigError(source, k, f"must be a string, got {_got(value)}")
        return value
    if annotation == "tuple":
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, k, f"must be a list, got {_got(value)}")
        if _has_huge_int(value):
            raise ConfigError(source, k, f"must hold numbers that fit a float, got {_got(value)}")
        return value
    if annotation == "dict":
        if not isinstance(value, dict):
            raise ConfigError(source, k, f"must be a table, got {_got(value)}")
        return value
    return value  # pragma: no cover - every field is typed


def _has_huge_int(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_has_huge_int(v) for v in value)
    return _is_int(value) and abs(value) > 2**1023


def _build_options(source: str, section: str, values: dict):
    cls = _OPTION_CLASSES[section]
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    kwargs = {key: _check_type(source, section, key, types[key], value) for key, value in values.items()}
    try:
        options = cls(**kwargs)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _wrap(source, exc, section) from None
    # store float fields as floats (a TOML "dt = 1" is an integer)
    floats = {key: float(v) for key, v in kwargs.items() if types[key] == "float" and not isinstance(v, float)}
    return options.replace(**floats) if floats else options


def _check_initial(initial: InitialOptions, d: int, source: str, base: Path, path_from_cli: bool):
    """The kind's own rules (``mfpde.initial.InitialKind.check``), then a file's path resolved."""
    from .initial import initial_kind  # here, not at the top: the edits of the loader stay apart

    kind = initial.kind
    try:
        initial_kind(kind).check(initial, d)
    except ValueError as exc:
        raise _wrap(source, exc, "initial.kind") from None
    if kind == "file":
        given = initial.path
        if "\0" in given:
            raise ConfigError(source, "initial.path", f"must be a file name, got {_got(given)}")
        path = Path(given).expanduser()
        if not path.is_absolute():
            path = (Path.cwd() if path_from_cli else base) / path
        path = Path(os.path.abspath(path))
        if path.suffix.lower() not in _INITIAL_FILE_SUFFIXES:
            raise ConfigError(source, "initial.path",
                              f"must name an mfpde .h5 file or a .npy array, got {_got(given)}")
        if not path.is_file():
            raise ConfigError(source, "initial.path", f"must name an existing file, got {_got(given)} (no file {path})")
        initial = initial.replace(path=str(path))
    return initial


def _check_sweep_axis(axis, source: str) -> None:
    """The one rule for a study axis (``study.sweep.<axis>``, in a [study] table or a dotted
    key): an existing dotted config key outside [study]."""
    try:
        check_dotted_key(axis, source)
    except ConfigError as err:
        raise ConfigError(source, f"study.sweep.{axis}",
                          f"must be a dotted config key: {err.key}: {err.message}") from None
    if str(axis).split(".")[0] == "study":
        raise ConfigError(source, f"study.sweep.{axis}", "a study cannot sweep a [study] key")


def _build_study(data: dict, source: str, base: Path, overridden) -> StudyOptions:
    # StudyOptions: the sweep a table of non-empty lists, the fit one of its axes
    study = _build_options(source, "study", data["study"])
    for axis in study.sweep:
        _check_sweep_axis(axis, source)
    _check_diagnostics((study.metric,), source, "study.metric")
    # every swept value must give a valid config on its own
    base_data = {k: v for k, v in data.items() if k != "study"}
    for axis, axis_values in study.sweep.items():
        for i, value in enumerate(axis_values):
            trial = copy.deepcopy(base_data)
            set_dotted(trial, axis, value, source=source)
            try:
                _build(trial, source, base, overridden)
            except ConfigError as err:
                inner = f"{err.key}: {err.message}" if err.key and err.key != axis else err.message
                raise ConfigError(source, f"study.sweep.{axis}[{i}]", inner) from None
    _check_seed_sweep(study, data.get("initial", {}), source)
    return study


def _check_seed_sweep(study: StudyOptions, initial: dict, source: str) -> None:
    """Ensembles of S systems use the seeds seed .. seed + S - 1: swept seeds closer than S
    would share systems (the runs would not be independent)."""
    seeds = study.sweep.get("initial.seed")
    if not seeds:
        return
    S = max(study.sweep.get("initial.systems", [initial.get("systems", 1)]))
    ordered = sorted(set(seeds))
    close = [(a, b) for a, b in zip(ordered, ordered[1:]) if b - a < S]
    if S > 1 and close:
        a, b = close[0]
        raise ConfigError(source, "study.sweep.initial.seed",
                          f"an ensemble of {S} systems draws system s with seed + s, so seeds {a} and {b} "
                          f"would share systems; space the swept seeds by at least {S} (e.g. {a}, {a + S}, ...)")


def _check_diagnostics(names, source: str, key: str):
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(source, key, f"must not repeat a name, got {name!r} twice")
        seen.add(name)
    try:
        from .diagnostics import REGISTRY
    except Exception:  # the diagnostics module is optional here (not importable yet)
        return
    try:
        valid = sorted(REGISTRY)
    except Exception:  # pragma: no cover
        return
    for name in names:
        if name not in REGISTRY:
            hint = _did_you_mean(name, valid)
            more = f" (did you mean {hint!r}?)" if hint else ""
            raise ConfigError(source, key, f"must be names from {', '.join(valid)}, got {name!r}{more}")
