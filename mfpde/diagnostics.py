"""Scalar diagnostics of a state (points with masses), registered by name.

Each diagnostic is ``fn(points (n, d), weights (n,), context) -> float`` (``fourier_modes``
returns an array of K floats, see below).  ``REGISTRY`` maps the names accepted in
``output.diagnostics`` to them.  The runner builds one ``context`` per run with
``make_context(model, initial_points, initial_weights, ...)`` -- it computes the limit
measure Pi#rho_0 once -- and calls ``evaluate(names, points, weights, context)`` at every
snapshot, which returns a flat ``{name: float}`` dict.  ``output_names(names, context)``
lists the keys ``evaluate`` will return (to create the HDF5 datasets up front).

Vector-valued diagnostics: ``fourier_modes`` expands to ``fourier_mode_1`` ..
``fourier_mode_K`` (K = ``context.fourier_max_mode``).  Mesh states are points (cell
centers) with weights (cell masses).  Formulas, units and thresholds: docs/analysis.md.
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
from numpy.typing import ArrayLike
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .limit import distance_to_subspace, limit_measure, spectral_split
from .model import Model
from .options import WassersteinOptions
from .distances import wasserstein

from .kernels import make_attention

__all__ = [
    "REGISTRY",
    "Diagnostic",
    "DiagnosticContext",
    "make_context",
    "evaluate",
    "output_names",
    "validate_names",
    "mass",
    "min_mass",
    "energy",
    "w_to_limit",
    "w_to_limit_attrs",
    "dist_to_subspace",
    "n_clusters",
    "clustered_fraction",
    "clustered_fractions",
    "fourier_modes",
    "circle_clusters",
    "EnsembleContext",
    "make_ensemble_context",
]


@dataclass(frozen=True, eq=False)
class DiagnosticContext:
    """Everything a diagnostic needs besides the state; build it with ``make_context``.

    limit_points, limit_weights: Pi#rho_0 from the initial state (computed once).
    limit_dropped_mass: mass of rho_0 on which Pi is undefined (dropped, renormalised).
    limit_is_complex: the dominant eigenvalues of A are complex (w_to_limit then is not
    the distance to a limit; use dist_to_subspace).
    """

    model: object
    limit_points: np.ndarray
    limit_weights: np.ndarray
    limit_dropped_mass: float
    limit_is_complex: bool
    wasserstein_options: WassersteinOptions = field(default_factory=WassersteinOptions)
    wasserstein_seed: int = 0
    n_projections: int = 200
    memory_budget: int = 2**30
    n_clusters_angle: float = 0.1
    cluster_threshold: float = 0.05
    cluster_min_mass: float = 0.01
    #: clustered_fraction: pairs with <x_i, x_j> >= 1 - cluster_delta are clustered.
    cluster_delta: float = 1e-3
    fourier_max_mode: int = 8
    cell_areas: np.ndarray | None = None
    #: WassersteinResult of every w_to_limit evaluation, in order (what the runner stores).
    w_results: list = field(default_factory=list)

    @functools.cached_property
    def attention(self):
        """The model's exact attention kernel (``make_attention``), built on first use."""
        return make_attention(self.model)


