"""Finite volumes on S^2 (mfpde.solvers.FVSphereSolver).

Tiers: exact (numba kernel = NumPy reference, one Euler stage keeps masses >= 0 up to the
CFL bound and not beyond, mass to round-off and min mass >= 0 at beta = 5, 100, inf),
analytic (zero temperature: w_to_limit falls like docs/analysis.md section 4 until the
mesh floor, which is the distance from e_1 to the nearest centers and halves under
refinement), convergence (order 2 of smooth observables against the exact beta = inf
transport; order 1 without reconstruction), cross-solver (W_2 to the particle solver at
t = 1, beta = 5, general Q, K, V, falling under refinement), robustness (config errors,
runner files, resume).
"""

import math

import h5py
import numpy as np
import pytest
from scipy.linalg import expm

import mfpde
from mfpde.config import ConfigError
from mfpde.diagnostics import make_context, w_to_limit
from mfpde.initial import initial_cell_masses, sphere_cell_masses, vmf_density
from mfpde.mesh import SphereMesh
from mfpde.options import InitialOptions, SolverOptions, WassersteinOptions
from mfpde.solvers import FVSphereSolver, ParticleSolver
from mfpde.solvers.fv_sphere import (
    MAX_CFL,
    RECONSTRUCTIONS,
    outflow_rate,
    sphere_rhs,
    sphere_rhs_numpy,
)

VMF = InitialOptions(kind="vmf_mixture", means=((1.0, 0.3, -0.2), (-0.4, 0.2, 1.0)), kappas=(4.0, 8.0),
                     weights=(0.6, 0.4))


def general_qkv(seed=3, scale=0.3):
    """Random but fixed, well-conditioned Q, K, V (condition numbers 3.6, 2.6, 1.5 for seed 3)."""
    rng = np.random.default_rng(seed)
    return [np.eye(3) + scale * rng.standard_normal((3, 3)) for _ in range(3)]


def solver_for(model, cells, dt=0.05, cfl=0.4, **kw):
    return FVSphereSolver(model, SolverOptions(method="fv", cells=cells, dt=dt, cfl=cfl), **kw)


# ----------------------------------------------------------------------------- exact


@pytest.mark.parametrize("cells", [12, 642, 2562])
@pytest.mark.parametrize("reconstruction", RECONSTRUCTIONS)
def test_kernel_matches_numpy_reference(cells, reconstruction, rng):
    mesh = SphereMesh.icosahedral(cells)
    masses = rng.uniform(0.0, 1.0, mesh.M) * mesh.areas
    masses[rng.random(mesh.M) < 0.2] = 0.0  # empty cells: the limiter's zero bounds
    flux_speed = rng.standard_normal(mesh.n_faces) * mesh.face_lengths
    a = sphere_rhs(masses, flux_speed, mesh, reconstruction)
    b = sphere_rhs_numpy(masses, flux_speed, mesh, reconstruction)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-14 * np.abs(b).max())
    assert abs(a.sum()) < 1e-14 * np.abs(flux_speed).sum()  # flux form


def test_euler_stage_positivity_bound_is_sharp(rng):
    """m + dt L(m) >= 0 for any data when dt * outflow_rate <= 1/2; a lone mass loses 2 c of itself."""
    mesh = SphereMesh.icosahedral(642)
    for _ in range(20):
        masses = rng.uniform(0.0, 1.0, mesh.M) ** 4 * mesh.areas
        masses[rng.random(mesh.M) < 0.3] = 0.0
        fs = rng.standard_normal(mesh.n_faces) * mesh.face_lengths
        dt = MAX_CFL / outflow_rate(fs, mesh)
        for rec in RECONSTRUCTIONS:
            new = masses + dt * sphere_rhs(masses, fs, mesh, rec)
            assert new.min() >= -1e-17 * masses.max()
    # one cell with outflow through every face, no inflow: m' = (1 - 2 c) m with the linear
    # reconstruction (face values 2 rho_i: the limiter's cap) and (1 - c) m without
    i = 100
    masses = np.zeros(mesh.M)
    masses[i] = 1.0
    left = mesh.face_cells[:, 0]
    fs = np.where(left == i, 1.0, -1.0) * mesh.face_lengths
    mine = np.isin(np.arange(mesh.n_faces), mesh.neighbor_faces[mesh.neighbor_ptr[i]:mesh.neighbor_ptr[i + 1]])
    fs[~mine] = 0.0
    rate = outflow_rate(fs, mesh)
    np.testing.assert_allclose(rate, mesh.face_lengths[mine].sum() / mesh.areas[i], rtol=1e-14)
    for c in (0.3, 0.55):
        dt = c / rate
        const = masses + dt * sphere_rhs(masses, fs, mesh, "constant")
        np.testing.assert_allclose(const[i], 1.0 - c, rtol=1e-13)
        # a local maximum: Barth-Jespersen flattens it (face values rho_i), as the constant
        lin = masses + dt * sphere_rhs(masses, fs, mesh, "linear")
        np.testing.assert_allclose(lin, const, rtol=0, atol=1e-15)
    lone = masses + (0.55 / rate) * sphere_rhs(masses, 2.0 * fs, mesh, "constant")
    assert lone[i] < 0  # beyond the bound (c = 1.1 here) the stage goes negative


