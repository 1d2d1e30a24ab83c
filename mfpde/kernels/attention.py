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
blocking: every source coordinate loaded serves four targets) and per tile
(``_tile.online_tile_pass``, the loop the truncated kernel shares):

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
import math

import numba
import numpy as np
from numba import prange

from ..model import Model
from ._base import LOG2E, LOG_FLOAT_MAX, PRECISIONS, log2_masses
from .blocked import BLOCKED_MIN_D, blocked_sums
from ._jit import bind_globals, jit_parallel, jit_vector
from ._simd import lanes, vadd, vfma, vload, vmax, vmul, vsplat, vstore, vsub
from ._tile import fused_shifted_pass, online_tile_pass
from .fastexp import exp2_64, vexp2_32, vexp2_64
from .registry import Attention, register_kernel

__all__ = ["exact_sums", "ensemble_exact", "ensemble_kernel_applies", "make_ensemble_kernel", "make_softmax_sums", "make_shifted_sums", "pack_sources", "hardmax_sums", "NumbaExact",
           "NumbaHardmax", "TILE", "TARGETS", "PRECISIONS", "UNROLLED_VALUES", "SHIFT_UNDERFLOW", "HARDMAX_TIE_ULPS"]

LN2 = math.log(2.0)
FLOAT_MAX = float(np.finfo(np.float64).max)
TILE = 256  # sources per tile: the (4, TILE) score buffer stays in L1
TARGETS = 4  # targets per group (register blocking)
UNROLLED_VALUES = 8  # value dimensions accumulated in registers in the fused pass
#: The shifted exact kernel's S_i below this means the shift overshot the maximum by more
#: than ~900 (float64) / ~60 (float32) in log2 units: recompute with the online maximum.
SHIFT_UNDERFLOW = {"float64": 2.0**-900, "float32": 2.0**-60}
#: Hardmax: scores within this many ulps (relative to |q| max|y|) of the maximum count as ties.
HARDMAX_TIE_ULPS = 64


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
    the numerator.  Memoized: one compilation per (precision, d, dv), cached on disk.  The
    tile loop is ``_tile.online_tile_pass``, the one the truncated kernel runs where no
    bound on the maximum is safe.
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
            cast = np.empty(1, dtype=ftype)
            zero = ftype(0.0)
            acc = np.zeros((TARGETS, DV))
            total = np.zeros(TARGETS)
            run_max = np.full(TARGETS, -np.inf)
            i0 = g * TARGETS
            q0 = q[i0]
            q1 = q[min(i0 + 1, n - 1)]  # a short last group repeats its last target
            q2 = q[min(i0 + 2, n - 1)]
            q3 = q[min(i0 + 3, n - 1)]
            for b in range(ntiles):
                online_tile_pass(q0, q1, q2, q3, Yp[b], Vp[b], Lp[b], 0, TILE, D, DV, IS64, FUSED, zero, s, cast,
                                 acc, total, run_max)
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
    with the online kernel.  dv <= 3.  The tile loop is ``_tile.fused_shifted_pass``, the
    one the truncated kernel runs over its ranges.
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
            zero = ftype(0.0)
            for b in range(ntiles):
                fused_shifted_pass(q0, q1, q2, q3, u0, u1, u2, u3, Yp[b], Vp[b], Lp[b], 0, TILE, D, DV, IS64, zero,
                                   acc)
            for r in range(min(TARGETS, n - i0)):
                for k in range(DV):
                    num[i0 + r, k] = acc[r, k]
                den[i0 + r] = acc[r, 3]

    return kernel


#: Ensemble kernel modes: what it writes per target (``make_ensemble_kernel``).
ENSEMBLE_MODES = {"sums": 0, "softmax": 1, "uniform": 2}
#: Ensemble kernel: targets per work item (a system's sources are prepared once per item).
ENSEMBLE_TARGETS = 64


def ensemble_lanes(precision):
    """Targets per vector of the ensemble kernel: ``_simd.lanes`` of the working precision."""
    return lanes(64 if precision == "float64" else 32)


