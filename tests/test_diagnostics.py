"""Diagnostics: registry, exact values, analytic limits."""

import math

import numpy as np
import pytest

from mfpde import diagnostics as D
from mfpde.diagnostics import REGISTRY, evaluate, make_context, output_names
from mfpde.limit import limit_measure
from mfpde.model import Model
from mfpde.options import WassersteinOptions
from mfpde.sphere import angle_to_point, sample_uniform


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _circle(n):
    return angle_to_point(2 * np.pi * (np.arange(n) + 0.5) / n)


def _context(model, X, w=None, **kw):
    return make_context(model, X, w, **kw)


def test_registry_names_and_units():
    assert set(REGISTRY) == {"mass", "min_mass", "energy", "w_to_limit", "dist_to_subspace",
                             "n_clusters", "clustered_fraction", "fourier_modes"}
    for diag in REGISTRY.values():
        assert callable(diag) and diag.unit in ("1", "rad")


def test_unknown_name_lists_valid_ones(rng):
    ctx = _context(Model(d=2), _circle(8))
    with pytest.raises(ValueError, match="unknown diagnostic 'masss'.*valid names: clustered_fraction, dist_to_subspace"):
        evaluate(["masss"], _circle(8), np.full(8, 1 / 8), ctx)


def test_mass_of_normalised_weights_is_one(rng):
    X = sample_uniform(1000, 3, rng)
    w = rng.random(1000)
    w /= w.sum()
    ctx = _context(Model(V=np.diag([1.0, 0.5, 0.2]), d=3), X, w)
    out = evaluate(["mass", "min_mass"], X, w, ctx)
    # summation of 1000 terms: round-off <= 1000 * eps ~ 2e-13
    assert out["mass"] == pytest.approx(1.0, abs=1e-13)
    assert out["min_mass"] == w.min() >= 0


def test_fourier_modes_of_equispaced_points_vanish():
    n = 64
    X = _circle(n)
    ctx = _context(Model(d=2), X, fourier_max_mode=8)
    out = evaluate(["fourier_modes"], X, np.full(n, 1 / n), ctx)
    assert list(out) == [f"fourier_mode_{k}" for k in range(1, 9)] == output_names(["fourier_modes"], ctx)
    # sum of n-th roots of unity (k < n): 0 up to n * eps
    np.testing.assert_allclose(list(out.values()), 0.0, atol=1e-14)


def test_fourier_mode_of_perturbed_density_is_half_the_amplitude():
    # Cell masses of the density (1 + a cos(3 t)) / (2 pi) at equispaced centers: the
    # midpoint rule integrates trigonometric polynomials of degree < n exactly, so
    # |mu_3| = a / 2 and every other mode vanishes, to round-off.
    n, a = 256, 0.2
    X = _circle(n)
    t = 2 * np.pi * (np.arange(n) + 0.5) / n
    w = (1 + a * np.cos(3 * t)) / n
    ctx = _context(Model(d=2), X, w, fourier_max_mode=5)
    modes = D.fourier_modes(X, w, ctx)
    np.testing.assert_allclose(modes, [0, 0, a / 2, 0, 0], atol=1e-14)


def test_fourier_modes_need_the_circle(rng):
    X = sample_uniform(10, 3, rng)
    ctx = _context(Model(V=np.diag([1.0, 0.5, 0.2]), d=3), X)
    with pytest.raises(ValueError, match="d = 2"):
        evaluate(["fourier_modes"], X, np.full(10, 0.1), ctx)


def test_n_clusters_of_three_clumps(rng):
    # three clumps of angular radius ~0.01 rad centered >= 1 rad apart, plus one stray
    # atom carrying 0.1% of the mass (below cluster_min_mass = 1%): 3 clusters.
    centers = np.eye(3)  # pairwise 90 degrees apart
    clumps = [c + 0.01 * rng.standard_normal((200, 3)) for c in centers]
    X = np.vstack(clumps + [[-np.ones(3) / np.sqrt(3)]])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    w = np.append(np.full(600, 0.999 / 600), 0.001)
    ctx = _context(Model(V=np.diag([1.0, 0.5, 0.2]), d=3), X, w)
    assert evaluate(["n_clusters"], X, w, ctx)["n_clusters"] == 3
    # with cluster_min_mass = 0 the stray atom counts as a fourth cluster
    ctx0 = _context(Model(V=np.diag([1.0, 0.5, 0.2]), d=3), X, w, cluster_min_mass=0.0)
    assert D.n_clusters(X, w, ctx0) == 4


