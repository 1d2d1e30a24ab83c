"""Wasserstein distances between discrete measures on the sphere, via POT (the only POT user).

    W_p(mu, nu) = ( min_{pi in Pi(a, b)} sum_ij pi_ij c(x_i, y_j)^p )^(1/p)

with ground distance c the geodesic one, arccos<x, y> (``ground="geodesic"``, computed
stably as 2 arcsin(|x - y| / 2)), or the chordal one |x - y| (``ground="chordal"``).
Every value is in radians (chordal: in units of the sphere's radius, which is 1).

Methods (docs/analysis.md):

``exact``   ot.emd2 on the (n, m) cost matrix c^p built here (float64, C-contiguous);
            O(n m) memory.  A non-optimal exit of the network simplex is retried with
            100x the iteration budget and then raised as ``WassersteinError``.
``circle``  d = 2, geodesic ground only: POT's exact circle solver
            (``ot.wasserstein_circle``, binary search on the cut, eps = 1e-12) on the
            angles in turns u = theta / (2 pi); it returns W_p^p in turns^p, which is
            converted back: W = 2 pi (cost)^(1/p).  O((n + m) log(n + m)) per iteration.
``sliced``  geodesic ground: POT's spherical sliced Wasserstein
            (``ot.sliced_wasserstein_sphere``: random great circles, each measure
            projected by x -> U^T x / |U^T x|, circle W_p^p averaged), converted from
            turns to radians (times 2 pi); chordal ground: POT's Euclidean sliced
            Wasserstein (``ot.sliced_wasserstein_distance``, random lines in R^d).  Both
            are seeded Monte-Carlo estimates of a *different*, smaller number than W_p.
``auto``    circle when d = 2 with geodesic ground; else exact when the n * m * 8-byte
            cost matrix fits in ``memory_budget``; else sliced.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import ot

from ._masses import check_masses
from .sphere import point_to_angle

__all__ = ["wasserstein", "cost_matrix", "WassersteinError", "GROUNDS", "METHODS", "UNIT_NORM_TOL"]

#: The ground costs of :func:`wasserstein`.
GROUNDS = ("geodesic", "chordal")
#: The solvers of :func:`wasserstein`.
METHODS = ("auto", "exact", "circle", "sliced")
#: Points must have |x| within this of 1 (they are then retracted exactly onto the sphere).
UNIT_NORM_TOL = 1e-6
#: Stopping tolerance passed to POT's circle solver (on the cut theta, in turns).
CIRCLE_EPS = 1e-12
#: Bytes of temporaries allowed while building a cost matrix block.
_BLOCK_BYTES = 2**26


class WassersteinError(RuntimeError):
    """The optimal transport solver did not reach an optimal solution."""


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


def cost_matrix(X, Y, ground: str = "geodesic") -> np.ndarray:
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


def _sliced(X, a, Y, b, p, ground, seed, n_projections):
    if ground == "geodesic":
        value = ot.sliced_wasserstein_sphere(X, Y, a, b, n_projections=n_projections, p=p, seed=seed)
        return 2.0 * math.pi * float(value)
    value = ot.sliced_wasserstein_distance(X, Y, a, b, n_projections=n_projections, p=p, seed=seed)
    return float(value)


def wasserstein(X, a, Y, b, p=2, ground="geodesic", method="auto", *, seed=0, n_projections=200,
                memory_budget=2**30, return_method=False, num_itermax=None):
    """W_p between sum_i a_i delta_{x_i} and sum_j b_j delta_{y_j} on S^{d-1}, in radians.

    Parameters
    ----------
    X, Y : (n, d), (m, d) points on the unit sphere (| |x| - 1 | <= 1e-6; retracted).
    a, b : (n,), (m,) masses >= 0 with a positive total, or None (uniform); renormalised
        to sum 1.  Zero-mass atoms are dropped.
    p : float >= 1.
    ground : "geodesic" (arccos<x, y>) or "chordal" (|x - y|).
    method : "auto" | "exact" | "circle" | "sliced" (module docstring).
    seed, n_projections : the sliced estimate's random projections.
    memory_budget : bytes the exact method's cost matrix may take (``auto`` only).
    return_method : also return the method actually used.
    num_itermax : network-simplex iteration budget for ``exact``; default
        max(1e6, 10 n m), retried once at max(1e8, 1000 n m); an explicit value is tried
        once.  A non-optimal exit raises ``WassersteinError``.

    Returns
    -------
    float, or (float, method_used) with ``return_method=True``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if ground not in GROUNDS:
        raise ValueError(f"ground must be one of {', '.join(GROUNDS)}, got {ground!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not (
        math.isfinite(p) and p >= 1
    ):
        raise ValueError(f"p must be a number >= 1, got {p!r}")
    p = float(p)
    X = _points("X", X)
    Y = _points("Y", Y)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X and Y must have the same dimension, got {X.shape[1]} and {Y.shape[1]}")
    a = check_masses(a, len(X), "a", summary=None, normalise=True)
    b = check_masses(b, len(Y), "b", summary=None, normalise=True)
    keep_a, keep_b = a > 0, b > 0
    X, a = np.ascontiguousarray(X[keep_a]), np.ascontiguousarray(a[keep_a])
    Y, b = np.ascontiguousarray(Y[keep_b]), np.ascontiguousarray(b[keep_b])
    d = X.shape[1]

    if method == "auto":
        if d == 2 and ground == "geodesic":
            method = "circle"
        elif 8 * len(X) * len(Y) <= memory_budget:
            method = "exact"
        else:
            method = "sliced"
    if method == "circle":
        if d != 2:
            raise ValueError(f"method \"circle\" needs d = 2 (points on S^1), got d = {d}")
        if ground != "geodesic":
            raise ValueError("method \"circle\" computes the geodesic (arc length) W_p only; "
                             "use method \"exact\" or \"auto\" for the chordal ground cost")
        value = _circle(X, a, Y, b, p)
    elif method == "exact":
        value = _exact(X, a, Y, b, p, ground, num_itermax)
    else:
        value = _sliced(X, a, Y, b, p, ground, seed, int(n_projections))
    return (value, method) if return_method else value
