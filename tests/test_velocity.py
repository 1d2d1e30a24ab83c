"""The attention velocity field against a dense NumPy reference and closed forms.

Tolerance: the field is a ratio of sums of positive terms; both implementations round
each score beta <B^T x, y> with relative error ~ d eps, i.e. an absolute error in the
exponent of ~ d eps beta |B|.  For the matrices below (|B| ~ 1) and beta <= 1e4 this is
<= 1e-11 in the weights at worst and ~1e-13 in the field in practice; the contract is
1e-12 relative to the field's largest row.
"""

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.special import i0e, i1e, iv

import mfpde
from mfpde.kernels import LOG_FLOAT_MAX, log_partition

from .conftest import unit_rows


def dense_reference(model, X, Y, m):
    """Dense softmax/USA written out plainly: the full (N, M) score matrix."""
    scores = model.beta * np.einsum("ik,kl,jl->ij", X, model.B, Y)
    with np.errstate(divide="ignore"):
        logw = scores + np.log(m)[None, :]
    shift = logw.max(axis=1, keepdims=True)
    w = np.exp(logw - shift)
    avg = w @ (Y @ model.V.T)
    if model.normalization == "softmax":
        avg = avg / w.sum(axis=1, keepdims=True)
        log_size = None
    else:
        with np.errstate(divide="ignore"):
            log_size = (shift[:, 0] + np.log(np.abs(avg).max(axis=1))).max()
        with np.errstate(over="ignore", invalid="ignore"):
            avg = avg * np.exp(np.minimum(shift, LOG_FLOAT_MAX))
    with np.errstate(over="ignore", invalid="ignore"):
            field = avg - np.sum(avg * X, axis=1, keepdims=True) * X
    return field, log_size


def random_model(rng, d, beta, normalization):
    Q, K, V = (rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(3))
    return mfpde.Model(Q=Q, K=K, V=V, beta=beta, normalization=normalization)


@pytest.mark.parametrize("d", [2, 3, 5])
@pytest.mark.parametrize("beta", [0.0, 1.0, 50.0, 1e4])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_field_matches_dense_reference(rng, d, beta, normalization):
    model = random_model(rng, d, beta, normalization)
    X = unit_rows(rng, 300, d)  # targets != sources, sizes not multiples of the tile
    Y = unit_rows(rng, 517, d)
    m = rng.random(517)
    m /= m.sum()
    ref, log_size = dense_reference(model, X, Y, m)
    if normalization == "uniform" and log_size > LOG_FLOAT_MAX:
        with pytest.raises(OverflowError, match="uniform normalization overflows float64"):
            mfpde.velocity(model, X, Y, m)
        return
    got = mfpde.velocity(model, X, Y, m)
    assert np.all(np.isfinite(got))
    scale = np.abs(ref).max()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * scale)


def test_usa_overflow_is_a_clear_error_and_large_beta_usa_stays_exact(rng):
    d = 3
    X = unit_rows(rng, 50, d)
    with pytest.raises(OverflowError, match=r"exp\(.*\) \(beta = 10000\)"):
        mfpde.velocity(mfpde.Model(d=d, beta=1e4, normalization="uniform"), X)
    # beta = 700: e^{700} is finite, computed in log space; reference in log space too
    model = mfpde.Model(d=d, beta=700.0, normalization="uniform")
    ref, log_size = dense_reference(model, X, X, np.full(50, 1 / 50))
    assert 690 < log_size < LOG_FLOAT_MAX
    got = mfpde.velocity(model, X)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("d", [2, 3])
def test_softmax_at_beta_1e6_is_finite_and_equals_hardmax(rng, d):
    X = unit_rows(rng, 400, d)
    Y = unit_rows(rng, 25, d)
    model = random_model(rng, d, 1e6, "softmax")
    got = mfpde.velocity(model, X)
    assert np.all(np.isfinite(got))
    # where the runner-up score trails the best by > 40 / beta, softmax equals the hardmax
    # up to e^{-40} ~ 4e-18 (near the switching points of the argmax it need not)
    scores = np.sort(X @ model.B @ Y.T, axis=1)
    clear = (scores[:, -1] - scores[:, -2]) * model.beta > 40
    assert clear.sum() > 300
    hard = mfpde.velocity(model.replace(beta="inf", zero_temperature="hardmax"), X, Y)
    soft = mfpde.velocity(model, X, Y)
    assert np.all(np.isfinite(soft))
    np.testing.assert_allclose(soft[clear], hard[clear], rtol=0, atol=1e-14)