def test_n_clusters_ignores_low_density_cells_of_a_mesh():
    # A mesh state on the circle: two bumps with a floor of 1e-6 relative density between
    # them.  All cells are within 0.1 rad of their neighbours, so without the density
    # floor everything would be one cluster.
    n = 720
    X = _circle(n)
    t = 2 * np.pi * (np.arange(n) + 0.5) / n
    dens = 1e-6 + np.exp(-((np.angle(np.exp(1j * t))) ** 2) / 0.01) + np.exp(-((np.angle(np.exp(1j * (t - 2.0)))) ** 2) / 0.01)
    w = dens / dens.sum()
    ctx = _context(Model(d=2), X, w)
    assert D.n_clusters(X, w, ctx) == 2
    ctx_nofloor = _context(Model(d=2), X, w, cluster_threshold=0.0)
    assert D.n_clusters(X, w, ctx_nofloor) == 1


def test_dist_to_subspace_on_the_subsphere_is_zero(rng):
    model = Model(V=np.diag([1.0, 1.0, -1.0]), d=3)
    X = np.column_stack([angle_to_point(rng.uniform(0, 2 * np.pi, 50)), np.zeros(50)])
    ctx = _context(model, X)
    assert D.dist_to_subspace(X, np.full(50, 0.02), ctx) == 0.0
    # points at latitude 0.25 rad are 0.25 rad away
    Y = np.column_stack([np.cos(0.25) * X[:, :2], np.full(50, np.sin(0.25))])
    assert D.dist_to_subspace(Y, np.full(50, 0.02), ctx) == pytest.approx(0.25, rel=1e-14)


@pytest.mark.filterwarnings("ignore::mfpde.limit.ComplexDominantWarning")  # random A, irrelevant here
def test_energy_at_beta_zero_is_the_mean_quadratic_form(rng):
    # beta -> 0: (1/beta) log int int e^{beta <Qx,Ky>} -> int int <Qx,Ky> = <Q m, K m>.
    Q, K = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    X = sample_uniform(300, 3, rng)
    w = rng.random(300)
    w /= w.sum()
    mean = w @ X
    expected = (Q @ mean) @ (K @ mean)
    ctx0 = _context(Model(Q=Q, K=K, beta=0.0, d=3), X, w)
    assert D.energy(X, w, ctx0) == pytest.approx(expected, rel=1e-12)
    # continuity: at beta = 1e-6 the log form differs by O(beta * var) ~ 1e-6
    ctx_small = _context(Model(Q=Q, K=K, beta=1e-6, d=3), X, w)
    assert D.energy(X, w, ctx_small) == pytest.approx(expected, abs=1e-5)


def test_energy_of_uniform_circle_at_beta_zero_vanishes():
    X = _circle(100)
    ctx = _context(Model(beta=0.0, d=2), X)
    # the mean of 100 equispaced unit vectors is 0 to round-off
    assert abs(D.energy(X, np.full(100, 0.01), ctx)) < 1e-28


def test_energy_closed_form_for_two_atoms_and_large_beta():
    # Q = K = I, atoms at angle 0 and phi with masses 1/2: the double integral is
    # (e^{beta} + e^{beta cos phi}) / 2, so E = 1 + log((1 + e^{-beta (1 - cos phi)}) / 2) / beta,
    # evaluated without overflow even at beta = 1e4 (where e^beta is not representable).
    phi = 1.0
    X = angle_to_point([0.0, phi])
    w = np.array([0.5, 0.5])
    for beta in (1.0, 30.0, 1e4):
        ctx = _context(Model(beta=beta, d=2), X, w)
        expected = 1 + math.log((1 + math.exp(-beta * (1 - math.cos(phi)))) / 2) / beta
        assert D.energy(X, w, ctx) == pytest.approx(expected, rel=1e-12)
    ctx_inf = _context(Model(beta="inf", d=2), X, w)
    assert D.energy(X, w, ctx_inf) == 1.0  # max <x_i, x_j> over the support


def test_energy_log_partition_kernel_matches_numpy_reference(rng):
    from mfpde.kernels import log_partition
    from mfpde.kernels.reference import log_partition_numpy

    Q, K = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    model = Model(Q=Q, K=K, beta=5.0, d=3, normalization="uniform")
    X = sample_uniform(500, 3, rng)
    w = np.full(500, 1 / 500)
    ref = log_partition_numpy(model, X, X, w, chunk=64)
    np.testing.assert_allclose(log_partition(model, X, X, w), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["exact", "circle"])
def test_w_to_limit_of_the_limit_is_zero(method):
    model = Model(V=np.diag([2.0, 1.0]), d=2)
    X = _circle(1000)
    ctx = _context(model, X, wasserstein_options=WassersteinOptions(p=2, method=method))
    pts, w = limit_measure(model, X)
    assert D.w_to_limit(pts, w, ctx) == pytest.approx(0.0, abs=1e-12)
    # and from the initial uniform state it is pi/sqrt(12) (midpoint rule, N = 1000: ~2e-6)
    assert D.w_to_limit(X, np.full(1000, 1e-3), ctx) == pytest.approx(np.pi / np.sqrt(12), abs=1e-5)


