"""Particle-in-cell (mfpde.solvers.PICSolver): kernels against NumPy, exact properties of the
deposition, second-order convergence to the exact particle solver, zero temperature, runner."""

import math
from pathlib import Path

import numba
import numpy as np
import pytest

import mfpde
from mfpde.config import ConfigError, load_config
from mfpde.distances import wasserstein
from mfpde.limit import zero_temperature_flow
from mfpde.mesh import CircleMesh, SphereMesh
from mfpde.mesh.sphere import spherical_triangle_areas
from mfpde.options import SolverOptions
from mfpde.solvers import ParticleSolver, PICSolver
from mfpde.kernels.deposit import deposit, deposit_numpy, interpolate, interpolate_numpy, stencil_deposit
from mfpde.mesh import locate
from mfpde.mesh.locate import circle_stencil, circle_stencil_numpy, sphere_stencil, sphere_stencil_numpy
from mfpde.solvers import pic
from mfpde.sphere import geodesic_distance

from .conftest import unit_rows

CONFIGS = Path(__file__).resolve().parent.parent / "data" / "configs"


def general_model(d, beta, normalization="softmax"):
    """A fixed general Q, K, V: the config's { random = "gaussian", seed = 1, 2, 3 }."""
    Q, K, V = (np.random.default_rng(s).standard_normal((d, d)) / math.sqrt(d) for s in (1, 2, 3))
    return mfpde.Model(Q=Q, K=K, V=V, beta=beta, normalization=normalization)


def final(solver, x0, w, t_end):
    *_, (t, x) = solver.snapshots(x0, w, [t_end])
    assert t == t_end
    return x


def random_weights(rng, n):
    w = rng.random(n) + 0.1
    return w / w.sum()


# ------------------------------------------------------------------ kernels against NumPy


@pytest.mark.parametrize("cells", [12, 162, 2562])
def test_sphere_stencil_matches_numpy(rng, cells):
    mesh = SphereMesh.icosahedral(cells)
    X = unit_rows(rng, 2000, 3) * rng.uniform(0.5, 2.0, (2000, 1))  # only directions matter
    tris, idx, lam = sphere_stencil(mesh, X)
    ref_tris, ref_idx, ref_lam = sphere_stencil_numpy(mesh, X)
    np.testing.assert_array_equal(tris, ref_tris)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(lam, ref_lam, rtol=0, atol=1e-14)


def test_circle_stencil_matches_numpy(rng):
    for M in (3, 37, 256):
        mesh = CircleMesh(M)
        t = np.concatenate([rng.uniform(0, 2 * math.pi, 1000), mesh.centers, mesh.faces, [2 * math.pi - 1e-15]])
        X = np.stack([np.cos(t), np.sin(t)], axis=1)
        idx, lam = circle_stencil(mesh, X)
        ref_idx, ref_lam = circle_stencil_numpy(mesh, X)
        same = np.all(idx == ref_idx, axis=1)
        # angles a rounding error from a center may be split (1, 0) or (0, 1) between neighbours
        assert np.all(same | (np.abs(lam[:, 0] - 1.0) < 1e-12) | (np.abs(lam[:, 1] - 1.0) < 1e-12))
        np.testing.assert_allclose(lam[same], ref_lam[same], rtol=0, atol=1e-13)


@pytest.mark.parametrize("n", [1000, locate.PARALLEL_MIN + 123])  # serial and parallel kernels
@pytest.mark.parametrize("d", [2, 3])
def test_deposit_and_interpolate_match_numpy(rng, n, d):
    mesh = pic.pic_mesh(d, 642 if d == 3 else 100)
    X = unit_rows(rng, n, d)
    _, idx, lam = sphere_stencil(mesh, X) if d == 3 else (None, *circle_stencil(mesh, X))
    w = random_weights(rng, n)
    np.testing.assert_allclose(deposit(idx, lam, w, mesh.M), deposit_numpy(idx, lam, w, mesh.M), rtol=1e-12,
                               atol=1e-17)
    F = rng.standard_normal((mesh.M, d))
    for target in (None, X, 1.01 * X):  # no projection, on and off the sphere
        np.testing.assert_allclose(interpolate(idx, lam, F, target), interpolate_numpy(idx, lam, F, target),
                                   rtol=0, atol=1e-14)


