"""Attention kernels built once from options: ``make_attention`` and the kernel registry.

    attention = make_attention(model, kernel="exact", tolerance=1e-12, precision="float64", backend="numba")
    v = attention.velocity(X, Y, weights)       # P_x (sum_j w_ij V y_j), tangent vectors per unit time

``make_attention`` checks the options once and returns an :class:`Attention`, the
implementation registered under (backend, kernel); solvers build one when they are
constructed and call it at every field evaluation.  An implementation is a subclass of
:class:`Attention` registered with :func:`register_kernel` (docs/methods.md, "Adding a
kernel backend"): it implements ``kernel_sums`` (or ``sums``), the base class supplies the
rest (input checks, softmax / uniform finishing, tangent projection, log Z).

At beta = inf the kernel is the model's ``zero_temperature`` field ("hardmax" or
"continuum"), whatever ``kernel`` says: from ``backend`` when it registers one, otherwise
from the first backend that does (the ``backend`` attribute tells which ran).
"""

from __future__ import annotations

import math

import numpy as np

from typing import Any, Callable

from numpy.typing import ArrayLike

from .._masses import POSITIVE_SUM, check_masses
from ..options import BACKENDS
from ..model import Model
from ..sphere import tangent_projection
from ._base import LOG2E, PRECISIONS, continuum_average, finish, log2_masses

__all__ = ["Attention", "make_attention", "register_kernel", "unregister_kernel", "backends", "kernels", "registered"]

#: (backend, kernel) -> implementation class, in registration order.
_REGISTRY: dict = {}


def _points(name: str, value, d: int, ensemble: bool = False, systems: int | None = None) -> np.ndarray:
    """Finite points as C-contiguous float64: (N, d), or (S, N, d) for an ``ensemble`` (S =
    ``systems`` when given)."""
    arr = np.ascontiguousarray(value, dtype=np.float64)
    if not ensemble and (arr.ndim != 2 or arr.shape[1] != d):
        raise ValueError(f"{name} must have shape (N, {d}) for d = {d}, got {arr.shape}")
    if ensemble and (arr.ndim != 3 or arr.shape[2] != d or (systems is not None and arr.shape[0] != systems)):
        want = f"({'S' if systems is None else systems}, N, {d})"
        raise ValueError(f"{name} must have shape {want} for an ensemble in d = {d}, got {arr.shape}")
    # min and max propagate NaN and +-inf: two passes without a temporary array
    if arr.size and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):
        raise ValueError(f"{name} must be finite")
    return arr


def _same_points(X, Y) -> bool:
    """Y None, or Y the same points as X: the same object or a view of the same memory with
    the same shape, strides and dtype (``velocity(X[s], X[s], w)``): self-interaction."""
    if Y is None or Y is X:
        return True
    return (isinstance(X, np.ndarray) and isinstance(Y, np.ndarray) and X.dtype == Y.dtype and X.shape == Y.shape
            and X.strides == Y.strides and X.__array_interface__["data"][0] == Y.__array_interface__["data"][0])


def _ensemble_masses(weights, systems: int, m: int) -> np.ndarray:
    """(S, m) masses, each row checked as ``check_masses`` does; None gives 1/m each."""
    if weights is None:
        return np.full((systems, m), 1.0 / m)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.shape != (systems, m):
        raise ValueError(f"weights must have shape ({systems}, {m}) for an ensemble (one row per system, "
                         f"one mass per source), got {w.shape}")
    bad = ~(np.isfinite(w).all(axis=1) & (w >= 0).all(axis=1) & (w.sum(axis=1) > 0))
    if bad.any():
        raise ValueError(POSITIVE_SUM.format(name="weights") + f" in every system (system {int(np.argmax(bad))})")
    return w


