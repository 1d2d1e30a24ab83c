"""Typed, validated option objects: one frozen dataclass per config section.

A config file (docs/config.md) becomes exactly these objects; a Python user
builds the same objects by hand.  Each validates itself in ``__post_init__`` and raises
``ValueError("<section>.<key> must be ..., got ...")`` naming the key; the config loader
adds the file name and the CLI turns it into one line with exit status 2.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

__all__ = [
    "InitialOptions",
    "SolverOptions",
    "OutputOptions",
    "WassersteinOptions",
    "StudyOptions",
    "INITIAL_KINDS",
    "KERNELS",
]

SAMPLINGS = ("quantile", "random")
#: ``solver.backend`` values -> the kernel registry's backend names (docs/methods.md).
BACKENDS = {"cpu": "numba", "cuda": "cuda"}
GROUNDS = ("geodesic", "chordal")
W_METHODS = ("auto", "exact", "circle", "two_atom", "sparse", "sliced")


def _methods() -> tuple:
    """The values of ``solver.method``: the method registry (imported on use: it loads the solvers)."""
    from .methods import method_names

    return method_names()


def _integrators() -> tuple:
    """The values of ``solver.integrator``: the integrator registry."""
    from .solvers.integrators import INTEGRATORS

    return INTEGRATORS


def _kernels() -> tuple:
    """The values of ``solver.kernel``: the kernels of the numba backend's registry (at beta = inf
    the model's zero-temperature field runs whatever the kernel)."""
    from .kernels import kernels

    return kernels("numba")


def _initial_kinds() -> tuple:
    """The values of ``initial.kind``: the names of ``mfpde.initial.KINDS`` (imported here, not
    at the top: mfpde.initial imports this module)."""
    from .initial import KINDS

    return tuple(KINDS)


def __getattr__(name):  # METHODS, INTEGRATORS, KERNELS and INITIAL_KINDS come from their registries
    if name == "KERNELS":
        return _kernels()
    if name == "INITIAL_KINDS":
        return _initial_kinds()
    if name == "METHODS":
        return _methods()
    if name == "INTEGRATORS":
        return _integrators()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _positive(section: str, key: str, value, *, integer=False, allow_zero=False):
    ok = _is_int(value) if integer else _is_number(value)
    kind = "an integer" if integer else "a number"
    if not ok or (isinstance(value, float) and not math.isfinite(value)) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{section}.{key} must be {kind} {bound}, got {value!r}")


#: Longest accepted file name, in bytes of its UTF-8 form, and longest name component
#: (POSIX PATH_MAX and NAME_MAX on Linux): longer names fail in the operating system.
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def _check_path(section: str, key: str, value: str):
    """ValueError unless ``value`` can name a file: no NUL or control character, at most
    MAX_PATH_BYTES bytes in all and MAX_NAME_BYTES per component."""
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise ValueError(f"{section}.{key} must be a printable file name, got one with the character {bad!r}")
    try:
        raw = os.fsencode(value)
    except UnicodeEncodeError:
        raise ValueError(f"{section}.{key} must be a file name this system can encode, got {value[:40]!r}") from None
    if len(raw) > MAX_PATH_BYTES:
        raise ValueError(f"{section}.{key} must be at most {MAX_PATH_BYTES} bytes long, got {len(raw)}")
    longest = max(len(part) for part in raw.split(b"/"))
    if longest > MAX_NAME_BYTES:
        raise ValueError(f"{section}.{key} must have names of at most {MAX_NAME_BYTES} bytes between "
                         f"slashes, got one of {longest}")


def _choice(section: str, key: str, value, choices):
    if value not in choices:
        raise ValueError(f"{section}.{key} must be one of {', '.join(choices)}, got {value!r}")


def _number_list(section: str, key: str, value, *, positive=False):
    if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
        raise ValueError(f"{section}.{key} must be a list of numbers, got {value!r}")
    if positive and any(v <= 0 for v in value):
        raise ValueError(f"{section}.{key} must hold numbers > 0, got {value!r}")
    return tuple(float(v) for v in value)


class _Section:
    """Shared helpers: ``to_dict`` (JSON-able) and ``replace``."""

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def replace(self, **changes):
        params = asdict(self)
        params.update(changes)
        return type(self)(**params)