def test_kernels_reject_bad_input(rng):
    mesh = SphereMesh.icosahedral(162)
    X = unit_rows(rng, 10, 3)
    tris, idx, lam = sphere_stencil(mesh, X)
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        sphere_stencil(mesh, X[:, :2])
    with pytest.raises(ValueError, match="finite"):
        sphere_stencil(mesh, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="triangle indices"):
        sphere_stencil(mesh, X, np.full(10, 10**6))
    with pytest.raises(ValueError, match=r"cell indices in \[0, 5\)"):
        deposit(idx, lam, np.full(10, 0.1), 5)
    with pytest.raises(ValueError, match=r"weights must have shape \(10,\)"):
        deposit(idx, lam, np.ones(3), mesh.M)
    with pytest.raises(ValueError, match=r"X must have shape \(10, 3\)"):
        interpolate(idx, lam, np.zeros((mesh.M, 3)), X[:5])
    with pytest.raises(ValueError, match="d = 2 .* d = 3"):
        pic.pic_mesh(4, 100)
    with pytest.raises(ValueError, match="solver.cells must be an integer >= 12"):
        pic.pic_mesh(3, 11)


# ------------------------------------------------------------------------------- exact


def test_stencil_is_a_partition_of_unity_in_a_delaunay_triangle(rng):
    mesh = SphereMesh.icosahedral(642)
    X = unit_rows(rng, 20000, 3)
    tris, idx, lam = sphere_stencil(mesh, X)
    assert lam.min() >= 0.0
    np.testing.assert_allclose(lam.sum(axis=1), 1.0, rtol=0, atol=4 * np.finfo(float).eps)  # a few ulps of rounding in the normalisation
    # sum_k lam_k c_k is the point's central projection onto the flat triangle: parallel to x
    flat = np.einsum("pk,pkc->pc", lam, mesh.centers[idx])
    assert np.abs(np.cross(flat, X)).max() < 1e-15
    assert np.all(np.einsum("pc,pc->p", flat, X) > 0)
    # the triangle's circumcenter is mesh.vertices[tris]: equidistant from its three corners
    dist = np.einsum("pkc,pc->pk", mesh.centers[idx], mesh.vertices[tris])
    np.testing.assert_allclose(dist, dist[:, :1].repeat(3, axis=1), rtol=0, atol=1e-14)
    # a center gets all its weight
    _, idx_c, lam_c = sphere_stencil(mesh, mesh.centers)
    rows = np.arange(mesh.M)
    np.testing.assert_array_equal(idx_c[rows, np.argmax(lam_c, axis=1)], rows)
    np.testing.assert_allclose(lam_c.max(axis=1), 1.0, rtol=0, atol=1e-14)


@pytest.mark.parametrize("cells", [12, 162, 2562, 10242])
def test_every_delaunay_triangle_is_acute(cells):
    """The fan search relies on it: a Voronoi cell lies in the fan of its center when every
    circumcenter (a Voronoi vertex) lies inside its triangle (barycentric weights >= 0.236)."""
    mesh = SphereMesh.icosahedral(cells)
    tr = locate.triangulation(mesh)
    lam = np.einsum("tkc,tc->tk", tr.normals, mesh.vertices)
    assert (lam / lam.sum(axis=1, keepdims=True)).min() > 0.23
    # and the triangles tile the sphere: adjacency is symmetric, areas sum to 4 pi
    assert np.all(np.any(tr.adjacent[tr.adjacent] == np.arange(len(tr.tri))[:, None, None], axis=2))
    a, b, c = (mesh.centers[tr.tri[:, k]] for k in range(3))
    np.testing.assert_allclose(spherical_triangle_areas(a, b, c).sum(), 4 * math.pi, rtol=1e-13)