@pytest.mark.parametrize("beta,normalization,kernel,t_end", [
    (5.0, "softmax", "exact", 1.0),
    (1.0, "uniform", "exact", 0.3),  # USA speeds grow like e^{beta |B|}: |B| = 3.7 here
    (100.0, "softmax", "exact", 0.5),
    (100.0, "softmax", "truncated", 0.5),
    (math.inf, "softmax", "exact", 1.0),
])
def test_mass_to_round_off_and_positive(beta, normalization, kernel, t_end):
    Q, K, V = general_qkv()
    model = mfpde.Model(Q=Q, K=K, V=V, beta=beta, d=3, normalization=normalization)
    solver = FVSphereSolver(model, SolverOptions(method="fv", cells=642, dt=0.05, kernel=kernel))
    m0 = initial_cell_masses(VMF, solver.mesh)
    assert abs(m0.sum() - 1.0) < 1e-15
    for t, m in solver.snapshots(m0, np.linspace(0.0, t_end, 5)):
        assert abs(m.sum() - 1.0) < 1e-12, (t, m.sum() - 1.0)
        assert m.min() >= 0.0, (t, m.min())
    assert solver.n_steps > 5
    assert np.abs(m - m0).sum() > 0.05  # it moved


def test_large_beta_concentration_stays_positive():
    """beta = 100, general Q, K, V from a smooth start: the mass collapses (measured at t = 2:
    max density 45x the mean, 53 of 642 cells below 1e-8, min mass 9e-10), masses stay >= 0."""
    Q, K, V = general_qkv()
    solver = solver_for(mfpde.Model(Q=Q, K=K, V=V, beta=100.0, d=3), 642, dt=0.1)
    x = solver.mesh.centers
    m0 = solver.mesh.areas * (1.0 + 0.3 * x[:, 0] * x[:, 1] + 0.2 * x[:, 2])
    m0 /= m0.sum()
    for _, m in solver.snapshots(m0, [1.0, 2.0]):
        assert abs(m.sum() - 1.0) < 1e-12 and m.min() >= 0.0
    rho = solver.mesh.density(m)
    assert rho.max() > 30 * rho.mean()  # concentrated
    assert (m < 1e-8).sum() > 30  # and emptied elsewhere


# ----------------------------------------------------------------------------- analytic


def _self_similar_point():
    """A point of an icosahedral face that is a Voronoi vertex of the 8-, 16-, 32-frequency meshes.

    Barycentric (7, 4, 13) / 24 of a face of the icosahedron (flat, then projected like the
    generators) is the centroid of a small triangle of every frequency n = 8 * 2^k (grid
    coordinates n (7, 4) / 24 have fractional parts 1/3 or 2/3): the distance to the nearest
    centers is about spacing / sqrt(3) at every level, so the floor of W_2 halves exactly.
    """
    ico = SphereMesh.icosahedral(12)
    A = ico.centers[0]
    B, C = ico.centers[ico.neighbor_idx[0]], ico.centers[ico.neighbor_idx[1]]  # consecutive: a face
    e1 = 7 / 24 * A + 4 / 24 * B + 13 / 24 * C
    return e1 / np.linalg.norm(e1)


