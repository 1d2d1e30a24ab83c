"""Wasserstein distances between discrete measures on the sphere, via POT (the only POT user).

    W_p(mu, nu) = ( min_{pi in Pi(a, b)} sum_ij pi_ij c(x_i, y_j)^p )^(1/p)

with ground distance c the geodesic one, arccos<x, y> (``ground="geodesic"``, computed
stably as 2 arcsin(|x - y| / 2)), or the chordal one |x - y| (``ground="chordal"``).
Every value is in radians (chordal: in units of the sphere's radius, which is 1).

Methods (docs/analysis.md; the derivations and bounds of ``two_atom`` and ``sparse`` in
docs/methods.md):

``exact``    ot.emd2 on the (n, m) cost matrix c^p built here (float64, C-contiguous);
             O(n m) memory.  A non-optimal exit of the network simplex is retried with
             100x the iteration budget and then raised as ``WassersteinError``.
``circle``   d = 2, geodesic ground only: POT's exact circle solver
             (``ot.wasserstein_circle``, binary search on the cut, eps = 1e-12) on the
             angles in turns u = theta / (2 pi); it returns W_p^p in turns^p, which is
             converted back: W = 2 pi (cost)^(1/p).  O((n + m) log(n + m)) per iteration.
``two_atom`` one of the measures has at most two atoms: exact, O(n log n) (sort the cost
             differences c_i1 - c_i2 and fill the first atom in that order).
``sparse``   certified: optimal transport restricted to candidate pairs (k nearest
             neighbours both ways, random pairs), solved by an eps-scaling auction (equal
             integer multiplicities: an assignment problem) or HiGHS (general masses), and
             a certificate over all n m pairs in O(n + m) memory: the cost U of a feasible
             plan and the dual value L of the c-transform of the solver's potentials
             bracket W_p^p; pairs that violate dual feasibility are added until
             U^(1/p) - L^(1/p) <= tolerance U^(1/p).  The value returned is U^(1/p), an
             upper bound, with ``bound`` = U^(1/p) - L^(1/p) >= |value - W_p|.
``sliced``   geodesic ground: POT's spherical sliced Wasserstein
             (``ot.sliced_wasserstein_sphere``: random great circles, each measure
             projected by x -> U^T x / |U^T x|, circle W_p^p averaged), converted from
             turns to radians (times 2 pi); chordal ground: POT's Euclidean sliced
             Wasserstein (``ot.sliced_wasserstein_distance``, random lines in R^d).  Both
             are seeded Monte-Carlo estimates of a *different*, smaller number than W_p;
             run only when asked for.
``auto``     chooses only among methods that compute W_p (exact, or certified within
             ``tolerance``): circle when d = 2 with geodesic ground; else two_atom when a
             measure has <= 2 atoms; else exact when the cost matrix fits
             ``memory_budget`` and either n m <= ``AUTO_EXACT_PAIRS`` or the masses are not
             integer multiples of 1/n or 1/m (the general sparse path is slower than POT
             there); else sparse (and, should it fail to
             certify, exact if the cost matrix fits ``memory_budget``, else
             ``WassersteinError``).  Never sliced.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import ot
from numpy.typing import ArrayLike

from . import _sparse_ot
from ._masses import check_masses
from .sphere import point_to_angle

__all__ = ["wasserstein", "cost_matrix", "WassersteinError", "WassersteinResult", "GROUNDS", "METHODS",
           "UNIT_NORM_TOL", "DEFAULT_TOLERANCE", "AUTO_EXACT_PAIRS"]

#: The ground costs of :func:`wasserstein`.
GROUNDS = ("geodesic", "chordal")
#: The solvers of :func:`wasserstein`.
METHODS = ("auto", "exact", "circle", "two_atom", "sparse", "sliced")
#: Relative bound on W_p that ``sparse`` certifies by default (and ``auto`` accepts).
DEFAULT_TOLERANCE = 1e-3
#: ``auto`` uses POT's dense exact solver up to n m = 2^20 pairs, ``sparse`` above.
AUTO_EXACT_PAIRS = 2**20
#: Points must have |x| within this of 1 (they are then retracted exactly onto the sphere).
UNIT_NORM_TOL = 1e-6
#: Stopping tolerance passed to POT's circle solver (on the cut theta, in turns).
CIRCLE_EPS = 1e-12
#: Bytes of temporaries allowed while building a cost matrix block.
_BLOCK_BYTES = 2**26


class WassersteinError(RuntimeError):
    """The optimal transport solver did not reach an optimal (or certified) solution."""


@dataclass(frozen=True)
class WassersteinResult:
    """A W_p value and how it was computed (``wasserstein(..., return_result=True)``).

    Attributes
    ----------
    value : float
        The number returned (radians).
    method : str
        The method that computed it (never ``auto``).
    bound : float
        An upper bound on |value - W_p| (radians): 0.0 for the exact methods (exact up to
        round-off), U^(1/p) - L^(1/p) for ``sparse`` (certificate), NaN for ``sliced`` (a
        different quantity; no bound on W_p).
    lower, upper : float
        The certified bracket lower <= W_p <= upper (radians); both equal to value for the
        exact methods, NaN for ``sliced``.
    """

    value: float
    method: str
    bound: float
    lower: float
    upper: float

    @property
    def relative_bound(self) -> float:
        """bound / value (0 when both are 0)."""
        if self.bound == 0:
            return 0.0
        return self.bound / self.value if self.value > 0 else math.inf


def _points(name, X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] < 2:
        raise ValueError(f"{name} must be a non-empty (n, d) array of points with d >= 2, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} must have finite entries")
    norms = np.linalg.norm(X, axis=1)
    worst = float(np.max(np.abs(norms - 1.0)))
    if worst > UNIT_NORM_TOL:
        raise ValueError(f"{name} must lie on the unit sphere (| |x| - 1 | <= {UNIT_NORM_TOL:g}), got {worst:.3g}")
    return np.ascontiguousarray(X / norms[:, None])


def cost_matrix(X: ArrayLike, Y: ArrayLike, ground: str = "geodesic") -> np.ndarray:
    """(n, m) ground distances (radians), float64 C-contiguous, built in row blocks.

    geodesic: 2 arcsin(|x - y| / 2) = arccos<x, y>, accurate for nearby points;
    chordal: |x - y|.  Differences are formed directly (not |x|^2 + |y|^2 - 2<x, y>),
    so coincident points give exactly 0.
    """
    if ground not in GROUNDS:
        raise ValueError(f"ground must be one of {', '.join(GROUNDS)}, got {ground!r}")
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n, m, d = len(X), len(Y), X.shape[1]
    C = np.empty((n, m))
    rows = max(1, _BLOCK_BYTES // (8 * max(1, m * d)))
    for start in range(0, n, rows):
        diff = X[start:start + rows, None, :] - Y[None, :, :]
        chord = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        if ground == "geodesic":
            C[start:start + rows] = 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))
        else:
            C[start:start + rows] = chord
    return C


def _exact(X, a, Y, b, p, ground, num_itermax):
    C = cost_matrix(X, Y, ground)
    if p != 1:
        C **= p
    n, m = C.shape
    budgets = [num_itermax] if num_itermax is not None else [max(10**6, 10 * n * m), max(10**8, 1000 * n * m)]
    log = None
    for budget in budgets:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="numItermax reached")
            cost, log = ot.emd2(a, b, C, numItermax=int(budget), log=True)
        if log.get("result_code") == 1 and not log.get("warning"):
            return float(cost) ** (1.0 / p)
    raise WassersteinError(
        f"exact optimal transport (ot.emd2, {n} x {m}) did not reach optimality "
        f"(numItermax = {int(budgets[-1])}): {log.get('warning')}"
    )


def _circle(X, a, Y, b, p):
    u = point_to_angle(X) / (2.0 * math.pi)
    v = point_to_angle(Y) / (2.0 * math.pi)
    cost = ot.wasserstein_circle(u, v, a, b, p=p, eps=CIRCLE_EPS)
    cost = float(np.asarray(cost).reshape(-1)[0])
    return 2.0 * math.pi * max(cost, 0.0) ** (1.0 / p)


def _two_atom(X, a, Y, b, p, ground):
    if len(Y) > 2:
        X, a, Y, b = Y, b, X, a
    if len(Y) > 2:
        raise ValueError(f"method \"two_atom\" needs a measure with at most 2 atoms, got {len(X)} and {len(Y)}")
    C = cost_matrix(X, Y, ground)
    if p != 1:
        C **= p
    if len(Y) == 1:
        cost = float(a @ C[:, 0])
    else:
        cost = _sparse_ot.two_atom_cost(C, a, b)
    return max(cost, 0.0) ** (1.0 / p)


def _power_tolerance(tolerance, p):
    """Relative gap on W_p^p that implies a relative gap <= tolerance on W_p: 1 - (1 - tol)^p."""
    return 1.0 - (1.0 - tolerance) ** p


def _assignment_counts(a, b):
    """Integer multiplicities (ca, cb) with a = ca / T, b = cb / T (T = n or m), or None."""
    for total in sorted({len(a), len(b)}):
        ca, cb = _sparse_ot.integer_counts(a, total), _sparse_ot.integer_counts(b, total)
        if ca is not None and cb is not None:
            return ca, cb
    return None


def _sparse(X, a, Y, b, p, ground, tolerance, seed):
    """(value, lower, upper) in radians, certified; raises WassersteinError when not."""
    geodesic = ground == "geodesic"
    tol_pp = _power_tolerance(tolerance, p)
    n, m = len(X), len(Y)
    counts = _assignment_counts(a, b)
    try:
        if counts is not None:
            Xe = X if np.all(counts[0] == 1) else np.repeat(X, counts[0], axis=0)
            Ye = Y if np.all(counts[1] == 1) else np.repeat(Y, counts[1], axis=0)
            res = _sparse_ot.sparse_assignment(Xe, Ye, geodesic, p, tol_pp, seed=seed)
        else:
            res = _sparse_ot.sparse_transport(X, a, Y, b, geodesic, p, tol_pp, seed=seed)
    except RuntimeError as err:
        raise WassersteinError(f"sparse optimal transport ({n} x {m}) failed: {err}") from err
    upper = max(res.upper, 0.0) ** (1.0 / p)
    lower = max(res.lower, 0.0) ** (1.0 / p)
    if upper - lower > tolerance * upper and res.upper - res.lower > 1e-12:
        raise WassersteinError(
            f"sparse optimal transport ({n} x {m}) certified only {lower:.6g} <= W_{p:g} <= {upper:.6g} "
            f"(relative gap {(upper - lower) / upper:.2e} > tolerance {tolerance:g}) after {res.rounds} rounds"
        )
    return upper, lower, upper


def _sliced(X, a, Y, b, p, ground, seed, n_projections):
    if ground == "geodesic":
        value = ot.sliced_wasserstein_sphere(X, Y, a, b, n_projections=n_projections, p=p, seed=seed)
        return 2.0 * math.pi * float(value)
    value = ot.sliced_wasserstein_distance(X, Y, a, b, n_projections=n_projections, p=p, seed=seed)
    return float(value)


def wasserstein(X: ArrayLike, a: ArrayLike | None, Y: ArrayLike, b: ArrayLike | None, p: float = 2,
                ground: str = "geodesic", method: str = "auto", *, seed: int = 0, n_projections: int = 200,
                memory_budget: int = 2**30, return_method: bool = False, num_itermax: int | None = None,
                tolerance: float = DEFAULT_TOLERANCE,
                return_result: bool = False) -> float | tuple[float, str] | WassersteinResult:
    """W_p between sum_i a_i delta_{x_i} and sum_j b_j delta_{y_j} on S^{d-1}, in radians.

    Parameters
    ----------
    X, Y : (n, d), (m, d) points on the unit sphere (| |x| - 1 | <= 1e-6; retracted).
    a, b : (n,), (m,) masses >= 0 with a positive total, or None (uniform); renormalised
        to sum 1.  Zero-mass atoms are dropped.
    p : float >= 1.
    ground : "geodesic" (arccos<x, y>) or "chordal" (|x - y|).
    method : "auto" | "exact" | "circle" | "two_atom" | "sparse" | "sliced" (module
        docstring).  "auto" never returns a sliced (different) number.
    seed, n_projections : the sliced estimate's random projections (seed also seeds the
        random candidate pairs of ``sparse``).
    memory_budget : bytes the exact method's cost matrix may take (``auto`` only).
    return_method : also return the method actually used.
    num_itermax : network-simplex iteration budget for ``exact``; default
        max(1e6, 10 n m), retried once at max(1e8, 1000 n m); an explicit value is tried
        once.  A non-optimal exit raises ``WassersteinError``.
    tolerance : relative bound on W_p that ``sparse`` must certify, in (0, 1); default 1e-3.
    return_result : return a :class:`WassersteinResult` (value, method, bound, lower, upper).

    Returns
    -------
    float; (float, method_used) with ``return_method=True``; a ``WassersteinResult`` with
    ``return_result=True``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if ground not in GROUNDS:
        raise ValueError(f"ground must be one of {', '.join(GROUNDS)}, got {ground!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not (
        math.isfinite(p) and p >= 1
    ):
        raise ValueError(f"p must be a number >= 1, got {p!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.integer, np.floating)) or not (
        0 < tolerance < 1
    ):
        raise ValueError(f"tolerance must be a number in (0, 1), got {tolerance!r}")
    p = float(p)
    tolerance = float(tolerance)
    X = _points("X", X)
    Y = _points("Y", Y)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same dimension, got {X.shape[1]} and {Y.shape[1]}")
    a = check_masses(a, len(X), "a", summary=None, normalise=True)
    b = check_masses(b, len(Y), "b", summary=None, normalise=True)
    keep_a, keep_b = a > 0, b > 0
    if not keep_a.all():
        X, a = np.ascontiguousarray(X[keep_a]), np.ascontiguousarray(a[keep_a])
    if not keep_b.all():
        Y, b = np.ascontiguousarray(Y[keep_b]), np.ascontiguousarray(b[keep_b])
    d = X.shape[1]
    n, m = len(X), len(Y)

    fallback = False
    if method == "auto":
        if d == 2 and ground == "geodesic":
            method = "circle"
        elif min(n, m) <= 2:
            method = "two_atom"
        elif 8 * n * m <= memory_budget and (n * m <= AUTO_EXACT_PAIRS or _assignment_counts(a, b) is None):
            method = "exact"
        else:
            method = "sparse"
            fallback = 8 * n * m <= memory_budget
    lower = upper = None
    if method == "circle":
        if d != 2:
            raise ValueError(f"method \"circle\" needs d = 2 (points on S^1), got d = {d}")
        if ground != "geodesic":
            raise ValueError("method \"circle\" computes the geodesic (arc length) W_p only; "
                             "use method \"exact\" or \"auto\" for the chordal ground cost")
        value = _circle(X, a, Y, b, p)
    elif method == "two_atom":
        value = _two_atom(X, a, Y, b, p, ground)
    elif method == "sparse":
        try:
            value, lower, upper = _sparse(X, a, Y, b, p, ground, tolerance, int(seed))
        except WassersteinError:
            if not fallback:
                raise
            method = "exact"
            value = _exact(X, a, Y, b, p, ground, num_itermax)
    elif method == "exact":
        value = _exact(X, a, Y, b, p, ground, num_itermax)
    else:
        value = _sliced(X, a, Y, b, p, ground, seed, int(n_projections))
    if return_result:
        if method == "sliced":
            result = WassersteinResult(value, method, math.nan, math.nan, math.nan)
        elif method == "sparse":
            result = WassersteinResult(value, method, upper - lower, lower, upper)
        else:
            result = WassersteinResult(value, method, 0.0, value, value)
        return result
    return (value, method) if return_method else value
