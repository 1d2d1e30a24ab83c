"""Initial measures rho_0: particles ``initial_measure(options, d)``, cell masses
``initial_cell_masses(options, edges or mesh)``.

Each value of ``initial.kind`` is one :class:`InitialKind` in ``KINDS`` (the one registry:
``options.INITIAL_KINDS`` is its names) with its rules (``check(options, d)``: the circle
kinds need d = 2, the means of a mixture d coordinates, ...) and its three products:
``points`` for particles, ``circle_cells`` and ``sphere_cells`` for finite volumes.  The
functions above dispatch to them.

For particles every kind returns ``(positions (n, d), weights (n,))`` with unit rows and
weights summing to 1, deterministic given ``options.seed``:

- ``uniform``: n i.i.d. points from the surface measure of S^{d-1} (normalised Gaussians).
- ``perturbed_uniform`` (d = 2): density (1 + a cos(k (t - phase))) / (2 pi).  By default
  (``sampling = "quantile"``) the n equal-mass points sit at the quantiles
  F^{-1}((i + 1/2) / n) of its distribution function F(t) = (t + (a / k) sin(k t)) / (2 pi)
  (shifted by phase), so the mode k is represented with O(1/n^2) error instead of the
  O(1/sqrt n) noise of random sampling (seed is unused); ``sampling = "random"`` draws n
  i.i.d. points F^{-1}(U), U uniform on [0, 1), which carry that noise in every mode.
- ``vmf_mixture``: von Mises-Fisher components vMF(mu, kappa) sampled with Wood's (1994)
  rejection algorithm; kappa = 0 is uniform.
- ``wrapped_normal_mixture`` (d = 2): angles mean + sigma Z mod 2 pi, Z standard normal.
- ``file``: points from a .npy array (n, d) or from a snapshot of an mfpde HDF5 file
  (its positions and weights).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
from numpy.typing import ArrayLike

from .options import InitialOptions
from .sphere import angle_to_point, retract, sample_uniform
from .mesh import SphereMesh

__all__ = [
    "initial_measure",
    "initial_kind",
    "InitialKind",
    "KINDS",
    "sample_vmf",
    "perturbed_uniform_angles",
    "wrapped_normal_density",
    "perturbed_uniform_density",
    "initial_cell_masses",
    "sphere_cell_masses",
    "vmf_density",
]


def perturbed_uniform_density(theta: ArrayLike, amplitude: float, mode: int, phase: float = 0.0) -> np.ndarray:
    """(1 + a cos(k (t - phase))) / (2 pi), per radian (t and phase in radians)."""
    return (1.0 + amplitude * np.cos(mode * (np.asarray(theta) - phase))) / (2.0 * np.pi)


def wrapped_normal_density(theta: ArrayLike, means: ArrayLike, sigmas: ArrayLike, weights: ArrayLike, n_wraps: int = 8) -> np.ndarray:
    """Density per radian of a mixture of wrapped normals, summed over 2 n_wraps + 1 images."""
    theta = np.asarray(theta, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    out = np.zeros_like(theta)
    shifts = 2.0 * np.pi * np.arange(-n_wraps, n_wraps + 1)
    for mu, sigma, w in zip(means, sigmas, weights):
        z = (theta[..., None] - mu + shifts) / sigma
        out += w * np.exp(-0.5 * z * z).sum(axis=-1) / (sigma * np.sqrt(2.0 * np.pi))
    return out


def perturbed_uniform_angles(n: int, amplitude: float, mode: int, phase: float = 0.0, u: ArrayLike | None = None) -> np.ndarray:
    """Angles F^{-1}(u) + phase of the density (1 + a cos(k (t - phase))) / (2 pi), in radians.

    u defaults to the n quantile levels (i + 1/2)/n; pass i.i.d. uniform u for a random
    sample.  Newton's method on F(t) - u from t = 2 pi u, F(t) = (t + (a / k) sin(k t)) /
    (2 pi); F' >= (1 - |a|)/(2 pi) > 0 for |a| < 1.
    """
    u = (np.arange(n) + 0.5) / n if u is None else np.asarray(u, dtype=float)
    target = 2.0 * np.pi * u
    theta = target.copy()
    if mode != 0 and amplitude != 0.0:
        for _ in range(100):
            g = theta + (amplitude / mode) * np.sin(mode * theta) - target
            theta -= g / (1.0 + amplitude * np.cos(mode * theta))
            if np.max(np.abs(g)) < 1e-15:
                break
    return theta + phase


def sample_vmf(n: int, mean: ArrayLike, kappa: float, rng: np.random.Generator) -> np.ndarray:
    """n samples of the von Mises-Fisher law on S^{d-1}, density ~ exp(kappa <mu, x>).

    Wood (1994): draw the component w = <mu, x> by rejection from a Beta proposal, then a
    uniform direction orthogonal to mu.
    """
    mu = np.asarray(mean, dtype=np.float64)
    mu = mu / np.linalg.norm(mu)
    d = mu.size
    if kappa == 0.0:
        return sample_uniform(n, d, rng)
    dm1 = d - 1.0
    b = dm1 / (2.0 * kappa + np.sqrt(4.0 * kappa**2 + dm1**2))
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + dm1 * np.log(1.0 - x0 * x0)
    w = np.empty(n)
    filled = 0
    while filled < n:
        m = max(2 * (n - filled), 16)
        z = rng.beta(dm1 / 2.0, dm1 / 2.0, size=m)
        cand = (1.0 - (1.0 + b) * z) / (1.0 - (1.0 - b) * z)
        u = rng.uniform(size=m)
        ok = kappa * cand + dm1 * np.log(1.0 - x0 * cand) - c >= np.log(u)
        take = cand[ok][: n - filled]
        w[filled : filled + take.size] = take
        filled += take.size
    v = rng.standard_normal((n, d))
    v -= (v @ mu)[:, None] * mu
    v = retract(v)
    return w[:, None] * mu + np.sqrt(np.clip(1.0 - w * w, 0.0, None))[:, None] * v


def _component_counts(n: int, weights, rng) -> np.ndarray:
    p = np.asarray(weights, dtype=np.float64)
    return rng.multinomial(n, p / p.sum())


def _open_file(options: InitialOptions):
    """(path, the mfpde file read with ``io.load``, or None for a .npy array) of ``initial.path``."""
    path = options.path
    if not os.path.exists(path):
        raise ValueError(f"initial.path: file not found: {path}")
    if path.endswith(".npy"):
        return path, None
    from .io import load  # the HDF5 reader; imported here to keep start-up light

    return path, load(path)


def _snapshot(options: InitialOptions, result, path: str) -> int:
    n_snap = len(result.times)
    if not -n_snap <= options.snapshot < n_snap:
        raise ValueError(f"initial.snapshot must index one of the {n_snap} snapshots of {path}")
    return options.snapshot


def _from_file(options: InitialOptions, d: int, opened=None):
    """Points and weights of ``initial.path`` (``opened``: its ``_open_file``, if done already):
    (n, d) and (n,), or (S, n, d) and (S, n) for ``initial.systems`` = S > 1."""
    path, result = opened or _open_file(options)
    S = options.systems
    want = f"an (n, {d}) array" if S == 1 else f"an ({S}, n, {d}) array (initial.systems = {S})"
    if result is None:
        points = np.load(path)
        if points.ndim != (2 if S == 1 else 3) or points.shape[-1] != d or (S > 1 and points.shape[0] != S):
            raise ValueError(f"initial.path: {path} must hold {want}, got shape {points.shape}")
        weights = np.full(points.shape[:-1], 1.0 / points.shape[-2])
    else:
        if result.positions is None:
            raise ValueError(f"initial.path: {path} holds no particle positions")
        if result.systems != S:
            raise ValueError(f"initial.path: {path} holds {result.systems} system(s), initial.systems = {S}")
        points = result.positions[_snapshot(options, result, path)]
        weights = result.weights
        if points.shape[-1] != d:
            raise ValueError(f"initial.path: {path} holds points in d = {points.shape[-1]}, expected {d}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"initial.path: {path} holds non-finite points")
    norms = np.linalg.norm(points, axis=-1)
    if np.any(np.abs(norms - 1.0) > 1e-6):
        raise ValueError(f"initial.path: {path} holds points off the unit sphere (|x| - 1 up to {np.abs(norms - 1).max():.2g})")
    weights = np.asarray(weights, dtype=np.float64)
    return retract(points), weights / np.sum(weights, axis=-1, keepdims=True)


# ----------------------------------------------------------------------------- cell masses


def _perturbed_uniform_cells(edges, amplitude: float, mode: int, phase: float = 0.0) -> np.ndarray:
    """int over [a, b] of (1 + A cos(k (t - phase))) / (2 pi), in closed form without cancellation."""
    a, b = edges[:-1], edges[1:]
    width = b - a
    if mode == 0:
        return (1.0 + amplitude) * width / (2.0 * np.pi)
    wave = 2.0 * np.cos(mode * (0.5 * (a + b) - phase)) * np.sin(0.5 * mode * width) / mode
    return (width + amplitude * wave) / (2.0 * np.pi)


def _normal_interval(lo, hi):
    """P(lo < Z < hi) for a standard normal, accurate in both tails."""
    from scipy.special import ndtr

    upper = lo > 0  # both in the upper tail: use the symmetric lower-tail values
    return np.where(upper, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))


def _wrapped_normal_cells(edges, means, sigmas, weights) -> np.ndarray:
    """Sum over components and 2 pi wraps of differences of normal CDFs."""
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    a, b = edges[:-1], edges[1:]
    out = np.zeros(len(a))
    for mu, sigma, w in zip(means, sigmas, weights):
        mu = float(np.mod(mu, 2.0 * np.pi))
        n_wraps = int(np.ceil(12.0 * sigma / (2.0 * np.pi))) + 1
        for n in range(-n_wraps, n_wraps + 1):
            shift = mu + 2.0 * np.pi * n
            out += w * _normal_interval((a - shift) / sigma, (b - shift) / sigma)
    return out


def _von_mises_cells(edges, means, kappas, weights) -> np.ndarray:
    """Cell integrals of a von Mises mixture e^{kappa cos(t - mu)} / (2 pi I_0(kappa)).

    Gauss-Legendre (10 nodes) on sub-intervals no wider than 0.25 / sqrt(kappa) (and dx),
    so each sub-interval sees a smooth, well-resolved piece of the density: relative
    error ~ 1e-14.
    """
    from scipy.special import i0e

    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    a, b = edges[:-1], edges[1:]
    width = float(np.max(b - a))
    nodes, gl_w = np.polynomial.legendre.leggauss(10)
    out = np.zeros(len(a))
    for mean, kappa, w in zip(means, kappas, weights):
        mu = float(np.arctan2(mean[1], mean[0]))
        n_sub = 1 if kappa <= 0 else max(1, int(np.ceil(width * np.sqrt(kappa) / 0.25)))
        n_sub = min(n_sub, 4096)
        sub = np.linspace(0.0, 1.0, n_sub + 1)
        lo = a[:, None] + (b - a)[:, None] * sub[None, :-1]
        h = (b - a)[:, None] / n_sub
        t = lo[..., None] + 0.5 * h[..., None] * (nodes + 1.0)
        # e^{kappa (cos - 1)} / (2 pi I_0 e^{-kappa}) with cos - 1 = -2 sin^2(./2)
        dens = np.exp(-2.0 * kappa * np.sin(0.5 * (t - mu)) ** 2) / (2.0 * np.pi * i0e(kappa))
        out += w * (0.5 * h[..., None] * dens * gl_w).sum(axis=(1, 2))
    return out


def _points_to_cells(points, weights, edges) -> np.ndarray:
    from .sphere import point_to_angle

    theta = point_to_angle(points)
    idx = np.searchsorted(edges, theta, side="right") - 1
    idx = np.clip(idx, 0, len(edges) - 2)
    return np.bincount(idx, weights=weights, minlength=len(edges) - 1)


def _stored_cell_masses(options: InitialOptions, opened, n_cells: int, mesh_name: str):
    """Cell masses stored in an mfpde file (``opened``: ``_open_file(options)``) at
    ``initial.snapshot``, or None when the path is a .npy of points or a particle file."""
    path, result = opened
    if result is None or result.mass is None:
        return None
    mass = np.asarray(result.mass[_snapshot(options, result, path)], dtype=np.float64)
    if mass.shape[0] != n_cells:
        raise ValueError(
            f"initial.path: {path} holds masses on {mass.shape[0]} cells, {mesh_name} has "
            f"{n_cells} (solver.cells)"
        )
    return mass


# ----------------------------------------------------------------------------- cells of S^2

#: Radon's 7-point rule, exact for polynomials of degree 5 on a triangle: barycentric
#: coordinates (rows) and weights (summing to 1).
_R15 = np.sqrt(15.0)
_A1, _B1 = (6.0 - _R15) / 21.0, (9.0 + 2.0 * _R15) / 21.0
_A2, _B2 = (6.0 + _R15) / 21.0, (9.0 - 2.0 * _R15) / 21.0
RADON_POINTS = np.array([
    [1 / 3, 1 / 3, 1 / 3],
    [_A1, _A1, _B1], [_A1, _B1, _A1], [_B1, _A1, _A1],
    [_A2, _A2, _B2], [_A2, _B2, _A2], [_B2, _A2, _A2],
])
RADON_WEIGHTS = np.array([9 / 40] + [(155.0 - _R15) / 1200.0] * 3 + [(155.0 + _R15) / 1200.0] * 3)
#: Sub-triangles no wider than this times 1 / sqrt(kappa) resolve a vMF component.
VMF_RESOLUTION = 0.5
MAX_SUBDIVISION = 16


def vmf_density(X: ArrayLike, means: ArrayLike, kappas: ArrayLike, weights: ArrayLike) -> np.ndarray:
    """Density (per steradian) of a von Mises-Fisher mixture on S^2 at the unit rows of X.

    Each component is kappa e^{kappa (<mu, x> - 1)} / (2 pi (1 - e^{-2 kappa})) (1 / (4 pi)
    at kappa = 0), written without overflow for any kappa.
    """
    X = np.asarray(X, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    out = np.zeros(X.shape[:-1])
    for mean, kappa, w in zip(means, kappas, weights):
        mu = np.asarray(mean, dtype=np.float64)
        mu = mu / np.linalg.norm(mu)
        if kappa == 0:
            out += w / (4.0 * np.pi)
            continue
        norm = kappa / (-2.0 * np.pi * np.expm1(-2.0 * kappa))
        out += w * norm * np.exp(kappa * (X @ mu - 1.0))
    return out


def _sub_triangles(s: int) -> np.ndarray:
    """The s^2 triangles of the s-fold barycentric subdivision: (s^2, 3, 3) barycentric vertices."""
    tris = []
    for i in range(s):
        for j in range(s - i):
            a, b, c = (i, j), (i + 1, j), (i, j + 1)
            tris.append([a, b, c])
            if i + j < s - 1:
                tris.append([b, (i + 1, j + 1), c])
    ij = np.array(tris, dtype=np.float64) / s  # (s^2, 3, 2): weights of the 2nd and 3rd vertex
    return np.concatenate([1.0 - ij.sum(axis=2, keepdims=True), ij], axis=2)


def _fan_quadrature(A, B, C, density, s: int, chunk: int = 1 << 21):
    """int over the spherical triangles (A, B, C) of density: Radon's rule on the s^2 flat sub-triangles,
    radially projected (d omega = det(A, B, C) / |x|^3 d lambda), weights rescaled so each
    triangle's weights sum to its exact spherical area (a constant is integrated exactly).

    ``density(X)`` maps unit points (n, P, 3) to (n, P) values, or (n, P, K) for K integrands
    at once (the result is then (len(A), K))."""
    from .mesh.sphere import spherical_triangle_areas

    sub = _sub_triangles(s)  # (S, 3, 3)
    lam = np.einsum("qk,skv->sqv", RADON_POINTS, sub).reshape(-1, 3)  # (S * 7, 3)
    wq = np.tile(RADON_WEIGHTS, len(sub)) / (2.0 * len(sub))  # the simplex has area 1/2
    det = np.einsum("ij,ij->i", A, np.cross(B, C))
    exact = spherical_triangle_areas(A, B, C)
    out = None
    step = max(1, chunk // len(lam))
    for lo in range(0, len(A), step):
        hi = min(len(A), lo + step)
        x = (lam[None, :, 0, None] * A[lo:hi, None, :] + lam[None, :, 1, None] * B[lo:hi, None, :]
             + lam[None, :, 2, None] * C[lo:hi, None, :])
        r = np.linalg.norm(x, axis=2)
        jac = wq[None, :] * det[lo:hi, None] / r**3
        f = density(x / r[..., None])
        scale = exact[lo:hi] / jac.sum(axis=1)
        if f.ndim == 3:
            part = np.einsum("np,npk->nk", jac, f) * scale[:, None]
        else:
            part = (jac * f).sum(axis=1) * scale
        if out is None:
            out = np.empty((len(A),) + part.shape[1:])
        out[lo:hi] = part
    return out


# ----------------------------------------------------------------------------- the kinds


def _shown(values) -> str:
    """A list of numbers as an error message shows it: one line, at most 80 characters."""
    text = " ".join(repr(list(values)).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _check_circle_edges(edges) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be an increasing 1-d array of cell edges")
    if abs(edges[0]) > 1e-12 or abs(edges[-1] - 2.0 * np.pi) > 1e-12:
        raise ValueError(f"edges must run from 0 to 2 pi, got {edges[0]!r} .. {edges[-1]!r}")
    return edges


def _normalised(masses) -> np.ndarray:
    masses = np.maximum(masses, 0.0)
    return masses / masses.sum()


class InitialKind:
    """One value of ``initial.kind``: its rules and the measure rho_0 it makes.

    ``check(options, d)`` raises ``ValueError("initial.<key>: ...")`` when the options cannot
    give a measure on S^{d-1} (the config loader reports it against that key);
    ``points(options, d)`` -> (positions (n, d), weights (n,)) for particles;
    ``circle_cells(options, edges)`` and ``sphere_cells(options, mesh)`` -> cell masses (sum 1)
    for finite volumes on S^1 (cell edges of the angle) and on a ``SphereMesh`` of S^2.  Each
    of the three checks first (d = 2 on the circle, 3 on the sphere); a kind without one of
    them refuses it with a ValueError naming the kind.  The products are deterministic
    given ``options.seed``.
    """

    #: The ``initial.kind`` value.
    name = ""
    #: True for a kind that lives on the circle (d = 2 only).
    circle_only = False

    def check(self, options: InitialOptions, d: int) -> None:
        if self.circle_only and d != 2:
            raise ValueError(f"initial.kind: {self.name!r} lives on the circle and needs model.d = 2, got d = {d}")

    def points(self, options: InitialOptions, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Particles (positions (n, d), weights (n,)) of rho_0 on S^{d-1}."""
        self.check(options, d)
        return self._points(options, d)

    def circle_cells(self, options: InitialOptions, edges: ArrayLike) -> np.ndarray:
        """Masses of the cells [edges[i], edges[i+1]) of the angle on S^1 (sum 1)."""
        edges = _check_circle_edges(edges)
        self.check(options, 2)
        return _normalised(self._circle_cells(options, edges))

    def sphere_cells(self, options: InitialOptions, mesh: SphereMesh) -> np.ndarray:
        """Masses of the cells of a ``SphereMesh`` (sum 1)."""
        self.check(options, 3)
        return _normalised(self._sphere_cells(options, mesh))

    def _points(self, options, d):
        raise ValueError(f"initial.kind: {self.name!r} gives no particles")

    def _circle_cells(self, options, edges):
        raise ValueError(f"initial.kind: {self.name!r} gives no cell masses on the circle")

    def _sphere_cells(self, options, mesh):
        raise ValueError(f"initial.kind: {self.name!r} gives no cell masses on S^2")

    def _equal_weights(self, points) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(points), np.full(len(points), 1.0 / len(points))

    def __repr__(self) -> str:
        return f"<initial kind {self.name!r}>"