def test_stencil_does_not_depend_on_the_guess(rng):
    mesh = SphereMesh.icosahedral(2562)
    X = unit_rows(rng, 5000, 3)
    tris, _, _ = sphere_stencil(mesh, X)
    for step in (0.01, 0.1, 1.0):  # within a triangle, a few triangles, far (cell walk)
        Y = X + step * rng.standard_normal(X.shape)
        fresh = sphere_stencil(mesh, Y)
        for guess in (tris, rng.integers(0, len(mesh.vertices), len(Y))):
            for a, b in zip(fresh, sphere_stencil(mesh, Y, guess)):
                np.testing.assert_array_equal(a, b)


def test_constant_fields_are_interpolated_exactly_and_smooth_ones_at_second_order(rng):
    X = unit_rows(rng, 5000, 3)

    def smooth(P):
        return np.stack([np.sin(2 * P[:, 0] + P[:, 1]), np.cos(P[:, 2] - P[:, 0]), np.exp(0.5 * P[:, 1])], axis=1)

    spacing, errors = [], []
    for cells in (162, 642, 2562, 10242):
        mesh = SphereMesh.icosahedral(cells)
        _, idx, lam = sphere_stencil(mesh, X)
        const = np.array([[0.3, -1.2, 2.0]])
        np.testing.assert_allclose(interpolate(idx, lam, np.repeat(const, mesh.M, axis=0)), const.repeat(len(X), 0),
                                   rtol=1e-15, atol=1e-15)
        errors.append(np.abs(interpolate(idx, lam, smooth(mesh.centers)) - smooth(X)).max())
        spacing.append(mesh.spacing)
    slope = np.polyfit(np.log(spacing), np.log(errors), 1)[0]
    assert 1.9 < slope < 2.2, (slope, errors)


def test_deposition_is_the_transpose_of_interpolation(rng):
    for d, cells in ((3, 642), (2, 64)):
        mesh = pic.pic_mesh(d, cells)
        X = unit_rows(rng, 3000, d)
        _, idx, lam = sphere_stencil(mesh, X) if d == 3 else (None, *circle_stencil(mesh, X))
        w = random_weights(rng, len(X))
        F = rng.standard_normal((mesh.M, 4))
        lhs = deposit(idx, lam, w, mesh.M) @ F
        rhs = w @ interpolate(idx, lam, F)
        np.testing.assert_allclose(lhs, rhs, rtol=1e-13, atol=1e-15)


def test_deposition_is_the_same_on_any_number_of_threads_and_fused_or_not(rng, monkeypatch):
    mesh = SphereMesh.icosahedral(2562)
    n = locate.PARALLEL_MIN + 4321
    X = unit_rows(rng, n, 3)
    w = random_weights(rng, n)
    guess = np.full(n, -1, dtype=np.int64)
    threads = numba.get_num_threads()
    results = []
    try:
        for count in sorted({1, threads}):
            numba.set_num_threads(count)
            results.append(stencil_deposit(mesh, X, guess, w))
    finally:
        numba.set_num_threads(threads)
    monkeypatch.setattr(locate, "PARALLEL_MIN", 10**9)  # the serial kernels
    results.append(stencil_deposit(mesh, X, guess, w))
    tris, idx, lam = sphere_stencil(mesh, X)
    results.append((tris, idx, lam, deposit(idx, lam, w, mesh.M)))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("beta", [5.0, 100.0, "inf"])
