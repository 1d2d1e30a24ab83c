"""The fused tile pass, shared by the exact and the truncated numba kernels (private).

For four targets r = 0..3 with queries q_r (log2 units) and shifts u_r >= max_j s_rj (up
to rounding), over the sources j = start .. start + count - 1 of the column-major arrays
Y (d, .) (points), V (dv, .) (values) and L (.) (log2 masses):

    s_rj = L_j - u_r + sum_k q_rk Y_kj          (<= a few ulps: no overflow)
    acc[r, k] += sum_j 2^(s_rj) V_kj  (k < dv <= 3),    acc[r, 3] += sum_j 2^(s_rj)

in one loop: each source point, value and log-mass is loaded once for four targets
(register blocking) and no score is stored; the exponential is the branch-free
``exp2_64`` (``exp2_32`` in float32 mode).  Partial sums are in the type of ``zero``
(the working precision); ``acc`` is float64.

``fused_shifted_pass`` is inlined into its callers at numba IR level (``jit_inline``),
so the caller's compile-time constants D, DV, IS64 fold and the loop is vectorized as if
written out in each kernel: the exact kernel (``attention.make_shifted_sums``: one tile,
start = 0, count = TILE) and the truncated one (``truncated._make_kernel``: one range of
the sorted sources) run the same arithmetic in the same order.
"""

import numpy as np

from ._jit import jit_inline
from .fastexp import exp2_32, exp2_64, maxnum

__all__ = ["fused_shifted_pass", "online_tile_pass"]


@jit_inline
def scores4(q0, q1, q2, q3, b0, b1, b2, b3, y0, y1, y2, Y, col, D):
    """b_r + <q_r, y> for four targets r at one source y: coordinates y0, y1, y2 (y2 read only
    when D > 2) and Y[3:D, col], in the working precision.  Both tile passes score with it."""
    s0 = b0 + q0[0] * y0 + q0[1] * y1
    s1 = b1 + q1[0] * y0 + q1[1] * y1
    s2 = b2 + q2[0] * y0 + q2[1] * y1
    s3 = b3 + q3[0] * y0 + q3[1] * y1
    if D > 2:
        s0 += q0[2] * y2
        s1 += q1[2] * y2
        s2 += q2[2] * y2
        s3 += q3[2] * y2
    for k in range(3, D):
        y = Y[k, col]
        s0 += q0[k] * y
        s1 += q1[k] * y
        s2 += q2[k] * y
        s3 += q3[k] * y
    return s0, s1, s2, s3


@jit_inline
def fused_shifted_pass(q0, q1, q2, q3, u0, u1, u2, u3, Y, V, L, start, count, D, DV, IS64, zero, acc):
    """Add the shifted weighted sums of sources [start, start + count) to acc (4, 4) (module
    docstring).  q0..q3: query rows (D,), u0..u3: shifts, Y (D, .), V (>= max(DV, 1), .),
    L (.): C-contiguous; D >= 2, DV <= 3 (V's rows beyond DV are not read)."""
    stop = start + count
    lr = L[start:stop]  # slices indexed from 0: LLVM sees non-negative indices and vectorizes
    y0r = Y[0, start:stop]
    y1r = Y[1, start:stop]
    y2r = Y[2 if D > 2 else 1, start:stop]
    v0r = V[0, start:stop]
    v1r = V[1 if DV > 1 else 0, start:stop]
    v2r = V[2 if DV > 2 else 0, start:stop]
    t0 = zero
    t1 = zero
    t2 = zero
    t3 = zero
    a00 = zero
    a01 = zero
    a02 = zero
    a10 = zero
    a11 = zero
    a12 = zero
    a20 = zero
    a21 = zero
    a22 = zero
    a30 = zero
    a31 = zero
    a32 = zero
    for j in range(count):
        lj = lr[j]
        s0, s1, s2, s3 = scores4(q0, q1, q2, q3, lj - u0, lj - u1, lj - u2, lj - u3,
                                 y0r[j], y1r[j], y2r[j], Y, start + j, D)
        if IS64:
            e0 = exp2_64(s0)
            e1 = exp2_64(s1)
            e2 = exp2_64(s2)
            e3 = exp2_64(s3)
        else:
            e0 = exp2_32(s0)
            e1 = exp2_32(s1)
            e2 = exp2_32(s2)
            e3 = exp2_32(s3)
        t0 += e0
        t1 += e1
        t2 += e2
        t3 += e3
        if DV > 0:
            v = v0r[j]
            a00 += e0 * v
            a10 += e1 * v
            a20 += e2 * v
            a30 += e3 * v
        if DV > 1:
            v = v1r[j]
            a01 += e0 * v
            a11 += e1 * v
            a21 += e2 * v
            a31 += e3 * v
        if DV > 2:
            v = v2r[j]
            a02 += e0 * v
            a12 += e1 * v
            a22 += e2 * v
            a32 += e3 * v
    acc[0, 0] += a00
    acc[0, 1] += a01
    acc[0, 2] += a02
    acc[0, 3] += t0
    acc[1, 0] += a10
    acc[1, 1] += a11
    acc[1, 2] += a12
    acc[1, 3] += t1
    acc[2, 0] += a20
    acc[2, 1] += a21
    acc[2, 2] += a22
    acc[2, 3] += t2
    acc[3, 0] += a30
    acc[3, 1] += a31
    acc[3, 2] += a32
    acc[3, 3] += t3


