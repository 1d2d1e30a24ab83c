"""Explicit SIMD vectors for numba kernels: a 512-bit vector type and the few operations
the ensemble kernel needs.

numba has no vector type, and its auto-vectorizer decides by itself where registers go.
Where a loop must keep several vector accumulators in registers (one per value
coordinate, each lane a different target), this module lets the kernel say so:
``Vector(dtype, lanes)`` is an LLVM ``<lanes x dtype>`` value of ``VECTOR_BITS`` = 512
bits (8 float64 or 16 float32 lanes: one AVX-512 register, two AVX2 ones), carried in
local variables like any scalar.  The operations are LLVM instructions and intrinsics:

- ``vload(a, i)`` / ``vstore(a, i, v)``: lanes consecutive elements a[i:i + lanes] of a
  C-contiguous 1-d float array (unaligned; no bounds check: the caller pads);
- ``vsplat(x)``: x in every lane;
- ``vadd``, ``vsub``, ``vmul``: lane-wise; ``vfma(a, b, c)`` = a b + c, fused
  (rounded once) on machines with FMA; ``vmax(a, b)``: lane-wise a > b ? a : b;
- ``vexp2_scale(t, bias)``: the bits max(bits(t) - bias, 0) << (mantissa bits),
  reinterpreted as floats, which is 2^k when t = k + 1.5 2^52 (the exponent assembly of
  ``fastexp.exp2_64`` / ``exp2_32``, lane-wise).

Every fused multiply-add is written out as ``vfma``: functions built from these are
compiled without contraction or reassociation (``_jit.jit_vector``), so their bits do
not depend on how LLVM schedules them (a fresh compilation and numba's disk cache give
the same results).
"""

import os

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = ["Vector", "lanes", "vload", "vstore", "vsplat", "vadd", "vsub", "vmul", "vfma", "vmax", "vexp2_scale"]


def _vector_bits() -> int:
    """512, or ``MFPDE_VECTOR_BITS`` = 128, 256 or 512 (every width gives the same bits:
    lanes never mix).

    512 bits is one AVX-512 register; where the machine's registers are narrower LLVM
    splits each vector, and the split halves are independent chains that keep the core
    busy: with code generated for AVX2 (``NUMBA_CPU_NAME=haswell``) the ensemble benchmark's
    field took 1.19 ms with 512-bit vectors, 1.97 ms with 256-bit ones and 2.31 ms with the
    auto-vectorized kernel they replaced (S = 2048, n = 32, d = 8, 2 threads).
    """
    override = os.environ.get("MFPDE_VECTOR_BITS")
    if not override:
        return 512
    if override not in ("128", "256", "512"):
        raise ValueError(f"MFPDE_VECTOR_BITS must be 128, 256 or 512, got {override!r}")
    return int(override)


#: Width of one vector (bits).
VECTOR_BITS = _vector_bits()


def lanes(bits: int) -> int:
    """Lanes of a vector of floats of ``bits`` bits (8 float64, 16 float32 at 512 bits)."""
    return VECTOR_BITS // bits


