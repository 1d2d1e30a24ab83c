"""The particle solver against exact solutions, observed orders and linear stability."""

import numpy as np
import pytest
import scipy.linalg
from scipy.special import iv

import mfpde
from mfpde.initial import initial_measure
from mfpde.options import InitialOptions, SolverOptions
from mfpde.solvers import ParticleSolver

from .conftest import unit_rows


def final_state(model, x0, t_end, **options):
    solver = ParticleSolver(model, SolverOptions(**options))
    *_, (t, x) = solver.snapshots(x0, np.full(len(x0), 1 / len(x0)), [t_end])
    assert t == t_end
    return x


@pytest.fixture
def zero_temperature_problem(rng):
    """beta = inf (continuum), Q = K = I, random symmetric V: x(t) = e^{Vt} x0 / |e^{Vt} x0|."""
    d = 3
    S = rng.standard_normal((d, d))
    V = (S + S.T) / 2
    x0 = unit_rows(rng, 40, d)
    exact = x0 @ scipy.linalg.expm(2.0 * V).T
    exact /= np.linalg.norm(exact, axis=1, keepdims=True)
    return mfpde.Model(V=V, beta="inf"), x0, exact


def test_rk4_tracks_the_exact_zero_temperature_flow(zero_temperature_problem):
    model, x0, exact = zero_temperature_problem
    x = final_state(model, x0, 2.0, integrator="rk4", dt=1e-3)
    assert np.abs(x - exact).max() < 1e-8


