"""The equiangular exact solution (mfpde.equiangular) against a plain-NumPy particle system.

The reference integrates dx_i/dt = P_{x_i}(sum_j w_ij x_j) (Q = K = V = I, masses 1/n) with
classical RK4 at a fixed step, independently of mfpde's solvers and kernels; its error is
O(dt^4), about 1e-11 at dt = 2.5e-4 on these horizons (measured: 2e-7 at dt = 2e-3 for the
stiffest case, uniform beta = 4, where the rate near rho = 1 is ~ 2 e^beta).
"""

import math

import numpy as np
import pytest

import mfpde
from mfpde.equiangular import (equiangular_collapse_time, equiangular_inner_product, equiangular_positions,
                               equiangular_rate)

TIMES = np.array([0.25, 0.5, 1.0, 2.0, 3.0, 5.0])


def _velocity(X, beta, normalization):
    S = X @ X.T
    if normalization == "softmax":
        E = np.exp(beta * (S - S.max(axis=1, keepdims=True)))
        E /= E.sum(axis=1, keepdims=True)
    else:
        E = np.exp(beta * S) / len(X)
    Y = E @ X
    return Y - np.sum(Y * X, axis=1, keepdims=True) * X


def _rk4_inner_products(X, beta, normalization, times, dt):
    """(mean, spread) of the off-diagonal Gram entries at each time."""
    out, t = [], 0.0
    off = ~np.eye(len(X), dtype=bool)
    for T in times:
        while t < T - 1e-12:
            h = min(dt, T - t)
            k1 = _velocity(X, beta, normalization)
            k2 = _velocity(X + h / 2 * k1, beta, normalization)
            k3 = _velocity(X + h / 2 * k2, beta, normalization)
            k4 = _velocity(X + h * k3, beta, normalization)
            X = X + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            t += h
        G = (X @ X.T)[off]
        out.append((G.mean(), G.max() - G.min()))
    return np.array(out)


@pytest.mark.parametrize("n", [5, 32])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_particles_follow_the_ode(n, normalization, beta):
    X = equiangular_positions(n, seed=3)[0]
    ref = _rk4_inner_products(X, beta, normalization, TIMES, dt=2.5e-4)
    assert ref[:, 1].max() < 1e-12  # the tokens stay equiangular
    rho = equiangular_inner_product(TIMES, beta, n, normalization)
    assert np.abs(ref[:, 0] - rho).max() < 1e-9
    assert np.all(np.diff(rho) > -1e-12) and np.all(rho <= 1.0)  # increasing, to the solver's round-off


def test_rate_formula():
    rho = np.linspace(-0.2, 1.0, 7)
    beta, n = 2.5, 6
    b_soft = np.exp(beta * rho) / (np.exp(beta) + (n - 1) * np.exp(beta * rho))
    shape = (1 - rho) * (1 + (n - 1) * rho)
    np.testing.assert_allclose(equiangular_rate(rho, beta, n), 2 * b_soft * shape, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(equiangular_rate(rho, beta, n, "uniform"), 2 * np.exp(beta * rho) / n * shape,
                               rtol=1e-14)
    assert equiangular_rate(1.0, beta, n) == 0.0
    assert equiangular_rate(0.3, 0.0, 4) == pytest.approx(2 * 0.25 * 0.7 * 1.9, rel=1e-15)


def test_inner_product_shape_order_and_start():
    t = np.array([[2.0, 0.0], [1.0, 2.0]])
    rho = equiangular_inner_product(t, 1.0, 5, rho0=0.1)
    assert rho.shape == (2, 2) and rho[0, 1] == 0.1 and rho[0, 0] == rho[1, 1]
    assert equiangular_inner_product(0.0, 1.0, 5).shape == ()


@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0, 9.0])
@pytest.mark.parametrize("delta", [1e-3, 0.5])
def test_collapse_time_is_where_rho_reaches_one_minus_delta(normalization, beta, delta):
    n = 5
    t_star = equiangular_collapse_time(beta, n, normalization, delta=delta)
    assert 0 < t_star < math.inf
    rho = equiangular_inner_product([t_star], beta, n, normalization)[0]
    assert abs(rho - (1 - delta)) < 1e-10