def ensemble_row(count, precision):
    """Row length of the ensemble kernel's source arrays: ``count`` rounded up to whole vectors."""
    width = ensemble_lanes(precision)
    return max(1, -(-count // width)) * width


@functools.lru_cache(maxsize=None)
def make_ensemble_sources(precision, d, dv):
    """Keys and values of one system's sources for ``make_ensemble_group``.

    ``sources(Y, sy, m, BcT, VT, K, Vs)``: for each source y_j = Y[sy, j] (j < m), in the
    working precision, the key k_j = Bc y_j = sum_kk y_j[kk] Bc[:, kk] into K[j P : j P + d]
    and the value v_j = V y_j into Vs[j PV : j PV + dv] (row lengths P, PV =
    ``ensemble_row``): fused multiply-adds over kk in order, one
    vector per ``LANES`` coordinates, from BcT = Bc^T (d, P) and VT = V^T (d, PV) padded
    with zero columns (so the padding of each row is 0).
    """
    ftype = PRECISIONS[precision]
    D = int(d)
    DV = int(dv)
    LANES = ensemble_lanes(precision)
    P = ensemble_row(D, precision)
    PV = ensemble_row(DV, precision)

    @jit_vector
    def sources(Y, sy, m, BcT, VT, K, Vs):
        for j in range(m):
            for c in range(0, P, LANES):
                a = vmul(vsplat(ftype(Y[sy, j, 0])), vload(BcT[0], c))
                for kk in range(1, D):
                    a = vfma(vsplat(ftype(Y[sy, j, kk])), vload(BcT[kk], c), a)
                vstore(K, j * P + c, a)
            for c in range(0, PV if DV > 0 else 0, LANES):
                a = vmul(vsplat(ftype(Y[sy, j, 0])), vload(VT[0], c))
                for kk in range(1, D):
                    a = vfma(vsplat(ftype(Y[sy, j, kk])), vload(VT[kk], c), a)
                vstore(Vs, j * PV + c, a)

    return sources


@functools.lru_cache(maxsize=None)
def make_ensemble_group(precision, d, dv):
    """Scores, maximum, exponentials and sums for one group of ``LANES`` targets of a system,
    each target a lane of a ``_simd.Vector`` (8 float64 or 16 float32 lanes).

    ``group(xT, g, K, Vs, L, m, sb, acc, mode)``: the targets' points are xT[:, g:g + lanes]
    (xT (d, .)), the system's m sources their keys K and values Vs (rows of
    ``make_ensemble_sources``: the score is s_ij = l_j + <x_i, k_j>) and log2-masses L
    (m,); scratch sb (m lanes,).  Per lane i, in the working precision:

        M_i = max_j s_ij,    S_i = sum_j 2^(s_ij - M_i),    N_ik = sum_j 2^(s_ij - M_i) v_jk,

    every sum in the order j = 0, 1, ..., m - 1, written to acc[k] (k < dv), acc[max(dv, 1)]
    (S_i) and acc[max(dv, 1) + 1] (M_i), each row lanes long.

    In float64 with ``mode`` 2 (uniform, ``ENSEMBLE_MODES``) it also writes the
    normalization's factor ``exp2_64(M_i)`` = 2^M_i into acc[max(dv, 1) + 2] (meaningful for
    |M_i| <= 1000), the same bits as the kernel's scalar finish would compute.  The vectors run over targets, so the sums need no
    horizontal reduction and each source coordinate is broadcast; the first eight value
    coordinates stay in registers (larger dv: one more pass per coordinate over the stored
    exponentials).  A lane's arithmetic is the same in every lane and never mixes lanes: a
    target's bits do not depend on which targets share its group.
    """
    ftype = PRECISIONS[precision]
    D = int(d)
    DV = int(dv)
    DVB = max(DV, 1)
    LANES = ensemble_lanes(precision)
    P = ensemble_row(D, precision)
    PV = ensemble_row(DV, precision)
    IS64 = precision == "float64"

    def group(xT, g, K, Vs, L, m, sb, acc, mode):
        x0 = vload(xT[0], g)
        x1 = vload(xT[1], g)
        x2 = vload(xT[2 if D > 2 else 1], g)
        x3 = vload(xT[3 if D > 3 else 1], g)
        x4 = vload(xT[4 if D > 4 else 1], g)
        x5 = vload(xT[5 if D > 5 else 1], g)
        x6 = vload(xT[6 if D > 6 else 1], g)
        x7 = vload(xT[7 if D > 7 else 1], g)
        mx = vsplat(ftype(-np.inf))
        for j in range(m):
            b = j * P
            sc = vfma(x0, vsplat(K[b]), vsplat(L[j]))
            sc = vfma(x1, vsplat(K[b + 1]), sc)
            if D > 2:
                sc = vfma(x2, vsplat(K[b + 2]), sc)
            if D > 3:
                sc = vfma(x3, vsplat(K[b + 3]), sc)
            if D > 4:
                sc = vfma(x4, vsplat(K[b + 4]), sc)
            if D > 5:
                sc = vfma(x5, vsplat(K[b + 5]), sc)
            if D > 6:
                sc = vfma(x6, vsplat(K[b + 6]), sc)
            if D > 7:
                sc = vfma(x7, vsplat(K[b + 7]), sc)
            for k in range(8, D):
                sc = vfma(vload(xT[k], g), vsplat(K[b + k]), sc)
            vstore(sb, j * LANES, sc)
            mx = vmax(mx, sc)
        zero = vsplat(ftype(0.0))
        total = zero
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        a4 = zero
        a5 = zero
        a6 = zero
        a7 = zero
        for j in range(m):
            e = _vexp2(vsub(vload(sb, j * LANES), mx))  # noqa: F821 (bind_globals)
            if DV > 8:
                vstore(sb, j * LANES, e)
            total = vadd(total, e)
            b = j * PV
            if DV > 0:
                a0 = vfma(e, vsplat(Vs[b]), a0)
            if DV > 1:
                a1 = vfma(e, vsplat(Vs[b + 1]), a1)
            if DV > 2:
                a2 = vfma(e, vsplat(Vs[b + 2]), a2)
            if DV > 3:
                a3 = vfma(e, vsplat(Vs[b + 3]), a3)
            if DV > 4:
                a4 = vfma(e, vsplat(Vs[b + 4]), a4)
            if DV > 5:
                a5 = vfma(e, vsplat(Vs[b + 5]), a5)
            if DV > 6:
                a6 = vfma(e, vsplat(Vs[b + 6]), a6)
            if DV > 7:
                a7 = vfma(e, vsplat(Vs[b + 7]), a7)
        if DV > 0:
            vstore(acc[0], 0, a0)
        if DV > 1:
            vstore(acc[1], 0, a1)
        if DV > 2:
            vstore(acc[2], 0, a2)
        if DV > 3:
            vstore(acc[3], 0, a3)
        if DV > 4:
            vstore(acc[4], 0, a4)
        if DV > 5:
            vstore(acc[5], 0, a5)
        if DV > 6:
            vstore(acc[6], 0, a6)
        if DV > 7:
            vstore(acc[7], 0, a7)
        for k in range(8, DV):
            ak = zero
            for j in range(m):
                ak = vfma(vload(sb, j * LANES), vsplat(Vs[j * PV + k]), ak)
            vstore(acc[k], 0, ak)
        vstore(acc[DVB], 0, total)
        vstore(acc[DVB + 1], 0, mx)
        if IS64 and mode == 2:
            vstore(acc[DVB + 2], 0, _vexp2(mx))  # noqa: F821

    # _vexp2 a global, not a cell (``bind_globals``); IS64 (a cell) selects it
    return jit_vector(bind_globals(group, _vexp2=vexp2_64 if IS64 else vexp2_32))


@functools.lru_cache(maxsize=None)
def make_ensemble_kernel(precision, d, dv):
    """The exact kernel for an ensemble of small systems (at most ``TILE`` sources each).

    ``kernel(X, Y, W, BcT, VT, mode, project, nchunks, out, den, smax)``: X (S, n, d) targets, Y (S, m, d)
    sources (X itself for self-interaction), W (S, m) masses (float64), BcT = (log2(e) beta
    B)^T and VT = V^T in the working precision, padded with zero columns to whole vectors
    (``make_ensemble_sources``); out (S, n, max(dv, 1)), den and smax (S, n) float64.
    Interactions stay inside a system.

    Work items are (system, block of ``ENSEMBLE_TARGETS`` targets), ``prange`` over
    ``nchunks`` contiguous runs of them (scratch allocated once per run).  Per item, in
    the working precision:

    1. the log2 masses l (m,), the keys k_j = Bc y_j and values v_j = V y_j of the system's
       sources (``make_ensemble_sources``) and the block's targets transposed, x (d, block);
    2. per group of ``LANES`` targets, ``make_ensemble_group``: the scores s_ij = l_j +
       <x_i, k_j> and their maximum M_i, e_ij = 2^(s_ij - M_i) (``vexp2_64`` /
       ``vexp2_32``, every exponent <= 0), S_i = sum_j e_ij and N_i = sum_j e_ij v_j, one
       target per vector lane.

    Each target is then finished by ``mode`` (``ENSEMBLE_MODES``, a run-time argument like
    ``project``, so one compilation serves them all): "sums" writes N_i, S_i, M_i (log2
    units); "softmax" writes N_i / S_i, "uniform" 2^M_i N_i and, in den, the log of its
    largest |coordinate| (the caller's overflow check); ``project`` replaces the average a
    by the tangent projection a - <x, a> x (dv = d).

    The arithmetic of a target depends only on its system (and the system's n, m), never
    on S, the system's position in the ensemble or ``nchunks``: system s of an ensemble
    gives the same bits as the same system alone (S = 1), whatever the thread count.
    """
    ftype = PRECISIONS[precision]
    D = int(d)
    DV = int(dv)
    DVB = max(DV, 1)
    TB = ENSEMBLE_TARGETS
    LANES = ensemble_lanes(precision)
    # float64: the uniform normalization's factor 2^M_i comes lane-wise from the group
    IS64 = precision == "float64"
    group = make_ensemble_group(precision, D, DV)
    sources = make_ensemble_sources(precision, D, DV)
    P = ensemble_row(D, precision)
    PV = ensemble_row(DV, precision)

    def kernel(X, Y, W, BcT, VT, mode, project, nchunks, out, den, smax):
        nsys = X.shape[0]
        n = X.shape[1]
        m = Y.shape[1]
        nblocks = (n + TB - 1) // TB
        items = nsys * nblocks
        for c in prange(nchunks):
            K = np.empty(m * P, dtype=ftype)
            Vs = np.empty(m * PV, dtype=ftype)
            L = np.empty(m, dtype=ftype)
            xT = np.zeros((D, TB), dtype=ftype)  # lanes past the block's last target stay finite
            sb = np.empty(m * LANES, dtype=ftype)
            acc = np.empty((DVB + 3, LANES), dtype=ftype)
            avg = np.empty(DVB)
            for it in range(c * items // nchunks, (c + 1) * items // nchunks):
                sy = it // nblocks
                i0 = (it - sy * nblocks) * TB
                nb = min(TB, n - i0)
                # 1. the system's log-masses, keys and values (once per item: one item per
                # system unless n > ENSEMBLE_TARGETS); the block's targets, transposed
                wprev = -1.0
                lj = ftype(-np.inf)
                for j in range(m):
                    w = W[sy, j]
                    if w != wprev:  # equal masses (the usual case) take one log2
                        lj = ftype(np.log2(w)) if w > 0.0 else ftype(-np.inf)
                        wprev = w
                    L[j] = lj
                _sources(Y, sy, m, BcT, VT, K, Vs)  # noqa: F821 (bind_globals)
                for ii in range(nb):
                    for k in range(D):
                        xT[k, ii] = X[sy, i0 + ii, k]
                # 2. per group of LANES targets: scores, maxima, exponentials and sums
                for g in range(0, nb, LANES):
                    _group(xT, g, K, Vs, L, m, sb, acc, mode)  # noqa: F821
                    for lane in range(min(LANES, nb - g)):
                        i = i0 + g + lane
                        tot = np.float64(acc[DVB, lane])
                        shift = np.float64(acc[DVB + 1, lane])
                        smax[sy, i] = shift
                        if mode == 0:
                            for k in range(DV):
                                out[sy, i, k] = acc[k, lane]
                            den[sy, i] = tot
                            continue
                        for k in range(DV):
                            avg[k] = acc[k, lane]
                        if mode == 1:
                            inv = 1.0 / tot
                            for k in range(DV):
                                avg[k] = avg[k] * inv
                        else:
                            # 2^M N; den: the log of its largest |coordinate| where that overflows
                            # (the caller's check; -inf elsewhere, which saves a log per target)
                            if -1000.0 <= shift <= 1000.0:
                                scale = np.float64(acc[DVB + 2, lane]) if IS64 else exp2_64(shift)
                            else:
                                scale = np.exp2(shift)
                            big = 0.0
                            for k in range(DV):
                                big = max(big, abs(avg[k]))
                            den[sy, i] = -np.inf
                            if not big * scale <= FLOAT_MAX:
                                den[sy, i] = shift * LN2 + np.log(big)
                            for k in range(DV):
                                avg[k] = avg[k] * scale
                        if project:
                            dot = 0.0
                            for k in range(DV):
                                dot += X[sy, i, k] * avg[k]
                            for k in range(DV):
                                out[sy, i, k] = avg[k] - dot * X[sy, i, k]
                        else:
                            for k in range(DV):
                                out[sy, i, k] = avg[k]

    # _group, _sources globals, not cells (``bind_globals``); the cells ftype, D, DV, LANES select them
    return jit_parallel(bind_globals(kernel, _group=group, _sources=sources))


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


def exact_sums(model: Model, X: np.ndarray, Y: np.ndarray, weights: np.ndarray, precision: str = "float64",
               values: bool = True) -> tuple:
    """(N_i, S_i, M_i) of the exact kernel (module docstring), M_i in log2 units.

    X (N, d) targets, Y (M, d) sources, weights (M,) masses (contiguous float64, at least
    one positive).  For dv <= 3 the shift M_i is the Cauchy-Schwarz bound
    |q_i| max|y_j| + max log2 m_j (``make_shifted_sums``: one fused pass, no running
    maximum); targets where it overshoots the true maximum so far that
    S_i < ``SHIFT_UNDERFLOW`` are recomputed with the online maximum
    (``make_softmax_sums``), as are all targets for dv > 3.  Finite beta only.
    ``values=False`` skips the numerator (N_i has shape (N, 0)).  For d >=
    ``blocked.BLOCKED_MIN_D`` the scores and value sums are blocked matrix products
    (``blocked.blocked_sums``, same contract).
    """
    if X.shape[1] >= BLOCKED_MIN_D:  # the high-d path: GEMM-blocked scores and value sums
        return blocked_sums(model, X, Y, weights, precision, values)
    dtype = PRECISIONS[precision]
    n, d = X.shape
    q = np.ascontiguousarray((LOG2E * model.beta) * (X @ model.B), dtype=dtype)
    VY = Y @ model.V.T if values else np.empty((len(Y), 0))
    Yp, Vp, Lp = pack_sources(Y, VY, log2_masses(weights), dtype)
    dv = VY.shape[1]
    num = np.empty((n, dv))
    den = np.empty(n)
    smax = np.empty(n)
    if not n:
        return num, den, smax
    redo = np.arange(n)
    if dv <= 3:
        # one fused pass with the shift U_i = |q_i| max|y_j| + max log2 m_j >= max_j s_ij
        massive = weights > 0
        ymax = math.sqrt(float(np.einsum("ij,ij->i", Y[massive], Y[massive]).max()))
        lmax = float(np.log2(weights[massive].max()))
        margin = 1e-12 if precision == "float64" else 1e-6
        qnorm = np.sqrt(np.einsum("ij,ij->i", q.astype(np.float64), q.astype(np.float64)))
        shift = (qnorm * (ymax * (1 + margin)) + lmax).astype(dtype).astype(np.float64)
        make_shifted_sums(precision, d, dv)(q, shift, Yp, Vp, Lp, num, den)
        smax[:] = shift
        # where the bound exceeds the true maximum so much that the largest term may have
        # underflowed, recompute with the online maximum
        redo = np.flatnonzero(~(den >= SHIFT_UNDERFLOW[precision]))
    if len(redo):
        sub_num = np.empty((len(redo), dv))
        sub_den = np.empty(len(redo))
        sub_smax = np.empty(len(redo))
        make_softmax_sums(precision, d, dv)(np.ascontiguousarray(q[redo]), Yp, Vp, Lp, sub_num, sub_den, sub_smax)
        num[redo], den[redo], smax[redo] = sub_num, sub_den, sub_smax
    return num, den, smax


def ensemble_kernel_applies(X, Y) -> bool:
    """Whether ``ensemble_exact`` runs the ensemble X (S, n, d), Y (S, m, d): m <= ``TILE``
    sources per system and d < ``BLOCKED_MIN_D`` (else ``exact_sums`` runs per system)."""
    return Y.shape[1] <= TILE and X.shape[2] < BLOCKED_MIN_D


def ensemble_exact(model: Model, X: np.ndarray, Y: np.ndarray, weights: np.ndarray, precision: str = "float64",
                   mode: str | None = None, project: bool = True, values: bool = True):
    """The exact kernel on an ensemble (``make_ensemble_kernel``): X (S, n, d), Y (S, m, d)
    (X itself for self-interaction), weights (S, m), validated C-contiguous float64, m <= TILE.

    ``mode`` None (the model's normalization): the field (``project``) or the average,
    (S, n, d); ``OverflowError`` where the uniform normalization exceeds float64's range.
    ``mode = "sums"``: (N (S, n, dv), S_i (S, n), M_i (S, n)), dv = 0 when ``values`` is
    False.  Finite beta only.
    """
    mode = model.normalization if mode is None else mode
    nsys, n, d = X.shape
    dv = model.V.shape[0] if (values or mode != "sums") else 0
    out = np.empty((nsys, n, dv))
    den = np.empty((nsys, n))
    smax = np.empty((nsys, n))
    if nsys * n:
        dtype = PRECISIONS[precision]
        BcT = np.zeros((d, ensemble_row(d, precision)), dtype=dtype)  # zero columns pad each row to whole vectors
        BcT[:, :d] = ((LOG2E * model.beta) * model.B).T
        VT = np.zeros((d, ensemble_row(dv, precision)), dtype=dtype)
        VT[:, :dv] = model.V[:dv].T
        items = nsys * (-(-n // ENSEMBLE_TARGETS))
        nchunks = min(items, 8 * numba.get_num_threads())
        kernel = make_ensemble_kernel(precision, d, dv)
        kernel(X, Y, weights, BcT, VT, ENSEMBLE_MODES[mode], project and mode != "sums", nchunks, out, den, smax)
    if mode == "sums":
        return out, den, smax
    if mode == "uniform" and nsys * n:
        worst = np.unravel_index(int(np.argmax(den)), den.shape)
        if den[worst] > LOG_FLOAT_MAX:
            where = f"{worst[1]}" if nsys == 1 else f"{worst[1]} of system {worst[0]}"
            raise OverflowError(
                "uniform normalization overflows float64: the field at target "
                f"{where} is about exp({den[worst]:.4g}) (beta = {model.beta:g}); "
                "use normalization = \"softmax\" or a smaller beta"
            )
    return out


@register_kernel("numba", "exact", precisions=("float64", "float32"))
class NumbaExact(Attention):
    """Every source, O(N M) time and O(N + M) memory (``exact_sums``).  Ensembles of systems
    with at most ``TILE`` sources and d < ``BLOCKED_MIN_D`` run in one parallel pass
    (``ensemble_exact``), one system (Y None or the same points as X) as the ensemble of one; larger
    systems run ``exact_sums`` one system at a time."""

    ensembles = True

    def sums(self, X, Y, weights, values=True):
        return exact_sums(self.model, X, Y, weights, self.precision, values)

    def ensemble_velocity(self, X, Y, weights):
        if not ensemble_kernel_applies(X, Y):
            return super().ensemble_velocity(X, Y, weights)
        return ensemble_exact(self.model, X, Y, weights, self.precision, project=True)

    def ensemble_average(self, X, Y, weights):
        if not ensemble_kernel_applies(X, Y):
            return super().ensemble_average(X, Y, weights)
        return ensemble_exact(self.model, X, Y, weights, self.precision, project=False)

    def ensemble_log_partition(self, X, Y, weights):
        if not ensemble_kernel_applies(X, Y):
            return super().ensemble_log_partition(X, Y, weights)
        _, den, smax = ensemble_exact(self.model, X, Y, weights, self.precision, mode="sums", values=False)
        return smax * LN2 + np.log(den)


@register_kernel("numba", "hardmax", zero_temperature=True)
class NumbaHardmax(Attention):
    """beta = inf, ``zero_temperature = "hardmax"``: attend to argmax_j <B^T x, y_j>, ties
    (within ``HARDMAX_TIE_ULPS`` ulps) sharing in proportion to their masses; the average
    is sum_ties m_j V y_j / sum_ties m_j for both normalizations.  Ensembles: one system at
    a time (``Attention.ensemble_velocity``)."""

    ensembles = True

    def average(self, X, Y, weights):
        if np.ndim(X) == 3:
            return self.ensemble_average(*self._ensemble_inputs(X, Y, weights))
        model = self.model
        q = np.ascontiguousarray(X @ model.B)  # rows (B^T x_i)^T
        yT = np.ascontiguousarray(Y.T)
        vT = np.ascontiguousarray(model.V @ Y.T)
        m = np.ascontiguousarray(weights, dtype=np.float64)
        n, d = X.shape
        num = np.empty((n, d))
        den = np.empty(n)
        ynorm = float(np.sqrt((Y * Y).sum(axis=1)).max()) if len(Y) else 0.0
        tie_tol = HARDMAX_TIE_ULPS * np.finfo(np.float64).eps * np.linalg.norm(q, axis=1) * ynorm
        hardmax_sums(q, yT, vT, m, tie_tol, num, den)
        return num / den[:, None]