def _zero_temperature_run(cells, times):
    e1 = _self_similar_point()
    basis, _ = np.linalg.qr(np.column_stack([e1, [0.3, 1.0, -0.2], [0.5, -0.1, 1.0]]))
    basis[:, 0] = e1
    V = basis @ np.diag([1.0, 0.0, -0.5]) @ basis.T  # symmetric, g = l1 - l2 = 1, simple top
    model = mfpde.Model(V=V, beta=math.inf, d=3)
    solver = solver_for(model, cells, dt=1.0)
    mesh = solver.mesh
    m0 = initial_cell_masses(InitialOptions(kind="uniform"), mesh)
    ctx = make_context(model, mesh.centers, m0, WassersteinOptions(p=2))
    np.testing.assert_allclose(np.abs(ctx.limit_points @ e1), 1.0, atol=1e-12)
    W, last = [], None
    for _, m in solver.snapshots(m0, times):
        assert abs(m.sum() - 1.0) < 1e-12 and m.min() >= 0.0
        W.append(w_to_limit(mesh.centers, m, ctx))
        last = m
    dmin = float(np.min(np.arccos(np.clip(np.abs(mesh.centers @ e1), -1.0, 1.0))))
    return mesh, e1, np.array(W), last, dmin


@pytest.mark.parametrize("levels", [pytest.param((642, 2562, 10242), id="3levels"),
                                    pytest.param((642, 2562, 10242, 40962), id="4levels", marks=pytest.mark.slow)])
def test_zero_temperature_w2_decay_and_mesh_floor(levels):
    """beta = inf, Q = K = I, V symmetric with eigenvalues (1, 0, -0.5): rho_0 uniform.

    docs/analysis.md section 4: W_2(t) = sqrt(2 ln 2) e^{-g t / 2} (1 + o(1)), g = 1.  On a mesh
    mass can only sit at centers, so W_2 >= dmin (the distance from +-e_1 to the nearest
    center) at all times: the floor.  Measured: slopes on [3, 6] -0.314, -0.428, -0.480
    (-0.496 at 40962); floors 0.0918, 0.0458, 0.0230 (0.0115) = 1.04, 1.02, 1.03 (1.02) dmin.
    """
    # the floor is reached near t = 2 ln(1.18 / floor): 16 time units for 10242 cells, 20 for 40962
    times = np.arange(0.0, (16.0 if levels[-1] <= 10242 else 20.0) + 0.01, 0.5)
    pred = math.sqrt(2.0 * math.log(2.0)) * np.exp(-0.5 * times)
    fit = (times >= 3.0) & (times <= 6.0)
    slopes, floors = [], []
    for cells in levels:
        mesh, e1, W, m, dmin = _zero_temperature_run(cells, times)
        finest = W
        slope = np.polyfit(times[fit], np.log(W[fit]), 1)[0]
        floor = W[-1]
        slopes.append(slope)
        floors.append(floor)
        # a plateau at the floor, not a slow decay: the last 3 time units change < 1%
        assert abs(W[-7] - W[-1]) < 0.01 * W[-1]
        assert dmin * (1 - 1e-9) <= floor < 1.1 * dmin
        assert 0.5 < dmin / mesh.spacing < 0.65  # the self-similar point: ~ 1 / sqrt(3)
        # the mass concentrates in the cells around +-e_1 (the 3 + 3 cells at dmin, and neighbors)
        near = np.arccos(np.clip(np.abs(mesh.centers @ e1), -1.0, 1.0)) < mesh.spacing
        assert m[near].sum() > 0.9999
        # early on W_2 follows the continuum prediction (the floor is negligible)
        np.testing.assert_allclose(W[(times >= 1.5) & (times <= 3.0)], pred[(times >= 1.5) & (times <= 3.0)],
                                   rtol=0.1)
    slopes, floors = np.array(slopes), np.array(floors)
    # the floor halves with the spacing (factor 2 per level)
    np.testing.assert_allclose(floors[:-1] / floors[1:], 2.0, rtol=0.05)
    # the decay rate before the floor tends to g / 2 = 0.5 under refinement
    assert np.all(np.diff(np.abs(slopes + 0.5)) < 0)
    assert abs(slopes[-1] + 0.5) < 0.05
    # and the finest level matches the prefactor sqrt(2 ln 2) to 5% on t in [3, 5]
    sel = (times >= 3.0) & (times <= 5.0)
    np.testing.assert_allclose(finest[sel], pred[sel], rtol=0.05)


# ----------------------------------------------------------------------------- convergence


