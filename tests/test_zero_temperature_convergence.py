"""The zero-temperature particle flow converges to Pi#rho_0 at the derived rates.

docs/analysis.md, "How fast the zero-temperature flow reaches Pi#rho_0": for B = I,
symmetric V with eigenvalues l1 > l2 > l3, gap g = l1 - l2, rho_0 uniform on S^2,

    W_1(t) ~ (2/pi) (g t + 1) e^{-g t},      W_2(t) ~ sqrt(2 ln 2) e^{-g t / 2},

the slow W_2 rate coming from the mass that starts near E-perp.  The particles here are
a Fibonacci lattice (a stratified quadrature of the uniform measure: <x, e_1> takes the
values 1 - (2i + 1)/N exactly), so the band |<x, e_1>| < e^{-g t} that carries W_2 is
resolved without sampling noise up to e^{-g t} >> 2/N.
"""

import numpy as np
import pytest

import mfpde
from mfpde.options import SolverOptions
from mfpde.solvers import ParticleSolver


def fibonacci_sphere(n):
    i = np.arange(n)
    a = 1.0 - (2 * i + 1) / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - a * a)
    return np.stack([a, r * np.cos(phi), r * np.sin(phi)], axis=1)


@pytest.mark.parametrize("eigenvalues", [(1.0, 0.0, -0.5), (2.0, 1.2, 0.0)])
def test_w1_and_w2_decay_at_the_derived_rates(eigenvalues):
    rng = np.random.default_rng(4)
    Qr, _ = np.linalg.qr(rng.standard_normal((3, 3)))  # a rotated eigenbasis
    V = Qr @ np.diag(eigenvalues) @ Qr.T
    g = eigenvalues[0] - eigenvalues[1]
    n = 20_000
    x0 = fibonacci_sphere(n) @ Qr.T  # rotating the lattice keeps it a uniform quadrature
    model = mfpde.Model(V=V, beta="inf")
    points, weights = mfpde.limit_measure(model, x0)
    assert len(points) == 2
    times = np.linspace(3.0 / g, 7.0 / g, 9)
    solver = ParticleSolver(model, SolverOptions(integrator="rk4", dt=0.02))
    w1, w2 = [], []
    for _, x in solver.snapshots(x0, np.full(n, 1 / n), times):
        w1.append(mfpde.wasserstein(x, None, points, weights, p=1))
        w2.append(mfpde.wasserstein(x, None, points, weights, p=2))
    w1, w2 = np.array(w1), np.array(w2)
    rate_w2 = -np.polyfit(times, np.log(w2), 1)[0]
    rate_w1 = -np.polyfit(times, np.log(w1 / (g * times + 1)), 1)[0]
    assert rate_w2 == pytest.approx(g / 2, rel=0.10)
    assert rate_w1 == pytest.approx(g, rel=0.10)
    # the prefactors too, once the neglected relative terms O(e^{-g t}) and
    # O(e^{-(l1 - l3 - g) t}) are small (t >= 5/g: e^{-2.5} ~ 0.08 at worst, ~0.03 in effect)
    late = times >= 5.0 / g
    np.testing.assert_allclose(w2[late] / np.sqrt(2 * np.log(2) * np.exp(-g * times[late])), 1.0, atol=0.05)
    np.testing.assert_allclose(
        w1[late] / ((2 / np.pi) * (g * times[late] + 1) * np.exp(-g * times[late])), 1.0, atol=0.05
    )
