"""The one place that owns numba's JIT settings for mfpde kernels.

fastmath: reassociation and contraction let LLVM vectorise the tile loops; "nnan",
"ninf" and "afn" are left out so NaN and inf keep their meaning (``-inf`` is the
log-mass of a massless source) and exp stays exact to the last ulp.
"""

import types

import numba

FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

#: Serial kernels (small loops, called from parallel ones or on few targets).
jit = numba.njit(cache=True, nogil=True, fastmath=FASTMATH)

#: Kernels whose outer loop is a ``prange`` over targets (gather: no write conflicts).
jit_parallel = numba.njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=True)

#: Scalar math that must not be reassociated (the Cody-Waite split inside the vectorized
#: exp): FMA contraction only.  LLVM inlines these into the callers.
jit_exact = numba.njit(cache=True, nogil=True, fastmath={"contract"})

#: Explicit vector code (``_simd``): every fused multiply-add is written out, so nothing is
#: contracted or reassociated and the bits do not depend on LLVM's scheduling.  fastmath is
#: set (to False) explicitly: numba lets a callee that leaves it unset inherit its caller's.
jit_vector = numba.njit(cache=True, nogil=True, fastmath=False)

#: Loop bodies shared by several kernels: inlined into each caller at numba IR level
#: (before typing), so the caller's compile-time constants (dimensions, precision) shape
#: the inlined loop exactly as if it were written out there.
jit_inline = numba.njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")


def bind_globals(fn, **names):
    """``fn`` with ``names`` bound as globals of its own (a copy of its module's globals)
    rather than as closure cells.

    numba keys its disk cache of a closure on the bytecode and on the pickled contents of
    its cells; a dispatcher pickles with a random per-process id, so a cell that holds one
    (a kernel built by a factory calling another factory's kernel) changes the key in
    every process: the cache never hits and each process appends a new entry to it.  The
    cells that remain must select these functions (the factory's constants do).
    """
    bound = types.FunctionType(fn.__code__, {**fn.__globals__, **names}, fn.__name__, fn.__defaults__, fn.__closure__)
    bound.__qualname__ = fn.__qualname__
    bound.__doc__ = fn.__doc__
    bound.__module__ = fn.__module__
    return bound
