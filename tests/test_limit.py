"""The projection Pi, the limit measure Pi#rho_0 and the exact zero-temperature flow."""

import warnings

import numpy as np
import pytest

from mfpde.limit import (
    ComplexDominantWarning,
    distance_to_subspace,
    dominant_subspace,
    limit_map,
    limit_measure,
    spectral_split,
    zero_temperature_flow,
)
from mfpde.model import Model
from mfpde.sphere import angle_to_point, sample_uniform

# A non-normal matrix with real spectrum {2, 1, -1}: its eigenvectors are not orthogonal,
# so the spectral projector differs from the orthogonal one.
NON_NORMAL = np.array([[2.0, 5.0, 1.0], [0.0, 1.0, 3.0], [0.0, 0.0, -1.0]])


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def _random_orthogonal(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# ---------------------------------------------------------------- exact: subspace and projector


def test_symmetric_simple_top_eigenvalue_gives_top_eigenvector(rng):
    O = _random_orthogonal(4, rng)
    V = O @ np.diag([3.0, 1.0, 0.5, -2.0]) @ O.T
    basis, eigs, is_complex = dominant_subspace(Model(V=V, d=4))
    assert basis.shape == (4, 1)
    assert not is_complex
    np.testing.assert_allclose(eigs, [3.0], atol=1e-12)
    # basis = +-O[:, 0]; round-off of a 4 x 4 eigenproblem with gap 2 is ~1e-15
    np.testing.assert_allclose(abs(basis[:, 0] @ O[:, 0]), 1.0, atol=1e-12)


def test_symmetric_projector_is_orthogonal(rng):
    O = _random_orthogonal(4, rng)
    V = O @ np.diag([2.0, 2.0, 0.5, -2.0]) @ O.T
    split = spectral_split(Model(V=V, d=4))
    assert split.dim == 2
    np.testing.assert_allclose(split.projector, split.orthogonal_projector, atol=1e-12)
    np.testing.assert_allclose(split.projector, O[:, :2] @ O[:, :2].T, atol=1e-12)


def test_near_degenerate_eigenvalues_count_as_dominant():
    # 1 + 1e-12 and 1 differ by far less than DOMINANT_RTOL = 1e-8 relative: one group of 2
    V = np.diag([1.0 + 1e-12, 1.0, 0.3])
    assert spectral_split(Model(V=V, d=3)).dim == 2
    # ... but a gap of 1e-6 is resolved with the default tolerance, merged with tol=1e-4
    V = np.diag([1.0 + 1e-6, 1.0, 0.3])
    assert spectral_split(Model(V=V, d=3)).dim == 1
    assert spectral_split(Model(V=V, d=3), tol=1e-4).dim == 2


def test_non_normal_projector_is_idempotent_and_commutes_with_A():
    model = Model(V=NON_NORMAL, d=3)
    split = spectral_split(model)
    P, A = split.projector, model.A
    assert split.dim == 1
    # entries of A are O(5), the Sylvester solve is well conditioned (gap 1): round-off ~1e-14
    np.testing.assert_allclose(P @ P, P, atol=1e-13)
    np.testing.assert_allclose(P @ A, A @ P, atol=1e-13)
    # it is oblique: not the orthogonal projector onto E
    assert np.abs(P - split.orthogonal_projector).max() > 0.1
    # P_E kills the other eigenvectors
    w, vecs = np.linalg.eig(NON_NORMAL)
    for lam, v in zip(w, vecs.T):
        if lam.real < 1.5:
            np.testing.assert_allclose(P @ v.real, 0.0, atol=1e-13)


def test_non_normal_limit_map_is_the_long_time_flow(rng):
    # B = I, so x(t) = exp(A t) x0 / |exp(A t) x0|; the spectral gap is 1, so at t = 60 the
    # flow is within e^-60 ~ 1e-26 (times a moderate constant) of Pi(x0).
    model = Model(V=NON_NORMAL, d=3)
    X0 = sample_uniform(50, 3, rng)
    np.testing.assert_allclose(zero_temperature_flow(model, X0, 60.0), limit_map(model, X0), atol=1e-12)


def test_zero_temperature_flow_b_identity_matches_expm(rng):
    from scipy.linalg import expm

    V = rng.standard_normal((3, 3))
    model = Model(V=V, d=3)
    X0 = sample_uniform(7, 3, rng)
    Z = X0 @ expm(V * 0.7).T
    np.testing.assert_allclose(
        zero_temperature_flow(model, X0, 0.7), Z / np.linalg.norm(Z, axis=1, keepdims=True), atol=1e-13
    )


def test_zero_temperature_flow_general_B_matches_time_change(rng):
    # B = 2 R^T with R orthogonal is not a multiple of I, so the ODE path is taken, but
    # |B^T x| = 2 for every unit x: dx/dt = P_x A x / 2, i.e. exp(A t / 2) x0 normalised.
    R = _random_orthogonal(3, rng)
    V = rng.standard_normal((3, 3))
    model = Model(Q=2.0 * R, K=None, V=V, d=3)  # B = Q^T K = 2 R^T
    assert not np.allclose(model.B, model.B[0, 0] * np.eye(3))
    X0 = sample_uniform(5, 3, rng)
    from scipy.linalg import expm

    Z = X0 @ expm(model.A * 0.8 / 2.0).T
    expected = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    # DOP853 with rtol 1e-10, atol 1e-12 over t = 0.8: error ~1e-10
    np.testing.assert_allclose(zero_temperature_flow(model, X0, 0.8), expected, atol=1e-8)
    traj = zero_temperature_flow(model, X0, [0.8, 0.0])
    assert traj.shape == (2, 5, 3)
    np.testing.assert_allclose(traj[1], X0, atol=1e-14)


# ---------------------------------------------------------------- analytic: limit measures


def test_uniform_circle_with_simple_top_eigenvalue_gives_two_atoms():
    # V = diag(2, 1): E = span(e1), Pi#uniform = (delta_e1 + delta_-e1) / 2.
    n = 10_000
    X = angle_to_point(2 * np.pi * (np.arange(n) + 0.5) / n)  # no point has x_1 = 0
    pts, w = limit_measure(Model(V=np.diag([2.0, 1.0]), d=2), X)
    assert len(pts) == 2
    order = np.argsort(-pts[:, 0])
    np.testing.assert_allclose(pts[order], [[1.0, 0.0], [-1.0, 0.0]], atol=0)
    # equispaced and symmetric: each half carries exactly n/2 points
    np.testing.assert_allclose(w[order], [0.5, 0.5], atol=1e-14)


def test_uniform_sphere_symmetric_simple_top_eigenvalue(rng):
    O = _random_orthogonal(3, rng)
    V = O @ np.diag([1.0, 0.2, -0.5]) @ O.T
    n = 20_000
    pts, w = limit_measure(Model(V=V, d=3), sample_uniform(n, 3, rng))
    assert len(pts) == 2
    np.testing.assert_allclose(np.abs(pts @ O[:, 0]), 1.0, atol=1e-12)
    # sampling: each weight is Binomial(n, 1/2)/n, std 1/(2 sqrt n) = 0.0035; allow 5 std
    np.testing.assert_allclose(w, [0.5, 0.5], atol=5 * 0.5 / np.sqrt(n))


def test_dim_k_subspace_points_land_on_great_subsphere(rng):
    O = _random_orthogonal(4, rng)
    V = O @ np.diag([1.0, 1.0, 0.0, -1.0]) @ O.T
    model = Model(V=V, d=4)
    Y = limit_map(model, sample_uniform(500, 4, rng))
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-14)
    # Y lies in span(O[:, :2]): its component along O[:, 2:] vanishes to round-off
    np.testing.assert_allclose(Y @ O[:, 2:], 0.0, atol=1e-13)
    np.testing.assert_allclose(distance_to_subspace(model, Y), 0.0, atol=1e-13)


