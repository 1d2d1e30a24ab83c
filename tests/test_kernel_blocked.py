"""The high-d exact kernel (``mfpde.kernels.blocked``, GEMM-blocked tiles) against the
plain NumPy reference: dimensions around and far above the crossover, sizes that are not
multiples of the tiles, weighted and massless sources, both normalizations, beta from 0.1
to 1e6, the float32 mode's accuracy, thread-count independence bit for bit, tile edges,
and the hook in ``exact_sums``."""

import math

import numba
import numpy as np
import pytest

import mfpde
from mfpde.kernels import LOG2E, exact_sums, finish, log_partition
from mfpde.kernels import blocked
from mfpde.kernels.blocked import BLOCKED_MIN_D, blocked_sums, single_threaded_blas, tile_sizes
from mfpde.kernels.reference import attention_average_numpy, log_partition_numpy
from mfpde.sphere import tangent_projection

from .conftest import unit_rows

F64 = np.finfo(np.float64).eps
F32 = float(np.finfo(np.float32).eps)


def random_model(rng, d, beta, normalization="softmax"):
    Q, K, V = (rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(3))
    return mfpde.Model(Q=Q, K=K, V=V, beta=beta, normalization=normalization)


def score_scale(model, X, Y):
    """max |beta <B^T x, y>|: the conditioning of the exponentials (an absolute rounding
    of eps |s| in a score is a relative error of eps |s| in its weight)."""
    return model.beta * np.linalg.norm(model.B, 2) * np.linalg.norm(X, axis=1).max() * np.linalg.norm(Y, axis=1).max()


def tol64(model, X, Y):
    return 1e-12 + 64 * F64 * score_scale(model, X, Y)


def tol32(model, X, Y):
    """float32 mode: q, y, v rounded to float32 (eps/2 each), scores of size |s| carry
    ~2 eps |s| (in log2 units: x log2 e), exponentials 2 ulp, tile sums of 256 or 512
    terms accumulated in one float32 chain by the gemm (~sqrt(tm) eps/2 typical).
    Measured at d <= 300, beta <= 5: 2e-7 ... 1e-6, under 32 eps = 3.8e-6."""
    return F32 * (32 + 8 * score_scale(model, X, Y))


def blocked_field(model, X, Y, m, precision="float64"):
    return finish(model, *blocked_sums(model, X, Y, m, precision))


def clustered(rng, n, d, spread):
    """n unit points within ~spread of one random direction."""
    u = unit_rows(rng, 1, d)
    y = u + spread * rng.standard_normal((n, d))
    return y / np.linalg.norm(y, axis=1, keepdims=True)


@pytest.mark.parametrize("d", [4, 16, 64, 130])
@pytest.mark.parametrize("beta", [0.1, 5.0, 1e6])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_blocked_matches_the_numpy_reference(rng, d, beta, normalization):
    """N = 203, M = 531 (not multiples of the tiles), random masses with zeros.  At
    beta = 1e6 the sources sit in a cap of radius ~1e-5 so that many of them share the
    attention (scores differ by O(10)); uniform overflows there (an OverflowError)."""
    model = random_model(rng, d, beta, normalization)
    X = unit_rows(rng, 203, d)
    Y = clustered(rng, 531, d, 1e-5) if beta > 100 else unit_rows(rng, 531, d)
    m = rng.random(531)
    m[::37] = 0.0
    if normalization == "uniform" and beta > 100:
        # e^(1e6 ...) overflows float64: the sums are fine, finish() says so clearly
        num, den, smax = blocked_sums(model, X, Y, m)
        assert np.all(np.isfinite(num)) and np.all(den >= 0.5) and smax.max() > 1100
        with pytest.raises(OverflowError, match="uniform normalization overflows"):
            finish(model, num, den, smax)
        return
    ref = attention_average_numpy(model, X, Y, m)
    got = blocked_field(model, X, Y, m)
    assert np.all(np.isfinite(got))
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err <= tol64(model, X, Y)
    if beta <= 5:
        assert err < 1e-13
    if beta > 100:
        # really many sources per target: the field is not one source's value
        s = model.beta * (X @ model.B) @ Y.T
        assert np.median(np.sort(s, axis=1)[:, -1] - np.sort(s, axis=1)[:, -2]) < 5.0


