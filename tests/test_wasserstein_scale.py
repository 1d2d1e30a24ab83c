"""The certified sparse W_p and the exact two-atom path against POT's exact emd2.

Kernels against NumPy references (costs, c-transform, nearest neighbours), the certificate
(lower <= POT <= upper, relative gap <= tolerance) on tokens of the zero-temperature flow
toward great circles (axis-aligned, tilted symmetric, non-normal), weighted measures
(HiGHS path), integer multiplicities, and what auto / the runner store past every budget.
"""

import math

import numpy as np
import ot
import pytest

import mfpde
from mfpde import _sparse_ot as S
from mfpde.distances import WassersteinError, WassersteinResult, cost_matrix, wasserstein
from mfpde.limit import distance_to_subspace, limit_map, zero_temperature_flow
from mfpde.sphere import sample_uniform


@pytest.fixture
def rng():
    return np.random.default_rng(77)


def _pot(X, a, Y, b, p, ground):
    a = np.full(len(X), 1 / len(X)) if a is None else a
    b = np.full(len(Y), 1 / len(Y)) if b is None else b
    C = cost_matrix(X, Y, ground) ** p
    return float(ot.emd2(a, b, C, numItermax=10**8)) ** (1 / p)


def _great_circle_flow(kind, n, t, seed=0):
    """Tokens x_i(t) of the zero-temperature flow and the limit atoms Pi(x_i(0))."""
    rng = np.random.default_rng(seed)
    if kind == "diagonal":
        A = np.diag([1.0, 1.0, -0.5])
    elif kind == "tilted":
        R = np.linalg.qr(rng.standard_normal((3, 3)))[0]
        A = R @ np.diag([1.0, 1.0, -0.5]) @ R.T
    else:  # non-normal: E and its complement are not orthogonal
        R = np.array([[1.0, 0.4, 0.7], [0.0, 1.0, -0.5], [0.2, 0.0, 1.0]])
        A = R @ np.diag([1.0, 1.0, -0.5]) @ np.linalg.inv(R)
    X0 = sample_uniform(n, 3, rng)
    return A, zero_temperature_flow(A, X0, t), limit_map(A, X0)


# ------------------------------------------------------------------ kernels vs NumPy


@pytest.mark.parametrize("geodesic", [True, False])
@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
def test_edge_costs_match_numpy(geodesic, p, rng):
    X, Y = sample_uniform(50, 3, rng), sample_uniform(40, 3, rng)
    rows, cols = rng.integers(0, 50, 300), rng.integers(0, 40, 300)
    np.testing.assert_allclose(S._edge_costs(X, Y, rows, cols, geodesic, p),
                               S.edge_costs_reference(X, Y, rows, cols, geodesic, p), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("geodesic", [True, False])
@pytest.mark.parametrize("p", [1.0, 2.0])
@pytest.mark.parametrize("d", [3, 4])
def test_c_transform_over_all_pairs_matches_numpy(geodesic, p, d, rng):
    # targets on a great circle (the tree's hard case: every node far from the poles) and in
    # general position, potentials of both signs and of the size of the costs
    X = sample_uniform(300, d, rng)
    Y = sample_uniform(500, d, rng)
    Y[:250, 2:] = 0.0
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    g = rng.normal(0.0, 0.5, 500)
    tree = S.BallTree(Y)
    f, arg = S.c_transform(X, g, tree, geodesic, p)
    f_ref, arg_ref = S.c_transform_reference(X, g, Y, geodesic, p)
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-13)
    # the argmin attains the minimum (ties may pick another index)
    chord = np.linalg.norm(X - Y[arg], axis=1)
    th = 2 * np.arcsin(np.minimum(chord / 2, 1))
    np.testing.assert_allclose(((th if geodesic else 2 * np.sin(th / 2)) ** p) - g[arg], f_ref, atol=1e-13)
    vals, args = S.c_transform_k(X, g, tree, geodesic, p, 5)
    C = (S.c_transform_reference(X, np.zeros(500), Y, geodesic, p)[0])  # noqa: F841 (shape check below)
    chord = np.linalg.norm(X[:, None] - Y[None], axis=2)
    th = 2 * np.arcsin(np.minimum(chord / 2, 1))
    V = (th if geodesic else 2 * np.sin(th / 2)) ** p - g
    np.testing.assert_allclose(vals, np.sort(V, axis=1)[:, :5], atol=1e-13)


