"""numba kernels for the attention average, O(N + M) memory, parallel over targets.

For targets i with queries q_i = log2(e) beta B^T x_i and sources j with points y_j,
values v_j = V y_j and log-masses l_j = log2 m_j (all in log2 units: the kernels use the
base-2 exponential ``fastexp.exp2_64``), every kernel computes per target

    M_i = max_j (<q_i, y_j> + l_j)
    S_i = sum_j 2^(<q_i, y_j> + l_j - M_i)                       (denominator, >= 1)
    N_i = sum_j 2^(<q_i, y_j> + l_j - M_i) v_j                   (numerator, (dv,))

Softmax is N_i / S_i; USA is 2^M_i N_i (formed by the caller in log space).

Exact kernel, online version (``make_softmax_sums``; ``make_shifted_sums`` is the
single-pass variant used for d <= 3 when a bound on M_i is known).  The sources are packed tile-major
(``pack_sources``): tiles of ``TILE`` sources, each holding its points (d, TILE), values
(dv, TILE) and log-masses (TILE,) contiguously, the last tile padded with massless
sources (l = -inf, which add exactly 0).  Per group of ``TARGETS`` = 4 targets (register
blocking: every source coordinate loaded serves four targets) and per tile:

1. scores s_rj = l_j + sum_k q_rk y_kj for the four targets into a (4, TILE) buffer, one
   vectorized pass over the tile with the coordinate loop unrolled (d is a compile-time
   constant of the specialized kernel), each dot product computed once;
2. the four tile maxima, a ``maxnum`` reduction that LLVM vectorizes; where the tile
   raises the running maximum M, S and N are rescaled once by 2^(M_old - M_new)
   (online log-sum-exp);
3. per target, one fused vectorized pass: e = 2^(s - M) by the branch-free exp (every
   argument <= 0; massless sources give exactly 0), S += e and N_k += e v_kj with the
   value coordinates unrolled (dv <= 8; larger dv stores e and does one pass per k).

Nothing overflows for any beta.  The per-tile partial sums are in the working precision
(float64, or float32 in the opt-in float32 mode); M, S and N are float64 in both.  A
target is processed start to finish by one thread and its arithmetic does not depend on
which targets share its group, so results are bit-identical whatever the thread count.
"""

import functools

import numpy as np
from numba import prange

from ._jit import jit_parallel
from .fastexp import exp2_32, exp2_64, maxnum

__all__ = ["make_softmax_sums", "make_shifted_sums", "pack_sources", "hardmax_sums", "TILE", "TARGETS", "PRECISIONS", "UNROLLED_VALUES"]

TILE = 256  # sources per tile: the (4, TILE) score buffer stays in L1
TARGETS = 4  # targets per group (register blocking)
UNROLLED_VALUES = 8  # value dimensions accumulated in registers in the fused pass
PRECISIONS = {"float64": np.float64, "float32": np.float32}
LOG2E = 1.4426950408889634


