"""Kernel internals: the vectorized exponentials, every kernel against the NumPy reference,
the float32 mode's documented accuracy, the truncated kernel's error bound and fallback,
thread-count independence, and peak memory at N = 1e6.

The tests of tests/test_velocity.py are re-run here with ``kernel="truncated"`` (the
``truncated_velocity`` fixture makes it the default of ``mfpde.velocity``).
"""

import functools
import math
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import mfpde
from mfpde.kernels import exact_sums, finish
from mfpde.kernels.attention import LOG2E
from mfpde.kernels.fastexp import exp2_array, exp_array
from mfpde.kernels.reference import attention_average_numpy
from mfpde.kernels import truncated
from mfpde.kernels.truncated import truncated_sums
from mfpde.sphere import tangent_projection

from . import test_velocity as tv
from .conftest import unit_rows

# --------------------------------------------------------------------------- exponentials


def ulps(got, ref, dtype=np.float64):
    """|got - ref| in units of the last place of ref (the spacing of ref in dtype)."""
    spacing = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref) / spacing


def test_exp64_within_2_ulp_of_numpy_over_the_kernel_range(rng):
    x = np.concatenate([np.linspace(-745.0, 0.0, 400_001), -745.0 * rng.random(200_000), [0.0, -1e-300, -5e-324]])
    got = exp_array(x)
    assert ulps(got, np.exp(x)).max() <= 2.0  # includes the subnormal range below -708.4
    # below ln(smallest subnormal / 2) and -inf (massless sources): exactly 0, never NaN
    low = np.array([-745.2, -746.0, -750.0, -1e4, -1e300, -np.inf])
    np.testing.assert_array_equal(exp_array(low), np.zeros(6))


def test_exp2_64_within_1_ulp_of_numpy_and_flushes_below_2_to_minus_1022(rng):
    x = np.concatenate([np.linspace(-1022.0, 0.0, 400_001), -1022.0 * rng.random(200_000), [0.0, -1e-300]])
    got = exp2_array(x)
    assert ulps(got, np.exp2(x)).max() <= 1.0
    # results below 2^-1022 (weights below 2.2e-308 of the largest) are flushed to 0 or
    # rounded into the subnormals: never off by more than 2^-1022
    tiny = np.linspace(-1080.0, -1022.0, 10_001)
    assert np.abs(exp2_array(tiny) - np.exp2(tiny)).max() <= 2.0**-1022
    low = np.array([-1075.0, -1100.0, -5000.0, -1e300, -np.inf])
    np.testing.assert_array_equal(exp2_array(low), np.zeros(5))


def test_float32_exponentials_within_2_float32_ulp(rng):
    x = np.concatenate([np.linspace(-87.0, 0.0, 200_001), -87.0 * rng.random(50_000)]).astype(np.float32)
    ref = np.exp(x.astype(np.float64))
    assert ulps(exp_array(x), ref, np.float32).max() <= 2.0
    x2 = np.concatenate([np.linspace(-126.0, 0.0, 200_001), -126.0 * rng.random(50_000)]).astype(np.float32)
    assert ulps(exp2_array(x2), np.exp2(x2.astype(np.float64)), np.float32).max() <= 2.0
    for f in (exp_array, exp2_array):
        np.testing.assert_array_equal(f(np.float32([-200.0, -1e30, -np.inf])), np.zeros(3, np.float32))


# --------------------------------------------------------------------------- vs reference


def random_model(rng, d, beta, normalization="softmax"):
    Q, K, V = (rng.standard_normal((d, d)) / math.sqrt(d) for _ in range(3))
    return mfpde.Model(Q=Q, K=K, V=V, beta=beta, normalization=normalization)


def reference_field(model, X, Y, m):
    return tangent_projection(X, attention_average_numpy(model, X, Y, m))