def test_k_best_with_zero_potential_is_exact_nearest_neighbours():
    # the first candidate pairs: k-best of c_ij - 0, i.e. the k nearest neighbours, including
    # tokens near the pole of a tilted great circle (every target about pi/2 away)
    A, X, Y = _great_circle_flow("tilted", 2000, 0.0)
    tree = S.BallTree(Y)
    _, J = S.c_transform_k(X, np.zeros(len(Y)), tree, True, 1.0, 6)
    chord = np.linalg.norm(X[:, None] - Y[None], axis=2)
    np.testing.assert_allclose(np.linalg.norm(X[:, None] - Y[J], axis=2), np.sort(chord, axis=1)[:, :6], atol=1e-15)


@pytest.mark.parametrize("p", [1.0, 2.0])
def test_two_atom_cost_is_the_linear_program_optimum(p, rng):
    X = sample_uniform(200, 3, rng)
    a = rng.random(200) + 0.1
    a /= a.sum()
    Y = sample_uniform(2, 3, rng)
    for b in (np.array([0.5, 0.5]), np.array([0.13, 0.87]), np.array([1.0, 0.0])):
        C = cost_matrix(X, Y) ** p
        assert S.two_atom_cost(C, a, b) == pytest.approx(float(ot.emd2(a, b, C)), rel=1e-12, abs=1e-15)


# ------------------------------------------------------------------ against POT emd2


@pytest.mark.parametrize("kind,t", [("diagonal", 0.0), ("tilted", 0.3), ("tilted", 1.5), ("non_normal", 0.0),
                                    ("non_normal", 0.7)])
@pytest.mark.parametrize("ground", ["geodesic", "chordal"])
@pytest.mark.parametrize("p", [1, 2])
def test_sparse_matches_pot_on_tokens_flowing_to_a_great_circle(kind, t, ground, p):
    # The certificate lower <= W <= upper must hold against POT (an independent exact
    # solver: the network simplex on the full cost matrix) and the error be <= 1e-3.
    _, X, Y = _great_circle_flow(kind, 1200, t)
    ref = _pot(X, None, Y, None, p, ground)
    res = wasserstein(X, None, Y, None, p=p, ground=ground, method="sparse", return_result=True)
    assert isinstance(res, WassersteinResult) and res.method == "sparse"
    tol = 1e-12 * max(1.0, ref)
    assert res.lower - tol <= ref <= res.upper + tol
    assert abs(res.value - ref) <= res.bound + tol
    assert res.bound <= 1e-3 * res.value
    assert abs(res.value - ref) <= 1e-3 * ref


@pytest.mark.slow
@pytest.mark.parametrize("kind,t", [("tilted", 0.0), ("tilted", 1.0), ("non_normal", 0.5), ("non_normal", 2.0)])
@pytest.mark.parametrize("ground", ["geodesic", "chordal"])
@pytest.mark.parametrize("p", [1, 2])
def test_sparse_matches_pot_at_5000_tokens(kind, t, ground, p):
    _, X, Y = _great_circle_flow(kind, 5000, t, seed=3)
    ref = _pot(X, None, Y, None, p, ground)
    res = wasserstein(X, None, Y, None, p=p, ground=ground, method="sparse", return_result=True)
    tol = 1e-12 * max(1.0, ref)
    assert res.lower - tol <= ref <= res.upper + tol
    assert abs(res.value - ref) <= 1e-3 * ref


@pytest.mark.parametrize("p", [1, 2])
def test_symmetric_flow_distance_is_the_mean_distance_to_the_circle(p):
    # For symmetric A each token's own limit atom is its nearest point of E cap S^2, so the
    # identity coupling attains the lower bound mean dist^p: W_p^p = mean dist(x_i, E)^p.
    A, X, Y = _great_circle_flow("tilted", 3000, 0.8)
    exact = float(np.mean(distance_to_subspace(A, X) ** p)) ** (1 / p)
    res = wasserstein(X, None, Y, None, p=p, method="sparse", return_result=True)
    assert res.lower - 1e-12 <= exact <= res.upper + 1e-12
    assert res.value == pytest.approx(exact, rel=1e-3)


@pytest.mark.parametrize("ground", ["geodesic", "chordal"])
@pytest.mark.parametrize("p", [1, 2])
def test_sparse_weighted_measures_match_pot(ground, p, rng):
    # general masses: the HiGHS path with the same certificate
    X, Y = sample_uniform(250, 3, rng), sample_uniform(180, 3, rng)
    Y[:, 2] *= 0.2
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    a, b = rng.random(250) + 0.1, rng.random(180) + 0.1
    a, b = a / a.sum(), b / b.sum()
    ref = _pot(X, a, Y, b, p, ground)
    res = wasserstein(X, a, Y, b, p=p, ground=ground, method="sparse", return_result=True)
    assert res.lower - 1e-12 <= ref <= res.upper + 1e-12
    assert abs(res.value - ref) <= 1e-3 * ref