def _exact_observables(V, t, mesh_cells=2562):
    """E_t[x] and E_t[x x^T] of the exact beta = inf, B = I transport x -> e^{Vt} x / |e^{Vt} x| of the vMF
    mixture, by Radon quadrature of rho_0 * f(flow) (fan triangles of a 2562-cell mesh cut in 4)."""
    from mfpde.initial import _fan_quadrature

    E = expm(V * t)
    ref = SphereMesh.icosahedral(mesh_cells)
    ptr, reg = ref.neighbor_ptr, ref.region_idx
    own = np.repeat(np.arange(ref.M), np.diff(ptr))
    nxt = np.arange(len(reg)) + 1
    nxt[ptr[1:] - 1] = ptr[:-1]
    A, B, C = ref.centers[own], ref.vertices[reg], ref.vertices[reg[nxt]]
    def f(X):
        Y = X @ E.T
        Y /= np.linalg.norm(Y, axis=-1, keepdims=True)
        obs = np.concatenate([Y, (Y[..., :, None] * Y[..., None, :]).reshape(Y.shape[:-1] + (9,))], axis=-1)
        return vmf_density(X, VMF.means, VMF.kappas, VMF.weights)[..., None] * obs
    return _fan_quadrature(A, B, C, f, 2).sum(axis=0)


def _observables(points, masses):
    return np.concatenate([masses @ points, np.einsum("i,ij,ik->jk", masses, points, points).ravel()])


def test_order_two_against_exact_transport():
    """beta = inf, B = I, general V: smooth observables converge at order 2 (order 1 unreconstructed).

    Measured max error of E[x], E[x x^T] at t = 1 (642, 2562, 10242 cells): linear 6.3e-3,
    1.9e-3, 4.9e-4 (orders 1.73, 1.96; 1.1e-4 and 2.19 at 40962); constant 2.3e-2, 1.1e-2,
    5.5e-3 (orders 1.02, 1.03).
    """
    V = 0.8 * np.random.default_rng(3).standard_normal((3, 3))
    model = mfpde.Model(V=V, beta=math.inf, d=3)
    exact = _exact_observables(V, 1.0)
    errors = {rec: [] for rec in RECONSTRUCTIONS}
    for rec in RECONSTRUCTIONS:
        for cells in (642, 2562, 10242):
            solver = solver_for(model, cells, dt=1.0, reconstruction=rec)
            (_, m), = solver.snapshots(initial_cell_masses(VMF, solver.mesh), [1.0])
            assert abs(m.sum() - 1.0) < 1e-12 and m.min() >= 0.0
            errors[rec].append(np.abs(_observables(solver.mesh.centers, m) - exact).max())
    lin = -np.diff(np.log(errors["linear"])) / math.log(2.0)
    const = -np.diff(np.log(errors["constant"])) / math.log(2.0)
    assert lin[-1] > 1.8 and lin.min() > 1.6, lin
    assert np.all(np.abs(const - 1.0) < 0.2), const
    assert errors["linear"][-1] < errors["constant"][-1] / 5


# ----------------------------------------------------------------------------- cross-solver


def _fv_vs_particles(cells, model):
    """W_2 at t = 1 between FV and the particle solver started from the same discrete measure.

    The particles sit at the cell centers with the initial cell masses (W_2 = 0 at t = 0), so
    the distance at t = 1 measures how the two solvers transport it: the FV masses stay at
    centers (O(spacing) requantization) while the particles move freely.
    """
    fv = solver_for(model, cells, dt=0.05)
    m0 = initial_cell_masses(VMF, fv.mesh)
    (_, m1), = fv.snapshots(m0, [1.0])
    ps = ParticleSolver(model, SolverOptions(method="particles", integrator="rk4", dt=0.02))
    (_, X1), = ps.snapshots(fv.mesh.centers, m0, [1.0])
    w2 = mfpde.wasserstein(fv.mesh.centers, m1, X1, m0, p=2, ground="geodesic", method="exact")
    moments = np.abs(_observables(fv.mesh.centers, m1) - _observables(X1, m0)).max()
    return fv.mesh, w2, moments, m1


@pytest.mark.parametrize("levels", [pytest.param((92, 362, 1442), id="3levels"),
                                    pytest.param((362, 1442, 5762), id="fine", marks=pytest.mark.slow)])