def test_nan_rows_where_projection_vanishes():
    model = Model(V=np.diag([2.0, 1.0, 0.5]), d=3)
    X = np.array([[0.0, 1.0, 0.0], [0.0, 0.6, 0.8], [1.0, 0.0, 0.0], [1e-3, 1.0, 0.0]])
    Y = limit_map(model, X)
    assert np.isnan(Y[0]).all() and np.isnan(Y[1]).all()
    np.testing.assert_allclose(Y[2], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(Y[3], [1.0, 0.0, 0.0])  # tiny but resolvable component
    with pytest.warns(RuntimeWarning, match="undefined on a fraction 0.5"):
        pts, w, dropped = limit_measure(model, X, return_dropped=True)
    assert dropped == pytest.approx(0.5, abs=1e-15)
    np.testing.assert_allclose(pts, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(w, [1.0])
    with pytest.raises(ValueError, match="undefined"):
        limit_measure(model, X[:2])


def test_limit_measure_merges_coincident_atoms(rng):
    O = _random_orthogonal(3, rng)
    model = Model(V=O @ np.diag([1.0, 1.0, -1.0]) @ O.T, d=3)
    # three base points, each copied with a shift along the decaying direction O[:, 2]:
    # copies have the same image under Pi and must merge into one atom.
    base = sample_uniform(3, 3, rng)
    shifted = base + 0.3 * O[:, 2]
    shifted /= np.linalg.norm(shifted, axis=1, keepdims=True)
    X = np.vstack([base, shifted, base[:1]])
    weights = np.array([1, 2, 3, 4, 5, 6, 7.0])
    pts, w = limit_measure(model, X, weights)
    assert len(pts) == 3
    total = weights.sum()
    np.testing.assert_allclose(w, [(1 + 4 + 7) / total, (2 + 5) / total, (3 + 6) / total], atol=1e-15)
    np.testing.assert_allclose(pts, limit_map(model, base), atol=1e-14)


def test_complex_dominant_eigenvalues_warn(rng):
    # rotation by 90 degrees in the (x, y) plane plus a decaying z: eigenvalues +-i, -1
    V = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    model = Model(V=V, d=3)
    basis, eigs, is_complex = dominant_subspace(model)
    assert is_complex and basis.shape == (3, 2)
    np.testing.assert_allclose(sorted(eigs.imag), [-1.0, 1.0], atol=1e-14)
    X = sample_uniform(10, 3, rng)
    with pytest.warns(ComplexDominantWarning, match="distance_to_subspace"):
        limit_map(model, X)
    with pytest.warns(ComplexDominantWarning):
        limit_measure(model, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = distance_to_subspace(model, X)  # the suggested quantity: no warning
    np.testing.assert_allclose(d, np.arcsin(np.abs(X[:, 2])), atol=1e-14)


def test_distance_to_subspace_endpoints():
    model = Model(V=np.diag([1.0, 0.0, 0.0]), d=3)
    X = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [np.cos(0.3), np.sin(0.3), 0.0], [np.cos(1e-9), 0.0, np.sin(1e-9)]])
    # arctan2 form: exact at 0 and pi/2, and resolves 1e-9 rad (arccos would give ~2e-8 noise)
    np.testing.assert_allclose(distance_to_subspace(model, X), [0.0, np.pi / 2, 0.3, 1e-9], rtol=1e-12, atol=0)


def test_bad_points_shape_raises():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        limit_map(Model(d=3), np.ones((4, 2)))