def test_mass_is_conserved_and_cell_masses_stay_nonnegative(rng, beta):
    """Every deposition of a run: |sum m - sum w| <= 1e-12 and min m >= 0 (beta = inf deposits
    nothing during the run: the continuum field needs no mesh; its final state is deposited)."""
    model = general_model(3, beta)
    solver = PICSolver(model, SolverOptions(method="pic", cells=2562, dt=0.05))
    x0 = unit_rows(rng, 3000, 3)
    w = random_weights(rng, len(x0))
    x = final(solver, x0, w, 0.5)
    if solver.uses_mesh:
        assert solver.n_field_evaluations == 40
        assert solver.max_mass_error <= 1e-12 and solver.min_cell_mass >= 0.0
    else:
        assert solver.cell_masses is None and solver.max_mass_error == 0.0
    m = solver.deposit(x, w)
    assert abs(m.sum() - 1.0) <= 1e-12 and m.min() >= 0.0
    assert np.abs(np.linalg.norm(x, axis=1) - 1.0).max() <= 1e-12


@pytest.mark.parametrize("integrator", ["euler", "heun", "rk45"])
def test_every_integrator_runs_and_agrees_with_rk4(rng, integrator):
    """The stencil state survives rejected rk45 steps.  The interpolated field is piecewise
    linear (kinks at the triangle edges), so rk4 converges at order ~2 in time here; the rk4
    reference at dt = 0.01 is itself ~3e-5 off (docs/methods.md).  Measured: euler 5.6e-3,
    heun 1.1e-4, rk45 (rtol 1e-6) 2.0e-5."""
    model = general_model(3, 5.0)
    x0 = unit_rows(rng, 500, 3)
    w = random_weights(rng, len(x0))
    options = dict(method="pic", cells=2562, dt=0.01, rtol=1e-6, atol=1e-8)
    reference = final(PICSolver(model, SolverOptions(**options)), x0, w, 0.2)
    solver = PICSolver(model, SolverOptions(**options, integrator=integrator))
    x = final(solver, x0, w, 0.2)
    assert solver.max_mass_error <= 1e-12 and solver.min_cell_mass >= 0.0
    assert np.abs(np.linalg.norm(x, axis=1) - 1.0).max() <= 1e-12
    tolerance = {"euler": 2e-2, "heun": 5e-4, "rk45": 1e-4}[integrator]
    assert geodesic_distance(x, reference).max() < tolerance


def test_the_truncated_kernel_computes_the_mesh_field(rng):
    """beta = 200 on 10242 nodes: the truncated kernel drops sources (the field is not bit for
    bit the exact one) and stays within 1e-11 of it (tolerance 1e-12)."""
    model = general_model(3, 200.0)
    x = unit_rows(rng, 50000, 3)  # most cells get mass (the truncated kernel skips massless sources)
    w = random_weights(rng, len(x))
    fields = [PICSolver(model, SolverOptions(method="pic", cells=10242, kernel=kernel)).field(w)(x)
              for kernel in ("exact", "truncated")]
    assert not np.array_equal(fields[0], fields[1])
    np.testing.assert_allclose(fields[1], fields[0], rtol=0, atol=1e-11 * np.abs(fields[0]).max())


# ------------------------------------------------------------------- convergence orders


@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_mesh_field_converges_at_second_order(rng, normalization):
    """The PIC field at the particles against the exact particle field (beta = 5, general Q, K, V)."""
    model = general_model(3, 5.0, normalization)
    x = unit_rows(rng, 2000, 3)
    w = random_weights(rng, len(x))
    exact = mfpde.velocity(model, x, x, w)
    spacing, errors = [], []
    for cells in (642, 2562, 10242):
        solver = PICSolver(model, SolverOptions(method="pic", cells=cells))
        errors.append(np.abs(solver.field(w)(x) - exact).max() / np.abs(exact).max())
        spacing.append(solver.mesh.spacing)
    slope = np.polyfit(np.log(spacing), np.log(errors), 1)[0]
    assert errors[0] > errors[1] > errors[2]
    assert 1.7 < slope < 2.3, (slope, errors)
    assert errors[-1] < 5e-3


