r"""Equiangular tokens: an exact solution of the particle system (docs/analysis.md).

Setting: n tokens on :math:`S^{d-1}`, :math:`d \ge n`, equal masses 1/n, :math:`Q = K = V = I`,
started at the vertices of a rotated orthonormal frame, :math:`x_i(0) = R e_i`
(R orthogonal), so that :math:`\langle x_i, x_j \rangle = 0` for :math:`i \ne j`.  The
system is equivariant under rotations and under permutations of the tokens, and the
initial configuration is invariant under every permutation (composed with a rotation), so
by uniqueness it stays **equiangular**: :math:`\langle x_i(t), x_j(t) \rangle = \rho(t)` for
all :math:`i \ne j`.

Derivation.  The weights are :math:`w_{ii} = a` (self) and :math:`w_{ij} = b` (each other
token), with

- softmax: :math:`a = e^{\beta} / Z`, :math:`b = e^{\beta\rho} / Z`,
  :math:`Z = e^{\beta} + (n-1) e^{\beta\rho}` (so :math:`a + (n-1) b = 1`);
- uniform: :math:`a = e^{\beta} / n`, :math:`b = e^{\beta\rho} / n`.

With :math:`y_i = \sum_j w_{ij} x_j = a x_i + b \sum_{j \ne i} x_j`, one has
:math:`\langle x_i, y_i \rangle = a + (n-1) b \rho` and, for :math:`k \ne i`,
:math:`\langle y_i, x_k \rangle = a\rho + b (1 + (n-2)\rho)`.  The velocity
:math:`\dot x_i = y_i - \langle x_i, y_i \rangle x_i` then gives

.. math::

   \langle \dot x_i, x_k \rangle = a\rho + b(1 + (n-2)\rho) - (a + (n-1)b\rho)\rho
                                 = b (1 - \rho)(1 + (n-1)\rho)

(the self weight a cancels, for both normalizations), and since
:math:`\dot\rho = \langle \dot x_i, x_k \rangle + \langle x_i, \dot x_k \rangle`,

.. math::

   \frac{d\rho}{dt} = 2\, b(\rho)\, (1 - \rho)(1 + (n-1)\rho).

The Gram matrix :math:`(1-\rho) I + \rho \mathbf{1}\mathbf{1}^\top` is positive definite
exactly for :math:`\rho \in (-1/(n-1), 1)`; there the rate is > 0, so :math:`\rho` increases
monotonically to 1.  Near :math:`\rho = 1` the rate is :math:`\approx 2 b(1)\, n (1 - \rho)`
(:math:`b(1) = 1/n` for softmax, :math:`e^{\beta}/n` for uniform): :math:`1 - \rho` decays
exponentially, so :math:`\rho = 1` is reached only as :math:`t \to \infty` while the time at
which :math:`\rho = 1 - \delta` is finite for every :math:`\delta > 0`.

Units: t is the model time of the runs; :math:`\rho` is a cosine (dimensionless).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "equiangular_rate",
    "equiangular_inner_product",
    "equiangular_collapse_time",
    "equiangular_positions",
]

NORMALIZATIONS = ("softmax", "uniform")


def _check_n(n) -> int:
    if not (isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 2):
        raise ValueError(f"n must be an integer >= 2 (the number of tokens), got {n!r}")
    return int(n)


def _check_beta(beta) -> float:
    if not (isinstance(beta, numbers.Real) and not isinstance(beta, bool) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    return float(beta)


def _check_normalization(normalization) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    return normalization


def _check_rho0(rho0, n) -> float:
    if not (isinstance(rho0, numbers.Real) and not isinstance(rho0, bool) and -1.0 / (n - 1) < rho0 < 1):
        raise ValueError(f"rho0 must be a number in (-1/(n-1), 1) = ({-1.0 / (n - 1):g}, 1) for n = {n}, got {rho0!r}")
    return float(rho0)


def _other_weight(rho, beta, n, normalization):
    """b(rho): the weight of each other token (softmax written with e^{beta (rho - 1)}: no overflow)."""
    if normalization == "softmax":
        e = np.exp(beta * (rho - 1.0))
        return e / (1.0 + (n - 1) * e)
    return np.exp(beta * rho) / n


def equiangular_rate(rho: ArrayLike, beta: float, n: int, normalization: str = "softmax") -> np.ndarray:
    r"""d rho / dt = 2 b(rho) (1 - rho)(1 + (n - 1) rho) for n equiangular tokens (Q = K = V = I).

    b(rho) = e^{beta rho} / (e^{beta} + (n - 1) e^{beta rho}) (softmax) or e^{beta rho} / n
    (uniform).  rho: the common inner product <x_i, x_j> (a cosine, dimensionless), any
    shape; returns an array of that shape, per unit model time.
    """
    n = _check_n(n)
    beta = _check_beta(beta)
    normalization = _check_normalization(normalization)
    rho = np.asarray(rho, dtype=np.float64)
    return 2.0 * _other_weight(rho, beta, n, normalization) * (1.0 - rho) * (1.0 + (n - 1) * rho)


def _rhs(beta, n, normalization):
    def f(t, y):
        return 2.0 * _other_weight(y, beta, n, normalization) * (1.0 - y) * (1.0 + (n - 1) * y)
    return f


def equiangular_inner_product(t: ArrayLike, beta: float, n: int, normalization: str = "softmax",
                              rho0: float = 0.0) -> np.ndarray:
    r"""rho(t) = <x_i(t), x_j(t)> (i != j) of n equiangular tokens, Q = K = V = I, rho(0) = rho0.

    Solves d rho / dt = 2 b(rho) (1 - rho)(1 + (n - 1) rho) (``equiangular_rate``) with
    ``scipy.integrate.solve_ivp`` (DOP853, rtol 1e-13, atol 1e-15).  ``t``: model times >= 0,
    any shape and order; returns rho (dimensionless) at them, same shape.  rho0 must lie in
    (-1/(n-1), 1) (the Gram matrix is positive definite); the initial frame x_i = R e_i has
    rho0 = 0.  Values are clipped at 1 (the fixed point, which the solution never crosses).
    """
    from scipy.integrate import solve_ivp

    n = _check_n(n)
    beta = _check_beta(beta)
    normalization = _check_normalization(normalization)
    rho0 = _check_rho0(rho0, n)
    t = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("t must hold finite times >= 0")
    flat = t.ravel()
    if flat.size == 0:
        return np.empty(t.shape)
    order = np.unique(flat)
    if order[-1] == 0:
        return np.full(t.shape, rho0)
    sol = solve_ivp(_rhs(beta, n, normalization), (0.0, float(order[-1])), [rho0], method="DOP853",
                    t_eval=order, rtol=1e-13, atol=1e-15)
    if not sol.success:  # pragma: no cover - the rate is smooth and bounded
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    rho = np.minimum(sol.y[0], 1.0)  # rho = 1 is a fixed point: round-off (~1e-13) may step past it
    return np.interp(flat, sol.t, rho).reshape(t.shape)  # exact lookup: flat's values are in sol.t


def _collapse_time(beta, n, normalization, delta, rho0):
    """t* = int_{rho0}^{1 - delta} d rho / rate(rho): the inverse function t(rho), integrated
    as the ODE dt/drho = 1 / rate(rho) (rate > 0 on the interval), robust when t* is huge."""
    from scipy.integrate import solve_ivp

    target = 1.0 - delta
    if rho0 >= target:
        return 0.0

    def slowness(rho, t):  # 1 / rate, with 1 / b written out: e^{beta (1 - rho)} + n - 1, or n e^{-beta rho}
        with np.errstate(over="ignore"):
            inv_b = np.exp(beta * (1.0 - rho)) + (n - 1) if normalization == "softmax" else n * np.exp(-beta * rho)
        return inv_b / (2.0 * (1.0 - rho) * (1.0 + (n - 1) * rho))

    # integrate slowness / scale (in (0, ~1]: 1 / b is largest at rho0, b increases with rho)
    scale = max(float(slowness(rho0, 0.0)), float(slowness(target, 0.0)))
    if not math.isfinite(scale):
        return math.inf

    def scaled(rho, t):
        return slowness(rho, t) / scale

    sol = solve_ivp(scaled, (rho0, target), [0.0], method="DOP853", rtol=1e-13, atol=1e-15)
    if not sol.success:  # pragma: no cover - a smooth positive integrand
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    with np.errstate(over="ignore"):
        return float(sol.y[0, -1] * scale)


def equiangular_collapse_time(beta: float | ArrayLike, n: int, normalization: str = "softmax",
                              delta: float = 1e-3, rho0: float = 0.0) -> float | np.ndarray:
    r"""t*: the model time at which rho(t) (``equiangular_inner_product``) reaches 1 - delta.

    Finite for every delta in (0, 2): near rho = 1 the gap 1 - rho decays exponentially
    (rate ~ 2 b(1) n).  Computed as t* = int_{rho0}^{1 - delta} d rho / (d rho / dt), the
    inverse function t(rho) integrated by ``solve_ivp`` (DOP853, rtol 1e-13, atol 1e-15),
    accurate however large t* is (softmax: t* ~ e^beta); inf where t* or 1 / rate exceeds
    the float range (softmax: beta (1 - rho0) > ~709); 0 when rho0 >= 1 - delta already.  ``beta``: a number (returns a float) or
    an array of them (returns an array of that shape).  Units: model time.
    """
    n = _check_n(n)
    normalization = _check_normalization(normalization)
    rho0 = _check_rho0(rho0, n)
    if not (isinstance(delta, numbers.Real) and not isinstance(delta, bool) and 0 < delta < 2):
        raise ValueError(f"delta must be a number in (0, 2), got {delta!r}")
    delta = float(delta)
    if isinstance(beta, numbers.Real) and not isinstance(beta, bool):
        return _collapse_time(_check_beta(beta), n, normalization, delta, rho0)
    betas = np.asarray(beta)
    if betas.dtype.kind not in "iuf":
        raise ValueError(f"beta must be a finite number >= 0 or an array of them, got {beta!r}")
    out = [_collapse_time(_check_beta(float(b)), n, normalization, delta, rho0) for b in betas.ravel()]
    return np.asarray(out, dtype=np.float64).reshape(betas.shape)


def equiangular_positions(n: int, d: int | None = None, systems: int = 1, seed: int = 0) -> np.ndarray:
    r"""(systems, n, d) float64 array: system s holds x_i = R_s e_i, i = 1..n (rows).

    R_s is a Haar-random orthogonal d x d matrix (QR of a Gaussian matrix with the signs of
    R's diagonal moved into Q) drawn from ``numpy.random.default_rng(seed)``, one per
    system, so every system is an orthonormal frame (rho0 = 0) in a random orientation.
    d defaults to n and must be >= n.  Save it with ``numpy.save`` for ``initial.kind = "file"``.
    """
    n = _check_n(n)
    if d is None:
        d = n
    if not (isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= n):
        raise ValueError(f"d must be an integer >= n = {n}, got {d!r}")
    if not (isinstance(systems, numbers.Integral) and not isinstance(systems, bool) and systems >= 1):
        raise ValueError(f"systems must be an integer >= 1, got {systems!r}")
    if not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    out = np.empty((int(systems), n, int(d)), dtype=np.float64)
    for s in range(int(systems)):
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        q *= np.sign(np.diag(r))  # Haar measure on O(d) (Mezzadri 2007)
        out[s] = q[:, :n].T  # row i = R e_i, the i-th column of R
    return out