class Vector(types.Type):
    """numba type of an LLVM vector ``<lanes x dtype>`` (dtype float32 or float64)."""

    def __init__(self, dtype, count):
        self.dtype = dtype
        self.count = count
        super().__init__(name=f"vector({dtype} x {count})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


def _vector_of(dtype):
    return Vector(dtype, lanes(dtype.bitwidth))


def _float_array(arr):
    # layout "C": the load and store ignore strides (a row of a Fortran-ordered or sliced
    # array, layout "A", would move the wrong elements)
    return isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C" and isinstance(arr.dtype, types.Float)


def _element_pointer(context, builder, arrty, arr, indty, index):
    a = context.make_array(arrty)(context, builder, arr)
    return builder.gep(a.data, [context.cast(builder, index, indty, types.intp)])


def _splat(builder, value, vtype):
    v = builder.insert_element(ir.Constant(vtype, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vtype.count), [0] * vtype.count)
    return builder.shuffle_vector(v, ir.Constant(vtype, ir.Undefined), mask)


@intrinsic
def vload(typingctx, arr, i):
    """a[i:i + lanes] as a vector (C-contiguous 1-d float array, unaligned load)."""
    if not _float_array(arr) or not isinstance(i, types.Integer):
        return None
    vty = _vector_of(arr.dtype)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        lty = context.get_value_type(vty)
        return builder.load(builder.bitcast(ptr, lty.as_pointer()), align=arr.dtype.bitwidth // 8)

    return vty(arr, i), codegen


@intrinsic
def vstore(typingctx, arr, i, v):
    """a[i:i + lanes] = v (C-contiguous 1-d float array of v's dtype, unaligned store)."""
    if not _float_array(arr) or not isinstance(i, types.Integer) or v != _vector_of(arr.dtype):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        builder.store(args[2], builder.bitcast(ptr, args[2].type.as_pointer()), align=arr.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return types.none(arr, i, v), codegen


@intrinsic
def vsplat(typingctx, x):
    """x in every lane (float32 or float64 x)."""
    if not isinstance(x, types.Float):
        return None
    vty = _vector_of(x)

    def codegen(context, builder, signature, args):
        return _splat(builder, args[0], context.get_value_type(vty))

    return vty(x), codegen


def _lanewise(instruction):
    def typer(typingctx, a, b):
        if not isinstance(a, Vector) or a != b:
            return None

        def codegen(context, builder, signature, args):
            return getattr(builder, instruction)(*args)

        return a(a, b), codegen

    typer.__doc__ = f"Lane-wise {instruction} of two vectors of the same type."
    return intrinsic(typer)


vadd = _lanewise("fadd")
vsub = _lanewise("fsub")
vmul = _lanewise("fmul")


def _call_llvm(name, signature, builder, args):
    vtype = args[0].type
    suffix = f"v{vtype.count}f{signature.return_type.dtype.bitwidth}"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vtype, [vtype] * len(args)), f"{name}.{suffix}")
    return builder.call(fn, args)


@intrinsic
def vfma(typingctx, a, b, c):
    """a b + c lane-wise (``llvm.fmuladd``): fused, rounded once, where the target has FMA
    (x86 since 2013, every ARM64); a multiply and an add where it has none (e.g.
    ``NUMBA_CPU_NAME=generic``), exactly as LLVM contracts the scalar kernels' ``a * b + c``,
    so vector and scalar code agree bit for bit on every target (and a software fma is
    never called)."""
    if not isinstance(a, Vector) or not a == b == c:
        return None

    def codegen(context, builder, signature, args):
        return _call_llvm("llvm.fmuladd", signature, builder, args)

    return a(a, b, c), codegen


@intrinsic
def vmax(typingctx, a, b):
    """Lane-wise a > b ? a : b (one ``vmaxpd``; a NaN lane in either takes b's lane)."""
    if not isinstance(a, Vector) or a != b:
        return None

    def codegen(context, builder, signature, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])

    return a(a, b), codegen


@intrinsic
def vexp2_scale(typingctx, t, bias):
    """Lane-wise 2^k from t = k + shifter: the float with bits max(bits(t) - bias, 0) <<
    mantissa bits (52 for float64, 23 for float32); +0.0 where k + exponent bias <= 0."""
    if not isinstance(t, Vector) or not isinstance(bias, types.Integer):
        return None
    bits = t.dtype.bitwidth
    itype = types.int64 if bits == 64 else types.int32

    def codegen(context, builder, signature, args):
        ftype = args[0].type
        ivec = ir.VectorType(ir.IntType(bits), ftype.count)
        b = _splat(builder, context.cast(builder, args[1], signature.args[1], itype), ivec)
        k = builder.sub(builder.bitcast(args[0], ivec), b)
        zero = ir.Constant(ivec, [0] * ftype.count)
        k = builder.select(builder.icmp_signed(">", k, zero), k, zero)
        k = builder.shl(k, ir.Constant(ivec, [52 if bits == 64 else 23] * ftype.count))
        return builder.bitcast(k, ftype)

    return t(t, bias), codegen
