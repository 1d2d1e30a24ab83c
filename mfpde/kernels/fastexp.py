"""Branch-free exponentials that LLVM vectorizes (numba here has no SVML).

A loop that calls ``np.exp`` compiles to one scalar libm call per element; the
arithmetic below compiles to straight-line vector code inside the attention kernels'
tile loops.  They are meant for the arguments those kernels produce, x <= 0 (including
-inf for massless sources).

The attention kernels use the base-2 versions ``exp2_64`` / ``exp2_32``: the kernels
carry scores in log2 units (queries and log-masses pre-multiplied by log2(e)), so the
range reduction is exact without any constant split (r = x - round(x) is exact), and
one multiply per element disappears.  Below 2^-1022 they flush to 0 (see ``exp2_64``).
``exp64`` / ``exp32`` are the natural-base versions with full subnormal range.

float64, ``exp64``:

1. Clamp x to >= -750: every x < -745.14 has exp(x) < 2^-1075, which rounds to 0, and
   -inf becomes a finite number, so no NaN enters the reduction.
2. Range reduction by ln 2: k = floor(x log2(e) + 1/2), r = x - k ln 2 with the
   Cody-Waite two-constant split ln 2 = LN2_HI + LN2_LO (LN2_HI has 11 trailing zero
   bits, so k LN2_HI is exact for |k| < 2^11): |r| <= ln(2)/2 (+ a few ulp).
3. exp(r) by a degree-11 polynomial in Horner form: the Chebyshev economization of exp on
   [-ln 2 / 2, ln 2 / 2] (computed with mpmath), approximation error 3.2e-18.
4. 2^k assembled from exponent bits: k is split as k = k1 + k2 (k1 = floor(k/2)) and
   2^k1, 2^k2 are formed as int64 bit patterns ((k + 1023) << 52) reinterpreted as float64
   (a register bitcast, no memory); both stay normal for k >= -1082, so
   p 2^k1 2^k2 rounds once into the subnormal range and underflows to exactly 0.

Measured against ``np.exp`` over [-745, 0] (3e6 points, plus -inf and the subnormal
range): at most 1 ulp (tests/test_kernels.py asserts <= 2 ulp).

float32, ``exp32``: the same scheme with a degree-6 polynomial (error ~2e-8 relative,
< 1 float32 ulp after rounding), the clamp at -104 (below ln of the smallest float32
subnormal) and float32 exponent bits ((k + 127) << 23, k split in two halves).

The functions are compiled *without* reassociation (``_jit.jit_exact``): the split of
ln 2 would otherwise be folded back into one constant.  LLVM inlines them into the
callers, whose own reassociating flags then vectorize the surrounding reductions.
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import jit_exact, jit_parallel, jit_vector
from ._simd import vadd, vexp2_scale, vfma, vmax, vmul, vsplat, vsub

__all__ = ["exp64", "exp32", "exp2_64", "exp2_32", "vexp2_64", "vexp2_32", "maxnum", "exp_array", "exp2_array"]


@intrinsic
def _int64_as_float64(typingctx, x):
    """Reinterpret the bits of an int64 as a float64 (a register bitcast)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@intrinsic
def _int32_as_float32(typingctx, x):
    """Reinterpret the bits of an int32 as a float32 (a register bitcast)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


@intrinsic
def _float64_as_int64(typingctx, x):
    """Reinterpret the bits of a float64 as an int64."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return sig, codegen


@intrinsic
def _float32_as_int32(typingctx, x):
    """Reinterpret the bits of a float32 as an int32."""
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int32))

    return sig, codegen


@intrinsic
def maxnum(typingctx, a, b):
    """llvm.maxnum of two floats of the same type.

    Unlike ``max`` (a compare and a branch or select, whose reduction LLVM does not
    vectorize without a function-wide no-NaN attribute, which numba does not set), a
    ``maxnum`` reduction vectorizes.  NaN handling differs from ``max`` (maxnum returns
    the other operand); the kernels never produce NaN scores.
    """
    if a != b or not isinstance(a, types.Float):
        return None
    sig = a(a, a)

    def codegen(context, builder, signature, args):
        lty = context.get_value_type(signature.return_type)
        name = "llvm.maxnum.f64" if signature.return_type == types.float64 else "llvm.maxnum.f32"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lty, [lty, lty]), name)
        return builder.call(fn, args)

    return sig, codegen


LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # ln 2 rounded to 32 significant bits
LN2_LO = 1.90821492927058770002e-10  # ln 2 - LN2_HI