def make_context(model: Model | ArrayLike, initial_points: ArrayLike, initial_weights: ArrayLike | None = None,
                 wasserstein_options: WassersteinOptions | None = None, *,
                 n_clusters_angle: float = 0.1, cluster_threshold: float = 0.05,
                 cluster_min_mass: float = 0.01, fourier_max_mode: int = 8, wasserstein_seed: int = 0,
                 n_projections: int = 200, memory_budget: int = 2**30,
                 cell_areas: ArrayLike | None = None, cluster_delta: float = 1e-3) -> DiagnosticContext:
    """The context of a run: the model, Pi#rho_0 of the initial state, options, thresholds.

    ``cell_areas`` (M,): the cell areas of a mesh state (finite volumes), so that
    ``n_clusters`` compares densities (mass / area); None for particle states.
    ``cluster_delta`` in (0, 2): the threshold of ``clustered_fraction`` (``output.cluster_delta``).

    Warns ``ComplexDominantWarning`` (from ``limit_measure``) when the dominant eigenvalues
    of A are complex, and ``RuntimeWarning`` when Pi is undefined on part of rho_0.
    """
    if wasserstein_options is None:
        wasserstein_options = WassersteinOptions()
    if not (isinstance(n_clusters_angle, numbers.Real) and 0 < n_clusters_angle <= math.pi):
        raise ValueError(f"n_clusters_angle must be in (0, pi] radians, got {n_clusters_angle!r}")
    if not (isinstance(fourier_max_mode, numbers.Integral) and not isinstance(fourier_max_mode, bool) and fourier_max_mode >= 1):
        raise ValueError(f"fourier_max_mode must be an integer >= 1, got {fourier_max_mode!r}")
    for name, value in (("cluster_threshold", cluster_threshold), ("cluster_min_mass", cluster_min_mass)):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < 1):
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    _check_delta(cluster_delta)
    if cell_areas is not None:
        cell_areas = np.asarray(cell_areas, dtype=np.float64)
        if cell_areas.ndim != 1 or not np.all(np.isfinite(cell_areas)) or not np.all(cell_areas > 0):
            raise ValueError("cell_areas must be a 1-d array of finite areas > 0")
    split = spectral_split(model)
    pts, w, dropped = limit_measure(model, initial_points, initial_weights, return_dropped=True)
    return DiagnosticContext(
        model=model,
        limit_points=pts,
        limit_weights=w,
        limit_dropped_mass=dropped,
        limit_is_complex=split.is_complex,
        wasserstein_options=wasserstein_options,
        wasserstein_seed=int(wasserstein_seed),
        n_projections=int(n_projections),
        memory_budget=int(memory_budget),
        n_clusters_angle=float(n_clusters_angle),
        cluster_threshold=float(cluster_threshold),
        cluster_min_mass=float(cluster_min_mass),
        fourier_max_mode=int(fourier_max_mode),
        cell_areas=cell_areas,
        cluster_delta=float(cluster_delta),
    )


def _check_delta(delta) -> float:
    if not (isinstance(delta, numbers.Real) and not isinstance(delta, bool) and 0 < delta < 2):
        raise ValueError(f"cluster_delta must be a number in (0, 2), got {delta!r}")
    return float(delta)


# --------------------------------------------------------------------------- diagnostics


def mass(points: ArrayLike, weights: ArrayLike, context: DiagnosticContext) -> float:
    """Total mass sum_j m_j (1 to round-off for a conservative solver)."""
    return float(np.sum(weights))


def min_mass(points: ArrayLike, weights: ArrayLike, context: DiagnosticContext) -> float:
    """Smallest atom / cell mass min_j m_j (>= 0 for a positivity-preserving solver)."""
    return float(np.min(weights))


def _max_score(model, X, chunk=1024) -> float:
    best = -np.inf
    XB = X @ model.B  # rows (B^T x_i)^T, so XB @ X.T holds <x_i, B x_j> = <Q x_i, K x_j>
    for s in range(0, len(X), chunk):
        best = max(best, float((XB[s:s + chunk] @ X.T).max()))
    return best


def energy(points: ArrayLike, weights: ArrayLike, context: DiagnosticContext) -> float:
    """E = (1/beta) log int int exp(beta <Q x, K y>) drho(x) drho(y), for both normalizations.

    Computed as (1/beta) log sum_i m_i exp(log Z_i), log Z_i = log sum_j m_j e^{beta s_ij}
    (online log-sum-exp, no overflow).  Limits: beta = 0 gives int int <Qx, Ky> =
    <Q m, K m> with m = int x drho (the mean); beta = inf gives max <Q x_i, K x_j> over
    the support.  For USA the classical energy (1/(2 beta)) int int e^{beta s} equals
    exp(beta E) / (2 beta), a monotone function of E.  Dimensionless (units of <Qx, Ky>).
    """
    model = context.model
    m = np.asarray(weights, dtype=np.float64)
    X = np.asarray(points, dtype=np.float64)
    keep = m > 0
    X, m = np.ascontiguousarray(X[keep]), m[keep] / m[keep].sum()
    beta = model.beta
    if beta == 0:
        mean = m @ X
        return float(mean @ model.B @ mean)
    if math.isinf(beta):
        return _max_score(model, X)
    logz = context.attention.log_partition(X, X, m)
    terms = np.log(m) + logz
    top = terms.max()
    return float((top + np.log(np.exp(terms - top).sum())) / beta)