class Uniform(InitialKind):
    """``uniform``: n i.i.d. points of the surface measure of S^{d-1} (normalised Gaussians);
    cell masses area / total area, exact."""

    name = "uniform"

    def _points(self, options, d):
        rng = np.random.default_rng(options.seed)
        return self._equal_weights(sample_uniform(options.n, d, rng))

    def _circle_cells(self, options, edges):
        return np.diff(edges) / (2.0 * np.pi)

    def _sphere_cells(self, options, mesh):
        return np.asarray(mesh.areas) / (4.0 * np.pi)


class PerturbedUniform(InitialKind):
    """``perturbed_uniform`` (d = 2): density (1 + a cos(k (t - phase))) / (2 pi); quantile or
    random points (module docstring), cell integrals in closed form."""

    name = "perturbed_uniform"
    circle_only = True

    def check(self, options, d):
        super().check(options, d)
        if options.systems > 1 and options.sampling != "random":
            raise ValueError("initial.sampling: an ensemble (initial.systems > 1) of perturbed_uniform needs "
                             "sampling = \"random\" (the quantile points are the same in every system)")

    def _points(self, options, d):
        rng = np.random.default_rng(options.seed)
        n = options.n
        u = rng.random(n) if options.sampling == "random" else None
        return self._equal_weights(angle_to_point(perturbed_uniform_angles(n, options.amplitude, options.mode,
                                                                           options.phase, u)))

    def _circle_cells(self, options, edges):
        return _perturbed_uniform_cells(edges, options.amplitude, options.mode, options.phase)