@pytest.mark.parametrize("d", [16, 64, 130, 300])
@pytest.mark.parametrize("beta", [0.1, 5.0])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_float32_mode_accuracy(rng, d, beta, normalization):
    """256 x 512 tiles (``tile_sizes``): M = 700 is 1 full source tile and a partial one."""
    model = random_model(rng, d, beta, normalization)
    X, Y = unit_rows(rng, 150, d), unit_rows(rng, 700, d)
    m = rng.random(700)
    m[::50] = 0.0
    ref = attention_average_numpy(model, X, Y, m)
    got = blocked_field(model, X, Y, m, "float32")
    assert got.dtype == np.float64
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert 1e-12 < err <= tol32(model, X, Y)  # really float32, and within its bound


def test_float32_at_beta_1e6_stays_finite(rng):
    d = 16
    model = random_model(rng, d, 1e6)
    X, Y = unit_rows(rng, 40, d), clustered(rng, 300, d, 1e-5)
    num, den, smax = blocked_sums(model, X, Y, np.full(300, 1 / 300), "float32")
    assert np.all(np.isfinite(num)) and np.all(den >= 0.5) and np.all(np.isfinite(smax))


def test_massless_sources_contribute_nothing_even_when_they_dominate(rng):
    """Zero masses on the sources with the largest scores, and on the whole first tiles
    (the running maximum starts at -inf for several tiles)."""
    d = 32
    model = random_model(rng, d, 30.0)
    X = unit_rows(rng, 70, d)
    Y = unit_rows(rng, 900, d)
    Y[:70] = X  # massless copies of the targets: the largest scores
    m = rng.random(900)
    m[:600] = 0.0
    got = blocked_field(model, X, Y, m)
    ref = attention_average_numpy(model, X, Y[600:], m[600:])
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol64(model, X, Y) * np.abs(ref).max())
    # the shift M_i is the largest score + log-mass among sources with mass: S_i >= ~1
    num, den, smax = blocked_sums(model, X, Y, m)
    with np.errstate(divide="ignore"):
        s2 = LOG2E * model.beta * (X @ model.B) @ Y.T + np.log2(m)
    np.testing.assert_allclose(smax, s2.max(axis=1), rtol=1e-13, atol=1e-13)
    assert np.all(den >= 0.5)  # one weight is 2^0, up to the rounding of s + l - M


def test_running_maximum_raised_tile_after_tile_or_never(rng):
    """Sources sorted by increasing score at beta = 1e4: every tile raises the running
    maximum far above the previous one (S and N rescaled by ~2^-hundreds tile after tile);
    and the reverse order, where it never moves after the first tile.  Both equal the
    reference."""
    d = 24
    model = random_model(rng, d, 1e4)
    X, Y = unit_rows(rng, 5, d), unit_rows(rng, 2000, d)
    order = np.argsort(model.beta * (X[0] @ model.B) @ Y.T)
    m = rng.random(2000)
    for idx in (order, order[::-1]):
        ref = attention_average_numpy(model, X, Y[idx], m[idx])
        got = blocked_field(model, X, Y[idx], m[idx])
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol64(model, X, Y) * np.abs(ref).max())
        for precision in ("float64", "float32"):
            num, den, smax = blocked_sums(model, X, Y[idx], m[idx], precision)
            assert np.all(np.isfinite(num)) and np.all(den >= 0.5)  # 1 up to the rounding of s + l - M