def test_default_sources_are_targets_with_equal_weights(rng):
    model = random_model(rng, 3, 4.0, "softmax")
    X = unit_rows(rng, 100, 3)
    np.testing.assert_array_equal(mfpde.velocity(model, X), mfpde.velocity(model, X, X, np.full(100, 0.01)))


def test_beta_zero_is_the_mean_value(rng):
    model = random_model(rng, 4, 0.0, "softmax")
    X, Y = unit_rows(rng, 30, 4), unit_rows(rng, 70, 4)
    m = rng.random(70)
    mean = (m / m.sum()) @ Y @ model.V.T
    expected = mean - (X @ mean)[:, None] * X
    np.testing.assert_allclose(mfpde.velocity(model, X, Y, m), expected, rtol=0, atol=1e-15)


def test_massless_sources_do_not_contribute_even_when_they_dominate(rng):
    d = 3
    model = mfpde.Model(d=d, beta=1e3)
    X = unit_rows(rng, 20, d)
    Y = unit_rows(rng, 40, d)
    m = rng.random(40)
    m[:10] = 0.0
    Y[:10] = X[:10]  # massless sources exactly at targets carry the largest scores
    np.testing.assert_allclose(
        mfpde.velocity(model, X, Y, m), mfpde.velocity(model, X, Y[10:], m[10:]), rtol=0, atol=1e-14
    )


def test_softmax_ignores_total_mass_and_usa_scales_with_it(rng):
    X, Y, m = unit_rows(rng, 40, 3), unit_rows(rng, 60, 3), rng.random(60)
    sa = random_model(rng, 3, 3.0, "softmax")
    usa = sa.replace(normalization="uniform")
    ref_sa, ref_usa = mfpde.velocity(sa, X, Y, m), mfpde.velocity(usa, X, Y, m)
    np.testing.assert_allclose(mfpde.velocity(sa, X, Y, 7 * m), ref_sa, rtol=0, atol=1e-14 * np.abs(ref_sa).max())
    np.testing.assert_allclose(
        mfpde.velocity(usa, X, Y, 7 * m), 7 * ref_usa, rtol=0, atol=1e-14 * np.abs(7 * ref_usa).max()
    )


@pytest.mark.parametrize("beta", [0.5, 5.0, 60.0])
def test_uniform_circle_measure_closed_form(beta, rng):
    """Q = K = I, sources uniform on S^1: the attention mean of y is (I_1/I_0)(beta) x (SA)
    and I_1(beta) x (USA), so the field is that factor times P_x V x.  Equispaced points
    integrate the smooth periodic integrand to machine precision (trapezoid rule)."""
    V = rng.standard_normal((2, 2))
    Y = mfpde.sphere.angle_to_point(2 * np.pi * np.arange(4096) / 4096)
    X = unit_rows(rng, 64, 2)
    pvx = X @ V.T - np.sum((X @ V.T) * X, axis=1, keepdims=True) * X
    sa = mfpde.Model(V=V, beta=beta)
    np.testing.assert_allclose(mfpde.velocity(sa, X, Y), (i1e(beta) / i0e(beta)) * pvx, rtol=0, atol=1e-13)
    usa = sa.replace(normalization="uniform")
    got = mfpde.velocity(usa, X, Y)
    np.testing.assert_allclose(got, iv(1, beta) * pvx, rtol=0, atol=1e-13 * iv(1, beta) * np.abs(pvx).max())


