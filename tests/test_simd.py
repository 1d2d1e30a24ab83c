"""The explicit vectors of ``mfpde.kernels._simd`` and the lane-wise exponentials built on
them: each lane must equal the scalar function of the same input bit for bit (the
ensemble kernel's results depend on it), loads and stores must move exactly their lanes,
and the ensemble kernel's sources must be the plain matrix products."""

import numba
import numpy as np
import pytest
from llvmlite import binding as llvm

from mfpde.kernels import _simd
from mfpde.kernels._simd import lanes, vadd, vfma, vload, vmax, vmul, vsplat, vstore, vsub
from mfpde.kernels.attention import ensemble_row, make_ensemble_sources
from mfpde.kernels.fastexp import exp2_array, vexp2_32, vexp2_64


LANES64, LANES32 = lanes(64), lanes(32)
#: Whether vfma fuses: numba compiles for this machine and it has FMA.
FUSED = numba.core.config.CPU_NAME in (None, "host") and bool(llvm.get_host_cpu_features().get("fma", False))


@numba.njit(cache=True)
def _vexp2_array64(x, out):
    for i in range(0, x.size, LANES64):
        vstore(out, i, vexp2_64(vload(x, i)))


@numba.njit(cache=True)
def _vexp2_array32(x, out):
    for i in range(0, x.size, LANES32):
        vstore(out, i, vexp2_32(vload(x, i)))


@numba.njit(cache=True, fastmath=True)
def _vexp2_array64_fastmath(x, out):
    # a caller with every fastmath flag: vexp2_64 must not inherit them (its rounding trick
    # x + 1.5 2^52 - 1.5 2^52 would be folded away)
    for i in range(0, x.size, LANES64):
        vstore(out, i, vexp2_64(vload(x, i)))


def vexp2_array(x, kernel=None):
    width = lanes(x.dtype.itemsize * 8)
    pad = -len(x) % width
    xp = np.concatenate([x, np.zeros(pad, x.dtype)])
    out = np.empty_like(xp)
    (kernel or (_vexp2_array64 if x.dtype == np.float64 else _vexp2_array32))(xp, out)
    return out[: len(x)]


@pytest.mark.parametrize("dtype, low", [(np.float64, -1100.0), (np.float32, -160.0)])
def test_vector_exp2_equals_the_scalar_exp2_in_every_lane_bit_for_bit(rng, dtype, low):
    x = np.concatenate([np.linspace(low, 0.0, 200_003), low * rng.random(100_000),
                        [0.0, -0.0, -1e-30, -1e30, -np.inf, np.nan]]).astype(dtype)
    rng.shuffle(x)  # every special value lands in some lane other than 0
    got, ref = vexp2_array(x), exp2_array(x)
    assert got.dtype == ref.dtype == dtype
    nan = np.isnan(x)
    np.testing.assert_array_equal(np.isnan(got), nan)  # NaN stays NaN, as in the scalar function
    bits = np.int64 if dtype == np.float64 else np.int32
    np.testing.assert_array_equal(got[~nan].view(bits), ref[~nan].view(bits))
    assert np.all(got[x == -np.inf] == 0.0)
    if dtype == np.float64:
        fast = vexp2_array(x[~nan], _vexp2_array64_fastmath)
        np.testing.assert_array_equal(fast.view(bits), ref[~nan].view(bits))