def test_collapse_time_vectorized_and_trivial():
    betas = np.array([1.0, 4.0])
    t = equiangular_collapse_time(betas, 5)
    assert t.shape == (2,) and t[0] == equiangular_collapse_time(1.0, 5) and t[1] == equiangular_collapse_time(4.0, 5)
    assert equiangular_collapse_time(1.0, 5, rho0=0.9999) == 0.0
    # softmax: larger beta, slower collapse (metastability)
    assert t[1] > t[0]


def test_collapse_time_at_large_beta():
    # softmax: b(0) = 1 / (e^beta + n - 1), so t* grows like e^beta; it stays computable up to
    # the float range and is inf beyond (1 / b overflows at beta ~ 709)
    t = equiangular_collapse_time(np.array([50.0, 100.0, 300.0]), 32)
    assert np.all(np.isfinite(t)) and np.all(np.diff(np.log(t)) > 0)
    assert np.log(t[2]) - np.log(t[1]) == pytest.approx(200.0, rel=0.01)
    assert equiangular_collapse_time(800.0, 32) == math.inf
    # the two solvers agree at t* ~ 6e6; rtol 1e-13 of t* is ~1e-6 model time, and near t* the
    # rate is ~ 2 delta = 2e-3, so rho(t*) matches 1 - delta to ~1e-9 (measured 5e-10), not 1e-10
    t20 = equiangular_collapse_time(20.0, 32)
    assert 1e6 < t20 < 1e8
    assert abs(equiangular_inner_product([t20], 20.0, 32)[0] - (1 - 1e-3)) < 1e-8


def test_positions_are_rotated_frames():
    X = equiangular_positions(4, d=6, systems=3, seed=1)
    assert X.shape == (3, 4, 6) and X.dtype == np.float64
    for s in range(3):
        np.testing.assert_allclose(X[s] @ X[s].T, np.eye(4), atol=1e-14)
    assert not np.allclose(X[0], X[1])
    np.testing.assert_array_equal(equiangular_positions(4, d=6, systems=3, seed=1), X)
    assert equiangular_positions(3).shape == (1, 3, 3)


@pytest.mark.parametrize("call, message", [
    (lambda: equiangular_inner_product([1.0], 1.0, 5, rho0=-0.25), r"rho0 must be a number in \(-1/\(n-1\), 1\)"),
    (lambda: equiangular_inner_product([1.0], 1.0, 5, rho0=1.0), "rho0 must be"),
    (lambda: equiangular_inner_product([1.0], -1.0, 5), "beta must be a finite number >= 0"),
    (lambda: equiangular_inner_product([1.0], math.inf, 5), "beta must be a finite number >= 0"),
    (lambda: equiangular_inner_product([1.0], 1.0, 1), "n must be an integer >= 2"),
    (lambda: equiangular_inner_product([1.0], 1.0, 5.0), "n must be an integer >= 2"),
    (lambda: equiangular_inner_product([-1.0], 1.0, 5), "t must hold finite times >= 0"),
    (lambda: equiangular_inner_product([1.0], 1.0, 5, "soft"), "normalization must be one of softmax, uniform"),
    (lambda: equiangular_rate(0.0, 1.0, 5, "soft"), "normalization must be one of"),
    (lambda: equiangular_collapse_time(1.0, 5, delta=0.0), r"delta must be a number in \(0, 2\)"),
    (lambda: equiangular_collapse_time([1.0, -2.0], 5), "beta must be a finite number >= 0"),
    (lambda: equiangular_positions(5, d=4), "d must be an integer >= n = 5"),
    (lambda: equiangular_positions(5, systems=0), "systems must be an integer >= 1"),
])
def test_input_errors(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_exported_from_the_package():
    for name in ("equiangular_rate", "equiangular_inner_product", "equiangular_collapse_time",
                 "equiangular_positions"):
        assert name in mfpde.__all__ and getattr(mfpde, name) is getattr(mfpde.equiangular, name)