@dataclass(frozen=True)
class InitialOptions(_Section):
    """The [initial] section: which initial measure rho_0, how many particles, which seed.

    kind:
        ``uniform`` (on S^{d-1}); ``perturbed_uniform`` (d = 2, density
        (1 + amplitude cos(mode (t - phase))) / (2 pi), its quantile points or, with
        ``sampling = "random"``, n i.i.d. draws); ``vmf_mixture`` (means, kappas, weights);
        ``wrapped_normal_mixture`` (d = 2; means and sigmas in radians, weights);
        ``file`` (path: an mfpde HDF5 file or a .npy array of points; snapshot: index
        into the file's snapshots, default 0).
    systems:
        S >= 1 independent systems of n tokens (an ensemble, particles only): system s is
        drawn exactly as a single run with ``seed = seed + s``; a ``file`` holds (S, n, d).
    """

    kind: str = "uniform"
    n: int = 1000
    seed: int = 0
    systems: int = 1
    amplitude: float = 1e-3
    mode: int = 3
    phase: float = 0.0
    sampling: str = "quantile"
    means: tuple = ()
    kappas: tuple = ()
    sigmas: tuple = ()
    weights: tuple = ()
    path: str = ""
    snapshot: int = 0

    def __post_init__(self):
        s = "initial"
        _choice(s, "kind", self.kind, _initial_kinds())
        _positive(s, "n", self.n, integer=True)
        _positive(s, "systems", self.systems, integer=True)
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"initial.seed must be an integer >= 0, got {self.seed!r}")
        if not _is_number(self.amplitude) or not math.isfinite(self.amplitude) or abs(self.amplitude) > 1:
            raise ValueError(f"initial.amplitude must be a number in [-1, 1], got {self.amplitude!r}")
        if not _is_int(self.mode) or self.mode < 0:
            raise ValueError(f"initial.mode must be an integer >= 0, got {self.mode!r}")
        if not _is_number(self.phase) or not math.isfinite(self.phase):
            raise ValueError(f"initial.phase must be a finite number (radians), got {self.phase!r}")
        _choice(s, "sampling", self.sampling, SAMPLINGS)
        if not _is_int(self.snapshot):
            raise ValueError(f"initial.snapshot must be an integer, got {self.snapshot!r}")
        set_ = object.__setattr__
        if self.kind == "vmf_mixture":
            if not isinstance(self.means, (list, tuple)) or not self.means:
                raise ValueError("initial.means must be a non-empty list of points for vmf_mixture")
            means = []
            for m in self.means:
                means.append(_number_list(s, "means", m))
            if len({len(m) for m in means}) != 1:
                raise ValueError("initial.means must be points of one dimension")
            set_(self, "means", tuple(means))
            set_(self, "kappas", _number_list(s, "kappas", self.kappas))
            if any(k < 0 for k in self.kappas):
                raise ValueError(f"initial.kappas must hold numbers >= 0, got {list(self.kappas)!r}")
            self._check_mixture(("means", "kappas"))
        elif self.kind == "wrapped_normal_mixture":
            set_(self, "means", _number_list(s, "means", self.means))
            set_(self, "sigmas", _number_list(s, "sigmas", self.sigmas, positive=True))
            if not self.means:
                raise ValueError("initial.means must be a non-empty list of angles for wrapped_normal_mixture")
            self._check_mixture(("means", "sigmas"))
        elif self.kind == "file":
            if not isinstance(self.path, str) or not self.path:
                raise ValueError("initial.path must name a .h5 or .npy file for kind = \"file\"")
            _check_path(s, "path", self.path)

    def _check_mixture(self, keys):
        n = len(self.means)
        weights = self.weights if self.weights else (1.0,) * n
        weights = _number_list("initial", "weights", weights)
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"initial.weights must be >= 0 with a positive sum, got {list(weights)!r}")
        object.__setattr__(self, "weights", weights)
        for key in keys[1:] + ("weights",):
            if len(getattr(self, key)) != n:
                raise ValueError(
                    f"initial.{key} must have one entry per mean ({n}), got {len(getattr(self, key))}"
                )


