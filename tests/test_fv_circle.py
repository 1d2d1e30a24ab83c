"""The finite-volume solver on the circle (mfpde.solvers.FVCircleSolver).

Tiers: exact (mesh, cell integrals, mass to round-off, positivity and its CFL bound),
kernel (FFT path == direct path), analytic (THEORY.md section 6 growth rates, section 5
heat phase), convergence (order >= 1.8; W_1 to the particle solver shrinks), runner.
Every solve also checks mass to 1e-13 and masses >= 0.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import iv

import mfpde
from mfpde import Model, wasserstein
from mfpde.config import ConfigError, load_config
from mfpde.initial import (
    initial_cell_masses,
    initial_measure,
    perturbed_uniform_density,
    wrapped_normal_density,
)
from mfpde.kernels.fft_circle import (
    circle_attention_sums,
    circle_attention_sums_at,
    circle_attention_sums_direct,
    rotation_parameters,
)
from mfpde.mesh import CircleMesh
from mfpde.options import InitialOptions, SolverOptions
from mfpde.solvers import FVCircleSolver, ParticleSolver
from mfpde.solvers.fv_circle import MAX_CFL, muscl_rhs

CONFIGS = Path(__file__).resolve().parent.parent / "data" / "configs"


def fv(model, cells, dt=0.05, cfl=0.4, **kw):
    return FVCircleSolver(model, SolverOptions(method="fv", cells=cells, dt=dt, cfl=cfl), **kw)


def check_mass_and_sign(m):
    assert abs(m.sum() - 1.0) <= 1e-13, f"mass drift {m.sum() - 1.0:.2e}"
    assert m.min() >= 0.0, f"negative mass {m.min():.2e}"


def rotation(r, alpha):
    c, s = math.cos(alpha), math.sin(alpha)
    return r * np.array([[c, -s], [s, c]])


# ------------------------------------------------------------------------------- exact


def test_mesh_geometry():
    mesh = CircleMesh(12)
    assert mesh.dx == pytest.approx(2 * math.pi / 12, rel=1e-15)
    assert mesh.edges[0] == 0.0 and mesh.edges[-1] == 2 * math.pi and len(mesh.edges) == 13
    np.testing.assert_allclose(mesh.centers, 0.5 * (mesh.edges[:-1] + mesh.edges[1:]), rtol=1e-15)
    np.testing.assert_array_equal(mesh.faces, mesh.edges[:-1])
    np.testing.assert_allclose(np.linalg.norm(mesh.center_points, axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(np.sum(mesh.face_points * mesh.face_normals, axis=1), 0.0, atol=1e-16)
    assert mesh.areas.sum() == pytest.approx(2 * math.pi, rel=1e-14)
    with pytest.raises(ValueError, match="solver.cells"):
        CircleMesh(2)


def _quad_cells(density, edges):
    return np.array([quad(density, a, b, epsabs=1e-16, epsrel=1e-13, limit=200)[0]
                     for a, b in zip(edges[:-1], edges[1:])])


@pytest.mark.parametrize("kind", ["uniform", "perturbed_uniform", "wrapped_normal_mixture", "vmf_mixture"])
def test_initial_cell_masses_are_exact_cell_integrals(kind):
    mesh = CircleMesh(48)
    if kind == "uniform":
        opts, dens = InitialOptions(kind=kind), lambda t: 1 / (2 * math.pi)
    elif kind == "perturbed_uniform":
        opts = InitialOptions(kind=kind, amplitude=0.7, mode=5, phase=0.4)
        dens = lambda t: (1 + 0.7 * np.cos(5 * (t - 0.4))) / (2 * np.pi)  # noqa: E731
    elif kind == "wrapped_normal_mixture":
        opts = InitialOptions(kind=kind, means=[0.1, 4.0], sigmas=[0.2, 2.5], weights=[1, 3])
        dens = lambda t: wrapped_normal_density(t, [0.1, 4.0], [0.2, 2.5], [1, 3], n_wraps=12)  # noqa: E731
    else:
        mus, kappas = [0.3, 2.5], [4.0, 400.0]
        opts = InitialOptions(kind=kind, means=[[math.cos(m), math.sin(m)] for m in mus], kappas=kappas,
                              weights=[2, 1])

        def dens(t):
            return sum(w * np.exp(k * (np.cos(t - m) - 1)) / (2 * np.pi * iv(0, k) * np.exp(-k))
                       for w, m, k in zip([2 / 3, 1 / 3], mus, kappas))
    masses = initial_cell_masses(opts, mesh.edges)
    assert masses.shape == (48,) and abs(masses.sum() - 1) < 1e-15 and masses.min() >= 0
    np.testing.assert_allclose(masses, _quad_cells(dens, mesh.edges), rtol=1e-11, atol=1e-16)


def test_initial_cell_masses_from_files(tmp_path):
    mesh = CircleMesh(8)
    theta = np.array([0.1, 0.2, 3.3, 6.2])
    np.save(tmp_path / "x.npy", np.stack([np.cos(theta), np.sin(theta)], axis=1))
    m = initial_cell_masses(InitialOptions(kind="file", path=str(tmp_path / "x.npy")), mesh.edges)
    np.testing.assert_allclose(m, [0.5, 0, 0, 0, 0.25, 0, 0, 0.25], atol=1e-15)
    res = mfpde.run({"model": {"d": 2, "beta": 2.0}, "solver": {"method": "fv", "cells": 8, "t_end": 0.2},
                     "initial": {"kind": "perturbed_uniform", "amplitude": 0.5, "mode": 1},
                     "output": {"path": str(tmp_path / "a.h5"), "save_every": 0.1}})
    again = initial_cell_masses(InitialOptions(kind="file", path=str(tmp_path / "a.h5"), snapshot=-1), mesh.edges)
    np.testing.assert_allclose(again, res.mass[-1], rtol=1e-15)
    with pytest.raises(ValueError, match="8 cells"):
        initial_cell_masses(InitialOptions(kind="file", path=str(tmp_path / "a.h5")), CircleMesh(16).edges)


def test_upwind_muscl_euler_step_is_positive_up_to_cfl_one_half(rng):
    """The positivity bound of docs/methods.md: one Euler stage with dt max|u| / dx <= 1/2
    keeps every mass >= 0 (any sign pattern of u, zeros in the data); a lone spike with
    outflow on both sides shows the bound is sharp."""
    M, dx = 64, 2 * math.pi / 64
    for limiter in ("mc", "minmod"):
        for _ in range(200):
            m = rng.uniform(size=M) * (rng.uniform(size=M) < 0.5)
            m /= m.sum()
            u = rng.standard_normal(M)
            dt = MAX_CFL * dx / np.abs(u).max()
            new = m + dt * muscl_rhs(m, u, dx, limiter)
            assert new.min() >= -1e-18 and abs(new.sum() - 1) < 1e-14
    spike = np.zeros(M)
    spike[10] = 1.0
    u = np.zeros(M)
    u[10], u[11] = -1.0, 1.0
    over = spike + 0.55 * dx * muscl_rhs(spike, u, dx)
    assert over[10] < 0  # cfl 0.55 empties the cell more than completely


def test_cfl_above_one_half_is_refused():
    with pytest.raises(ValueError, match="solver.cfl must be <= 0.5"):
        fv(Model(d=2, beta=1.0), 16, cfl=0.6)
    with pytest.raises(ConfigError, match="solver.cfl"):
        mfpde.run({"model": {"d": 2}, "solver": {"method": "fv", "cfl": 0.7}})


# ------------------------------------------------------------------------------- field


@pytest.mark.parametrize("beta", [0.0, 1.0, 7.0, 40.0])
def test_fft_sums_equal_direct_double_sum(rng, beta):
    M = 96
    masses = rng.uniform(size=M)
    masses /= masses.sum()
    r, alpha = 1.3, 0.7
    fft, s1 = circle_attention_sums(beta * r, alpha, masses)
    direct, s2 = circle_attention_sums_direct(beta * r, alpha, masses)
    assert s1 == s2 == beta * r
    np.testing.assert_allclose(fft, direct, rtol=0, atol=1e-15 * np.abs(direct).max())
    faces = np.array([0, 5, 95])
    at = circle_attention_sums_at(beta * r, alpha, masses, faces)
    np.testing.assert_allclose(at[1:] / at[0], direct[1:, faces] / direct[0, faces], rtol=1e-12, atol=1e-14)


def test_rotation_parameters():
    r, alpha = rotation_parameters(rotation(2.0, -1.2))
    assert r == pytest.approx(2.0, rel=1e-14) and alpha == pytest.approx(-1.2, rel=1e-14)
    assert rotation_parameters(np.diag([1.0, 2.0])) is None
    assert rotation_parameters(np.zeros((2, 2))) == (0.0, 0.0)


@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
@pytest.mark.parametrize("beta", [0.0, 2.0, 12.0])
def test_fft_path_equals_velocity_path(rng, normalization, beta):
    """B = r R(alpha) = Q^T K: the FFT face speed equals mfpde.velocity (targets = faces,
    sources = centers with masses) for a general V."""
    Q = rotation(1.1, 0.4)
    K = rotation(0.9, -1.0)
    V = rng.standard_normal((2, 2))
    model = Model(Q=Q, K=K, V=V, beta=beta, d=2, normalization=normalization)
    masses = rng.uniform(size=80) ** 3
    masses /= masses.sum()
    a = fv(model, 80, field_path="fft").face_speed(masses)
    b = fv(model, 80, field_path="direct").face_speed(masses)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(b).max())


def test_large_beta_fft_recomputes_empty_regions_and_matches_direct():
    """beta = 300, all mass in two narrow clusters: Z spans e^{-600}; the FFT path flags
    the faces where its round-off would dominate and recomputes them; no NaN/inf."""
    model = Model(d=2, beta=300.0)
    mesh = CircleMesh(128)
    opts = InitialOptions(kind="wrapped_normal_mixture", means=[1.0, 2.0], sigmas=[0.03, 0.05])
    masses = initial_cell_masses(opts, mesh.edges)
    solver = fv(model, 128)
    a = solver.face_speed(masses)
    assert solver.n_direct_faces > 0 and np.all(np.isfinite(a))
    b = fv(model, 128, field_path="direct").face_speed(masses)
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_general_B_takes_the_direct_path():
    model = Model(d=2, beta=3.0, Q=np.diag([1.0, 0.5]))
    assert fv(model, 32).field_path == "direct"
    with pytest.raises(ValueError, match="a I \\+ b J"):
        fv(model, 32, field_path="fft")
    m = initial_cell_masses(InitialOptions(kind="perturbed_uniform", amplitude=0.3, mode=2), CircleMesh(32).edges)
    out = fv(model, 32).advance(m, 0.0, 0.5)
    check_mass_and_sign(out)


def test_zero_temperature_continuum_is_linear_transport():
    """beta = inf, V = diag(1, -1): u(t) = -sin 2t; mass flows to t = 0 and pi; the FV
    solution matches the exact push-forward of the cell masses within the scheme error."""
    model = Model(d=2, beta="inf", V=np.diag([1.0, -1.0]))
    solver = fv(model, 256, dt=0.02)
    np.testing.assert_allclose(solver.face_speed(None), -np.sin(2 * solver.mesh.faces), atol=1e-15)
    mesh = solver.mesh
    m0 = initial_cell_masses(InitialOptions(kind="uniform"), mesh.edges)
    T = 0.5
    m = solver.advance(m0, 0.0, T)
    check_mass_and_sign(m)
    # exact: dt/dtheta = -sin 2 theta  =>  tan theta(t) = tan theta_0 e^{-2t}
    edges_T = np.arctan2(np.sin(mesh.edges) * math.exp(-T), np.cos(mesh.edges) * math.exp(T))
    F = lambda th: np.mod(np.arctan2(np.sin(th) * math.exp(T), np.cos(th) * math.exp(-T)), 2 * math.pi)  # noqa: E731
    back = F(mesh.edges)  # pre-images of the edges at time 0
    back[-1] = 2 * math.pi
    exact = np.diff(back) / (2 * math.pi)
    assert np.isfinite(edges_T).all()
    assert np.abs(m - exact).sum() < 2e-3


# ----------------------------------------------------------------------------- analytic


def growth_rate(beta, normalization, k):
    lam = k * k * iv(k, beta) / beta
    return lam / iv(0, beta) if normalization == "softmax" else lam


@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
@pytest.mark.parametrize("beta", [2.0, 5.0, 10.0])
def test_linear_growth_rates_match_bessel_formula(beta, normalization):
    """THEORY.md section 6: from (1 + 1e-4 cos kt)/(2 pi), |mu_k| grows like
    e^{lambda_k t}; every k = 1..8 within 1% (measured: 4e-5 .. 1.6e-3 at M = 256, the
    (k dx)^2 / 24 of cell averages).  The window is 3 / lambda_k, but no longer than
    20 / max_j lambda_j so that round-off seeds of the fastest mode stay < 1e-8."""
    M = 256
    mesh = CircleMesh(M)
    lam_max = max(growth_rate(beta, normalization, j) for j in range(1, 40))
    model = Model(d=2, beta=beta, normalization=normalization)
    for k in range(1, 9):
        lam = growth_rate(beta, normalization, k)
        T = min(3.0 / lam, 20.0 / lam_max)
        solver = fv(model, M, dt=T / 40)
        m0 = initial_cell_masses(InitialOptions(kind="perturbed_uniform", amplitude=1e-4, mode=k), mesh.edges)
        m = solver.advance(m0, 0.0, T)
        check_mass_and_sign(m)
        wave = np.exp(1j * k * mesh.centers)
        measured = math.log(abs(m @ wave) / abs(m0 @ wave)) / T
        assert measured == pytest.approx(lam, rel=0.01), (k, measured, lam)


def heat_deviation(beta, M=512, s=0.02):
    """L1 distance at slow time s = t / beta between the FV solution (V = -I) and the exact
    forward heat flow of the wrapped-normal mixture (variances + 2 t / beta)."""
    means, sigmas, weights = (1.0, 3.5), (0.3, 0.4), (0.6, 0.4)
    opts = InitialOptions(kind="wrapped_normal_mixture", means=means, sigmas=sigmas, weights=weights)
    model = Model(d=2, beta=beta, V=-np.eye(2))
    solver = fv(model, M, dt=0.05)
    T = s * beta
    m = solver.advance(initial_cell_masses(opts, solver.mesh.edges), 0.0, T)
    check_mass_and_sign(m)
    spread = tuple(math.sqrt(x * x + 2 * T / beta) for x in sigmas)
    exact = initial_cell_masses(opts.replace(sigmas=spread), solver.mesh.edges)
    change = np.abs(initial_cell_masses(opts, solver.mesh.edges) - exact).sum()
    return np.abs(m - exact).sum(), change


def test_heat_phase_tracks_forward_heat_equation():
    """THEORY.md section 5 (V = -I, beta large): at s = t / beta = 0.02 the density is the
    heat flow of rho_0, up to a deviation that falls like 1/beta (measured L1: 3.4e-2,
    1.9e-2, 9.8e-3 at beta = 25, 50, 100, against an L1 change of 0.15 from rho_0)."""
    dev = {beta: heat_deviation(beta) for beta in (25.0, 50.0, 100.0)}
    (d25, change), (d50, _), (d100, _) = dev[25.0], dev[50.0], dev[100.0]
    assert d25 > d50 > d100
    assert d100 < 0.08 * change
    # O(1/beta): beta * deviation roughly constant
    for a, b in ((d25 * 25, d50 * 50), (d50 * 50, d100 * 100)):
        assert 0.7 < a / b < 1.4


# --------------------------------------------------------------------------- convergence


def _smooth_solution(M, limiter="mc", T=0.5):
    model = Model(d=2, beta=5.0)
    solver = fv(model, M, dt=0.05, limiter=limiter)
    m0 = initial_cell_masses(InitialOptions(kind="perturbed_uniform", amplitude=0.5, mode=3), solver.mesh.edges)
    m = solver.advance(m0, 0.0, T)
    check_mass_and_sign(m)
    return m


@pytest.mark.parametrize("limiter", ["mc", "minmod"])
def test_second_order_convergence_against_fine_grid(limiter):
    """beta = 5, amplitude 0.5, mode 3, t = 0.5: L1 error of cell masses against the
    M = 8192 solution restricted; measured orders 2.08, 2.05, 2.04 (mc) and 1.97, 1.99,
    2.01 (minmod) for M = 128 -> 1024."""
    fine_mesh = CircleMesh(8192)
    fine = _smooth_solution(fine_mesh.M, limiter)
    Ms = [128, 256, 512, 1024]
    errors = [np.abs(_smooth_solution(M, limiter) - fine_mesh.restrict(fine, fine_mesh.M // M)).sum() for M in Ms]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(orders >= 1.8), (errors, orders)


def test_w1_to_particle_solver_shrinks_with_refinement():
    """FV (M cells) vs particles (N = 2M quantile points, rk4) at t = 2, beta = 5,
    amplitude 0.3 mode 3: W_1 (radians, circle method) halves with each refinement
    (measured 2.8e-2, 1.4e-2, 7.1e-3), the O(dx) of representing a density by cells."""
    model = Model(d=2, beta=5.0)
    T = 2.0
    w1 = []
    for M in (64, 128, 256):
        init = InitialOptions(kind="perturbed_uniform", amplitude=0.3, mode=3, n=2 * M)
        solver = fv(model, M)
        m = solver.advance(initial_cell_masses(init, solver.mesh.edges), 0.0, T)
        check_mass_and_sign(m)
        x0, w0 = initial_measure(init, 2)
        *_, (_, x) = ParticleSolver(model, SolverOptions(dt=0.05)).snapshots(x0, w0, [T])
        w1.append(wasserstein(solver.mesh.center_points, m, x, w0, p=1, method="circle"))
    assert w1[0] > w1[1] > w1[2]
    assert w1[2] < 0.6 * w1[1] < 0.36 * w1[0]


# ------------------------------------------------------------------------------ exact: mass


@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_mass_and_positivity_through_near_dirac_clusters(normalization):
    """Softmax at beta = 200 from mode 20 (the fastest one, k^2 ~ 2 beta): 20 clusters
    collapse to one or two cells each.  Uniform at beta = 5 from mode 4 (USA speeds grow
    like e^beta, so larger beta only means more CFL steps): 4 clusters.  Mass is 1 to
    1e-13 and no mass is negative at any snapshot."""
    beta, mode, T = (200.0, 20, 20.0) if normalization == "softmax" else (5.0, 4, 1.0)
    model = Model(d=2, beta=beta, normalization=normalization)
    solver = fv(model, 512, dt=0.1)
    m0 = initial_cell_masses(InitialOptions(kind="perturbed_uniform", amplitude=0.1, mode=mode), solver.mesh.edges)
    for _, m in solver.snapshots(m0, np.linspace(0.0, T, 11)):
        check_mass_and_sign(m)
    assert m.max() > 0.45 / mode  # each cluster's mass sits in at most two cells
    assert m.min() < 1e-12  # and the gaps between them are (numerically) empty


# ------------------------------------------------------------------------------- runner


def _fv_config(tmp_path, **solver):
    cfg = load_config(CONFIGS / "circle_fv.toml")
    cfg = cfg.replace(**{"solver.t_end": 2.0, "output.path": str(tmp_path / "fv.h5"), **solver})
    return cfg


def test_runner_writes_grid_masses_and_diagnostics(tmp_path):
    res = mfpde.run(_fv_config(tmp_path))
    M = res.config["solver"]["cells"]
    assert res.complete and res.mass.shape == (len(res.times), M) and res.positions is None
    np.testing.assert_allclose(res.grid["areas"], 2 * math.pi / M, rtol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(res.grid["centers"], axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(res.diagnostics["mass"], 1.0, atol=1e-13)
    assert np.all(res.diagnostics["min_mass"] >= 0)
    np.testing.assert_allclose(res.mass.sum(axis=1), 1.0, atol=1e-13)
    assert res.diagnostics["fourier_mode_3"][-1] > res.diagnostics["fourier_mode_3"][0]


def test_runner_refuses_what_fv_cannot_run():
    for cfg, key in (
        ({"model": {"d": 4}, "solver": {"method": "fv"}}, "solver.method"),
        ({"model": {"d": 2}, "solver": {"method": "fv", "cells": 2}}, "solver.cells"),
        ({"model": {"d": 4}, "solver": {"method": "pic"}}, "solver.method"),
        ({"model": {"d": 2, "beta": "inf", "zero_temperature": "hardmax"}, "solver": {"method": "fv"}},
         "model.zero_temperature"),
    ):
        with pytest.raises(ConfigError) as err:
            mfpde.run(cfg)
        assert err.value.key == key and "\n" not in str(err.value)