def test_fv_agrees_with_particles(levels):
    """beta = 5, general Q, K, V, vMF mixture: W_2(FV, particles) at t = 1 falls with the spacing.

    Each level halves the spacing (frequencies 3, 6, 12; N = M particles).  Measured: W_2 =
    0.207, 0.103, 0.052 rad (0.52 spacing each); first and second moments differ by at most
    4.2e-2, 1.3e-2, 3.1e-3.  At 162, 642, 2562 cells: W_2 = 0.162, 0.070, 0.034, moments
    3.0e-2, 4.4e-3, 1.1e-3.
    """
    Q, K, V = general_qkv()
    model = mfpde.Model(Q=Q, K=K, V=V, beta=5.0, d=3)
    w2s, moms = [], []
    for cells in levels:
        mesh, w2, mom, m1 = _fv_vs_particles(cells, model)
        assert abs(m1.sum() - 1.0) < 1e-12 and m1.min() >= 0.0
        assert w2 < 0.6 * mesh.spacing
        w2s.append(w2)
        moms.append(mom)
    w2s, moms = np.array(w2s), np.array(moms)
    assert np.all(w2s[:-1] / w2s[1:] > 1.7), w2s  # ~ spacing: factor 2 per level
    assert np.all(moms[:-1] / moms[1:] > 1.0) and moms[0] / moms[-1] > 8.0, moms  # smooth observables: faster


# ----------------------------------------------------------------------------- initial data


def test_sphere_cell_masses():
    mesh = SphereMesh.icosahedral(642)
    uni = sphere_cell_masses(InitialOptions(kind="uniform"), mesh)
    np.testing.assert_allclose(uni, mesh.areas / (4 * math.pi), rtol=1e-14)
    # vMF: the raw quadrature integrates the density to 1 (the final renormalisation is tiny),
    # and matches a 4x finer sub-triangulation cell by cell
    from mfpde.initial import _fan_quadrature

    ptr, reg = mesh.neighbor_ptr, mesh.region_idx
    own = np.repeat(np.arange(mesh.M), np.diff(ptr))
    nxt = np.arange(len(reg)) + 1
    nxt[ptr[1:] - 1] = ptr[:-1]
    A, B, C = mesh.centers[own], mesh.vertices[reg], mesh.vertices[reg[nxt]]
    for kappas in ((4.0, 8.0), (100.0, 0.0)):
        opts = VMF.replace(kappas=kappas)
        m = sphere_cell_masses(opts, mesh)
        dens = lambda X: vmf_density(X, opts.means, opts.kappas, opts.weights)  # noqa: E731
        fine = np.bincount(own, weights=_fan_quadrature(A, B, C, dens, 8), minlength=mesh.M)
        assert abs(fine.sum() - 1.0) < 1e-9
        np.testing.assert_allclose(m, fine / fine.sum(), rtol=0, atol=1e-7 * fine.max())
        # the center of a cell sees the density at its center times the area, to O(h^2)
        np.testing.assert_allclose(m, dens(mesh.centers) * mesh.areas, rtol=0.1 if kappas[0] < 50 else 2.0)
    with pytest.raises(ValueError, match="d = 2"):
        sphere_cell_masses(InitialOptions(kind="perturbed_uniform"), mesh)
    with pytest.raises(ValueError, match="d = 3 coordinates"):
        sphere_cell_masses(InitialOptions(kind="vmf_mixture", means=((1.0, 0.0),), kappas=(1.0,)), mesh)