class Attention:
    """The attention field of one model with one kernel, built by :func:`make_attention`.

    Attributes naming what it is (run provenance): ``backend``, ``kernel`` (the kernel that
    runs: "hardmax" or "continuum" at beta = inf), ``precision`` (working precision of the
    scores and exponentials), ``tolerance`` (the truncated kernel's relative weight cut-off;
    unused by the others), ``model``.

    Subclasses implement ``kernel_sums(q, Y, VY, log2m)`` (the backend contract,
    docs/methods.md) or override ``sums`` / ``average`` as a whole.
    """

    backend: str = ""
    kernel: str = ""
    #: Working precisions the implementation accepts, the default first.
    precisions: tuple = ("float64",)
    #: True for an implementation of a beta = inf field (its kernel name is the model's
    #: ``zero_temperature``); such kernels are not offered by name for finite beta.
    zero_temperature: bool = False
    #: True where ``velocity``, ``average`` and ``log_partition`` take an ensemble: X of shape
    #: (S, n, d), S independent systems, each interacting with itself only (docs/methods.md,
    #: "Ensembles in the kernel").  Others raise ``ValueError`` on three-dimensional input.
    ensembles: bool = False

    def __init__(self, model: Model, tolerance: float = 1e-12, precision: str = "float64"):
        self.model = model
        self.tolerance = float(tolerance)
        self.precision = precision

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(backend={self.backend!r}, kernel={self.kernel!r}, "
                f"precision={self.precision!r}, tolerance={self.tolerance!r})")

    @property
    def provenance(self) -> dict:
        """{"backend", "kernel", "precision", "tolerance"}: what a run records."""
        return {"backend": self.backend, "kernel": self.kernel, "precision": self.precision,
                "tolerance": self.tolerance}

    # ------------------------------------------------------------------ the contract

    def kernel_sums(self, q: np.ndarray, Y: np.ndarray, VY: np.ndarray, log2m: np.ndarray) -> tuple:
        """(N (n, dv), S (n,), M (n,)) from prepared inputs; see docs/methods.md.

        q (n, d): queries log2(e) beta B^T x_i; Y (m, d): sources; VY (m, dv): values
        V y_j (dv = 0: skip the numerator); log2m (m,): log2 masses (-inf: massless).  All
        C-contiguous float64.  Returns float64 N_i = sum_j 2^(s_ij - M_i) V y_j,
        S_i = sum_j 2^(s_ij - M_i) and M_i (log2 units), s_ij = <q_i, y_j> + log2 m_j.
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither kernel_sums nor sums")

    def sums(self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray, values: bool = True) -> tuple:
        """(N_i, S_i, M_i) at targets X (n, d) from sources Y (m, d) with masses ``weights``
        (validated, contiguous float64); M_i in log2 units.  ``values=False``: N has shape
        (n, 0)."""
        model = self.model
        q = np.ascontiguousarray((LOG2E * model.beta) * (X @ model.B))
        VY = np.ascontiguousarray(Y @ model.V.T) if values else np.empty((len(Y), 0))
        return self.kernel_sums(q, Y, VY, log2_masses(weights))

    # ------------------------------------------------------------------ what callers use

    def average(self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The attention-weighted average of V y_j at each target, shape (n, d).

        softmax: sum_j m_j e^{beta <Q x, K y_j>} V y_j / sum_j m_j e^{beta <Q x, K y_j>};
        uniform: the numerator alone (``OverflowError`` beyond float64's range).  Inputs as
        for ``sums`` (validated by the caller).  An ensemble (X (S, n, d), Y (S, m, d) or
        None, weights (S, m) or None) gives (S, n, d) where ``ensembles`` is True.
        """
        if np.ndim(X) == 3:
            return self.ensemble_average(*self._ensemble_inputs(X, Y, weights))
        return finish(self.model, *self.sums(X, Y, weights))

    def velocity(self, X: ArrayLike, Y: ArrayLike | None = None, weights: ArrayLike | None = None) -> np.ndarray:
        """The field P_x(average) at targets X (n, d) from sum_j weights_j delta_{Y_j}.

        Y defaults to X, weights to 1/M each (used as given: softmax is invariant to their
        total, the uniform normalization scales with it).  Checks shapes, finiteness and the
        masses; tangent vectors per unit time, shape (n, d).

        Ensembles (where ``ensembles`` is True): X of shape (S, n, d) holds S independent
        systems; Y None (each system its own sources) or (S, m, d); weights None (1/m each)
        or (S, m), each row checked as one system's masses.  Returns (S, n, d); with Y None,
        system s gives the same bits as ``velocity(X[s], weights=weights[s])``.
        """
        d = self.model.d
        if np.ndim(X) == 3:
            if self.kernel == "continuum":
                self._refuse_ensemble()
                X = _points("X", X, d, ensemble=True)
                return tangent_projection(X, continuum_average(self.model, X))
            return self.ensemble_velocity(*self._ensemble_inputs(X, Y, weights))
        self_interaction = _same_points(X, Y)
        X = _points("X", X, d)
        if self.kernel == "continuum":
            return tangent_projection(X, continuum_average(self.model, X))
        Y = X if self_interaction else _points("Y", Y, d)
        if len(Y) == 0:
            raise ValueError("Y must hold at least one source point")
        m = check_masses(weights, len(Y), "weights", shape_note=" (one per source)", contiguous=True)
        if self_interaction and self.ensembles:  # one system: the S = 1 ensemble (same bits)
            return self.ensemble_velocity(X[None], X[None], m[None])[0]
        return tangent_projection(X, self.average(X, Y, m))

    def log_partition(self, X: ArrayLike, Y: ArrayLike | None = None,
                      weights: ArrayLike | None = None) -> np.ndarray:
        """log Z_i = log sum_j m_j exp(beta <Q x_i, K y_j>) at each target, shape (n,).

        Y defaults to X, the masses to 1/M.  ``ValueError`` at beta = inf.  An ensemble
        (as for ``velocity``) gives (S, n).
        """
        if self.model.is_zero_temperature:
            raise ValueError("log_partition needs a finite beta")
        if np.ndim(X) == 3:
            return self.ensemble_log_partition(*self._ensemble_inputs(X, Y, weights))
        self_interaction = _same_points(X, Y)
        X = np.asarray(X, dtype=np.float64)
        Y = X if self_interaction else np.asarray(Y, dtype=np.float64)
        m = np.full(len(Y), 1.0 / len(Y)) if weights is None else np.asarray(weights, dtype=np.float64)
        if self_interaction and self.ensembles and X.ndim == 2 and m.shape == (len(X),):
            return self.ensemble_log_partition(np.ascontiguousarray(X)[None], np.ascontiguousarray(X)[None],
                                               np.ascontiguousarray(m)[None])[0]
        _, den, smax2 = self.sums(X, Y, m, values=False)
        return smax2 * math.log(2.0) + np.log(den)

    # ------------------------------------------------------------------ ensembles

    def _refuse_ensemble(self) -> None:
        if not self.ensembles:
            name = repr(self.kernel) + ("" if self.backend in ("numba", "numpy") else f" of backend {self.backend!r}")
            raise ValueError(f"kernel {name} takes one system (X of shape (n, d)); an ensemble (S, n, d) runs "
                             "with the exact kernel on the cpu backend")

    def _ensemble_inputs(self, X, Y, weights) -> tuple:
        """(X (S, n, d), Y (S, m, d), weights (S, m)): validated, C-contiguous float64; Y is X
        for self-interaction.  ``ValueError`` where the kernel takes one system only."""
        self._refuse_ensemble()
        d = self.model.d
        self_interaction = _same_points(X, Y)
        X = _points("X", X, d, ensemble=True)
        Y = X if self_interaction else _points("Y", Y, d, ensemble=True, systems=len(X))
        if Y.shape[1] == 0:
            raise ValueError("Y must hold at least one source point per system")
        return X, Y, _ensemble_masses(weights, len(X), Y.shape[1])

    def ensemble_velocity(self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The field of each system, (S, n, d), from validated X (S, n, d), Y (S, m, d) and
        weights (S, m).  Default: the single-system computation of ``velocity`` per system."""
        out = np.empty_like(X)
        for s in range(len(X)):
            out[s] = tangent_projection(X[s], self.average(X[s], Y[s], weights[s]))
        return out

    def ensemble_average(self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``average`` of each system, (S, n, d) (inputs as for ``ensemble_velocity``)."""
        out = np.empty_like(X)
        for s in range(len(X)):
            out[s] = self.average(X[s], Y[s], weights[s])
        return out

    def ensemble_log_partition(self, X: np.ndarray, Y: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``log_partition`` of each system, (S, n) (inputs as for ``ensemble_velocity``)."""
        out = np.empty(X.shape[:2])
        for s in range(len(X)):
            _, den, smax2 = self.sums(X[s], Y[s], weights[s], values=False)
            out[s] = smax2 * math.log(2.0) + np.log(den)
        return out


# --------------------------------------------------------------------------- the registry


def register_kernel(backend: str, kernel: str, cls: type | None = None, *, precisions: tuple | list | None = None,
                    zero_temperature: bool | None = None) -> Callable | type:
    """Register ``cls`` (an :class:`Attention` subclass) under (backend, kernel).

    Use as a decorator, ``@register_kernel("mybackend", "exact")``, or a call,
    ``register_kernel("mybackend", "exact", MyAttention)``.  ``precisions`` (default: the
    class's) lists the accepted working precisions, the default first.  Sets the class's
    ``backend``, ``kernel`` and ``precisions``; a later registration of the same pair
    replaces the earlier one.
    """

    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, Attention)):
            raise TypeError(f"register_kernel needs an Attention subclass, got {cls!r}")
        unknown = [p for p in (precisions or ()) if p not in PRECISIONS]
        if unknown:
            raise ValueError(f"precisions must be among {', '.join(PRECISIONS)}, got {unknown[0]!r}")
        cls.backend = backend
        cls.kernel = kernel
        if precisions is not None:
            cls.precisions = tuple(precisions)
        if zero_temperature is not None:
            cls.zero_temperature = bool(zero_temperature)
        _REGISTRY[(backend, kernel)] = cls
        return cls

    return register if cls is None else register(cls)


def unregister_kernel(backend: str, kernel: str) -> None:
    """Remove (backend, kernel) from the registry (tests, plugins being unloaded)."""
    _REGISTRY.pop((backend, kernel), None)


def registered() -> dict:
    """A copy of the registry: {(backend, kernel): class}."""
    return dict(_REGISTRY)


def backends() -> tuple:
    """The registered backend names, in registration order."""
    return tuple(dict.fromkeys(b for b, _ in _REGISTRY))


def kernels(backend: str | None = None) -> tuple:
    """The kernel names offered by ``backend`` (all backends if None) for finite beta."""
    return tuple(dict.fromkeys(k for (b, k), cls in _REGISTRY.items()
                               if (backend is None or b == backend) and not cls.zero_temperature))


def _all_precisions() -> tuple:
    found = {p for cls in _REGISTRY.values() for p in cls.precisions}
    return tuple(p for p in PRECISIONS if p in found)


def make_attention(model: Model, kernel: Any = "exact", tolerance: float = 1e-12, precision: str = "float64",
                   backend: str = "numba", **options) -> Attention:
    """The attention field of ``model`` with the given kernel options, checked once.

    Parameters
    ----------
    model : Model
    kernel : str or options object
        A kernel of ``backend``: "exact" (all sources, O(N M) time, O(N + M) memory),
        "truncated" (numba: large beta, drops sources of relative weight below
        ``tolerance``), "fft" (numpy: sources at the cells of a ``CircleMesh`` passed as
        ``mesh=``, B = a I + b J).  An object with a ``kernel`` attribute (``SolverOptions``)
        supplies kernel, tolerance and, where it has them, precision and backend
        (``solver.backend``: "cpu" is the numba backend, "cuda" the numba.cuda one).
        Ignored at beta = inf (the model's ``zero_temperature`` field runs).
    tolerance : float in [0, 1)
        Relative weight below which the truncated kernel may drop a source.
    precision : "float64" or "float32" (exact kernel only)
        Working precision of the scores, exponentials and per-tile sums.
    backend : str
        "numba" (default), "numpy" (the dense reference; beta = inf continuum field),
        "cuda" (numba.cuda exact kernel; ``ValueError`` without an NVIDIA GPU), or any
        registered with :func:`register_kernel`.  Other keyword arguments go to
        the implementation (``mesh=`` for "fft").

    Returns
    -------
    Attention
        The implementation registered under (backend, kernel), built for ``model``.

    Raises
    ------
    ValueError
        A bad option, in one line naming the value and the registered choices.
    """
    if not isinstance(kernel, str) and hasattr(kernel, "kernel"):
        opts = kernel
        kernel = opts.kernel
        tolerance = getattr(opts, "tolerance", tolerance)
        precision = getattr(opts, "precision", precision)
        backend = getattr(opts, "backend", backend)
        backend = BACKENDS.get(backend, backend) if isinstance(backend, str) else backend
    if not isinstance(model, Model):
        raise TypeError(f"model must be an mfpde.Model, got {type(model).__name__}")
    if backend not in backends():
        raise ValueError(f"backend must be one of {', '.join(backends())}, got {backend!r}")
    offered = kernels(backend)
    if kernel not in offered:
        raise ValueError(f"kernel must be one of {', '.join(offered)} (backend {backend!r}), got {kernel!r}")
    every = _all_precisions()
    if precision not in every:
        raise ValueError(f"precision must be one of {', '.join(every)}, got {precision!r}")
    cls = _REGISTRY[(backend, kernel)]
    if precision not in cls.precisions:
        able = [k for (b, k), c in _REGISTRY.items() if b == backend and precision in c.precisions
                and not c.zero_temperature]
        raise ValueError(f"precision = {precision!r} is available for the {', '.join(able)} kernel only "
                         f"(kernel {kernel!r} of backend {backend!r} takes {', '.join(cls.precisions)})")
    try:
        tol = float(tolerance)
    except (TypeError, ValueError):
        raise ValueError(f"tolerance must be a number in [0, 1), got {tolerance!r}") from None
    if not (0.0 <= tol < 1.0) or math.isnan(tol):
        raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
    if model.is_zero_temperature:
        name = model.zero_temperature
        cls = _REGISTRY.get((backend, name)) or next(c for (b, k), c in _REGISTRY.items() if k == name)
        precision = cls.precisions[0]
    return cls(model, tolerance=tol, precision=precision, **options)