def test_integer_multiplicities_are_an_assignment(rng):
    # a limit with merged atoms (masses k/N) against N equal tokens: expanded to N x N
    X = sample_uniform(600, 3, rng)
    Y = sample_uniform(200, 3, rng)
    counts = np.concatenate([np.full(100, 1), np.full(100, 5)])
    b = counts / counts.sum()
    ref = _pot(X, None, Y, b, 2, "geodesic")
    res = wasserstein(X, None, Y, b, method="sparse", return_result=True)
    assert res.lower - 1e-12 <= ref <= res.upper + 1e-12
    assert abs(res.value - ref) <= 1e-3 * ref


def test_identical_measures_give_zero(rng):
    X = sample_uniform(400, 3, rng)
    res = wasserstein(X, None, X, None, method="sparse", return_result=True)
    assert res.value <= 1e-5 and res.lower == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("ground", ["geodesic", "chordal"])
@pytest.mark.parametrize("p", [1, 2])
def test_two_atom_matches_pot(ground, p, rng):
    A = np.diag([1.0, 0.3, -0.2])
    X0 = sample_uniform(3000, 3, rng)
    X = zero_temperature_flow(A, X0, 0.4)
    Y, b = mfpde.limit.limit_measure(A, X0)
    assert len(Y) == 2
    res = wasserstein(X, None, Y, b, p=p, ground=ground, return_result=True)
    assert res.method == "two_atom" and res.bound == 0.0
    assert res.value == pytest.approx(_pot(X, None, Y, b, p, ground), rel=1e-10)


# ------------------------------------------------------------------ never a different number


def test_sparse_that_cannot_certify_raises_or_falls_back_to_exact(monkeypatch, rng):
    X, Y = sample_uniform(60, 3, rng), sample_uniform(60, 3, rng)
    monkeypatch.setattr(S, "sparse_assignment", lambda *args, **kw: S.SparseResult(1.0, 0.5, 8, 10))
    with pytest.raises(WassersteinError, match="certified only"):
        wasserstein(X, None, Y, None, method="sparse")
    # auto past the pair threshold but within the memory budget: exact, and it says so
    monkeypatch.setattr(mfpde.distances, "AUTO_EXACT_PAIRS", 100)
    res = wasserstein(X, None, Y, None, return_result=True)
    assert res.method == "exact" and res.value == pytest.approx(_pot(X, None, Y, None, 2, "geodesic"), rel=1e-12)
    # past every budget: an error, never a sliced value
    with pytest.raises(WassersteinError):
        wasserstein(X, None, Y, None, memory_budget=8)


def test_run_past_every_budget_stores_the_method_and_a_certified_value(tmp_path, monkeypatch):
    # The runner's cost-matrix budget is forced to 8 bytes and the exact threshold to 0:
    # auto must run the certified sparse method at every snapshot, never sliced, and the
    # file must say so with the bound; each stored value is checked against POT.
    import mfpde.runner as runner

    monkeypatch.setattr(runner, "W_MEMORY_BUDGET", 8)
    monkeypatch.setattr(mfpde.distances, "AUTO_EXACT_PAIRS", 0)
    V = [[0.8775510204081632, -0.1836734693877551, -0.3673469387755102],
         [-0.1836734693877551, 0.7244897959183674, -0.5510204081632653],
         [-0.3673469387755102, -0.5510204081632653, -0.10204081632653061]]
    config = {
        "model": {"d": 3, "beta": "inf", "V": V},
        "initial": {"kind": "uniform", "n": 800, "seed": 1},
        "solver": {"method": "particles", "integrator": "rk4", "dt": 0.1, "t_end": 1.0},
        "output": {"path": str(tmp_path / "w.h5"), "save_every": 0.5, "diagnostics": ["w_to_limit"]},
        "wasserstein": {"p": 1, "ground": "chordal", "tolerance": 1e-4},
    }
    res = mfpde.run(config)
    attrs = res.diagnostic_attrs["w_to_limit"]
    assert attrs["method"] == "sparse" and attrs["method_requested"] == "auto"
    assert attrs["tolerance"] == 1e-4 and attrs["p"] == 1.0 and attrs["ground"] == "chordal"
    assert 0 <= attrs["relative_bound"] <= 1e-4
    Y, b = res.limit
    for x, w in zip(res.positions, res.diagnostics["w_to_limit"]):
        ref = _pot(x, None, Y, b, 1, "chordal")
        assert abs(w - ref) <= attrs["bound"] + 1e-12
        assert abs(w - ref) <= 1e-4 * ref