def w_to_limit(points: ArrayLike, weights: ArrayLike, context: DiagnosticContext) -> float:
    """W_p(rho, Pi#rho_0) in radians with the context's wasserstein options.

    (p, ground, method, tolerance).  The full ``WassersteinResult`` (method used, certified
    bound) is appended to ``context.w_results``; ``w_to_limit_attrs`` summarises them.
    """
    opts = context.wasserstein_options
    result = wasserstein(
        points, weights, context.limit_points, context.limit_weights,
        p=opts.p, ground=opts.ground, method=opts.method, seed=context.wasserstein_seed,
        n_projections=context.n_projections, memory_budget=context.memory_budget,
        tolerance=opts.tolerance, return_result=True,
    )
    context.w_results.append(result)
    return float(result.value)


def w_to_limit_attrs(context: DiagnosticContext, previous: dict | None = None) -> dict:
    """Attributes describing a w_to_limit series (docs/hdf5.md), from ``context.w_results``.

    ``previous``: the attributes already stored (a resumed run); methods are merged and the
    bounds are the maxima over both.  Keys: method (the methods used, comma-separated, e.g.
    "sparse"), method_requested, p, ground, tolerance, bound (largest |value - W_p| bound
    over the series, radians; NaN if a sliced value is in it), relative_bound (largest
    bound / value).
    """
    opts = context.wasserstein_options
    methods = set()
    bound = rel = 0.0
    prev = dict(previous or {})
    if prev.get("method"):
        methods.update(str(prev["method"]).split(","))
        bound, rel = float(prev.get("bound", 0.0)), float(prev.get("relative_bound", 0.0))
    for r in context.w_results:
        methods.add(r.method)
        if math.isnan(r.bound) or math.isnan(bound):
            bound = rel = math.nan
        else:
            bound = max(bound, r.bound)
            rel = max(rel, r.relative_bound)
    return {
        "method": ",".join(sorted(methods)),
        "method_requested": opts.method,
        "p": float(opts.p),
        "ground": opts.ground,
        "tolerance": float(opts.tolerance),
        "bound": float(bound),
        "relative_bound": float(rel),
    }


def dist_to_subspace(points: ArrayLike, weights: ArrayLike, context: DiagnosticContext) -> float:
    """Mass-weighted mean geodesic distance (radians) to E cap S^{d-1}: sum_j m_j dist(x_j) / sum m."""
    dist = distance_to_subspace(context.model, points)
    w = np.asarray(weights, dtype=np.float64)
    return float(w @ dist / w.sum())


