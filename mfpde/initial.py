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