class VmfMixture(InitialKind):
    """``vmf_mixture``: von Mises-Fisher components (means in R^d, kappas >= 0, weights);
    Wood's sampler for points, quadrature for cell masses (von Mises on S^1, Radon's rule
    on the cells' triangle fans on S^2)."""

    name = "vmf_mixture"

    def check(self, options, d):
        super().check(options, d)
        for i, mean in enumerate(options.means):
            if len(mean) != d:
                raise ValueError(f"initial.means: must be points with d = {d} coordinates, got {len(mean)} in mean {i + 1}")
            if not all(math.isfinite(x) for x in mean) or not any(x != 0 for x in mean):
                raise ValueError(f"initial.means: must be finite, nonzero vectors, got {_shown(mean)} in mean {i + 1}")
        if not all(math.isfinite(k) for k in options.kappas):
            raise ValueError(f"initial.kappas: must be finite, got {_shown(options.kappas)}")
        _check_finite_weights(options)

    def _points(self, options, d):
        rng = np.random.default_rng(options.seed)
        counts = _component_counts(options.n, options.weights, rng)
        return self._equal_weights(np.concatenate(
            [sample_vmf(c, mu, kappa, rng) for c, mu, kappa in zip(counts, options.means, options.kappas)]
        ))

    def _circle_cells(self, options, edges):
        return _von_mises_cells(edges, options.means, options.kappas, options.weights)

    def _sphere_cells(self, options, mesh):
        ptr = np.asarray(mesh.neighbor_ptr)
        reg = np.asarray(mesh.region_idx)
        own = np.repeat(np.arange(mesh.M), np.diff(ptr))
        nxt = np.arange(len(reg)) + 1
        nxt[ptr[1:] - 1] = ptr[:-1]
        A = np.asarray(mesh.centers)[own]
        B = np.asarray(mesh.vertices)[reg]
        C = np.asarray(mesh.vertices)[reg[nxt]]
        size = float(np.max(np.linalg.norm(B - A, axis=1)))
        kmax = max(options.kappas)
        s = int(min(MAX_SUBDIVISION, max(1, np.ceil(size * np.sqrt(kmax) / VMF_RESOLUTION))))
        fans = _fan_quadrature(A, B, C, lambda X: vmf_density(X, options.means, options.kappas, options.weights), s)
        return np.bincount(own, weights=fans, minlength=mesh.M)