@pytest.mark.parametrize("kernel", ["exact", "truncated"])
@pytest.mark.parametrize("d", [2, 3, 9])
@pytest.mark.parametrize("beta", [0.0, 3.0, 300.0])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_every_kernel_matches_the_numpy_reference(rng, kernel, d, beta, normalization):
    """Targets != sources, weighted sources with a few massless ones, sizes that are not
    multiples of the tile or of the 4-target group, value dimension 9 > the unrolled 8.
    (USA at beta = 300 overflows float64; it runs at beta = 100 instead.)"""
    if normalization == "uniform":
        beta = min(beta, 100.0)
    model = random_model(rng, d, beta, normalization)
    X, Y = unit_rows(rng, 203, d), unit_rows(rng, 1031, d)
    m = rng.random(1031)
    m[::97] = 0.0
    ref = reference_field(model, X, Y, m)
    got = mfpde.velocity(model, X, Y, m, kernel=kernel)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_shift_overshoot_falls_back_to_the_online_maximum(rng, precision):
    """Sources in a small cap, targets mostly on the far side, beta = 1000: the shift
    |q| max|y| overshoots the true maximum by far more than the exponent range, so those
    targets are recomputed with the online maximum; targets near the cap are not."""
    d = 3
    model = mfpde.Model(d=d, beta=1000.0, V=rng.standard_normal((d, d)))
    Y = unit_rows(rng, 700, d)
    Y[:, 2] = np.abs(Y[:, 2]) + 20.0
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    X = unit_rows(rng, 101, d)
    X[:10] = Y[:10]
    m = rng.random(700)
    s2 = mfpde.kernels.LOG2E * (1000.0 * X @ model.B @ Y.T + np.log(m))
    shift = mfpde.kernels.LOG2E * 1000.0 * np.linalg.norm(X @ model.B, axis=1) + np.log2(m.max())
    overshoot = shift - s2.max(axis=1)
    assert overshoot[:10].max() < 60 and overshoot.max() > 2000  # both paths are taken
    num, den, smax = exact_sums(model, X, Y, m, precision)
    ref = reference_field(model, X, Y, m)
    got = tangent_projection(X, finish(model, num, den, smax))
    tol = 1e-12 if precision == "float64" else float32_bound(model)
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 255, 257])
def test_group_and_tile_edges(rng, n):
    model = random_model(rng, 3, 20.0)
    X, Y = unit_rows(rng, n, 3), unit_rows(rng, n, 3)
    ref = reference_field(model, X, Y, np.full(n, 1.0 / n))
    np.testing.assert_allclose(mfpde.velocity(model, X, Y), ref, rtol=0, atol=1e-13 * np.abs(ref).max())


def test_log_partition_of_massless_and_heavy_sources(rng):
    model = random_model(rng, 3, 500.0)
    X, Y = unit_rows(rng, 30, 3), unit_rows(rng, 600, 3)
    m = rng.random(600)
    m[:300] = 0.0
    s = 500.0 * X @ model.B @ Y[300:].T + np.log(m[300:])
    top = s.max(axis=1)
    expected = top + np.log(np.exp(s - top[:, None]).sum(axis=1))
    np.testing.assert_allclose(mfpde.kernels.log_partition(model, X, Y, m), expected, rtol=1e-14)


# --------------------------------------------------------------------------- float32 mode


def float32_bound(model):
    """The documented accuracy of precision = "float32", relative to max |field|."""
    return 4e-7 * (1.0 + model.beta * np.linalg.norm(model.B, 2))


@pytest.mark.parametrize("d", [2, 3, 8])
@pytest.mark.parametrize("beta", [1.0, 30.0, 1000.0])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_float32_mode_meets_its_documented_accuracy(rng, d, beta, normalization):
    model = random_model(rng, d, beta, normalization)
    X, Y = unit_rows(rng, 150, d), unit_rows(rng, 2000, d)
    m = rng.random(2000)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = reference_field(model, X, Y, m)
    if normalization == "uniform" and not np.all(np.isfinite(ref)):
        # USA overflows float64 at this beta: float32 mode must say so just as clearly
        with pytest.raises(OverflowError, match="uniform normalization overflows"):
            mfpde.velocity(model, X, Y, m, precision="float32")
        return
    got = mfpde.velocity(model, X, Y, m, precision="float32")
    assert got.dtype == np.float64
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err <= float32_bound(model)
    assert err > 1e-12  # it really ran in float32


# --------------------------------------------------------------------------- truncated


@pytest.fixture(autouse=True)
def truncate_small_problems(monkeypatch):
    """The truncated kernel skips problems below MIN_PAIRS pairs (overhead); the tests here
    use small sizes, so the threshold is lowered to exercise the truncated path."""
    monkeypatch.setattr(truncated, "MIN_PAIRS", 0)


def truncated_field(model, X, Y, m, tol):
    num, den, smax, info = truncated_sums(model, X, Y, m, tol, return_info=True)
    return tangent_projection(X, finish(model, num, den, smax)), info


@pytest.mark.parametrize("tol", [1e-2, 1e-5, 1e-9])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_truncated_error_bound(rng, tol, normalization):
    """Per target: softmax |err| <= 2 max|V y| tol |D_i|; uniform |err| <= max|V y| W_i tol
    |D_i| with |D_i| = M - (sources scanned).  Also every source whose relative weight is
    >= tol is among the scanned ones (count check against the dense weights)."""
    d, n_src = 3, 4000
    model = random_model(rng, d, 400.0, normalization).replace(Q=None, K=None)  # B = I
    X, Y = unit_rows(rng, 300, d), unit_rows(rng, n_src, d)
    m = rng.random(n_src) + 0.5
    m /= m.sum()
    got, info = truncated_field(model, X, Y, m, tol)
    assert info.mode == "truncated"
    assert info.scanned.mean() < n_src / 4
    ref = reference_field(model, X, Y, m)
    logw = model.beta * X @ model.B @ Y.T + np.log(m)
    rel = np.exp(logw - logw.max(axis=1, keepdims=True))
    assert np.all((rel >= tol).sum(axis=1) <= info.scanned)
    dropped = n_src - info.scanned
    vmax = np.linalg.norm(Y @ model.V.T, axis=1).max()
    if normalization == "softmax":
        err = np.linalg.norm(got - ref, axis=1)
        bound = 2 * vmax * tol * dropped
        floor = 1e-13 * np.abs(ref).max()
    else:  # in units of the attention mass W_i = e^{max logw} sum rel (the fields are ~e^400)
        scale = np.exp(logw.max(axis=1)) * rel.sum(axis=1)
        err = np.linalg.norm((got - ref) / scale[:, None], axis=1)
        bound = vmax * tol * dropped
        floor = 1e-13 * np.abs(ref / scale[:, None]).max()
    assert np.all(err <= bound * (1 + 1e-9) + floor)
    assert err.max() > 0.0 or tol < 1e-6