@jit_inline
def raise_running_max(r, tile_max, run_max, total, acc, dv):
    """The online log-sum-exp step of target r: where a tile's maximum ``tile_max`` exceeds
    its running maximum, the running sums total[r] and acc[r, :dv] are rescaled by
    2^(old - new) and the maximum is raised (float64; the scale is 0 on the first massive
    tile, whose old maximum is -inf).  Shared by the online pass and ``blocked``."""
    if tile_max > run_max[r]:
        scale = np.exp2(run_max[r] - tile_max)
        total[r] *= scale
        for k in range(dv):
            acc[r, k] *= scale
        run_max[r] = tile_max


@jit_inline
def online_tile_pass(q0, q1, q2, q3, Y, V, L, start, count, D, DV, IS64, FUSED, zero, s, cast, acc, total,
                     run_max):
    """One tile of the online log-sum-exp for four targets (sources [start, start + count),
    count <= s.shape[1]), when no bound on the maximum is known:

    1. scores s_rj = L_j + sum_k q_rk Y_kj into the buffer s (4, >= count) (working
       precision, the type of ``zero``);
    2. the tile maxima (a ``maxnum`` reduction); where one raises the running maximum
       run_max[r], total[r] and acc[r, :DV] are rescaled by 2^(old - new) (float64);
    3. per target, e = 2^(s_rj - run_max[r]) (every exponent <= 0), total[r] += sum_j e,
       acc[r, k] += sum_j e V_kj: one fused pass with the value coordinates unrolled when
       ``FUSED`` (DV <= 8), else e is stored in s and summed per k.

    ``cast``: a 1-element array of the working precision (the maximum is rounded to it
    by a store).  Used by the exact kernel (``attention.make_softmax_sums``, one tile) and
    the truncated one (``truncated._make_kernel`` with ``online``, tiles of its ranges).
    """
    stop = start + count
    lr = L[start:stop]  # slices indexed from 0: LLVM sees non-negative indices and vectorizes
    y0r = Y[0, start:stop]
    y1r = Y[1, start:stop]
    y2r = Y[2 if D > 2 else 1, start:stop]
    v0r = V[0, start:stop]
    v1r = V[1 if DV > 1 else 0, start:stop]
    v2r = V[2 if DV > 2 else 0, start:stop]
    # 1. scores of the tile for the four targets
    for j in range(count):
        lj = lr[j]
        s0, s1, s2, s3 = scores4(q0, q1, q2, q3, lj, lj, lj, lj, y0r[j], y1r[j], y2r[j], Y, start + j, D)
        s[0, j] = s0
        s[1, j] = s1
        s[2, j] = s2
        s[3, j] = s3
    # 2. tile maxima (vectorized maxnum reduction)
    cast[0] = -np.inf
    m0 = cast[0]
    m1 = cast[0]
    m2 = cast[0]
    m3 = cast[0]
    for j in range(count):
        m0 = maxnum(m0, s[0, j])
        m1 = maxnum(m1, s[1, j])
        m2 = maxnum(m2, s[2, j])
        m3 = maxnum(m3, s[3, j])
    for r in range(4):
        tile_max = np.float64(m0 if r == 0 else (m1 if r == 1 else (m2 if r == 2 else m3)))
        raise_running_max(r, tile_max, run_max, total, acc, DV)
        if run_max[r] == -np.inf:
            continue  # only massless sources so far: nothing to add
        cast[0] = run_max[r]
        mr = cast[0]
        # 3. exponentials and weighted sums, fused
        t_sum = zero
        if FUSED:
            a0 = zero
            a1 = zero
            a2 = zero
            a3 = zero
            a4 = zero
            a5 = zero
            a6 = zero
            a7 = zero
            for j in range(count):
                e = exp2_64(s[r, j] - mr) if IS64 else exp2_32(s[r, j] - mr)
                t_sum += e
                if DV > 0:
                    a0 += e * v0r[j]
                if DV > 1:
                    a1 += e * v1r[j]
                if DV > 2:
                    a2 += e * v2r[j]
                if DV > 3:
                    a3 += e * V[3, start + j]
                if DV > 4:
                    a4 += e * V[4, start + j]
                if DV > 5:
                    a5 += e * V[5, start + j]
                if DV > 6:
                    a6 += e * V[6, start + j]
                if DV > 7:
                    a7 += e * V[7, start + j]
            if DV > 0:
                acc[r, 0] += a0
            if DV > 1:
                acc[r, 1] += a1
            if DV > 2:
                acc[r, 2] += a2
            if DV > 3:
                acc[r, 3] += a3
            if DV > 4:
                acc[r, 4] += a4
            if DV > 5:
                acc[r, 5] += a5
            if DV > 6:
                acc[r, 6] += a6
            if DV > 7:
                acc[r, 7] += a7
        else:
            for j in range(count):
                e = exp2_64(s[r, j] - mr) if IS64 else exp2_32(s[r, j] - mr)
                t_sum += e
                s[r, j] = e
            for k in range(DV):
                ak = zero
                for j in range(count):
                    ak += s[r, j] * V[k, start + j]
                acc[r, k] += ak
        total[r] += t_sum