class WrappedNormalMixture(InitialKind):
    """``wrapped_normal_mixture`` (d = 2): angles mean + sigma Z mod 2 pi; cell masses from
    differences of normal CDFs over 2 pi wraps."""

    name = "wrapped_normal_mixture"
    circle_only = True

    def check(self, options, d):
        super().check(options, d)
        for key in ("means", "sigmas"):
            if not all(math.isfinite(x) for x in getattr(options, key)):
                raise ValueError(f"initial.{key}: must be finite, got {_shown(getattr(options, key))}")
        _check_finite_weights(options)

    def _points(self, options, d):
        rng = np.random.default_rng(options.seed)
        counts = _component_counts(options.n, options.weights, rng)
        theta = np.concatenate(
            [mu + sigma * rng.standard_normal(c) for c, mu, sigma in zip(counts, options.means, options.sigmas)]
        )
        return self._equal_weights(angle_to_point(np.mod(theta, 2.0 * np.pi)))

    def _circle_cells(self, options, edges):
        return _wrapped_normal_cells(edges, options.means, options.sigmas, options.weights)


class FromFile(InitialKind):
    """``file``: the points and weights of a .npy array or of a snapshot of an mfpde file; cell
    masses are their histogram over the cells, or an mfpde finite-volume file's masses when
    its mesh has exactly these cells."""

    name = "file"

    def _points(self, options, d):
        return _from_file(options, d)

    def _circle_cells(self, options, edges):
        opened = _open_file(options)  # read once for both questions
        mass = _stored_cell_masses(options, opened, len(edges) - 1, "the mesh")
        if mass is not None:
            return mass
        points, weights = _from_file(options, 2, opened)
        return _points_to_cells(points, weights, edges)

    def _sphere_cells(self, options, mesh):
        opened = _open_file(options)
        mass = _stored_cell_masses(options, opened, mesh.M, "the sphere mesh")
        if mass is not None:
            return mass
        points, weights = _from_file(options, 3, opened)
        return np.bincount(mesh.locate(points), weights=weights, minlength=mesh.M)