def check_truncation_sets(model, X, Y, m, tol):
    """Against a NumPy brute force: the lower bound A_i is <= M_i (log2 units, up to
    rounding); every source with relative weight m_j e^{s_ij} / max_k m_k e^{s_ik} >= tol is
    among the sources summed for target i, and ``scanned`` counts them.  Returns the info."""
    _, _, _, info = truncated_sums(model, X, Y, m, tol, return_info=True)
    assert info.mode == "truncated"
    with np.errstate(divide="ignore"):
        scores = (LOG2E * model.beta) * (X @ model.B) @ Y.T + np.log2(m)  # -inf: massless
    best = scores.max(axis=1)
    c = (LOG2E * model.beta) * np.linalg.norm(X @ model.B, axis=1) * np.linalg.norm(Y, axis=1).max()
    truncated = ~np.isnan(info.lower_bound)
    assert truncated.sum() > len(X) // 2
    slack = 1e-12 * (c + np.abs(best) + 1.0)
    assert np.all(info.lower_bound[truncated] <= best[truncated] + slack[truncated])
    kept = scores >= best[:, None] + math.log2(tol)
    for i in range(len(X)):
        summed = info.sources_of(i)
        assert len(summed) == info.scanned[i]
        assert len(np.unique(summed)) == len(summed)  # each source summed once
        assert np.isin(np.flatnonzero(kept[i]), summed).all(), f"target {i} drops a source above tol"
    return info, best


def assert_within_error_bound(model, X, Y, m, tol, got, info):
    """The documented bound per target, |D_i| = M - (sources scanned): softmax
    |err_i| <= 2 max|V y| tol |D_i|; uniform, relative to the attention mass W_i,
    |err_i| / W_i <= max|V y| tol |D_i|; plus rounding: both sides round the scores
    beta <B^T x, y> by ~ d eps beta |B| |x| |y| (test_velocity.py), which moves the weights
    by that relative amount and the field by twice it times max|V y|.  P_x is a contraction
    for |x| <= sqrt(2), so the bound holds for targets slightly off the sphere too.
    Returns the bound of the largest error (for error propagation)."""
    ref = reference_field(model, X, Y, m)
    vmax = np.linalg.norm(Y @ model.V.T, axis=1).max()
    dropped = len(Y) - info.scanned
    score_rounding = 4 * X.shape[1] * np.finfo(float).eps * model.beta * np.linalg.norm(model.B, 2) * (
        np.linalg.norm(X, axis=1).max() * np.linalg.norm(Y, axis=1).max()
    )
    rounding = 2 * vmax * score_rounding + 1e-14
    if model.normalization == "softmax":
        err = np.linalg.norm(got - ref, axis=1)
        bound = 2 * vmax * tol * dropped + rounding
    else:  # relative to the attention mass W_i (the fields reach e^600)
        with np.errstate(divide="ignore"):
            logw = model.beta * X @ model.B @ Y.T + np.log(m)
        mass = np.exp(logw - logw.max(axis=1, keepdims=True)).sum(axis=1) * np.exp(logw.max(axis=1))
        err = np.linalg.norm((got - ref) / mass[:, None], axis=1)
        bound = vmax * tol * dropped + rounding
    assert np.all(err <= bound), f"target {np.argmax(err - bound)}: error {err.max():.3g} above the bound"
    return bound.max()


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
@pytest.mark.parametrize("case", ["weighted targets != sources", "equal masses targets = sources"])
def test_truncated_lower_bound_and_kept_sources_against_brute_force(rng, d, normalization, case):
    """The band-neighbour lower bound and the scanned ranges, checked source by source; the
    field stays within the error bound of the dense reference."""
    tol = 1e-6
    if case.startswith("weighted"):
        Q = rng.standard_normal((d, d))
        Q *= 1.5 / np.linalg.norm(Q, 2)  # beta |B^T x| <= 600: USA stays finite
        model = mfpde.Model(Q=Q, V=rng.standard_normal((d, d)), beta=400.0, normalization=normalization)
        X, Y = unit_rows(rng, 400, d), unit_rows(rng, 3000, d)
        m = rng.random(3000) + 0.1
        m[::7] = 0.0  # massless sources are never summed
        m /= m.sum()
    else:
        model = mfpde.Model(d=d, beta=400.0, V=rng.standard_normal((d, d)), normalization=normalization)
        X = Y = unit_rows(rng, 3000, d)
        m = np.full(3000, 1 / 3000)
    info, best = check_truncation_sets(model, X, Y, m, tol)
    truncated = ~np.isnan(info.lower_bound)
    if case.startswith("equal"):  # B = I: the target itself is the best source and is found
        np.testing.assert_allclose(info.lower_bound[truncated], best[truncated], rtol=1e-12)
    else:  # a near source: the bound is tight to a small fraction of -log2(tol) ~ 20
        assert np.median(best[truncated] - info.lower_bound[truncated]) < 1.0
    for i in np.flatnonzero(truncated)[:50]:
        assert np.all(m[info.sources_of(i)] > 0)
    got = tangent_projection(X, finish(model, *truncated_sums(model, X, Y, m, tol)))
    assert_within_error_bound(model, X, Y, m, tol, got, info)


