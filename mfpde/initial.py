"""Initial measures rho_0 as weighted particles: ``initial_measure(options, d)``.

Every kind returns ``(positions (n, d), weights (n,))`` with unit rows and weights summing
to 1, deterministic given ``options.seed``:

- ``uniform``: n i.i.d. points from the surface measure of S^{d-1} (normalised Gaussians).
- ``perturbed_uniform`` (d = 2): density (1 + a cos(k t)) / (2 pi).  The n equal-mass points
  sit at the quantiles F^{-1}((i + 1/2) / n) of its distribution function
  F(t) = (t + (a / k) sin(k t)) / (2 pi), so the mode k is represented with O(1/n^2)
  error instead of the O(1/sqrt n) noise of random sampling (seed is unused).
- ``vmf_mixture``: von Mises-Fisher components vMF(mu, kappa) sampled with Wood's (1994)
  rejection algorithm; kappa = 0 is uniform.
- ``wrapped_normal_mixture`` (d = 2): angles mean + sigma Z mod 2 pi, Z standard normal.
- ``file``: points from a .npy array (n, d) or from a snapshot of an mfpde HDF5 file
  (its positions and weights).
"""

from __future__ import annotations

import os

import numpy as np

from .options import InitialOptions
from .sphere import angle_to_point, retract, sample_uniform

__all__ = [
    "initial_measure",
    "sample_vmf",
    "perturbed_uniform_angles",
    "wrapped_normal_density",
    "perturbed_uniform_density",
    "initial_cell_masses",
]


def perturbed_uniform_density(theta, amplitude: float, mode: int):
    """(1 + a cos(k t)) / (2 pi), per radian."""
    return (1.0 + amplitude * np.cos(mode * np.asarray(theta))) / (2.0 * np.pi)


def wrapped_normal_density(theta, means, sigmas, weights, n_wraps: int = 8):
    """Density per radian of a mixture of wrapped normals, summed over 2 n_wraps + 1 images."""
    theta = np.asarray(theta, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    out = np.zeros_like(theta)
    shifts = 2.0 * np.pi * np.arange(-n_wraps, n_wraps + 1)
    for mu, sigma, w in zip(means, sigmas, weights):
        z = (theta[..., None] - mu + shifts) / sigma
        out += w * np.exp(-0.5 * z * z).sum(axis=-1) / (sigma * np.sqrt(2.0 * np.pi))
    return out


def perturbed_uniform_angles(n: int, amplitude: float, mode: int) -> np.ndarray:
    """The n quantile angles F^{-1}((i + 1/2)/n) of the density (1 + a cos(k t)) / (2 pi).

    Newton's method on F(t) - u from t = 2 pi u; F' >= (1 - |a|)/(2 pi) > 0 for |a| < 1.
    """
    u = (np.arange(n) + 0.5) / n
    target = 2.0 * np.pi * u
    theta = target.copy()
    if mode == 0 or amplitude == 0.0:
        return theta
    for _ in range(100):
        g = theta + (amplitude / mode) * np.sin(mode * theta) - target
        theta -= g / (1.0 + amplitude * np.cos(mode * theta))
        if np.max(np.abs(g)) < 1e-15:
            break
    return theta


def sample_vmf(n: int, mean, kappa: float, rng: np.random.Generator) -> np.ndarray:
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


def _from_file(options: InitialOptions, d: int):
    path = options.path
    if not os.path.exists(path):
        raise ValueError(f"initial.path: file not found: {path}")
    if path.endswith(".npy"):
        points = np.load(path)
        if points.ndim != 2 or points.shape[1] != d:
            raise ValueError(f"initial.path: {path} must hold an (n, {d}) array, got shape {points.shape}")
        weights = np.full(len(points), 1.0 / len(points))
    else:
        from .io import load  # the HDF5 reader; imported here to keep start-up light

        result = load(path)
        if result.positions is None:
            raise ValueError(f"initial.path: {path} holds no particle positions")
        n_snap = len(result.times)
        if not -n_snap <= options.snapshot < n_snap:
            raise ValueError(f"initial.snapshot must index one of the {n_snap} snapshots of {path}")
        points = result.positions[options.snapshot]
        weights = result.weights
        if points.shape[1] != d:
            raise ValueError(f"initial.path: {path} holds points in d = {points.shape[1]}, expected {d}")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"initial.path: {path} holds non-finite points")
    norms = np.linalg.norm(points, axis=1)
    if np.any(np.abs(norms - 1.0) > 1e-6):
        raise ValueError(f"initial.path: {path} holds points off the unit sphere (|x| - 1 up to {np.abs(norms - 1).max():.2g})")
    return retract(points), np.asarray(weights, dtype=np.float64) / np.sum(weights)


