"""The zero-temperature limit: the projection Pi, the limit measure Pi#rho_0, the exact flow.

docs/theory.md sections 3 and 4.  With A = V B^T, E is the invariant subspace of A for the
eigenvalues of largest real part and P_E the spectral projector onto E along the other
invariant subspaces (orthogonal when A is normal, e.g. symmetric).  Then

    Pi(x) = P_E x / |P_E x|,

undefined (a NaN row) where P_E x = 0.  The zero-temperature flow sends x_0 to Pi(x_0) as
t -> infinity when the dominant eigenvalues are real; when they are complex the tokens
collapse onto the great subsphere E cap S^{d-1} but keep rotating there, and only the
distance to that subsphere (``distance_to_subspace``) is meaningful.

Numerical choices (docs/analysis.md):

* Dominant eigenvalues: those whose real part lies within
  ``tol * max(1, |lambda_max|)`` of the largest real part (``DOMINANT_RTOL`` = 1e-8),
  where lambda_max is an eigenvalue of largest real part.  Near-degenerate eigenvalues
  therefore count as one dominant group instead of flipping with round-off.
* E comes from an ordered real Schur form A = Z T Z^T (``scipy.linalg.schur`` with a sort
  callable): the first k Schur vectors are an orthonormal basis of E.  The complementary
  invariant subspace F is Z [X; I] with T11 X - X T22 = -T12 (a Sylvester equation), which
  gives P_E = Z1 (Z1^T - X Z2^T): P_E is idempotent, commutes with A, and equals
  [E 0][E F]^{-1} without inverting an ill-conditioned eigenvector matrix.
* Pi(x) is NaN where |P_E x| <= ``ZERO_TOL`` * ||P_E||_2 * |x| (``ZERO_TOL`` = 1e-10,
  well above the round-off of P_E x).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
import scipy.linalg
from scipy.integrate import solve_ivp
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ._masses import check_masses
from .model import Model

__all__ = [
    "ComplexDominantWarning",
    "DOMINANT_RTOL",
    "ZERO_TOL",
    "MERGE_TOL",
    "SpectralSplit",
    "spectral_split",
    "dominant_subspace",
    "spectral_projector",
    "limit_map",
    "limit_measure",
    "distance_to_subspace",
    "zero_temperature_flow",
]

#: Eigenvalues whose real part is within DOMINANT_RTOL * max(1, |lambda_max|) of the
#: largest real part are dominant.
DOMINANT_RTOL = 1e-8
#: Pi(x) is undefined (NaN) where |P_E x| <= ZERO_TOL * ||P_E||_2 * |x|.
ZERO_TOL = 1e-10
#: limit_measure merges atoms of Pi#rho closer than this chordal distance (~radians).
MERGE_TOL = 1e-10


class ComplexDominantWarning(UserWarning):
    """The dominant eigenvalues of A are complex: tokens keep rotating on E cap S^{d-1}.

    Pi#rho_0 is then not the limit of the flow; use ``distance_to_subspace`` (the
    ``dist_to_subspace`` diagnostic) instead of the distance to Pi#rho_0.
    """


@dataclass(frozen=True, eq=False)
class SpectralSplit:
    """The splitting R^d = E + F of A into its dominant and complementary invariant subspaces.

    basis: (d, k) orthonormal basis of E (leading Schur vectors).
    eigenvalues: (k,) complex, the dominant eigenvalues.
    is_complex: True when some dominant eigenvalue has a nonzero imaginary part.
    projector: (d, d) spectral projector P_E onto E along F.
    orthogonal_projector: (d, d) orthogonal projector onto E (basis basis^T).
    """

    basis: np.ndarray
    eigenvalues: np.ndarray
    is_complex: bool
    projector: np.ndarray
    orthogonal_projector: np.ndarray

    @property
    def dim(self) -> int:
        return self.basis.shape[1]


def _matrix_of(model) -> np.ndarray:
    """A = V B^T of a Model, or a square matrix passed directly."""
    A = getattr(model, "A", model)
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"expected a Model or a square matrix A, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError("the matrix A = V B^T must have finite entries")
    return A


def spectral_split(model: Model | ArrayLike, tol: float = DOMINANT_RTOL) -> SpectralSplit:
    """Dominant invariant subspace E of A = V B^T and the spectral projector onto it.

    ``model`` is a Model (its ``A``) or a square matrix.  See the module docstring for
    the tolerance and the construction.
    """
    A = _matrix_of(model)
    d = A.shape[0]
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    eig = scipy.linalg.eigvals(A)
    top = eig[np.argmax(eig.real)]
    threshold = top.real - tol * max(1.0, abs(top))

    def dominant(re, im=None):  # scipy calls it with (re, im) for output="real"
        return re >= threshold

    T, Z, k = scipy.linalg.schur(A, output="real", sort=dominant)
    if not 1 <= k <= d:  # pragma: no cover - schur guarantees the top eigenvalue is kept
        raise RuntimeError(f"Schur reordering selected {k} dominant eigenvalues of a {d} x {d} matrix")
    Z1, Z2 = Z[:, :k], Z[:, k:]
    if k < d:
        X = scipy.linalg.solve_sylvester(T[:k, :k], -T[k:, k:], -T[:k, k:])
        P = Z1 @ (Z1.T - X @ Z2.T)
    else:
        P = np.eye(d)
    dominant_eigs = eig[eig.real >= threshold]
    # Order: by decreasing real part, conjugate pairs together.
    dominant_eigs = dominant_eigs[np.lexsort((dominant_eigs.imag, -dominant_eigs.real))]
    is_complex = bool(np.any(np.abs(dominant_eigs.imag) > tol * max(1.0, abs(top))))
    for mat in (Z1, P):
        mat.setflags(write=False)
    Porth = Z1 @ Z1.T
    Porth.setflags(write=False)
    return SpectralSplit(np.ascontiguousarray(Z1), dominant_eigs, is_complex, P, Porth)


def dominant_subspace(model: Model | ArrayLike, tol: float = DOMINANT_RTOL) -> tuple[np.ndarray, np.ndarray, bool]:
    """(basis (d, k) orthonormal, eigenvalues (k,) complex, is_complex) of A = V B^T."""
    split = spectral_split(model, tol)
    return split.basis, split.eigenvalues, split.is_complex


def spectral_projector(model: Model | ArrayLike, tol: float = DOMINANT_RTOL) -> np.ndarray:
    """The (d, d) spectral projector P_E onto the dominant subspace along the others."""
    return spectral_split(model, tol).projector


def _warn_complex(split: SpectralSplit, stacklevel: int = 3):
    if split.is_complex:
        warnings.warn(
            "the dominant eigenvalues of A = V B^T are complex "
            f"({', '.join(f'{z:.6g}' for z in split.eigenvalues)}): tokens keep rotating on "
            "E cap S^{d-1}, so Pi#rho_0 is not the zero-temperature limit; "
            "use distance_to_subspace (diagnostic dist_to_subspace) instead",
            ComplexDominantWarning,
            stacklevel=stacklevel,
        )


def _as_points(X, d) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"points must be an (N, {d}) array, got shape {X.shape}")
    return X


def _project(split: SpectralSplit, X: np.ndarray) -> np.ndarray:
    Y = X @ split.projector.T
    norms = np.linalg.norm(Y, axis=1)
    scale = ZERO_TOL * np.linalg.norm(split.projector, 2) * np.linalg.norm(X, axis=1)
    bad = ~(norms > scale)  # also catches NaN input
    with np.errstate(invalid="ignore", divide="ignore"):
        Y = Y / norms[:, None]
    Y[bad] = np.nan
    return Y


def limit_map(model: Model, X: ArrayLike, *, tol: float = DOMINANT_RTOL) -> np.ndarray:
    """Pi(x) = P_E x / |P_E x| row by row, shape (N, d); NaN rows where P_E x ~ 0.

    Warns ``ComplexDominantWarning`` when the dominant eigenvalues are complex.
    """
    split = spectral_split(model, tol)
    _warn_complex(split)
    return _project(split, _as_points(X, split.projector.shape[0]))


def _merge_atoms(points: np.ndarray, weights: np.ndarray, merge_tol: float):
    """Merge atoms within merge_tol (chordal) of each other (single linkage).

    Each merged atom sits at the first member (in input order) of its group.
    """
    n = len(points)
    if n <= 1 or merge_tol <= 0:
        return points, weights
    pairs = cKDTree(points).query_pairs(merge_tol, output_type="ndarray")
    if len(pairs) == 0:
        return points, weights
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_groups, labels = connected_components(graph, directed=False)
    first = np.full(n_groups, n)
    np.minimum.at(first, labels, np.arange(n))
    order = np.argsort(first)  # groups by first occurrence
    rank = np.empty(n_groups, dtype=np.intp)
    rank[order] = np.arange(n_groups)
    merged_w = np.bincount(rank[labels], weights=weights, minlength=n_groups)
    return points[first[order]], merged_w


def limit_measure(model: Model, X: ArrayLike, weights: ArrayLike | None = None, *, tol: float = DOMINANT_RTOL, merge_tol: float = MERGE_TOL,
                  return_dropped: bool = False) -> tuple:
    """The push-forward Pi#(sum_i w_i delta_{x_i}) as (points (L, d), weights (L,)).

    weights default to 1/N and are renormalised to sum 1.  Rows where Pi is undefined
    (P_E x ~ 0) are dropped and the rest renormalised; a ``RuntimeWarning`` names the
    dropped mass fraction (returned as a third value with ``return_dropped=True``).
    Atoms closer than ``merge_tol`` (chordal) are merged; for dim E = 1 the result has
    at most two atoms, +e and -e, placed exactly.  Raises ``ValueError`` when Pi is
    undefined on all the mass.
    """
    split = spectral_split(model, tol)
    _warn_complex(split)
    d = split.projector.shape[0]
    X = _as_points(X, d)
    n = len(X)
    if n == 0:
        raise ValueError("limit_measure needs at least one point")
    w = check_masses(weights, n, "weights", summary="{name} must be finite, >= 0, with a positive sum", normalise=True)
    Y = _project(split, X)
    ok = ~np.isnan(Y).any(axis=1) & (w > 0)
    dropped = float(w[~ok & (w > 0)].sum())
    if not np.any(ok):
        raise ValueError("the limit map Pi is undefined (P_E x = 0) on all points carrying mass")
    if dropped > 0:
        warnings.warn(
            f"limit_measure: Pi is undefined on a fraction {dropped:.3g} of the mass "
            "(P_E x = 0); dropped and renormalised",
            RuntimeWarning,
            stacklevel=2,
        )
    Y, w = Y[ok], w[ok]
    w = w / w.sum()
    if split.dim == 1:
        e = split.basis[:, 0]
        sign = np.sign(Y @ e)
        pts, ws = [], []
        for s in (1.0, -1.0):
            mass = w[sign == s].sum()
            if mass > 0:
                pts.append(s * e)
                ws.append(mass)
        points, weights_out = np.array(pts), np.array(ws)
    else:
        points, weights_out = _merge_atoms(Y, w, merge_tol)
    points = np.ascontiguousarray(points)
    if return_dropped:
        return points, weights_out, dropped
    return points, weights_out


def distance_to_subspace(model: Model, X: ArrayLike, *, tol: float = DOMINANT_RTOL) -> np.ndarray:
    """Geodesic distance (radians) from each x to the great subsphere E cap S^{d-1}, shape (N,).

    With the *orthogonal* projector P onto E this is arccos(|P x| / |x|), computed as
    arctan2(|x - P x|, |P x|), which is accurate at both ends (0 on E, pi/2 on E^perp).
    Meaningful also when the dominant eigenvalues are complex (no warning).
    """
    split = spectral_split(model, tol)
    X = _as_points(X, split.projector.shape[0])
    PX = X @ split.orthogonal_projector
    return np.arctan2(np.linalg.norm(X - PX, axis=1), np.linalg.norm(PX, axis=1))


def zero_temperature_flow(model: Model, X0: ArrayLike, t: float | ArrayLike, *, rtol: float = 1e-10, atol: float = 1e-12) -> np.ndarray:
    """The beta = inf continuum trajectory x(t) of docs/theory.md section 3 from X0 (N, d).

    ``t`` a number gives (N, d); a 1-D array of times gives (T, N, d).

    * B = c I (c != 0; B = I in particular): exact,
      x(t) = exp(A t / |c|) x0 / |exp(A t / |c|) x0|, with expm of the shifted matrix
      (A - mu I) t / |c| (mu the largest real part of an eigenvalue) so that large t
      does not overflow; the shift cancels in the normalisation.
    * general B: integrates dx/dt = P_x A x / |B^T x| with scipy's DOP853 (rtol, atol),
      then retracts onto the sphere.  Raises ``ValueError`` if B^T x0 = 0 for some row
      (the field is undefined there).
    """
    A = _matrix_of(model)
    B = np.asarray(getattr(model, "B", np.eye(A.shape[0])), dtype=np.float64)
    d = A.shape[0]
    X0 = _as_points(X0, d)
    norms0 = np.linalg.norm(X0, axis=1)
    if np.any(~(norms0 > 0)):
        raise ValueError("zero_temperature_flow: X0 rows must be nonzero and finite")
    X0 = X0 / norms0[:, None]
    times = np.asarray(t, dtype=np.float64)
    scalar = times.ndim == 0
    times = np.atleast_1d(times)
    if times.ndim != 1 or not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError(f"t must be a finite time >= 0 or a 1-D array of them, got {t!r}")
    c = B[0, 0]
    if c != 0 and np.array_equal(B, c * np.eye(d)):
        mu = float(np.max(scipy.linalg.eigvals(A).real))
        out = np.empty((len(times), len(X0), d))
        for i, s in enumerate(times / abs(c)):
            Z = X0 @ scipy.linalg.expm((A - mu * np.eye(d)) * s).T
            out[i] = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    else:
        if np.any(np.linalg.norm(X0 @ B, axis=1) == 0):
            raise ValueError("zero_temperature_flow: B^T x0 = 0 for some row; the beta = inf field is undefined there")
        n = len(X0)

        def rhs(_, y):
            x = y.reshape(n, d)
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
            ax = x @ A.T
            v = ax - np.sum(ax * x, axis=1, keepdims=True) * x
            return (v / np.linalg.norm(x @ B, axis=1, keepdims=True)).ravel()

        if times.max() == 0:
            out = np.broadcast_to(X0, (len(times), n, d)).copy()
            return out[0] if scalar else out
        order = np.argsort(times)
        sol = solve_ivp(rhs, (0.0, float(times.max())), X0.ravel(), method="DOP853",
                        t_eval=times[order], rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"zero_temperature_flow: integration failed: {sol.message}")
        out = np.empty((len(times), n, d))
        out[order] = sol.y.T.reshape(len(times), n, d)
        out /= np.linalg.norm(out, axis=2, keepdims=True)
    return out[0] if scalar else out