def radial(rng, n, spread=1e-2):
    """Radial factors uniform in [1 - spread, 1 + spread], as a column."""
    return 1.0 + spread * rng.uniform(-1.0, 1.0, (n, 1))


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
@pytest.mark.parametrize(
    "case", ["weighted targets != sources", "equal masses targets = sources", "rk4 stage points", "hemisphere balls"]
)
def test_truncated_sources_and_targets_off_the_sphere(rng, d, normalization, case):
    """Sources y_j = r_j u_j and targets off the unit sphere (radial factors in [0.99, 1.01],
    or the points x + h/2 k_1 of an rk4 step) are truncated, not summed exactly: the caps
    are built for the directions u_j with the threshold divided by the extreme radius (the
    largest for a ball smaller than a hemisphere, the smallest for a larger one: "hemisphere
    balls" gives 20 of 500 targets so small a norm that their balls are larger), the sums
    use the actual points.  Checked source by source against a NumPy brute force (the
    lower bound is a true one, every source above tol is summed) and against the error
    bound.  (Without the division by the radius, every case here drops sources above tol.)"""
    tol = 1e-6
    if case == "hemisphere balls":
        # B = I; c_i = 400 log2(e) |x_i| < -log2(tol) = 19.9 (tau_i < 0) but > 10 (tau_i > -1)
        # for |x_i| in [0.018, 0.034]
        model = mfpde.Model(d=d, V=rng.standard_normal((d, d)), beta=400.0, normalization=normalization)
        X = unit_rows(rng, 500, d) * radial(rng, 500)
        X[:20] *= rng.uniform(0.018, 0.034, (20, 1))
        Y = unit_rows(rng, 3000, d) * radial(rng, 3000)
        m = np.full(3000, 1 / 3000)
    elif case.startswith("weighted"):
        Q = rng.standard_normal((d, d))
        Q *= 1.4 / np.linalg.norm(Q, 2)  # beta |B^T x| |y| <= 400 * 1.4 * 1.01^2 < 709: USA stays finite
        model = mfpde.Model(Q=Q, V=rng.standard_normal((d, d)), beta=400.0, normalization=normalization)
        X, Y = unit_rows(rng, 400, d) * radial(rng, 400), unit_rows(rng, 3000, d) * radial(rng, 3000)
        m = rng.random(3000) + 0.1
        m[::7] = 0.0
        m /= m.sum()
    else:
        model = mfpde.Model(d=d, beta=400.0, V=rng.standard_normal((d, d)), normalization=normalization)
        if case.startswith("equal"):
            X = Y = unit_rows(rng, 3000, d) * radial(rng, 3000)
        else:  # the second stage of an rk4 step of size 0.05 (with the softmax field)
            x = unit_rows(rng, 3000, d)
            X = Y = x + 0.025 * mfpde.velocity(model.replace(normalization="softmax"), x)
            assert np.abs(np.linalg.norm(X, axis=1) - 1.0).max() > 1e-5
        m = np.full(3000, 1 / 3000)
    info, best = check_truncation_sets(model, X, Y, m, tol)
    assert info.scanned.mean() < len(Y) / 4
    got = tangent_projection(X, finish(model, *truncated_sums(model, X, Y, m, tol)))
    assert_within_error_bound(model, X, Y, m, tol, got, info)


def test_truncated_clustered_sources_and_targets_at_the_poles(rng):
    """Sources in four clusters (many polar bands empty: the lower bound searches the nearest
    non-empty band), targets near them and at and next to the poles (caps holding a pole
    scan whole bands; no source near the south pole), on the sphere and the circle."""
    for d in (3, 2):
        centres = unit_rows(rng, 4, d)

        def clustered(size, spread):
            p = centres[rng.integers(0, 4, size)] + spread * rng.standard_normal((size, d))
            return p / np.linalg.norm(p, axis=1, keepdims=True)

        Y, X = clustered(3000, 0.25), clustered(300, 0.3)
        if d == 3:
            Y = Y[Y[:, 2] > -0.8]
            Y[0] = [0.0, 0.0, 1.0]
            X[:4] = [[0, 0, 1], [0, 0, -1], [1e-9, 0, 1], [0, -1e-7, -1]]
            X /= np.linalg.norm(X, axis=1, keepdims=True)
        m = np.full(len(Y), 1 / len(Y))
        model = mfpde.Model(d=d, beta=2000.0, V=rng.standard_normal((d, d)))
        check_truncation_sets(model, X, Y, m, 1e-9)
        got = tangent_projection(X, finish(model, *truncated_sums(model, X, Y, m, 1e-9)))
        ref = reference_field(model, X, Y, m)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8 * np.abs(ref).max())