def _check_finite_weights(options) -> None:
    if not all(math.isfinite(w) for w in options.weights):
        raise ValueError(f"initial.weights: must be finite, got {_shown(options.weights)}")


#: The initial kinds by name, in the order the docs list them: ``options.INITIAL_KINDS`` is
#: their names.
KINDS: dict[str, InitialKind] = {
    kind.name: kind for kind in (Uniform(), PerturbedUniform(), VmfMixture(), WrappedNormalMixture(), FromFile())
}


def initial_kind(name: str) -> InitialKind:
    """The :class:`InitialKind` called ``name`` (ValueError for an unknown name)."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"initial.kind must be one of {', '.join(KINDS)}, got {name!r}") from None


# ----------------------------------------------------------------------------- entry points


def initial_measure(options: InitialOptions, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Particles (positions (n, d), weights (n,)) for the [initial] options on S^{d-1}.

    With ``initial.systems`` = S > 1, an ensemble: positions (S, n, d) and weights (S, n).
    System s is drawn exactly as the single run with ``initial.seed = seed + s`` (the same
    numbers bit for bit, whatever S is); ``kind = "file"`` reads an (S, n, d) array or an
    ensemble file's snapshot.
    """
    kind = initial_kind(options.kind)
    S = options.systems
    if S == 1 or kind.name == "file":
        return kind.points(options, d)
    kind.check(options, d)
    single = dataclasses.replace(options, systems=1)
    points = np.empty((S, options.n, d))
    weights = np.empty((S, options.n))
    for s in range(S):
        points[s], weights[s] = kind._points(dataclasses.replace(single, seed=options.seed + s), d)
    return points, weights