@numba.njit(cache=True)
def _lanewise(a, b, c, out):
    """Rows of out: a + b, a - b, a * b, fma(a, b, c), max(a, b), splat(c[0])."""
    va, vb, vc = vload(a, 0), vload(b, 0), vload(c, 0)
    vstore(out[0], 0, vadd(va, vb))
    vstore(out[1], 0, vsub(va, vb))
    vstore(out[2], 0, vmul(va, vb))
    vstore(out[3], 0, vfma(va, vb, vc))
    vstore(out[4], 0, vmax(va, vb))
    vstore(out[5], 0, vsplat(c[0]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lanewise_operations_match_numpy_and_fma_rounds_once(rng, dtype):
    width = lanes(np.dtype(dtype).itemsize * 8)
    assert width == _simd.VECTOR_BITS // (np.dtype(dtype).itemsize * 8)
    a, b = rng.standard_normal(width).astype(dtype), rng.standard_normal(width).astype(dtype)
    # a fused multiply-add differs from a * b + c where the product's low bits matter
    a[0], b[0] = dtype(1.0) + np.finfo(dtype).eps, dtype(1.0) - np.finfo(dtype).eps
    c = -np.ones(width, dtype)
    out = np.empty((6, width), dtype)
    _lanewise(a, b, c, out)
    np.testing.assert_array_equal(out[0], a + b)
    np.testing.assert_array_equal(out[1], a - b)
    np.testing.assert_array_equal(out[2], a * b)
    np.testing.assert_array_equal(out[4], np.maximum(a, b))
    np.testing.assert_array_equal(out[5], np.full(width, c[0]))
    # lane 0: (1 + eps)(1 - eps) - 1 = -eps^2 exactly, where the rounded product gives 0;
    # fused on a machine with FMA (numba compiling for the host)
    assert a[0] * b[0] + c[0] == 0.0
    if not FUSED:
        np.testing.assert_array_equal(out[3], a * b + c)
        return
    assert out[3][0] == -np.finfo(dtype).eps ** 2
    if dtype == np.float32:  # the float64 product and sum are exact: the fma rounds them once
        exact = a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)
        np.testing.assert_array_equal(out[3], exact.astype(np.float32))
    else:  # within the rounding of the unfused product and sum
        bound = np.spacing(np.abs(a * b)) + np.spacing(np.abs(a * b + c))
        assert np.all(np.abs(out[3] - (a * b + c))[1:] <= bound[1:])


@numba.njit(cache=True)
def _shifted_copy(a, i, out, j):
    vstore(out, j, vload(a, i))


def test_unaligned_loads_and_stores_move_exactly_their_lanes():
    a = np.arange(40.0)
    out = np.full(40, -1.0)
    _shifted_copy(a, 3, out, 5)
    expected = np.full(40, -1.0)
    expected[5:5 + LANES64] = a[3:3 + LANES64]
    np.testing.assert_array_equal(out, expected)
    assert _simd.VECTOR_BITS in (128, 256, 512)


@pytest.mark.parametrize("precision, d, dv", [("float64", 3, 3), ("float64", 8, 8), ("float64", 11, 11),
                                              ("float64", 5, 0), ("float32", 8, 8), ("float32", 15, 15)])
def test_ensemble_sources_are_the_keys_and_values(rng, precision, d, dv):
    dtype = np.float64 if precision == "float64" else np.float32
    P, PV = ensemble_row(d, precision), ensemble_row(dv, precision)
    S, m = 3, 13
    Y = rng.standard_normal((S, m, d))
    Bc, V = rng.standard_normal((d, d)), rng.standard_normal((dv, d))
    BcT = np.zeros((d, P), dtype)
    BcT[:, :d] = Bc.T
    VT = np.zeros((d, PV), dtype)
    VT[:, :dv] = V.T
    K, Vs = np.full(m * P, np.nan, dtype), np.full(m * PV, np.nan, dtype)
    make_ensemble_sources(precision, d, dv)(Y, 1, m, BcT, VT, K, Vs)
    y = Y[1].astype(dtype).astype(np.float64)
    tol = 1e-13 if precision == "float64" else 1e-5
    K = K.reshape(m, P)
    np.testing.assert_allclose(K[:, :d], y @ Bc.astype(dtype).T, rtol=0, atol=tol * np.abs(Bc).sum())
    np.testing.assert_array_equal(K[:, d:], 0.0)  # the padding of each row is 0
    if dv:
        Vs = Vs.reshape(m, PV)
        np.testing.assert_allclose(Vs[:, :dv], y @ V.astype(dtype).T, rtol=0, atol=tol * np.abs(V).sum())
        np.testing.assert_array_equal(Vs[:, dv:], 0.0)


def test_loads_and_stores_refuse_arrays_that_are_not_c_contiguous(rng):
    """vload / vstore ignore strides: a row of a Fortran-ordered array (layout "A") must
    not type, rather than move the wrong elements."""
    d, m = 3, 4
    P = ensemble_row(d, "float64")
    Y = rng.standard_normal((1, m, d))
    BcT = np.zeros((d, P))
    BcT[:, :d] = rng.standard_normal((d, d))
    with pytest.raises(numba.core.errors.TypingError):
        make_ensemble_sources("float64", d, d)(Y, 0, m, np.asfortranarray(BcT), np.asfortranarray(BcT),
                                               np.empty(m * P), np.empty(m * P))


_CACHE_KEYS = """
import hashlib
from numba.core.serialize import dumps
from mfpde.kernels.attention import (make_ensemble_group, make_ensemble_kernel, make_ensemble_sources,
                                    make_shifted_sums, make_softmax_sums)
from mfpde.kernels.blocked import make_blocked_sums
for fn in (make_ensemble_kernel("float64", 3, 3), make_ensemble_group("float32", 5, 0), make_ensemble_sources("float64", 3, 3),
           make_softmax_sums("float64", 3, 3), make_shifted_sums("float32", 3, 3), make_blocked_sums("float64", 64, 64)):
    print(hashlib.sha256(dumps(tuple(c.cell_contents for c in fn.py_func.__closure__))).hexdigest())
"""


def test_kernel_factories_give_the_same_disk_cache_key_in_every_process():
    """numba keys a closure's disk-cache entry on its pickled cells; a cell holding a
    dispatcher (which pickles with a random per-process id) made every process miss the
    cache, recompile and append a new entry.  Every CPU kernel factory is checked; nothing
    is compiled here."""
    import subprocess
    import sys

    keys = [subprocess.run([sys.executable, "-c", _CACHE_KEYS], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert keys[0] == keys[1] and len(keys[0].split()) == 6