def test_truncated_online_pass_matches_the_shifted_pass(rng, monkeypatch):
    """Targets whose Cauchy-Schwarz bound exceeds A_i by more than SHIFT_SAFE are summed with
    a running maximum; forcing every target onto that path gives the same field."""
    model = random_model(rng, 3, 600.0)
    X, Y = unit_rows(rng, 300, 3), unit_rows(rng, 4000, 3)
    m = rng.random(4000) + 0.5
    shifted, info = truncated_field(model, X, Y, m, 1e-12)
    monkeypatch.setattr(truncated, "SHIFT_SAFE", -1.0)
    online, info_online = truncated_field(model, X, Y, m, 1e-12)
    np.testing.assert_array_equal(info.scanned, info_online.scanned)
    ref = reference_field(model, X, Y, m)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(shifted, ref, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(online, ref, rtol=0, atol=1e-12 * scale)


def test_band_order_and_azimuth_search_match_numpy(rng):
    """``_band_order`` is np.lexsort((phi, band)) up to ties, also when phi + 8 band rounds
    distinct azimuths together (repaired by ``_fix_bands``); ``_search`` is np.searchsorted
    on each band, for queries inside, between, on and outside the sorted azimuths."""
    nbands = 5000
    band = rng.integers(0, nbands, 20000)
    phi = rng.uniform(-math.pi, math.pi, 20000)
    phi[:200] = 1.0 + 1e-13 * np.arange(200)  # one ulp of 8 * 5000 + 1 is ~7e-12
    band[:200] = nbands - 1
    phi[200:300] = -math.pi
    order, start = truncated._band_order(band, phi, nbands)
    np.testing.assert_array_equal(band[order], band[np.lexsort((phi, band))])
    np.testing.assert_array_equal(phi[order], phi[np.lexsort((phi, band))])
    np.testing.assert_array_equal(start, np.searchsorted(np.sort(band), np.arange(nbands + 1)))
    phis = phi[order]
    sec_start = np.empty(nbands + 1, dtype=np.int64)
    sec = np.empty(len(phi) // truncated.PER_SECTOR + 2 * nbands, dtype=np.int64)
    truncated._sector_index(phis, start, truncated.PER_SECTOR, sec_start, sec)
    queries = np.concatenate([rng.uniform(-4, 4, 50), phis[:50], [-math.pi, math.pi, -10.0, 10.0, 1.0 + 5e-12]])
    for b in [nbands - 1, 0, 17, int(band[300])]:
        a, e = start[b], start[b + 1]
        off = sec_start[b]
        for x in queries:
            for right in (False, True):
                got = truncated._search(phis, sec, off, sec_start[b + 1] - off - 1, x, right)
                assert got == a + np.searchsorted(phis[a:e], x, side="right" if right else "left")
    # ``_band_ranges``: exactly the sources with azimuth in [lo, hi] modulo 2 pi, for
    # intervals inside [-pi, pi], across -pi or pi, and entirely beyond either
    b = int(band[300])
    a, e = start[b], start[b + 1]
    off = sec_start[b]
    out = np.empty((2, 2), dtype=np.int64)
    for lo in [-9.0, -7.0, -4.0, -3.5, -1.0, 0.0, 2.5, 3.0, 3.5, 4.0]:
        for width in [0.0, 0.3, 2.0, 6.0]:
            hi = min(lo + width, 3 * math.pi)
            if not (lo >= -3 * math.pi and hi - lo < 2 * math.pi):
                continue
            nr = truncated._band_ranges(lo, hi, a, e, phis, sec, off, sec_start[b + 1] - off - 1, out, 0)
            got = np.sort(np.concatenate([np.arange(out[r, 0], out[r, 1]) for r in range(nr)]))
            inside = [j for j in range(a, e) if any(lo <= phis[j] + t <= hi for t in (-2 * math.pi, 0.0, 2 * math.pi))]
            np.testing.assert_array_equal(got, inside)


def test_truncated_is_the_exact_kernel_at_tolerance_zero_and_in_fallback(rng, monkeypatch):
    X, Y = unit_rows(rng, 300, 3), unit_rows(rng, 700, 3)
    m = rng.random(700)
    big = random_model(rng, 3, 1000.0)
    monkeypatch.setattr(truncated, "MIN_PAIRS", 1e6)  # 300 x 700 is below: exact
    _, info = truncated_field(big, X, Y, m, 1e-12)
    assert info.mode == "problem too small"
    np.testing.assert_array_equal(mfpde.velocity(big, X, Y, m, kernel="truncated"), mfpde.velocity(big, X, Y, m))
    monkeypatch.setattr(truncated, "MIN_PAIRS", 0)
    exact = mfpde.velocity(big, X, Y, m)
    np.testing.assert_array_equal(mfpde.velocity(big, X, Y, m, kernel="truncated", tolerance=0.0), exact)
    small = random_model(rng, 3, 2.0)  # balls cover the sphere: falls back
    _, info = truncated_field(small, X, Y, m, 1e-12)
    assert info.mode == "no target has a ball smaller than the sphere"
    medium = random_model(rng, 3, 40.0)  # balls smaller than the sphere, but too large to pay
    _, info = truncated_field(medium, X, Y, m, 1e-12)
    assert info.mode == "truncation would not pay"
    np.testing.assert_array_equal(
        mfpde.velocity(medium, X, Y, m, kernel="truncated"), mfpde.velocity(medium, X, Y, m)
    )
    np.testing.assert_array_equal(mfpde.velocity(small, X, Y, m, kernel="truncated"), mfpde.velocity(small, X, Y, m))
    d4 = random_model(rng, 4, 1000.0)  # no grid for d > 3
    X4, Y4 = unit_rows(rng, 50, 4), unit_rows(rng, 80, 4)
    np.testing.assert_array_equal(mfpde.velocity(d4, X4, Y4, kernel="truncated"), mfpde.velocity(d4, X4, Y4))
    # source radii more than MAX_RADIUS_RATIO apart, or a source with mass at the origin:
    # the caps would be far too wide; exact, bit for bit
    spread = Y * np.linspace(0.7, 1.1, 700)[:, None]
    _, info = truncated_field(big, X, spread, m, 1e-12)
    assert info.mode.startswith("source radii too spread")
    np.testing.assert_array_equal(
        mfpde.velocity(big, X, spread, m, kernel="truncated"), mfpde.velocity(big, X, spread, m)
    )
    origin = Y.copy()
    origin[5] = 0.0
    _, info = truncated_field(big, X, origin, m, 1e-12)
    assert info.mode.startswith("source radii too spread")
    m_origin = m.copy()
    m_origin[5] = 0.0  # massless: ignored, the others are truncated
    _, info = truncated_field(big, X, origin, m_origin, 1e-12)
    assert info.mode == "truncated"
    # a uniformly scaled sphere is truncated (radius ratio 1)
    got, info = truncated_field(big, X, 1.5 * Y, m, 1e-12)
    assert info.mode == "truncated"
    ref = reference_field(big, X, 1.5 * Y, m)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_particle_rk4_step_truncates_every_stage_and_matches_the_exact_step(rng, monkeypatch):
    """An rk4 step of the particle solver with kernel = "truncated" evaluates the field at the
    stage points x + h k (off the unit sphere by ~h^2 |k|^2 / 8): all four evaluations take
    the truncated path, each is within the field error bound of the dense reference at its
    own stage points, and the step is within the propagated bound of the exact-kernel step.

    Propagation, in the max norm over particles: with eps_s the bound at stage s and L a
    Lipschitz constant of the particle field F(x)_i = P_{x_i} a_i(x), a_i = sum_j w_ij V x_j,
    e_1 <= eps_1, e_2 <= eps_2 + L h/2 e_1, e_3 <= eps_3 + L h/2 e_2, e_4 <= eps_4 + L h e_3;
    z = x + h/6 (k_1 + 2 k_2 + 2 k_3 + k_4) is off by h/6 (e_1 + 2 e_2 + 2 e_3 + e_4), and
    the retraction z -> z/|z| multiplies that by at most 2/|z|, |z| >= 1 - h max|F|.
    L: s_ij = beta x_i^T B x_j moves by <= 2 beta |B| r delta (r >= |x|, delta = max|dx|),
    dw_ij = w_ij (ds_ij - sum_k w_ik ds_ik), so |da_i| <= (|V| + 4 beta |B| r vmax) delta
    (vmax >= |V x_j|) and |dF_i| <= (1 + r^2) |da_i| + 2 r vmax delta; |F| <= (1 + r^2) vmax.
    """
    from mfpde.options import SolverOptions
    from mfpde.solvers import ParticleSolver

    d, n, h, tol = 3, 3000, 1e-4, 1e-9
    model = mfpde.Model(d=d, beta=400.0, V=rng.standard_normal((d, d)))
    x = unit_rows(rng, n, d)
    w = np.full(n, 1.0 / n)
    calls = []
    plain = truncated.truncated_sums

    def spy(model, X, Y, weights, tolerance, return_info=False):
        out = plain(model, X, Y, weights, tolerance, return_info=True)
        calls.append((X, Y, weights, out))
        return out if return_info else out[:3]

    monkeypatch.setattr(truncated, "truncated_sums", spy)
    options = SolverOptions(integrator="rk4", dt=h, kernel="truncated", tolerance=tol)
    step = dict(ParticleSolver(model, options).snapshots(x, w, [h]))[h]
    exact_step = dict(ParticleSolver(model, options.replace(kernel="exact")).snapshots(x, w, [h]))[h]
    assert len(calls) == 4
    assert [out[3].mode for *_, out in calls] == ["truncated"] * 4
    # stages 2 and 3, x + h/2 k, are off the sphere by ~h^2 |k|^2 / 8 (stage 4 by O(h^3) only:
    # k_3 is tangent at x + h/2 k_2)
    off = [np.abs(np.linalg.norm(X, axis=1) - 1.0).max() for X, *_ in calls]
    assert off[0] < 1e-15 and min(off[1:3]) > 1e-9 and off[3] > 0.0
    eps = []
    for X, Y, weights, (num, den, smax, info) in calls:
        np.testing.assert_array_equal(X, Y)
        got = tangent_projection(X, finish(model, num, den, smax))
        eps.append(assert_within_error_bound(model, X, Y, weights, tol, got, info))
    # r and vmax over the truncated run's stage points, padded for the exact run's (which
    # differ by far less than 1e-6)
    r = max(np.linalg.norm(X, axis=1).max() for X, *_ in calls) + 1e-6
    vmax = np.linalg.norm(model.V, 2) * r
    norm_b, norm_v = np.linalg.norm(model.B, 2), np.linalg.norm(model.V, 2)
    lip = (1 + r * r) * (4 * model.beta * norm_b * r * vmax + norm_v) + 2 * r * vmax
    e1 = eps[0]
    e2 = eps[1] + lip * h / 2 * e1
    e3 = eps[2] + lip * h / 2 * e2
    e4 = eps[3] + lip * h * e3
    z_min = 1.0 - h * (1 + r * r) * vmax
    bound = 2 / z_min * h / 6 * (e1 + 2 * e2 + 2 * e3 + e4)
    assert lip * h < 5  # the bound is not vacuous
    assert np.abs(step - exact_step).max() <= bound
    assert np.abs(step - x).max() > 1e3 * bound  # the step moves the particles


def test_truncated_handles_targets_with_zero_query_and_massless_sources(rng):
    """B^T x = 0 for targets along the kernel of B: those targets use the exact sum."""
    d = 3
    Q = np.diag([1.0, 1.0, 0.0])
    model = mfpde.Model(Q=Q, V=np.eye(d) + 0.3, beta=800.0)
    X = unit_rows(rng, 200, d)
    X[:5] = [0.0, 0.0, 1.0]
    Y = unit_rows(rng, 3000, d)
    m = rng.random(3000)
    m[::3] = 0.0
    got, info = truncated_field(model, X, Y, m, 1e-12)
    assert info.mode == "truncated"
    assert np.all(info.scanned[:5] == 3000)
    ref = reference_field(model, X, Y, m)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


@pytest.mark.parametrize("d", [2, 3])
def test_truncated_speed_and_accuracy_at_large_beta(rng, d):
    """beta = 1000 on N = 20,000 uniform points: far fewer sources scanned than M, field
    error <= 1e-8 of max |field|."""
    n = 20_000
    model = mfpde.Model(d=d, beta=1000.0, V=rng.standard_normal((d, d)))
    X = unit_rows(rng, n, d)
    w = np.full(n, 1.0 / n)
    got, info = truncated_field(model, X, X, w, 1e-12)
    assert info.mode == "truncated"
    assert info.scanned.mean() < n / 8
    sample = rng.choice(n, 500, replace=False)
    ref = reference_field(model, X[sample], X, w)
    assert np.abs(got[sample] - ref).max() <= 1e-8 * np.abs(ref).max()


@pytest.fixture
def truncated_velocity(monkeypatch):
    """mfpde.velocity with kernel = "truncated" as its default."""
    monkeypatch.setattr(mfpde, "velocity", functools.partial(mfpde.velocity, kernel="truncated"))


@pytest.mark.usefixtures("truncated_velocity")
class TestVelocitySuiteWithTruncatedKernel:
    """The tests of tests/test_velocity.py where a truncated kernel is meaningful (finite beta,
    sources on the sphere), run with kernel = "truncated" (at their small sizes and betas
    most fall back to the exact kernel; the large-beta ones truncate)."""

    @pytest.mark.parametrize("d", [2, 3])
    @pytest.mark.parametrize("beta", [1.0, 50.0, 1e4])
    @pytest.mark.parametrize("normalization", ["softmax", "uniform"])
    def test_field_matches_dense_reference(self, rng, d, beta, normalization):
        tv.test_field_matches_dense_reference(rng, d, beta, normalization)

    def test_usa_overflow_is_a_clear_error_and_large_beta_usa_stays_exact(self, rng):
        tv.test_usa_overflow_is_a_clear_error_and_large_beta_usa_stays_exact(rng)

    @pytest.mark.parametrize("d", [2, 3])
    def test_softmax_at_beta_1e6_is_finite_and_equals_hardmax(self, rng, d):
        tv.test_softmax_at_beta_1e6_is_finite_and_equals_hardmax(rng, d)

    def test_default_sources_are_targets_with_equal_weights(self, rng):
        tv.test_default_sources_are_targets_with_equal_weights(rng)

    def test_beta_zero_is_the_mean_value(self, rng):
        tv.test_beta_zero_is_the_mean_value(rng)

    def test_massless_sources_do_not_contribute_even_when_they_dominate(self, rng):
        tv.test_massless_sources_do_not_contribute_even_when_they_dominate(rng)

    def test_softmax_ignores_total_mass_and_usa_scales_with_it(self, rng):
        tv.test_softmax_ignores_total_mass_and_usa_scales_with_it(rng)

    @pytest.mark.parametrize("beta", [0.5, 5.0, 60.0])
    def test_uniform_circle_measure_closed_form(self, beta, rng):
        tv.test_uniform_circle_measure_closed_form(beta, rng)

    def test_continuum_field_is_the_laplace_limit(self, rng):
        tv.test_continuum_field_is_the_laplace_limit(rng)

    def test_results_do_not_depend_on_thread_count(self, rng):
        tv.test_results_do_not_depend_on_thread_count(rng)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "kernel, precision, beta", [("exact", "float64", 20.0), ("exact", "float32", 20.0), ("truncated", "float64", 900.0)]
)
def test_results_do_not_depend_on_thread_count(rng, kernel, precision, beta):
    model = random_model(rng, 3, beta)
    X = unit_rows(rng, 3001, 3)
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, previous}):
            numba.set_num_threads(threads)
            results.append(mfpde.velocity(model, X, kernel=kernel, precision=precision))
            results.append(mfpde.velocity(model, X, kernel=kernel, precision=precision))
    finally:
        numba.set_num_threads(previous)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_a_target_does_not_depend_on_its_group(rng):
    """Register blocking: target i gives the same field alone or in any group of four, to
    a few ulps.  Bits are not promised: under fastmath reassociation LLVM may order each
    register slot's sums differently (seen on AVX-512: up to 16 ulps of the row's largest
    entry over 30 seeds); the grouping itself is fixed by the target index, so results do
    not depend on the thread count."""
    model = random_model(rng, 3, 40.0)
    X, Y = unit_rows(rng, 9, 3), unit_rows(rng, 1000, 3)
    full = mfpde.velocity(model, X, Y)
    ulp = np.spacing(np.max(np.abs(full), axis=1))
    for i in range(9):
        alone = mfpde.velocity(model, X[i : i + 1], Y)[0]
        assert np.max(np.abs(alone - full[i])) <= 64 * ulp[i]
    reversed_ = mfpde.velocity(model, X[::-1], Y)[::-1]
    assert np.all(np.max(np.abs(reversed_ - full), axis=1) <= 64 * ulp)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"precision": "float16"}, "precision must be one of float64, float32"),
        ({"tolerance": -1e-3, "kernel": "truncated"}, r"tolerance must be in \[0, 1\)"),
        ({"tolerance": 1.0}, r"tolerance must be in \[0, 1\)"),
        ({"tolerance": "x"}, "tolerance must be a number"),
        ({"kernel": "truncated", "precision": "float32"}, "exact kernel only"),
        ({"kernel": "fast"}, "kernel must be one of exact, truncated"),
    ],
)
def test_bad_kernel_options_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mfpde.velocity(mfpde.Model(d=3, beta=1.0), np.eye(3), **kwargs)