@pytest.mark.parametrize("integrator, order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_observed_order(zero_temperature_problem, integrator, order):
    model, x0, exact = zero_temperature_problem
    dts = np.array([0.04, 0.02, 0.01, 0.005])
    errors = [np.abs(final_state(model, x0, 2.0, integrator=integrator, dt=dt) - exact).max() for dt in dts]
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.2


def test_rk45_error_follows_the_tolerance(zero_temperature_problem):
    model, x0, exact = zero_temperature_problem
    errors = []
    for rtol in (1e-5, 1e-7, 1e-9):
        x = final_state(model, x0, 2.0, integrator="rk45", dt=0.1, rtol=rtol, atol=rtol * 1e-2)
        errors.append(np.abs(x - exact).max())
        assert errors[-1] < 100 * rtol
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("integrator", ["euler", "heun", "rk4", "rk45"])
def test_points_stay_on_the_sphere_after_every_step(rng, integrator):
    d = 4
    model = mfpde.Model(Q=rng.standard_normal((d, d)), K=rng.standard_normal((d, d)),
                        V=rng.standard_normal((d, d)), beta=5.0)
    x0 = unit_rows(rng, 60, d)
    solver = ParticleSolver(model, SolverOptions(integrator=integrator, dt=0.05, rtol=1e-4))
    # one requested time per step: every step's result is seen
    for _, x in solver.snapshots(x0, np.full(60, 1 / 60), 0.05 * np.arange(1, 21)):
        assert np.abs(np.linalg.norm(x, axis=1) - 1.0).max() < 1e-12


def test_same_seed_is_bit_identical_and_other_seed_differs():
    model = mfpde.Model(d=3, V=np.diag([1.0, 0.5, -0.5]), beta=8.0)

    def run(seed):
        x0, w = initial_measure(InitialOptions(kind="uniform", n=300, seed=seed), 3)
        return list(ParticleSolver(model, SolverOptions(dt=0.05)).snapshots(x0, w, [0.0, 0.5, 1.0]))

    a, b, c = run(7), run(7), run(8)
    for (ta, xa), (tb, xb) in zip(a, b):
        assert ta == tb
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(a[-1][1], c[-1][1])


def test_requested_times_are_hit_exactly_and_the_first_is_the_initial_state(rng):
    x0 = unit_rows(rng, 10, 2)
    solver = ParticleSolver(mfpde.Model(d=2, beta=1.0), SolverOptions(dt=0.03))
    out = list(solver.snapshots(x0, np.full(10, 0.1), [0.0, 0.1, 0.25, 1.0]))
    assert [t for t, _ in out] == [0.0, 0.1, 0.25, 1.0]
    np.testing.assert_array_equal(out[0][1], x0)


@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
@pytest.mark.parametrize("beta, k", [(5.0, 3), (5.0, 5), (2.0, 2)])
def test_linear_growth_rate_on_the_circle(normalization, beta, k):
    """THEORY.md section 6: from (1 + eps cos k t)/(2 pi), mode k grows like e^{lambda_k t} with
    lambda_k = k^2 I_k(beta) / (beta I_0(beta)) (SA) or k^2 I_k(beta) / beta (USA).
    Quantile particles represent the mode with O((k/N)^2) error; eps = 1e-5 keeps the
    nonlinear correction (~eps e^{lambda t}) below 1e-3 of the rate."""
    n = 2000
    x0, w = initial_measure(InitialOptions(kind="perturbed_uniform", n=n, amplitude=1e-5, mode=k), 2)
    model = mfpde.Model(d=2, beta=beta, normalization=normalization)
    rate = k**2 * iv(k, beta) / beta / (iv(0, beta) if normalization == "softmax" else 1.0)
    t_end = min(1.0, 2.0 / rate)
    (_, xa), (_, xb) = ParticleSolver(model, SolverOptions(dt=t_end / 20)).snapshots(x0, w, [0.0, t_end])

    def mode_amplitude(x):
        theta = np.arctan2(x[:, 1], x[:, 0])
        return abs(np.sum(w * np.exp(1j * k * theta)))

    measured = np.log(mode_amplitude(xb) / mode_amplitude(xa)) / t_end
    assert measured == pytest.approx(rate, rel=0.01)


def test_hardmax_run_stays_finite_and_on_the_sphere(rng):
    model = mfpde.Model(d=3, beta="inf", zero_temperature="hardmax")
    x0 = unit_rows(rng, 50, 3)
    x = final_state(model, x0, 1.0, integrator="rk4", dt=0.01)
    assert np.all(np.isfinite(x))
    assert np.abs(np.linalg.norm(x, axis=1) - 1).max() < 1e-12


def test_bad_times_are_rejected(rng):
    solver = ParticleSolver(mfpde.Model(d=2, beta=1.0))
    with pytest.raises(ValueError, match="times must be increasing"):
        list(solver.snapshots(unit_rows(rng, 3, 2), np.full(3, 1 / 3), [0.5, 0.2]))


def test_perturbed_uniform_quantiles_and_random_draws_carry_the_mode_at_its_phase():
    """Density (1 + a cos(k (t - phase)))/(2 pi) has mu_k = sum m e^{ik theta} = (a/2) e^{ik phase}:
    quantile points reproduce it to O((k/n)^2); i.i.d. draws (sampling = "random") to the sampling
    noise, whose modes have E|mu_j|^2 = 1/n for j != k.  A Kolmogorov-Smirnov test against the
    distribution function checks the draws are the law itself."""
    from scipy.stats import kstest

    a, k, phase, n = 0.3, 3, 0.7, 4000

    def modes(x, w):
        theta = np.arctan2(x[:, 1], x[:, 0])
        return np.array([np.sum(w * np.exp(1j * j * theta)) for j in range(1, 7)])

    x, w = initial_measure(InitialOptions(kind="perturbed_uniform", n=n, amplitude=a, mode=k, phase=phase), 2)
    mu = modes(x, w)
    assert abs(mu[k - 1] - 0.5 * a * np.exp(1j * k * phase)) < 10 * (k / n) ** 2
    assert np.abs(np.delete(mu, k - 1)).max() < 10 * (k / n) ** 2
    opts = InitialOptions(kind="perturbed_uniform", n=n, amplitude=a, mode=k, phase=phase, sampling="random", seed=4)
    x, w = initial_measure(opts, 2)
    mu = modes(x, w)
    assert abs(mu[k - 1] - 0.5 * a * np.exp(1j * k * phase)) < 5 / np.sqrt(n)  # 5 sigma
    noise = np.abs(np.delete(mu, k - 1))
    assert noise.max() < 5 / np.sqrt(n) and noise.mean() > 0.2 / np.sqrt(n)  # noise is really there
    t = np.mod(np.arctan2(x[:, 1], x[:, 0]) - phase, 2 * np.pi)
    assert kstest(t, lambda s: (s + (a / k) * np.sin(k * s)) / (2 * np.pi)).pvalue > 1e-3
    again, _ = initial_measure(opts, 2)
    np.testing.assert_array_equal(again, x)