def test_continuum_field_is_the_laplace_limit(rng):
    """beta = inf continuum: P_x V B^T x / |B^T x|, with no dependence on the sources; on the
    circle with Q = K = I it is the beta -> inf limit of the closed form above."""
    d = 3
    Q, K, V = (rng.standard_normal((d, d)) for _ in range(3))
    model = mfpde.Model(Q=Q, K=K, V=V, beta="inf")
    X = unit_rows(rng, 50, d)
    bx = X @ model.B
    drift = (bx @ V.T) / np.linalg.norm(bx, axis=1, keepdims=True)
    expected = drift - np.sum(drift * X, axis=1, keepdims=True) * X
    np.testing.assert_allclose(mfpde.velocity(model, X), expected, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(mfpde.velocity(model, X, unit_rows(rng, 9, d)), mfpde.velocity(model, X))
    V2 = rng.standard_normal((2, 2))
    Y = mfpde.sphere.angle_to_point(2 * np.pi * np.arange(8192) / 8192)
    X2 = unit_rows(rng, 16, 2)
    cont = mfpde.velocity(mfpde.Model(V=V2, beta="inf"), X2)
    finite = mfpde.velocity(mfpde.Model(V=V2, beta=400.0), X2, Y)
    # finite beta on the uniform circle is (I_1/I_0)(beta) times the continuum field, and
    # I_1/I_0 = 1 - 1/(2 beta) + O(beta^-2) -> 1: the continuum field is the Laplace limit
    np.testing.assert_allclose(finite, (i1e(400.0) / i0e(400.0)) * cont, rtol=0, atol=1e-13)
    assert np.abs(finite - cont).max() <= (1 / 800 + 1 / 400**2) * np.abs(cont).max()


def test_hardmax_splits_ties_by_mass():
    """Target e_1 on the circle, two sources at angles +-phi tie on <x, y> = cos phi."""
    phi = 0.3
    V = np.array([[1.0, 2.0], [-1.0, 0.5]])
    model = mfpde.Model(V=V, beta="inf", zero_temperature="hardmax")
    X = np.array([[1.0, 0.0]])
    Y = mfpde.sphere.angle_to_point([phi, -phi, 2.0])
    m = np.array([0.2, 0.6, 0.2])
    avg = (0.2 * Y[0] + 0.6 * Y[1]) / 0.8 @ V.T
    expected = avg - (avg @ X[0]) * X[0]
    np.testing.assert_allclose(mfpde.velocity(model, X, Y, m), expected[None], rtol=0, atol=1e-15)
    # equal masses: the plain mean of the two values
    avg = 0.5 * (Y[0] + Y[1]) @ V.T
    got = mfpde.velocity(model, X, Y[:2])
    np.testing.assert_allclose(got, (avg - (avg @ X[0]) * X[0])[None], rtol=0, atol=1e-15)


def test_log_partition_matches_dense(rng):
    d = 3
    model = random_model(rng, d, 80.0, "softmax")
    X, Y, m = unit_rows(rng, 70, d), unit_rows(rng, 300, d), rng.random(300)
    s = 80.0 * X @ model.B @ Y.T + np.log(m)
    smax = s.max(axis=1)
    expected = smax + np.log(np.exp(s - smax[:, None]).sum(axis=1))
    np.testing.assert_allclose(log_partition(model, X, Y, m), expected, rtol=1e-14)


def test_results_do_not_depend_on_thread_count(rng):
    import numba

    model = random_model(rng, 3, 20.0, "softmax")
    X = unit_rows(rng, 333, 3)
    a = mfpde.velocity(model, X)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        b = mfpde.velocity(model, X)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: mfpde.velocity(m, np.ones((3, 2))), r"X must have shape \(N, 3\)"),
        (lambda m: mfpde.velocity(m, np.full((3, 3), np.nan)), "X must be finite"),
        (lambda m: mfpde.velocity(m, np.eye(3), weights=[1, -1, 1]), "weights must be finite, >= 0"),
        (lambda m: mfpde.velocity(m, np.eye(3), weights=[1, 1]), r"weights must have shape \(3,\)"),
        (lambda m: mfpde.velocity(m, np.eye(3), kernel="fast"), "kernel must be"),
    ],
)
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call(mfpde.Model(d=3, beta=1.0))


def test_memory_is_linear_in_n():
    """A (2e5 x 2e3) and a (2e3 x 2e5) evaluation: an N x M matrix would be 3.2 GB; the peak
    resident memory of the whole process must stay under 1 GiB (numba's own footprint
    included; VmHWM, the peak since exec: ru_maxrss would carry over the peak of the pytest
    process it was spawned from, 1.1 GB late in a full run).  The full N = 2e5 square case is
    in the slow tier."""
    code = textwrap.dedent(
        """
        import numpy as np, mfpde
        rng = np.random.default_rng(0)
        big = rng.standard_normal((200_000, 3)); big /= np.linalg.norm(big, axis=1, keepdims=True)
        small = big[:2000].copy()
        model = mfpde.Model(d=3, beta=10.0)
        mfpde.velocity(model, big, small)
        mfpde.velocity(model, small, big)
        print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_kib = int(out.stdout.strip().splitlines()[-1])
    assert peak_kib < 1024 * 1024


@pytest.mark.slow
def test_full_square_field_at_n_200k_stays_under_1_gib():
    code = textwrap.dedent(
        """
        import numpy as np, mfpde
        rng = np.random.default_rng(0)
        x = rng.standard_normal((200_000, 3)); x /= np.linalg.norm(x, axis=1, keepdims=True)
        v = mfpde.velocity(mfpde.Model(d=3, beta=10.0), x)
        assert np.isfinite(v).all()
        print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip().splitlines()[-1]) < 1024 * 1024