def pack_sources(Y, VY, logm2, dtype=np.float64):
    """Tile-major source arrays (Yp (T, d, TILE), Vp (T, dv, TILE), Lp (T, TILE)).

    Y: (M, d) points, VY: (M, dv) values, logm2: (M,) log2-masses.  Padded to a multiple
    of ``TILE`` with zero points and values and log-mass -inf.
    """
    m, d = Y.shape
    dv = VY.shape[1]
    ntiles = max(1, -(-m // TILE))
    size = ntiles * TILE
    Yp = np.zeros((ntiles, d, TILE), dtype)
    Vp = np.zeros((ntiles, dv, TILE), dtype)
    Lp = np.full(size, -np.inf, dtype)
    Lp[:m] = logm2
    full, rest = divmod(m, TILE)
    if full:
        Yp[:full] = Y[: full * TILE].reshape(full, TILE, d).transpose(0, 2, 1)
        Vp[:full] = VY[: full * TILE].reshape(full, TILE, dv).transpose(0, 2, 1)
    if rest:
        Yp[full, :, :rest] = Y[full * TILE :].T
        Vp[full, :, :rest] = VY[full * TILE :].T
    return Yp, Vp, Lp.reshape(ntiles, TILE)


@functools.lru_cache(maxsize=None)
def make_softmax_sums(precision, d, dv):
    """The exact kernel specialized to a working precision and the dimensions d, dv.

    The returned function ``kernel(q, Yp, Vp, Lp, num, den, smax)`` fills num (N, dv), den
    (N,) and smax (N,) (float64) with N_i, S_i, M_i (log2 units) from the queries q (N, d)
    and the packed sources of ``pack_sources`` (all of the working dtype).  dv = 0 skips
    the numerator.  Memoized: one compilation per (precision, d, dv), cached on disk.
    """
    # only plain constants in the closure (numba's disk cache keys on their pickle; a
    # closed-over dispatcher would miss the cache in every new process)
    ftype = PRECISIONS[precision]
    IS64 = precision == "float64"
    D = int(d)
    DV = int(dv)
    FUSED = DV <= UNROLLED_VALUES

    @jit_parallel
    def kernel(q, Yp, Vp, Lp, num, den, smax):
        n = q.shape[0]
        ntiles = Yp.shape[0]
        ngroups = (n + TARGETS - 1) // TARGETS
        for g in prange(ngroups):
            s = np.empty((TARGETS, TILE), dtype=ftype)
            acc = np.zeros((TARGETS, DV))
            total = np.zeros(TARGETS)
            run_max = np.full(TARGETS, -np.inf)
            i0 = g * TARGETS
            q0 = q[i0]
            q1 = q[min(i0 + 1, n - 1)]  # a short last group repeats its last target
            q2 = q[min(i0 + 2, n - 1)]
            q3 = q[min(i0 + 3, n - 1)]
            for b in range(ntiles):
                yb = Yp[b]
                vb = Vp[b]
                lb = Lp[b]
                # 1. scores of the tile for the four targets
                for jj in range(TILE):
                    lj = lb[jj]
                    s0 = lj
                    s1 = lj
                    s2 = lj
                    s3 = lj
                    for k in range(D):
                        y = yb[k, jj]
                        s0 += q0[k] * y
                        s1 += q1[k] * y
                        s2 += q2[k] * y
                        s3 += q3[k] * y
                    s[0, jj] = s0
                    s[1, jj] = s1
                    s[2, jj] = s2
                    s[3, jj] = s3
                # 2. tile maxima (vectorized maxnum reduction)
                m0 = ftype(-np.inf)
                m1 = ftype(-np.inf)
                m2 = ftype(-np.inf)
                m3 = ftype(-np.inf)
                for jj in range(TILE):
                    m0 = maxnum(m0, s[0, jj])
                    m1 = maxnum(m1, s[1, jj])
                    m2 = maxnum(m2, s[2, jj])
                    m3 = maxnum(m3, s[3, jj])
                for r in range(TARGETS):
                    tile_max = np.float64(m0 if r == 0 else (m1 if r == 1 else (m2 if r == 2 else m3)))
                    if tile_max > run_max[r]:
                        scale = np.exp2(run_max[r] - tile_max)  # 0 on the first massive tile
                        total[r] *= scale
                        for k in range(DV):
                            acc[r, k] *= scale
                        run_max[r] = tile_max
                    if run_max[r] == -np.inf:
                        continue  # only massless sources so far: nothing to add
                    mr = ftype(run_max[r])
                    # 3. exponentials and weighted sums, fused
                    t_sum = ftype(0.0)
                    if FUSED:
                        a0 = ftype(0.0)
                        a1 = ftype(0.0)
                        a2 = ftype(0.0)
                        a3 = ftype(0.0)
                        a4 = ftype(0.0)
                        a5 = ftype(0.0)
                        a6 = ftype(0.0)
                        a7 = ftype(0.0)
                        for jj in range(TILE):
                            e = exp2_64(s[r, jj] - mr) if IS64 else exp2_32(s[r, jj] - mr)
                            t_sum += e
                            if DV > 0:
                                a0 += e * vb[0, jj]
                            if DV > 1:
                                a1 += e * vb[1, jj]
                            if DV > 2:
                                a2 += e * vb[2, jj]
                            if DV > 3:
                                a3 += e * vb[3, jj]
                            if DV > 4:
                                a4 += e * vb[4, jj]
                            if DV > 5:
                                a5 += e * vb[5, jj]
                            if DV > 6:
                                a6 += e * vb[6, jj]
                            if DV > 7:
                                a7 += e * vb[7, jj]
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
                        for jj in range(TILE):
                            e = exp2_64(s[r, jj] - mr) if IS64 else exp2_32(s[r, jj] - mr)
                            t_sum += e
                            s[r, jj] = e
                        for k in range(DV):
                            ak = ftype(0.0)
                            for jj in range(TILE):
                                ak += s[r, jj] * vb[k, jj]
                            acc[r, k] += ak
                    total[r] += t_sum
            for r in range(min(TARGETS, n - i0)):
                for k in range(DV):
                    num[i0 + r, k] = acc[r, k]
                den[i0 + r] = total[r]
                smax[i0 + r] = run_max[r]

    return kernel


@functools.lru_cache(maxsize=None)
def make_shifted_sums(precision, d, dv):
    """The exact kernel with a known shift: one fused pass per tile, no running maximum.

    ``kernel(q, shift, Yp, Vp, Lp, num, den)`` fills num (N, dv) and den (N,) with
    N_i = sum_j 2^(s_ij - U_i) v_j and S_i = sum_j 2^(s_ij - U_i) for the given shifts
    U_i >= max_j s_ij (up to rounding; ``exact_sums`` uses the Cauchy-Schwarz bound
    |q_i| max_j |y_j| + max_j l_j).  Every exponent is then <= 0 (+ a few ulps) without a
    maximum, so scores, exponential and weighted sums of four targets are one pass over
    the tile: each source point, value and log-mass is loaded once for four targets and
    no score is stored.  The caller must check S_i: when U_i exceeds the true maximum by
    so much that the largest term underflows (S_i tiny or 0), it recomputes the target
    with the online kernel.  dv <= 3.
    """
    ftype = PRECISIONS[precision]
    IS64 = precision == "float64"
    D = int(d)
    DV = int(dv)
    if DV > 3:
        raise ValueError("make_shifted_sums handles dv <= 3")

    @jit_parallel
    def kernel(q, shift, Yp, Vp, Lp, num, den):
        n = q.shape[0]
        ntiles = Yp.shape[0]
        ngroups = (n + TARGETS - 1) // TARGETS
        for g in prange(ngroups):
            acc = np.zeros((TARGETS, 4))  # column 3: the denominator
            i0 = g * TARGETS
            i1 = min(i0 + 1, n - 1)  # a short last group repeats its last target
            i2 = min(i0 + 2, n - 1)
            i3 = min(i0 + 3, n - 1)
            q0 = q[i0]
            q1 = q[i1]
            q2 = q[i2]
            q3 = q[i3]
            u0 = ftype(shift[i0])
            u1 = ftype(shift[i1])
            u2 = ftype(shift[i2])
            u3 = ftype(shift[i3])
            for b in range(ntiles):
                yb = Yp[b]
                vb = Vp[b]
                lb = Lp[b]
                t0 = ftype(0.0)
                t1 = ftype(0.0)
                t2 = ftype(0.0)
                t3 = ftype(0.0)
                a00 = ftype(0.0)
                a01 = ftype(0.0)
                a02 = ftype(0.0)
                a10 = ftype(0.0)
                a11 = ftype(0.0)
                a12 = ftype(0.0)
                a20 = ftype(0.0)
                a21 = ftype(0.0)
                a22 = ftype(0.0)
                a30 = ftype(0.0)
                a31 = ftype(0.0)
                a32 = ftype(0.0)
                for jj in range(TILE):
                    lj = lb[jj]
                    s0 = lj - u0
                    s1 = lj - u1
                    s2 = lj - u2
                    s3 = lj - u3
                    for k in range(D):
                        y = yb[k, jj]
                        s0 += q0[k] * y
                        s1 += q1[k] * y
                        s2 += q2[k] * y
                        s3 += q3[k] * y
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
                        v = vb[0, jj]
                        a00 += e0 * v
                        a10 += e1 * v
                        a20 += e2 * v
                        a30 += e3 * v
                    if DV > 1:
                        v = vb[1, jj]
                        a01 += e0 * v
                        a11 += e1 * v
                        a21 += e2 * v
                        a31 += e3 * v
                    if DV > 2:
                        v = vb[2, jj]
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
            for r in range(min(TARGETS, n - i0)):
                for k in range(DV):
                    num[i0 + r, k] = acc[r, k]
                den[i0 + r] = acc[r, 3]

    return kernel


@jit_parallel
def hardmax_sums(q, yT, vT, mass, tie_tol, num, den):
    """Hardmax (beta = inf for an empirical measure): attend to argmax_j <q_i, y_j>.

    Among sources with positive mass, those whose score is within ``tie_tol[i]`` of the
    maximum tie; they share the attention in proportion to their masses:
    num_i = sum_{j in ties} m_j v_j,  den_i = sum_{j in ties} m_j.
    """
    n, d = q.shape
    m = yT.shape[1]
    dv = vT.shape[0]
    for i in prange(n):
        best = -np.inf
        for j in range(m):
            if mass[j] > 0.0:
                sc = 0.0
                for k in range(d):
                    sc += q[i, k] * yT[k, j]
                if sc > best:
                    best = sc
        total = 0.0
        for k in range(dv):
            num[i, k] = 0.0
        for j in range(m):
            if mass[j] > 0.0:
                sc = 0.0
                for k in range(d):
                    sc += q[i, k] * yT[k, j]
                if sc >= best - tie_tol[i]:
                    total += mass[j]
                    for k in range(dv):
                        num[i, k] += mass[j] * vT[k, j]
        den[i] = total