def test_evaluate_returns_flat_floats(rng):
    model = Model(V=np.diag([2.0, 1.0]), beta=3.0, d=2)
    X = _circle(200)
    w = np.full(200, 1 / 200)
    ctx = _context(model, X, fourier_max_mode=3)
    names = list(REGISTRY)
    out = evaluate(names, X, w, ctx)
    assert list(out) == output_names(names, ctx)
    assert all(type(v) is float and math.isfinite(v) for v in out.values())


# ------------------------------------------------------------------ n_clusters on run states (#15 item 7)

CONFIGS = __import__("pathlib").Path(__file__).resolve().parent.parent / "data" / "configs"


def test_n_clusters_counts_the_three_clusters_of_a_finite_volume_circle_state(tmp_path):
    # circle_clusters_fv_beta5.toml (USA, beta = 5, 1024 cells) from the histogram of 2e4
    # uniform samples: at t = 0.3 three clusters with peaks ~100 times the mean density and
    # 1-10% of the mean between them -- above a floor of 1% of the mean, so a floor relative
    # to the mean linked the clusters into one
    from mfpde import run

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x0.npy", angle_to_point(rng.uniform(0, 2 * np.pi, 20000)))
    res = run(CONFIGS / "circle_clusters_fv_beta5.toml", output=tmp_path / "fv.h5",
              overrides=["initial.kind=file", f"initial.path={tmp_path / 'x0.npy'}", "solver.t_end=0.3",
                         'output.diagnostics=["mass", "n_clusters"]'])
    density = res.mass[-1] / res.grid["areas"] * (2 * np.pi)  # relative to the mean
    valleys = [density[i] for i in range(len(density)) if density[i] <= density[i - 1]
               and density[i] <= density[(i + 1) % len(density)]]
    assert 0.01 < min(valleys) and max(valleys) < 0.1 and density.max() > 50
    assert res.diagnostics["n_clusters"][-1] == 3
    assert res.diagnostics["n_clusters"][0] == 1  # the noisy initial density: one component
    # a threshold of 0 keeps every cell: the valleys link the clusters
    ctx = _context(res.model, res.grid["centers"], res.mass[0], cluster_threshold=0.0,
                   cell_areas=res.grid["areas"])
    assert D.n_clusters(res.grid["centers"], res.mass[-1], ctx) == 1


def test_n_clusters_counts_a_finite_volume_sphere_state_by_density(tmp_path):
    # three vMF bumps (kappa = 20) 90 degrees apart on ~2000 cells: 7% of the mean density
    # between them, peaks 15 times the mean
    from mfpde import run

    cfg = {"model": {"d": 3, "beta": 5.0},
           "initial": {"kind": "vmf_mixture", "means": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                       "kappas": [20.0, 20.0, 20.0], "weights": [0.3, 0.3, 0.4]},
           "solver": {"method": "fv", "cells": 2000, "t_end": 0.01},
           "output": {"path": str(tmp_path / "s.h5"), "save_every": 0.01, "diagnostics": ["n_clusters"]}}
    res = run(cfg)
    assert list(res.diagnostics["n_clusters"]) == [3, 3]
    cfg["output"]["cluster_threshold"] = 0.0
    cfg["output"]["path"] = str(tmp_path / "s0.h5")
    assert list(run(cfg).diagnostics["n_clusters"]) == [1, 1]


@pytest.mark.parametrize("method, solver", [("particles", {}), ("pic", {"cells": 256, "cfl": 0.4})])
def test_n_clusters_on_particle_and_pic_states_agrees_with_circle_clusters(tmp_path, method, solver):
    from mfpde import run

    cfg = {"model": {"d": 2, "beta": 5.0, "normalization": "uniform"},
           "initial": {"kind": "uniform", "n": 2000, "seed": 0},
           "solver": {"method": method, "integrator": "rk4", "dt": 0.02, "t_end": 0.6, **solver},
           "output": {"path": str(tmp_path / "p.h5"), "save_every": 0.2, "diagnostics": ["n_clusters"]}}
    res = run(cfg)
    centers, masses = D.circle_clusters(res.positions[-1], res.weights)
    assert res.diagnostics["n_clusters"][-1] == len(centers) == 3
    assert res.diagnostics["n_clusters"][0] == 1


def test_cluster_threshold_is_validated():
    from mfpde.config import ConfigError, load_config

    base = {"model": {"d": 2, "beta": 1.0}}
    assert load_config(base).output.cluster_threshold == 0.05
    for bad in (-0.1, 1.0, "x", True):
        with pytest.raises(ConfigError, match="output.cluster_threshold"):
            load_config({**base, "output": {"cluster_threshold": bad}})
    with pytest.raises(ValueError, match="cluster_threshold"):
        make_context(Model(d=2), _circle(8), None, cluster_threshold=1.5)