def pic_against_particles(d, levels, n=1000, beta=5.0, t_end=1.0, dt=0.05, seed=7):
    """W_2 (exact, geodesic) at t_end between PIC on each mesh and the exact particle solver,
    from the same n particles (uniform on the sphere), the same rk4 step: the mesh error alone."""
    model = general_model(d, beta)
    x0 = unit_rows(np.random.default_rng(seed), n, d)
    w = np.full(n, 1.0 / n)
    exact = final(ParticleSolver(model, SolverOptions(dt=dt)), x0, w, t_end)
    spacing, distances = [], []
    for cells in levels:
        solver = PICSolver(model, SolverOptions(method="pic", cells=cells, dt=dt))
        x = final(solver, x0, w, t_end)
        assert solver.max_mass_error <= 1e-12 and solver.min_cell_mass >= 0.0
        distances.append(wasserstein(x, w, exact, w, p=2, ground="geodesic", method="exact"))
        spacing.append(solver.mesh.spacing if d == 3 else solver.mesh.dx)
    return np.array(spacing), np.array(distances)


def test_pic_converges_to_the_particle_solver_on_the_sphere():
    """beta = 5, general Q, K, V, t = 1, N = 1000: W_2 = 6.0e-2, 1.5e-2, 2.0e-3 rad at
    M = 162, 642, 2562 (measured; slope 2.5 against the spacing, the coarse meshes being
    pre-asymptotic: a few particles near a separatrix join another cluster)."""
    spacing, w2 = pic_against_particles(3, (162, 642, 2562))
    assert np.all(w2[1:] < w2[:-1] / 3.0), w2
    slope = np.polyfit(np.log(spacing), np.log(w2), 1)[0]
    assert 1.8 < slope < 3.0, (slope, w2)
    assert w2[-1] < 4e-3


@pytest.mark.slow
def test_pic_converges_at_second_order_on_fine_meshes():
    """M = 2562, 5762, 10242: W_2 = 2.0e-3, 7.5e-4, 4.6e-4 rad, slope 2.1 (measured)."""
    spacing, w2 = pic_against_particles(3, (2562, 5762, 10242))
    assert np.all(w2[1:] < w2[:-1]), w2
    slope = np.polyfit(np.log(spacing), np.log(w2), 1)[0]
    assert 1.7 < slope < 2.6, (slope, w2)


def test_pic_converges_to_the_particle_solver_on_the_circle():
    """d = 2, beta = 5, general Q, K, V: W_2 falls 4x per halving of dx (measured 5.4e-2 ..
    8.7e-4 rad for M = 16 .. 128)."""
    spacing, w2 = pic_against_particles(2, (16, 32, 64, 128))
    ratios = w2[:-1] / w2[1:]
    assert np.all((3.5 < ratios) & (ratios < 4.5)), w2
    assert w2[-1] < 1.5e-3


# ------------------------------------------------------------------------- zero temperature


def test_zero_temperature_follows_the_exact_flow(rng):
    """beta = inf, general Q, K, V: PIC uses the continuum field at the particles (no mesh), so
    it is the particle solver bit for bit, and rk4 converges to the exact flow at order 4.
    This B is nearly singular (singular values 1.95, 0.090, 0.0082): where |B^T x| is small the
    field turns fast, so the worst particle is 1.6e-7 off at dt = 0.005 (median 3e-11)."""
    model = general_model(3, "inf")
    x0 = unit_rows(rng, 200, 3)
    w = random_weights(rng, len(x0))
    exact = zero_temperature_flow(model, x0, 1.0, rtol=1e-13, atol=1e-14)
    errors = []
    for dt in (0.01, 0.005):
        solver = PICSolver(model, SolverOptions(method="pic", cells=162, dt=dt))
        x = final(solver, x0, w, 1.0)
        assert solver.cell_masses is None and solver.n_field_evaluations == 4 * round(1.0 / dt)
        np.testing.assert_array_equal(x, final(ParticleSolver(model, SolverOptions(dt=dt)), x0, w, 1.0))
        errors.append(geodesic_distance(x, exact).max())
    assert errors[1] < 5e-7 and errors[0] / errors[1] > 10.0, errors