def initial_measure(options: InitialOptions, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Particles (positions (n, d), weights (n,)) for the [initial] options on S^{d-1}."""
    kind, n = options.kind, options.n
    rng = np.random.default_rng(options.seed)
    if kind in ("perturbed_uniform", "wrapped_normal_mixture") and d != 2:
        raise ValueError(f"initial.kind = \"{kind}\" needs d = 2 (the circle), got d = {d}")
    if kind == "uniform":
        points = sample_uniform(n, d, rng)
    elif kind == "perturbed_uniform":
        points = angle_to_point(perturbed_uniform_angles(n, options.amplitude, options.mode))
    elif kind == "vmf_mixture":
        if len(options.means[0]) != d:
            raise ValueError(f"initial.means must be points in R^{d}, got length {len(options.means[0])}")
        counts = _component_counts(n, options.weights, rng)
        points = np.concatenate(
            [sample_vmf(c, mu, kappa, rng) for c, mu, kappa in zip(counts, options.means, options.kappas)]
        )
    elif kind == "wrapped_normal_mixture":
        counts = _component_counts(n, options.weights, rng)
        theta = np.concatenate(
            [mu + sigma * rng.standard_normal(c) for c, mu, sigma in zip(counts, options.means, options.sigmas)]
        )
        points = angle_to_point(np.mod(theta, 2.0 * np.pi))
    elif kind == "file":
        return _from_file(options, d)
    else:  # guarded by InitialOptions
        raise ValueError(f"initial.kind {kind!r} is unknown")
    return np.ascontiguousarray(points), np.full(len(points), 1.0 / len(points))


# ----------------------------------------------------------------------------- cell masses


def _perturbed_uniform_cells(edges, amplitude: float, mode: int) -> np.ndarray:
    """int over [a, b] of (1 + A cos(k t)) / (2 pi), in closed form without cancellation."""
    a, b = edges[:-1], edges[1:]
    width = b - a
    if mode == 0:
        return (1.0 + amplitude) * width / (2.0 * np.pi)
    wave = 2.0 * np.cos(0.5 * mode * (a + b)) * np.sin(0.5 * mode * width) / mode
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


def initial_cell_masses(options: InitialOptions, edges) -> np.ndarray:
    """Masses of the cells [edges[i], edges[i+1]) of the angle on S^1 under rho_0 (sum 1).

    The density is integrated over each cell, not sampled: closed forms for ``uniform``
    and ``perturbed_uniform``; differences of normal CDFs over 2 pi wraps for
    ``wrapped_normal_mixture``; per-cell Gauss-Legendre quadrature for ``vmf_mixture``
    (von Mises on S^1).  ``file``: the histogram of the file's points (a .npy array or
    an mfpde file's positions with weights), or an mfpde finite-volume file's masses
    when its grid has exactly these cells.  ``edges`` (M + 1,) increasing from 0 to
    2 pi (``CircleMesh.edges``).  The result is renormalised to sum 1 exactly up to
    round-off (the quadratures are accurate to ~1e-14 before it).
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be an increasing 1-d array of cell edges")
    if abs(edges[0]) > 1e-12 or abs(edges[-1] - 2.0 * np.pi) > 1e-12:
        raise ValueError(f"edges must run from 0 to 2 pi, got {edges[0]!r} .. {edges[-1]!r}")
    kind = options.kind
    if kind == "uniform":
        masses = np.diff(edges) / (2.0 * np.pi)
    elif kind == "perturbed_uniform":
        masses = _perturbed_uniform_cells(edges, options.amplitude, options.mode)
    elif kind == "wrapped_normal_mixture":
        masses = _wrapped_normal_cells(edges, options.means, options.sigmas, options.weights)
    elif kind == "vmf_mixture":
        if any(len(m) != 2 for m in options.means):
            raise ValueError("initial.means must be points in R^2 for cell masses on the circle")
        masses = _von_mises_cells(edges, options.means, options.kappas, options.weights)
    elif kind == "file":
        masses = _file_cells(options, edges)
    else:  # guarded by InitialOptions
        raise ValueError(f"initial.kind {kind!r} is unknown")
    masses = np.maximum(masses, 0.0)
    return masses / masses.sum()


def _file_cells(options: InitialOptions, edges) -> np.ndarray:
    path = options.path
    if not os.path.exists(path):
        raise ValueError(f"initial.path: file not found: {path}")
    if not path.endswith(".npy"):
        from .io import load

        result = load(path)
        if result.mass is not None:
            n_snap = len(result.times)
            if not -n_snap <= options.snapshot < n_snap:
                raise ValueError(f"initial.snapshot must index one of the {n_snap} snapshots of {path}")
            mass = np.asarray(result.mass[options.snapshot], dtype=np.float64)
            if mass.shape[0] != len(edges) - 1:
                raise ValueError(
                    f"initial.path: {path} holds masses on {mass.shape[0]} cells, "
                    f"the mesh has {len(edges) - 1} (solver.cells)"
                )
            return mass
    points, weights = _from_file(options, 2)
    return _points_to_cells(points, weights, edges)