@pytest.mark.parametrize("equal", [True, False])
def test_log_partition_equal_and_weighted_masses(rng, equal):
    """values=False (log_partition) and the equal-mass shortcut (log2 m added to M)."""
    d = 48
    model = random_model(rng, d, 7.0)
    X, Y = unit_rows(rng, 131, d), unit_rows(rng, 517, d)
    m = np.full(517, 0.25) if equal else rng.random(517)
    got = log_partition(model, X, Y, m)
    ref = log_partition_numpy(model, X, Y, m)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13)
    num, den, smax = blocked_sums(model, X, Y, m, values=False)
    assert num.shape == (131, 0)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_results_do_not_depend_on_thread_count(rng, precision):
    d = 40
    model = random_model(rng, d, 5.0)
    X = unit_rows(rng, 1100, d)  # 9 target tiles
    m = rng.random(1100)
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, 2, previous}):
            if threads > numba.config.NUMBA_NUM_THREADS:
                continue
            numba.set_num_threads(threads)
            results.append(blocked_sums(model, X, X, m, precision))
    finally:
        numba.set_num_threads(previous)
    assert len(results) >= 2 or numba.config.NUMBA_NUM_THREADS == 1
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n, m", [(1, 1), (1, 300), (300, 1), (1024, 256), (1025, 257), (1023, 255), (17, 513)])
def test_tile_edges(rng, n, m):
    """Target tiles are 128 from N = 1024 on, 16 x ceil(N / 128) below (>= 8 tiles)."""
    d = 20
    tn, tm = tile_sizes(d, d)
    assert (tn, tm) == (128, 256)  # the sizes above straddle these
    model = random_model(rng, d, 5.0)
    X, Y = unit_rows(rng, n, d), unit_rows(rng, m, d)
    w = rng.random(m) + 0.1
    ref = attention_average_numpy(model, X, Y, w)
    got = blocked_field(model, X, Y, w)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13 * np.abs(ref).max())


def test_exact_sums_takes_the_blocked_path_from_the_crossover(rng):
    for d in (BLOCKED_MIN_D, BLOCKED_MIN_D + 1):
        model = random_model(rng, d, 5.0)
        X, Y = unit_rows(rng, 50, d), unit_rows(rng, 80, d)
        m = rng.random(80)
        for a, b in zip(exact_sums(model, X, Y, m), blocked_sums(model, X, Y, m)):
            np.testing.assert_array_equal(a, b)
    # below the crossover: the unrolled kernel, which agrees to rounding
    d = BLOCKED_MIN_D - 1
    model = random_model(rng, d, 5.0)
    X, Y = unit_rows(rng, 50, d), unit_rows(rng, 80, d)
    m = rng.random(80)
    np.testing.assert_allclose(finish(model, *exact_sums(model, X, Y, m)), blocked_field(model, X, Y, m), rtol=1e-13, atol=1e-15)


def test_velocity_and_truncated_kernel_use_the_blocked_path(rng):
    """The public field and the truncated kernel (which falls back to the exact kernel for
    d > 3) at d = 24 equal the tangent projection of the blocked kernel's average."""
    d = 24
    model = random_model(rng, d, 5.0)
    X = unit_rows(rng, 90, d)
    w = np.full(90, 1 / 90)
    expected = tangent_projection(X, blocked_field(model, X, X, w))
    np.testing.assert_array_equal(mfpde.velocity(model, X), expected)
    np.testing.assert_array_equal(mfpde.velocity(model, X, kernel="truncated"), expected)


def test_blas_runs_single_threaded_inside_and_is_restored(rng):
    controls = blocked._openblas_controls()
    if not controls:
        pytest.skip("no OpenBLAS found in this process")
    before = [get() for get, _ in controls]
    with single_threaded_blas():
        assert [get() for get, _ in controls] == [1] * len(controls)
        with single_threaded_blas():  # nested (another thread's kernel): still 1 after it
            pass
        assert [get() for get, _ in controls] == [1] * len(controls)
    assert [get() for get, _ in controls] == before
    model = random_model(rng, 16, 1.0)
    X = unit_rows(rng, 10, 16)
    blocked_sums(model, X, X, np.ones(10))
    assert [get() for get, _ in controls] == before