def test_sphere_cell_masses_from_files(tmp_path, rng):
    mesh = SphereMesh.icosahedral(162)
    X = rng.standard_normal((5000, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    np.save(tmp_path / "x.npy", X)
    m = sphere_cell_masses(InitialOptions(kind="file", path=str(tmp_path / "x.npy")), mesh)
    np.testing.assert_allclose(m, np.bincount(np.argmax(X @ mesh.centers.T, axis=1), minlength=mesh.M) / 5000)
    # an fv file on the same mesh gives back its masses; another mesh is refused
    res = mfpde.run({"model": {"d": 3, "beta": 2.0}, "initial": {"kind": "uniform"},
                     "solver": {"method": "fv", "cells": 162, "t_end": 0.2},
                     "output": {"path": str(tmp_path / "a.h5"), "save_every": 0.1}})
    again = sphere_cell_masses(InitialOptions(kind="file", path=str(tmp_path / "a.h5"), snapshot=-1), mesh)
    np.testing.assert_array_equal(again, res.mass[-1] / res.mass[-1].sum())
    with pytest.raises(ValueError, match="162 cells"):
        sphere_cell_masses(InitialOptions(kind="file", path=str(tmp_path / "a.h5")), SphereMesh.icosahedral(642))


# ----------------------------------------------------------------------------- runner, config


def _config(tmp_path, **solver):
    return {
        "model": {"d": 3, "beta": 5.0, "V": [[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, -0.5]]},
        "initial": {"kind": "vmf_mixture", "means": [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "kappas": [4.0, 8.0]},
        "solver": {"method": "fv", "cells": 600, "t_end": 0.6, "dt": 0.05, **solver},
        "output": {"path": str(tmp_path / "run.h5"), "save_every": 0.2,
                   "diagnostics": ["mass", "min_mass", "w_to_limit"]},
    }


def test_runner_writes_sphere_fv_file(tmp_path):
    res = mfpde.run(_config(tmp_path))
    M = 642  # 10 n^2 + 2 nearest to 600: n = 8
    assert res.mass.shape == (4, M)
    assert res.grid["centers"].shape == (M, 3)
    np.testing.assert_allclose(res.grid["areas"].sum(), 4 * math.pi, rtol=1e-14)
    np.testing.assert_allclose(res.mass.sum(axis=1), 1.0, atol=1e-12)
    assert res.mass.min() >= 0
    np.testing.assert_allclose(res.diagnostics["mass"], 1.0, atol=1e-12)
    assert np.all(np.isfinite(res.diagnostics["w_to_limit"]))
    with h5py.File(tmp_path / "run.h5") as f:
        assert f["grid"].attrs["mesh"] == "icosahedral_voronoi" and f["grid"].attrs["frequency"] == 8
        assert f.attrs["status"] == "complete"
    # the same masses as the solver called directly
    model = mfpde.Model(V=np.array(_config(tmp_path)["model"]["V"]), beta=5.0, d=3)
    solver = solver_for(model, 600, dt=0.05)
    opts = InitialOptions(kind="vmf_mixture", means=((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)), kappas=(4.0, 8.0))
    direct = [m for _, m in solver.snapshots(initial_cell_masses(opts, solver.mesh), res.times)]
    np.testing.assert_array_equal(np.array(direct), res.mass)


def test_example_config_runs(tmp_path):
    from pathlib import Path

    cfg = mfpde.load_config(Path(__file__).resolve().parent.parent / "data" / "configs" / "fv_sphere.toml")
    res = mfpde.run(cfg.replace(**{"solver.t_end": 1.0, "output.path": str(tmp_path / "ex.h5")}))
    assert res.complete and res.mass.shape == (3, 642)
    np.testing.assert_allclose(res.diagnostics["mass"], 1.0, atol=1e-12)
    assert np.all(res.diagnostics["min_mass"] >= 0)
    assert np.all(np.diff(res.diagnostics["w_to_limit"]) < 0)  # aligning with +-e_1


@pytest.mark.parametrize("change,key", [
    ({"solver": {"cfl": 0.6}}, "solver.cfl"),
    ({"solver": {"cells": 10**7}}, "solver.cells"),
    ({"model": {"beta": "inf", "zero_temperature": "hardmax"}}, "model.zero_temperature"),
])
def test_config_errors(tmp_path, change, key):
    cfg = _config(tmp_path)
    for section, values in change.items():
        cfg[section].update(values)
    with pytest.raises(ConfigError, match=key.replace(".", "\\.")) as err:
        mfpde.run(cfg)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run.h5").exists()


def test_solver_validation():
    model = mfpde.Model(beta=1.0, d=3)
    with pytest.raises(ValueError, match="d = 3"):
        FVSphereSolver(mfpde.Model(beta=1.0, d=2), SolverOptions(method="fv"))
    with pytest.raises(ValueError, match="solver.cfl"):
        solver_for(model, 42, cfl=0.51)
    with pytest.raises(ValueError, match="reconstruction"):
        solver_for(model, 42, reconstruction="quadratic")
    with pytest.raises(ValueError, match="zero_temperature"):
        solver_for(mfpde.Model(beta=math.inf, d=3, zero_temperature="hardmax"), 42)
    solver = solver_for(model, 42)
    with pytest.raises(ValueError, match="shape \\(42,\\)"):
        next(solver.snapshots(np.ones(12) / 12, [1.0]))
    with pytest.raises(ValueError, match=">= 0"):
        next(solver.snapshots(-np.ones(42), [1.0]))
    with pytest.raises(ValueError, match="increasing"):
        next(solver.snapshots(np.ones(42) / 42, [1.0, 0.5]))