def test_hardmax_and_bad_sizes_are_refused(rng):
    hardmax = mfpde.Model(beta="inf", d=3, zero_temperature="hardmax")
    with pytest.raises(ValueError, match="model.zero_temperature must be \"continuum\" for pic"):
        PICSolver(hardmax, SolverOptions(method="pic", cells=162))
    with pytest.raises(ValueError, match="d = 2 .* d = 3"):
        PICSolver(mfpde.Model(d=4), SolverOptions(method="pic", cells=162))
    solver = PICSolver(mfpde.Model(d=3, beta=1.0), SolverOptions(method="pic", cells=162))
    with pytest.raises(ValueError, match="one row per particle"):
        list(solver.snapshots(unit_rows(rng, 10, 3), np.full(5, 0.2), [0.1]))


# ------------------------------------------------------------------------------- runner


def pic_config(tmp_path, d=3, **solver):
    return {
        "model": {"d": d, "beta": 5.0, "V": np.diag([1.0, 0.5, -0.5][:d]).tolist()},
        "initial": {"kind": "vmf_mixture", "n": 400, "seed": 2, "means": [[1.0] + [0.0] * (d - 1), [0.0] * (d - 1) + [1.0]],
                    "kappas": [2.0, 4.0]},
        "solver": {"method": "pic", "cells": 642 if d == 3 else 64, "dt": 0.05, "t_end": 0.6, **solver},
        "output": {"path": str(tmp_path / f"pic{d}.h5"), "save_every": 0.2, "diagnostics": ["mass", "energy"]},
    }


@pytest.mark.parametrize("d", [2, 3])
def test_runner_writes_positions_weights_and_the_mesh(tmp_path, d):
    res = mfpde.run(pic_config(tmp_path, d))
    assert res.complete and res.config["solver"]["method"] == "pic"
    assert res.positions.shape == (4, 400, d) and res.weights.shape == (400,)
    mesh = pic.pic_mesh(d, 642 if d == 3 else 64)
    np.testing.assert_array_equal(res.grid["areas"], mesh.areas)
    assert res.grid["centers"].shape == (mesh.M, d)
    np.testing.assert_allclose(res.diagnostics["mass"], 1.0, rtol=0, atol=1e-14)
    # the same numbers as the solver called directly
    cfg = load_config(pic_config(tmp_path, d))
    direct = PICSolver(cfg.model, cfg.solver).snapshots(res.positions[0], res.weights, res.times)
    for stored, (t, x) in zip(res.positions, direct):
        np.testing.assert_array_equal(stored, x)


def test_runner_refuses_what_pic_cannot_run(tmp_path):
    for change, key in (
        ({"model": {"d": 4}}, "solver.method"),
        ({"solver": {"method": "pic", "cells": 11}}, "solver.cells"),
        ({"model": {"d": 3, "beta": "inf", "zero_temperature": "hardmax"}}, "model.zero_temperature"),
    ):
        cfg = {"model": {"d": 3}, "solver": {"method": "pic"}, "output": {"path": str(tmp_path / "x.h5")}}
        for section, values in change.items():
            cfg[section] = {**cfg[section], **values}
        with pytest.raises(ConfigError) as err:
            mfpde.run(cfg)
        assert err.value.key == key and "\n" not in str(err.value)
        assert not (tmp_path / "x.h5").exists()


def test_example_config_runs(tmp_path):
    cfg = load_config(CONFIGS / "pic_sphere.toml", ["solver.t_end=0.2", "output.save_every=0.1"])
    assert cfg.solver.method == "pic" and cfg.model.d == 3
    res = mfpde.run(cfg, output=tmp_path / "example.h5")
    assert res.complete and res.positions.shape[0] == 3
    assert res.positions.shape[1] == cfg.initial.n