# Chebyshev economization of exp on [-ln2/2, ln2/2], degree 11 (mpmath.chebyfit)
_C2 = 0.5000000000000019
_C3 = 0.1666666666666668
_C4 = 0.0416666666664881
_C5 = 0.008333333333319601
_C6 = 0.0013888888952314775
_C7 = 0.00019841269890047113
_C8 = 2.4801485482328494e-05
_C9 = 2.755724091857897e-06
_C10 = 2.763263963904103e-07
_C11 = 2.5110037605963777e-08


@jit_exact
def exp64(x):
    """exp(x) for float64 x <= 709; 0 for x < -745.14 and for -inf; <= 1 ulp (measured)."""
    x = max(x, -750.0)
    kf = np.floor(x * LOG2E + 0.5)
    r = x - kf * LN2_HI
    r = r - kf * LN2_LO
    p = _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    p = p * r + _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    p = p * r + 1.0
    p = p * r + 1.0
    k = np.int64(kf)
    k1 = k >> 1
    k2 = k - k1
    return p * _int64_as_float64((k1 + 1023) << 52) * _int64_as_float64((k2 + 1023) << 52)


_F_LOG2E = np.float32(LOG2E)
_F_LN2_HI = np.float32(0.693359375)  # ln 2 to 9 significant bits (exact k * LN2_HI)
_F_LN2_LO = np.float32(-2.12194440e-4)
_F_LO_CLAMP = np.float32(-104.0)
_F_HALF = np.float32(0.5)
_F_ONE = np.float32(1.0)
# Chebyshev economization of exp on [-ln2/2, ln2/2], degree 6 (error 2.0e-9; the
# coefficients of degree 0 and 1 round to 1 in float32)
_F_C2 = np.float32(0.5000000047117757)
_F_C3 = np.float32(0.16666415514653277)
_F_C4 = np.float32(0.04166635289677516)
_F_C5 = np.float32(0.008375126398153335)
_F_C6 = np.float32(0.0013941108433972674)


@jit_exact
def exp32(x):
    """exp(x) for float32 x <= 88; 0 below -103.97 and for -inf; ~1 float32 ulp."""
    x = max(x, _F_LO_CLAMP)
    kf = np.floor(x * _F_LOG2E + _F_HALF)
    r = x - kf * _F_LN2_HI
    r = r - kf * _F_LN2_LO
    p = _F_C6
    p = p * r + _F_C5
    p = p * r + _F_C4
    p = p * r + _F_C3
    p = p * r + _F_C2
    p = p * r + _F_ONE
    p = p * r + _F_ONE
    k = np.int32(kf)
    k1 = k >> 1
    k2 = k - k1
    return p * _int32_as_float32((k1 + np.int32(127)) << np.int32(23)) * _int32_as_float32(
        (k2 + np.int32(127)) << np.int32(23)
    )


# Chebyshev economization of 2^r on [-1/2, 1/2], degree 11 (mpmath.chebyfit), error 3.2e-18
_P1 = 0.6931471805599453
_P2 = 0.24022650695910158
_P3 = 0.055504108664821625
_P4 = 0.009618129107587256
_P5 = 0.001333355814640647
_P6 = 0.00015403530463724353
_P7 = 1.5252733841556773e-05
_P8 = 1.3215432535912375e-06
_P9 = 1.0178057087733941e-07
_P10 = 7.074194297288521e-09
_P11 = 4.4558179083360645e-10
_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: x + SHIFTER rounds x to an integer in the low bits
_EXP_BIAS = 0x4338000000000000 - 1023  # bits(SHIFTER) - 1023


@jit_exact
def exp2_64(x):
    """2^x for float64 x <= 1023, flushed to 0 below 2^-1022; <= 1 ulp above (measured).

    t = x + 1.5 * 2^52 rounds x to the nearest integer k, held in the low bits of t, and
    kf = t - 1.5 * 2^52 is k as a float (no conversion instruction); r = x - kf is exact,
    |r| <= 1/2; 2^r by a degree-11 polynomial; 2^k = bits(max(k + 1023, 0) << 52), which is
    +0.0 for k <= -1023 (a result below 2^-1022, i.e. a weight below 2.2e-308 of the
    largest one: the kernels' sums are >= 1, so flushing it changes nothing).  x is first
    clamped to >= -1100 so that -inf gives exactly 0 rather than NaN.
    """
    x = max(x, -1100.0)
    t = x + _SHIFTER
    kf = t - _SHIFTER
    r = x - kf
    p = _P11
    p = p * r + _P10
    p = p * r + _P9
    p = p * r + _P8
    p = p * r + _P7
    p = p * r + _P6
    p = p * r + _P5
    p = p * r + _P4
    p = p * r + _P3
    p = p * r + _P2
    p = p * r + _P1
    p = p * r + 1.0
    e = max(_float64_as_int64(t) - _EXP_BIAS, 0)
    return p * _int64_as_float64(e << 52)