def initial_cell_masses(options: InitialOptions, edges: ArrayLike | SphereMesh) -> np.ndarray:
    """Masses of the cells of a mesh under rho_0 (sum 1).

    ``edges``: the cell edges of the angle on S^1 (below), or a ``SphereMesh`` of S^2
    (then see :func:`sphere_cell_masses`).

    On S^1, the cells are [edges[i], edges[i+1]).

    The density is integrated over each cell, not sampled: closed forms for ``uniform``
    and ``perturbed_uniform``; differences of normal CDFs over 2 pi wraps for
    ``wrapped_normal_mixture``; per-cell Gauss-Legendre quadrature for ``vmf_mixture``
    (von Mises on S^1).  ``file``: the histogram of the file's points (a .npy array or
    an mfpde file's positions with weights), or an mfpde finite-volume file's masses
    when its grid has exactly these cells.  ``edges`` (M + 1,) increasing from 0 to
    2 pi (``CircleMesh.edges``).  The result is renormalised to sum 1 exactly up to
    round-off (the quadratures are accurate to ~1e-14 before it).
    """
    if isinstance(edges, SphereMesh):
        return sphere_cell_masses(options, edges)
    return initial_kind(options.kind).circle_cells(options, edges)


def sphere_cell_masses(options: InitialOptions, mesh: SphereMesh) -> np.ndarray:
    """Masses of the cells of a ``SphereMesh`` under rho_0 (sum 1).

    ``uniform``: area / (4 pi), exact.  ``vmf_mixture``: each cell is cut into the spherical
    triangles (center, v_k, v_k+1) of its polygon; each is split into s^2 flat sub-triangles
    with s = ceil(size sqrt(kappa_max) / 0.5) (at most 16; size the largest center-vertex
    distance), Radon's 7-point degree-5 rule on each, radially projected with its Jacobian,
    the weights of each triangle rescaled to its exact area.  Before the final
    renormalisation the masses sum to 1 within 1e-9 for kappa <= 100 on >= 642 cells
    (tested).  ``file``: the histogram of the file's points over the cells (``mesh.locate``),
    or an fv file's masses when it has exactly ``mesh.M`` cells.  ``perturbed_uniform`` and
    ``wrapped_normal_mixture`` are d = 2 kinds (ValueError).
    """
    return initial_kind(options.kind).sphere_cells(options, mesh)