@dataclass(frozen=True)
class SolverOptions(_Section):
    """The [solver] section.

    method: ``particles`` | ``fv`` | ``pic``.  integrator: ``euler`` | ``heun`` | ``rk4``
    (fixed step <= dt, each step followed by the retraction x -> x/|x|) | ``rk45``
    (Dormand-Prince with error control by rtol, atol; dt is the first trial step).
    kernel: ``exact`` | ``truncated`` (drops sources whose relative weight is below
    ``tolerance``).  cfl and cells apply to the mesh methods.  backend: ``cpu`` (the
    numba kernels) | ``cuda`` (numba.cuda on an NVIDIA GPU; particles only).
    """

    method: str = "particles"
    integrator: str = "rk4"
    dt: float = 0.01
    cfl: float = 0.4
    t_end: float = 1.0
    cells: int = 2048
    kernel: str = "exact"
    tolerance: float = 1e-12
    rtol: float = 1e-6
    atol: float = 1e-9
    backend: str = "cpu"

    def __post_init__(self):
        s = "solver"
        _choice(s, "method", self.method, _methods())
        _choice(s, "integrator", self.integrator, _integrators())
        _choice(s, "kernel", self.kernel, _kernels())
        _choice(s, "backend", self.backend, tuple(BACKENDS))
        for key in ("dt", "cfl", "t_end", "rtol", "atol"):
            _positive(s, key, getattr(self, key))
        _positive(s, "cells", self.cells, integer=True)
        if not _is_number(self.tolerance) or not (0 <= self.tolerance < 1):
            raise ValueError(f"solver.tolerance must be a number in [0, 1), got {self.tolerance!r}")


@dataclass(frozen=True)
class OutputOptions(_Section):
    """The [output] section: where the HDF5 file goes, snapshot spacing, diagnostics."""

    path: str = "run.h5"
    save_every: float = 0.1
    diagnostics: tuple = ("mass",)
    cluster_threshold: float = 0.05
    cluster_delta: float = 1e-3

    def __post_init__(self):
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"output.path must be a file name, got {self.path!r}")
        _check_path("output", "path", self.path)
        _positive("output", "save_every", self.save_every)
        if not (_is_number(self.cluster_threshold) and 0 <= self.cluster_threshold < 1):
            raise ValueError(f"output.cluster_threshold must be a number in [0, 1) (a fraction of the "
                             f"state's largest density), got {self.cluster_threshold!r}")
        if not (_is_number(self.cluster_delta) and 0 < self.cluster_delta < 2):
            raise ValueError(f"output.cluster_delta must be a number in (0, 2) (pairs with <x_i, x_j> >= "
                             f"1 - cluster_delta are clustered), got {self.cluster_delta!r}")
        if not isinstance(self.diagnostics, (list, tuple)) or not all(isinstance(x, str) for x in self.diagnostics):
            raise ValueError(f"output.diagnostics must be a list of names, got {self.diagnostics!r}")
        object.__setattr__(self, "diagnostics", tuple(self.diagnostics))


@dataclass(frozen=True)
class WassersteinOptions(_Section):
    """The [wasserstein] section: W_p with a geodesic (radians) or chordal ground cost.

    method: ``auto`` (exact or certified methods only), ``exact``, ``circle``, ``two_atom``,
    ``sparse`` (certified within ``tolerance``) or ``sliced`` (a different quantity, only
    when asked for).  tolerance: the relative bound on W_p that ``sparse`` certifies.
    """

    p: float = 2
    ground: str = "geodesic"
    method: str = "auto"
    tolerance: float = 1e-3

    def __post_init__(self):
        if not _is_number(self.p) or not math.isfinite(self.p) or self.p < 1:
            raise ValueError(f"wasserstein.p must be a number >= 1, got {self.p!r}")
        _choice("wasserstein", "ground", self.ground, GROUNDS)
        _choice("wasserstein", "method", self.method, W_METHODS)
        if not _is_number(self.tolerance) or not (0 < self.tolerance < 1):
            raise ValueError(f"wasserstein.tolerance must be a number in (0, 1), got {self.tolerance!r}")


@dataclass(frozen=True)
class StudyOptions(_Section):
    """The [study] section: sweep axes (dotted config keys -> lists), fit axis, metric."""

    sweep: dict = field(default_factory=dict)
    fit: str = ""
    metric: str = "w_to_limit"
    t_min_rtol: float = 0.0

    def __post_init__(self):
        if not isinstance(self.sweep, dict):
            raise ValueError(f"study.sweep must be a table of key = [values], got {self.sweep!r}")
        for key, values in self.sweep.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"study.sweep.{key} must be a non-empty list, got {values!r}")
        if self.fit and self.fit not in self.sweep:
            raise ValueError(f"study.fit must be one of the sweep axes {sorted(self.sweep)}, got {self.fit!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"study.metric must be a diagnostic name, got {self.metric!r}")
        if not (isinstance(self.t_min_rtol, (int, float)) and math.isfinite(self.t_min_rtol) and self.t_min_rtol >= 0):
            raise ValueError(f"study.t_min_rtol must be a finite number >= 0, got {self.t_min_rtol!r}")

    def to_dict(self) -> dict:
        return {"sweep": {k: list(v) for k, v in self.sweep.items()}, "fit": self.fit, "metric": self.metric,
                "t_min_rtol": self.t_min_rtol}