# 2^r on [-1/2, 1/2], degree 6 (error 2.0e-9)
_Q1 = np.float32(0.6931472067028326)
_Q2 = np.float32(0.24022650922288757)
_Q3 = np.float32(0.05550327226670302)
_Q4 = np.float32(0.009618056678524637)
_Q5 = np.float32(0.0013400428177615838)
_Q6 = np.float32(0.0001546144469856913)
_F_SHIFTER = np.float32(12582912.0)  # 1.5 * 2^23
_F_EXP_BIAS = np.int32(0x4B400000 - 127)
_F_LO_CLAMP2 = np.float32(-150.0)


@jit_exact
def exp2_32(x):
    """2^x for float32 x <= 127, flushed to 0 below 2^-126; ~1 float32 ulp above."""
    x = max(x, _F_LO_CLAMP2)
    t = x + _F_SHIFTER
    kf = t - _F_SHIFTER
    r = x - kf
    p = _Q6
    p = p * r + _Q5
    p = p * r + _Q4
    p = p * r + _Q3
    p = p * r + _Q2
    p = p * r + _Q1
    p = p * r + _F_ONE
    e = max(_float32_as_int32(t) - _F_EXP_BIAS, np.int32(0))
    return p * _int32_as_float32(e << np.int32(23))


@jit_vector
def vexp2_64(x):
    """``exp2_64`` lane-wise on a ``_simd.Vector`` of float64: the same operations with
    every fused multiply-add explicit, so each lane equals ``exp2_64`` of it bit for bit."""
    x = vmax(vsplat(-1100.0), x)  # a NaN lane stays NaN, as in exp2_64
    shifter = vsplat(_SHIFTER)
    t = vadd(x, shifter)
    r = vsub(x, vsub(t, shifter))
    p = vfma(vsplat(_P11), r, vsplat(_P10))
    p = vfma(p, r, vsplat(_P9))
    p = vfma(p, r, vsplat(_P8))
    p = vfma(p, r, vsplat(_P7))
    p = vfma(p, r, vsplat(_P6))
    p = vfma(p, r, vsplat(_P5))
    p = vfma(p, r, vsplat(_P4))
    p = vfma(p, r, vsplat(_P3))
    p = vfma(p, r, vsplat(_P2))
    p = vfma(p, r, vsplat(_P1))
    p = vfma(p, r, vsplat(1.0))
    return vmul(p, vexp2_scale(t, _EXP_BIAS))


@jit_vector
def vexp2_32(x):
    """``exp2_32`` lane-wise on a ``_simd.Vector`` of float32 (bit for bit, as ``vexp2_64``)."""
    x = vmax(vsplat(_F_LO_CLAMP2), x)
    shifter = vsplat(_F_SHIFTER)
    t = vadd(x, shifter)
    r = vsub(x, vsub(t, shifter))
    p = vfma(vsplat(_Q6), r, vsplat(_Q5))
    p = vfma(p, r, vsplat(_Q4))
    p = vfma(p, r, vsplat(_Q3))
    p = vfma(p, r, vsplat(_Q2))
    p = vfma(p, r, vsplat(_Q1))
    p = vfma(p, r, vsplat(_F_ONE))
    return vmul(p, vexp2_scale(t, _F_EXP_BIAS))


@jit_parallel
def _exp2_array64(x, out):
    for i in prange(x.size):
        out[i] = exp2_64(x[i])


@jit_parallel
def _exp2_array32(x, out):
    for i in prange(x.size):
        out[i] = exp2_32(x[i])


@jit_parallel
def _exp_array64(x, out):
    for i in prange(x.size):
        out[i] = exp64(x[i])


@jit_parallel
def _exp_array32(x, out):
    for i in prange(x.size):
        out[i] = exp32(x[i])


def exp_array(x):
    """Elementwise ``exp64`` (float64 input) or ``exp32`` (float32 input) of a 1-d array."""
    x = np.ascontiguousarray(x)
    if x.ndim != 1 or x.dtype not in (np.float64, np.float32):
        raise ValueError(f"exp_array takes a 1-d float64 or float32 array, got {x.dtype} with shape {x.shape}")
    out = np.empty_like(x)
    (_exp_array64 if x.dtype == np.float64 else _exp_array32)(x, out)
    return out


def exp2_array(x):
    """Elementwise ``exp2_64`` (float64 input) or ``exp2_32`` (float32 input) of a 1-d array."""
    x = np.ascontiguousarray(x)
    if x.ndim != 1 or x.dtype not in (np.float64, np.float32):
        raise ValueError(f"exp2_array takes a 1-d float64 or float32 array, got {x.dtype} with shape {x.shape}")
    out = np.empty_like(x)
    (_exp2_array64 if x.dtype == np.float64 else _exp2_array32)(x, out)
    return out