# --------------------------------------------------------------------------- memory


def peak_rss_kib(code):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_peak_memory_at_a_million_points_stays_under_1_gib():
    """1e6 targets x 2000 sources and 2000 targets x 1e6 sources (float64):
    the peak resident memory of the whole process (numba included) stays < 1 GiB."""
    peak = peak_rss_kib(
        """
        import numpy as np, mfpde
        rng = np.random.default_rng(0)
        big = rng.standard_normal((1_000_000, 3)); big /= np.linalg.norm(big, axis=1, keepdims=True)
        small = big[:2000].copy()
        model = mfpde.Model(d=3, beta=10.0)
        assert np.isfinite(mfpde.velocity(model, big, small)).all()
        assert np.isfinite(mfpde.velocity(model, small, big)).all()
        print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')))
        """
    )
    assert peak < 1024 * 1024


@pytest.mark.slow
def test_truncated_square_field_at_a_million_points_stays_under_1_gib():
    """The full 1e6 x 1e6 field at beta = 1000 with the truncated kernel (measured: 21.7 s
    and 706 MiB peak on 2 busy cores, load average 5)."""
    peak = peak_rss_kib(
        """
        import time, numpy as np, mfpde
        rng = np.random.default_rng(0)
        x = rng.standard_normal((1_000_000, 3)); x /= np.linalg.norm(x, axis=1, keepdims=True)
        start = time.perf_counter()
        v = mfpde.velocity(mfpde.Model(d=3, beta=1000.0), x, kernel="truncated")
        assert np.isfinite(v).all()
        print("seconds", time.perf_counter() - start)
        print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')))
        """
    )
    assert peak < 1024 * 1024