def n_clusters(points: ArrayLike, weights: ArrayLike, context: DiagnosticContext) -> float:
    """Number of clusters carrying mass.

    An atom's density is its mass divided by its cell's area for a mesh state
    (``context.cell_areas``), its mass for particles.  Atoms whose density is below
    ``cluster_threshold`` times the largest density of the state are ignored (the thin
    cells between the clusters of a mesh state; equal-mass particles are never dropped);
    the rest are linked when their geodesic distance is <= ``n_clusters_angle`` (chordal
    2 sin(angle / 2), cKDTree pairs) and the connected components (single linkage) are the
    clusters; those with a mass fraction >= ``cluster_min_mass`` are counted.
    """
    X = np.asarray(points, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum()
    density = w
    areas = context.cell_areas
    if areas is not None and areas.shape == w.shape:
        density = w / areas
    keep = (w > 0) & (density >= context.cluster_threshold * density.max())
    X, w = X[keep], w[keep]
    n = len(X)
    if n == 0:
        return 0.0
    radius = 2.0 * math.sin(context.n_clusters_angle / 2.0)
    pairs = cKDTree(X).query_pairs(radius, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_comp, labels = connected_components(graph, directed=False)
    cluster_mass = np.bincount(labels, weights=w, minlength=n_comp) / total
    return float(np.count_nonzero(cluster_mass >= context.cluster_min_mass))


#: clustered_fractions holds at most about this many Gram entries at once (S n^2 floats).
GRAM_CHUNK = 2**24


def clustered_fractions(points: ArrayLike, weights: ArrayLike, delta: float) -> np.ndarray:
    r"""(S,) clustered fraction of each of S systems: points (S, n, d), weights (S, n).

    f_s = sum_{i != j} m_i m_j 1[<x_i, x_j> >= 1 - delta] / sum_{i != j} m_i m_j, the
    mass-weighted fraction of ordered pairs of distinct atoms whose inner product is at
    least 1 - delta (geodesic distance <= arccos(1 - delta), ~ sqrt(2 delta) rad).  For
    equal masses: the fraction of the n (n - 1) ordered pairs.  Dimensionless, in [0, 1];
    1.0 when there is no pair of positive mass (n = 1, or one atom of positive mass).

    One Gram matrix per system (``np.matmul`` on (S, n, n)), computed for about
    ``GRAM_CHUNK`` // n^2 systems at a time (memory: that many n x n float64 matrices).
    A system's value does not depend on the others or on the chunking.
    """
    X = np.asarray(points, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if X.ndim != 3 or w.shape != X.shape[:2]:
        raise ValueError(f"expected points (S, n, d) and weights (S, n), got {X.shape} and {w.shape}")
    level = 1.0 - _check_delta(delta)
    S, n, _ = X.shape
    out = np.ones(S)
    if n < 2 or S == 0:
        return out
    step = max(1, GRAM_CHUNK // (n * n))
    diag = np.arange(n)

    def pair_mass(mask, ws):  # sum_{i, j} m_i m_j mask_ij per system
        return np.einsum("si,si->s", ws, np.matmul(mask.astype(np.float64), ws[:, :, None])[:, :, 0])

    for s0 in range(0, S, step):
        Xs, ws = X[s0:s0 + step], w[s0:s0 + step]
        close = np.matmul(Xs, Xs.transpose(0, 2, 1)) >= level
        far = ~close
        close[:, diag, diag] = far[:, diag, diag] = False
        num, rest = pair_mass(close, ws), pair_mass(far, ws)
        den = num + rest  # sum_{i != j} m_i m_j, summed so that all-close gives exactly 1, none exactly 0
        out[s0:s0 + step] = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    return out


def clustered_fraction(points: ArrayLike, weights: ArrayLike, context: DiagnosticContext) -> float | np.ndarray:
    r"""Mass-weighted fraction of ordered pairs i != j with <x_i, x_j> >= 1 - delta.

    sum_{i != j} m_i m_j 1[<x_i, x_j> >= 1 - delta] / sum_{i != j} m_i m_j with
    delta = ``context.cluster_delta`` (``output.cluster_delta``, default 1e-3).
    Dimensionless, in [0, 1]; 1.0 for n = 1 (no pairs).  points (n, d) and weights (n,)
    give a float; points (S, n, d) and weights (S, n) (an ensemble) give an (S,) array,
    one value per system (``clustered_fractions``).  On a mesh state the pairs are pairs
    of cells: mass inside one cell is not counted.
    """
    X = np.asarray(points, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if X.ndim == 2:
        return float(clustered_fractions(X[None], w[None], context.cluster_delta)[0])
    return clustered_fractions(X, w, context.cluster_delta)


def fourier_modes(points: ArrayLike, weights: ArrayLike, context: DiagnosticContext) -> np.ndarray:
    """d = 2: |mu_k| = |sum_j m_j exp(i k theta_j)| for k = 1..K (K = fourier_max_mode).

    A density (1 + a cos(k t)) / (2 pi) has |mu_k| = a / 2.  Dimensionless.
    """
    X = np.asarray(points, dtype=np.float64)
    if X.shape[1] != 2:
        raise ValueError(f"diagnostic fourier_modes needs d = 2 (the circle), got d = {X.shape[1]}")
    w = np.asarray(weights, dtype=np.float64)
    theta = np.arctan2(X[:, 1], X[:, 0])
    k = np.arange(1, context.fourier_max_mode + 1)
    phase = np.outer(k, theta)
    return np.hypot(np.cos(phase) @ w, np.sin(phase) @ w)


def circle_clusters(points: ArrayLike, weights: ArrayLike | None = None, *, gap: float = 0.05,
                    min_mass: float = 0.01, density_floor: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Clusters of a state on the circle (d = 2): their centers (radians) and masses.

    Not a registered diagnostic (it returns arrays); a robust replacement for ``n_clusters``
    on S^1 when the positions of the clusters matter (the gallery and its tests use it).

    Atoms lighter than ``density_floor`` times the mean atom mass are dropped (the
    near-empty cells of a mesh state; equal-mass particles are never dropped).  The rest
    are sorted by angle; a cluster is a maximal run of consecutive atoms whose angular gaps
    are <= ``gap`` (radians; for a mesh state take ``gap`` > the cell width).  Clusters with
    a mass fraction >= ``min_mass`` are kept; each center is the mass-weighted circular
    mean of its atoms, in [0, 2 pi).  O(n log n) time, O(n) memory (``n_clusters`` builds
    every pair closer than its angle, O(n^2) on collapsed clusters).

    Returns ``(centers, masses)``, sorted by center; masses are fractions of the total.
    When no gap exceeds ``gap`` the atoms cover the whole circle at that resolution and
    no cluster is resolved: both arrays are empty (a near-uniform state).
    """
    X = np.asarray(points, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"circle_clusters needs points of shape (n, 2) (the circle), got {X.shape}")
    n = len(X)
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or n == 0:
        raise ValueError(f"weights must have shape ({n},) with n > 0, got {w.shape}")
    if not (isinstance(gap, numbers.Real) and 0 < gap < 2 * math.pi):
        raise ValueError(f"gap must be in (0, 2 pi) radians, got {gap!r}")
    total = w.sum()
    keep = w >= density_floor * total / n
    theta = np.mod(np.arctan2(X[keep, 1], X[keep, 0]), 2.0 * math.pi)
    w = w[keep]
    order = np.argsort(theta, kind="stable")
    theta, w = theta[order], w[order]
    gaps = np.diff(np.concatenate([theta, [theta[0] + 2.0 * math.pi]]))  # gap after atom i
    cuts = np.flatnonzero(gaps > gap)
    if len(cuts) == 0:
        return np.empty(0), np.empty(0)
    start = (cuts[0] + 1) % len(theta)  # begin right after a gap: no cluster straddles the start
    theta, w, gaps = np.roll(theta, -start), np.roll(w, -start), np.roll(gaps, -start)
    labels = np.concatenate([[0], np.cumsum(gaps[:-1] > gap)])
    mass = np.bincount(labels, weights=w) / total
    resultant = np.bincount(labels, weights=w * np.cos(theta)) + 1j * np.bincount(labels, weights=w * np.sin(theta))
    centers = np.mod(np.angle(resultant), 2.0 * math.pi)
    big = mass >= min_mass
    centers, mass = centers[big], mass[big]
    order = np.argsort(centers)
    return centers[order], mass[order]


@dataclass(frozen=True)
class Diagnostic:
    """A registered diagnostic: the function, its unit, and whether it returns a vector.

    ``ensemble``: optionally, the same diagnostic for every system of an ensemble at once,
    ``fn(points (S, n, d), weights (S, n), context) -> (S,)`` (the context of system 0:
    only options shared by all systems may be read); without it ``evaluate`` calls ``fn``
    once per system with that system's context.
    """

    fn: Callable
    unit: str
    vector: bool = False
    ensemble: Callable | None = None

    def __call__(self, points, weights, context):
        return self.fn(points, weights, context)


#: Every diagnostic accepted in ``output.diagnostics``, by name, with its unit.
REGISTRY: dict[str, Diagnostic] = {
    "mass": Diagnostic(mass, "1", ensemble=lambda X, w, context: np.sum(w, axis=-1)),
    "min_mass": Diagnostic(min_mass, "1", ensemble=lambda X, w, context: np.min(w, axis=-1)),
    "energy": Diagnostic(energy, "1"),
    "w_to_limit": Diagnostic(w_to_limit, "rad"),
    "dist_to_subspace": Diagnostic(dist_to_subspace, "rad"),
    "n_clusters": Diagnostic(n_clusters, "1"),
    "clustered_fraction": Diagnostic(clustered_fraction, "1", ensemble=clustered_fraction),
    "fourier_modes": Diagnostic(fourier_modes, "1", vector=True),
}


def validate_names(names: Iterable[str]) -> tuple:
    """The names as a tuple; ``ValueError`` naming the valid ones on an unknown name."""
    names = tuple(names)
    for name in names:
        if name not in REGISTRY:
            raise ValueError(f"unknown diagnostic {name!r}; valid names: {', '.join(sorted(REGISTRY))}")
    return names


def output_names(names: Iterable[str], context: DiagnosticContext) -> list:
    """The flat keys ``evaluate`` returns for these names, in order."""
    out = []
    for name in validate_names(names):
        if name == "fourier_modes":
            out.extend(f"fourier_mode_{k}" for k in range(1, context.fourier_max_mode + 1))
        else:
            out.append(name)
    return out


def evaluate(names: Iterable[str], points: ArrayLike, weights: ArrayLike, context: DiagnosticContext) -> dict:
    """{name: float} for each requested diagnostic at the state (points, weights).

    ``fourier_modes`` contributes ``fourier_mode_1`` .. ``fourier_mode_K``.  With an
    :class:`EnsembleContext` (points (S, n, d), weights (S, n)) every value is an (S,)
    array, one per system.
    """
    if isinstance(context, EnsembleContext):
        return _evaluate_ensemble(names, points, weights, context)
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if points.ndim != 2 or weights.shape != (len(points),):
        raise ValueError(f"expected points (n, d) and weights (n,), got {points.shape} and {weights.shape}")
    result = {}
    for name in validate_names(names):
        value = REGISTRY[name](points, weights, context)
        if REGISTRY[name].vector:
            for k, v in enumerate(np.asarray(value), start=1):
                result[f"fourier_mode_{k}"] = float(v)
        else:
            result[name] = float(value)
    return result


# --------------------------------------------------------------------------- ensembles


class EnsembleContext:
    """The contexts of the S systems of an ensemble (build it with :func:`make_ensemble_context`).

    ``contexts[s]`` is system s's :class:`DiagnosticContext` (its own Pi#rho_0); they share
    one ``w_results`` list, so ``w_to_limit_attrs(ensemble_context)`` summarises every
    system's W_p evaluations.  ``limit_points`` (S, L, d) and ``limit_weights`` (S, L): the
    systems' limit measures, padded to the largest atom count L with atoms of weight 0 (at
    the system's first atom, or e_1 when it has none).
    """

    def __init__(self, contexts):
        self.contexts = list(contexts)
        first = self.contexts[0]
        self.model = first.model
        self.wasserstein_options = first.wasserstein_options
        self.w_results = first.w_results
        for c in self.contexts[1:]:
            object.__setattr__(c, "w_results", self.w_results)
        S, d = len(self.contexts), self.model.d
        L = max(1, max(len(c.limit_weights) for c in self.contexts))
        self.limit_points = np.zeros((S, L, d))
        self.limit_points[:, :, 0] = 1.0
        self.limit_weights = np.zeros((S, L))
        for s, c in enumerate(self.contexts):
            k = len(c.limit_weights)
            if k:
                self.limit_points[s, :k] = c.limit_points
                self.limit_points[s, k:] = c.limit_points[0]
                self.limit_weights[s, :k] = c.limit_weights

    def __len__(self) -> int:
        return len(self.contexts)


def make_ensemble_context(model: Model, initial_points: ArrayLike, initial_weights: ArrayLike,
                          wasserstein_options: WassersteinOptions | None = None, **options) -> EnsembleContext:
    """:func:`make_context` for each system of an ensemble: initial points (S, n, d) and
    weights (S, n); ``options`` as for ``make_context`` (the same for every system)."""
    X = np.asarray(initial_points, dtype=np.float64)
    W = np.asarray(initial_weights, dtype=np.float64)
    if X.ndim != 3 or W.shape != X.shape[:-1]:
        raise ValueError(f"expected points (S, n, d) and weights (S, n), got {X.shape} and {W.shape}")
    return EnsembleContext(make_context(model, x, w, wasserstein_options, **options) for x, w in zip(X, W))


def _evaluate_ensemble(names, points, weights, context: EnsembleContext) -> dict:
    points = np.asarray(points, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    S = len(context)
    if points.ndim != 3 or points.shape[0] != S or weights.shape != points.shape[:-1]:
        raise ValueError(f"expected points ({S}, n, d) and weights ({S}, n), got {points.shape} and {weights.shape}")
    names = validate_names(names)
    # the diagnostics without an ensemble form: one evaluate per system for all of them
    single = [name for name in names if REGISTRY[name].ensemble is None]
    per_system = [evaluate(single, points[s], weights[s], context.contexts[s]) for s in range(S)] if single else []
    result = {}
    for name in names:
        diagnostic = REGISTRY[name]
        if diagnostic.ensemble is not None:
            result[name] = np.asarray(diagnostic.ensemble(points, weights, context.contexts[0]), dtype=np.float64)
            continue
        for key in output_names((name,), context.contexts[0]):
            result[key] = np.array([values[key] for values in per_system])
    return result
