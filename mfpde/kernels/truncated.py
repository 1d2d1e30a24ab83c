"""Truncated attention kernel for large beta: each target sums only the sources that matter.

For target x_i write b_i = B^T x_i, c_i = beta |b_i|, q_i = b_i / |b_i| and, for unit
sources, s_ij + log m_j = c_i <q_i, y_j> + log m_j with <q_i, y> = 1 - |q_i - y|^2 / 2.
With tolerance tol, the sources to keep are those with

    m_j e^{s_ij} >= tol * max_k m_k e^{s_ik},   i.e.   s_ij + log m_j >= M_i + log tol.

Finding them (all in log2 units inside, as in the exact kernel):

1. A lower bound A_i <= M_i: the score of the nearest source to q_i (``cKDTree`` query on
   the sources with positive mass; O(log M) per target).
2. Any kept source has c_i <q_i, y_j> + L >= A_i + log tol, L = max_j log m_j, so it lies
   in the chordal ball |q_i - y_j|^2 <= rho_i^2 = 2 - 2 tau_i, tau_i = (A_i + log tol -
   L) / c_i (tau_i is lowered by a few ulps of its terms so that rounding never shrinks
   the ball).
3. The ball is enumerated on a uniform cell grid over [-1, 1]^3 (d = 2 is embedded with a
   zero third coordinate): the sources are sorted by cell, so for each (x, y) column of
   cells that meets the ball the cells cut by the ball's z-extent in that column are one
   contiguous range of sorted sources.  Every source of those ranges (a superset of the
   ball) is summed by the exact kernel's tile loop (scores, maxnum, online log-sum-exp,
   vectorized exp, fused weighted sums), so the kept set always contains every source
   with relative weight >= tol.  Cost O(N k) after an O(M log M) sort and tree build,
   k the number of sources scanned per target; memory O(N + M + cells).

Error bound.  Let D_i be the dropped sources of target i, W_i = sum_j m_j e^{s_ij} and
w_max = max_j m_j e^{s_ij} <= W_i.  Every dropped source has m_j e^{s_ij} < tol w_max, so
the dropped relative weight is

    delta_i = sum_{j in D_i} m_j e^{s_ij} / W_i < tol |D_i| <= tol M.

Softmax: with a = N / W and the truncated a' = N' / W' (N = N' + N_D, W = W' + W_D),
a - a' = (N_D - a' W_D) / W, so |a - a'| <= (max_j |V y_j| + |a'|) delta_i
<= 2 max_j |V y_j| delta_i; the field P_x a is off by at most as much (P_x is a
contraction).  Uniform normalization: |a - a'| = |N_D| <= max_j |V y_j| W_i delta_i, i.e.
the error relative to the attention mass W_i max_j |V y_j| is below delta_i.  The bound
counts every dropped source at the threshold; the weights decay like e^{-c_i |q - y|^2 / 2}
beyond the ball, so the actual error is usually orders of magnitude smaller.

Fallback to the exact kernel (same result bit for bit as ``kernel="exact"``):

- tol = 0, d > 3, or sources not on the unit sphere (| |y|^2 - 1 | > 1e-12): for all targets;
- per target where B^T x_i = 0 or the ball is the whole sphere (tau_i <= -1);
- for all targets when the sources to scan exceed ``FALLBACK_FRACTION`` of all pairs
  (small beta: the balls cover a large part of the sphere and truncation would not pay).
"""

import functools
import math

import numba
import numpy as np
from numba import prange
from scipy.spatial import cKDTree

from ._jit import jit_parallel
from .attention import LOG2E, TARGETS, TILE
from .fastexp import exp2_64, maxnum

__all__ = ["truncated_sums", "TruncationInfo", "FALLBACK_FRACTION"]

#: Use the exact kernel when the truncated one would scan more than this fraction of pairs.
FALLBACK_FRACTION = 0.25
#: Grid spacing as a fraction of the median ball radius.
CELL_FACTOR = 0.35
#: Upper bound on the number of grid cells (the cell-start table is 8 bytes a cell).
MAX_CELLS = 1 << 21


class TruncationInfo:
    """What the last truncated call did (for tests and benchmarks): ``mode`` is "truncated"
    or the fallback reason; ``scanned`` (N,) sources summed per target (M for exact ones)."""

    def __init__(self, mode, scanned):
        self.mode = mode
        self.scanned = scanned


def _unit_sources(Y):
    return bool(np.all(np.abs(np.einsum("ij,ij->i", Y, Y) - 1.0) <= 1e-12))


def _grid(points3, h, g):
    """Cell coordinates (M, 3) of points in [-1, 1]^3 on a grid of spacing h, g cells per axis."""
    idx = np.floor((points3 + 1.0) / h).astype(np.int64)
    np.clip(idx, 0, g - 1, out=idx)
    return idx


@functools.lru_cache(maxsize=None)
def _make_kernel(d, dv):
    """Truncated kernel specialized to d (<= 3) and dv (<= 3).

    Targets come sorted by the cell of their ball center and are processed in groups of
    ``TARGETS`` consecutive ones (register blocking, as in the exact kernel): the group
    scans, column by column, the union of its members' z-ranges, one contiguous range of
    sorted sources per column, with the exact kernel's tile loop.  Each member's sums are
    its own (a superset of its ball), so the result of a target does not depend on the
    thread count; it does depend on its group, which is fixed by the input.  Writes the
    number of sources scanned per target; ``count_only`` stops there.
    """
    D = int(d)
    DV = int(dv)

    @jit_parallel
    def kernel(q, center, rho, YsT, VsT, Ls, cell_start, h, g, gz, count_only, num, den, smax, scanned):
        n = q.shape[0]
        ngroups = (n + TARGETS - 1) // TARGETS
        for grp in prange(ngroups):
            s = np.empty((TARGETS, TILE))
            acc = np.zeros((TARGETS, 3))
            total = np.zeros(TARGETS)
            run_max = np.full(TARGETS, -np.inf)
            i0 = grp * TARGETS
            last = min(n, i0 + TARGETS) - 1
            q0 = q[i0]
            q1 = q[min(i0 + 1, last)]
            q2 = q[min(i0 + 2, last)]
            q3 = q[min(i0 + 3, last)]
            # the group's box in x and y
            ix0 = g
            ix1 = -1
            iy0 = g
            iy1 = -1
            for i in range(i0, last + 1):
                r = rho[i]
                ix0 = min(ix0, max(0, int(math.floor((center[i, 0] - r + 1.0) / h))))
                ix1 = max(ix1, min(g - 1, int(math.floor((center[i, 0] + r + 1.0) / h))))
                iy0 = min(iy0, max(0, int(math.floor((center[i, 1] - r + 1.0) / h))))
                iy1 = max(iy1, min(g - 1, int(math.floor((center[i, 1] + r + 1.0) / h))))
            nscan = 0
            for ix in range(ix0, ix1 + 1):
                xlo = ix * h - 1.0
                for iy in range(iy0, iy1 + 1):
                    ylo = iy * h - 1.0
                    iz0 = gz
                    iz1 = -1
                    for i in range(i0, last + 1):
                        cx = center[i, 0]
                        cy = center[i, 1]
                        dx = max(0.0, max(xlo - cx, cx - (xlo + h)))
                        dy = max(0.0, max(ylo - cy, cy - (ylo + h)))
                        rest = rho[i] * rho[i] - dx * dx - dy * dy
                        if rest < 0.0:
                            continue
                        if gz == 1:
                            iz0 = 0
                            iz1 = 0
                        else:
                            hz = math.sqrt(rest)
                            iz0 = min(iz0, max(0, int(math.floor((center[i, 2] - hz + 1.0) / h))))
                            iz1 = max(iz1, min(gz - 1, int(math.floor((center[i, 2] + hz + 1.0) / h))))
                    if iz1 < iz0:
                        continue
                    base = (ix * g + iy) * gz
                    a = cell_start[base + iz0]
                    b = cell_start[base + iz1 + 1]
                    nscan += b - a
                    if count_only:
                        continue
                    for j0 in range(a, b, TILE):
                        t = min(TILE, b - j0)
                        lt = Ls[j0 : j0 + t]
                        y0 = YsT[0, j0 : j0 + t]
                        y1 = YsT[1, j0 : j0 + t]
                        y2 = YsT[2 if D > 2 else 1, j0 : j0 + t]
                        for jj in range(t):
                            lj = lt[jj]
                            s0 = lj + q0[0] * y0[jj] + q0[1] * y1[jj]
                            s1 = lj + q1[0] * y0[jj] + q1[1] * y1[jj]
                            s2 = lj + q2[0] * y0[jj] + q2[1] * y1[jj]
                            s3 = lj + q3[0] * y0[jj] + q3[1] * y1[jj]
                            if D > 2:
                                s0 += q0[2] * y2[jj]
                                s1 += q1[2] * y2[jj]
                                s2 += q2[2] * y2[jj]
                                s3 += q3[2] * y2[jj]
                            s[0, jj] = s0
                            s[1, jj] = s1
                            s[2, jj] = s2
                            s[3, jj] = s3
                        m0 = -np.inf
                        m1 = -np.inf
                        m2 = -np.inf
                        m3 = -np.inf
                        for jj in range(t):
                            m0 = maxnum(m0, s[0, jj])
                            m1 = maxnum(m1, s[1, jj])
                            m2 = maxnum(m2, s[2, jj])
                            m3 = maxnum(m3, s[3, jj])
                        v0 = VsT[0, j0 : j0 + t]
                        v1 = VsT[1 if DV > 1 else 0, j0 : j0 + t]
                        v2 = VsT[2 if DV > 2 else 0, j0 : j0 + t]
                        for r in range(TARGETS):
                            tile_max = m0 if r == 0 else (m1 if r == 1 else (m2 if r == 2 else m3))
                            if tile_max > run_max[r]:
                                scale = np.exp2(run_max[r] - tile_max)
                                total[r] *= scale
                                for k in range(3):
                                    acc[r, k] *= scale
                                run_max[r] = tile_max
                            if run_max[r] == -np.inf:
                                continue
                            mr = run_max[r]
                            t_sum = 0.0
                            a0 = 0.0
                            a1 = 0.0
                            a2 = 0.0
                            for jj in range(t):
                                e = exp2_64(s[r, jj] - mr)
                                t_sum += e
                                a0 += e * v0[jj]
                                if DV > 1:
                                    a1 += e * v1[jj]
                                if DV > 2:
                                    a2 += e * v2[jj]
                            total[r] += t_sum
                            acc[r, 0] += a0
                            acc[r, 1] += a1
                            acc[r, 2] += a2
            for r in range(last + 1 - i0):
                scanned[i0 + r] = nscan
                if not count_only:
                    for k in range(DV):
                        num[i0 + r, k] = acc[r, k]
                    den[i0 + r] = total[r]
                    smax[i0 + r] = run_max[r]

    return kernel


def truncated_sums(model, X, Y, weights, tolerance, return_info=False):
    """(N_i, S_i, M_i) (M_i in log2 units) of the truncated kernel; see the module docstring.

    ``return_info=True`` also returns a :class:`TruncationInfo`.
    """
    from . import exact_sums

    n, d = X.shape
    m_all = len(Y)

    def exact(reason):
        out = exact_sums(model, X, Y, weights)
        return (*out, TruncationInfo(reason, np.full(n, m_all))) if return_info else out

    if tolerance <= 0.0:
        return exact("tolerance = 0")
    if d > 3:
        return exact("d > 3")
    pos = np.flatnonzero(weights > 0)
    Ym = np.ascontiguousarray(Y[pos])
    if not _unit_sources(Ym):
        return exact("sources off the unit sphere")
    beta = model.beta
    b = X @ model.B
    norm_b = np.sqrt(np.einsum("ij,ij->i", b, b))
    c2 = (LOG2E * beta) * norm_b  # log2 units
    with np.errstate(divide="ignore"):
        l2 = np.log2(weights[pos])
    lmax = float(l2.max())
    log2tol = math.log2(tolerance)
    sparse = c2 > 0
    qhat = np.zeros_like(b)
    qhat[sparse] = b[sparse] / norm_b[sparse, None]

    tree = cKDTree(Ym)
    _, jnn = tree.query(qhat[sparse], k=1, workers=numba.get_num_threads())
    s_nn = c2[sparse] * np.einsum("ij,ij->i", qhat[sparse], Ym[jnn]) + l2[jnn]
    num_tau = s_nn + log2tol - lmax
    slack = 8 * np.finfo(np.float64).eps * (np.abs(s_nn) + abs(log2tol) + abs(lmax) + c2[sparse])
    tau = np.full(n, -np.inf)
    tau[sparse] = (num_tau - slack) / c2[sparse] - 1e-15
    sparse &= tau > -1.0
    rho = np.sqrt(np.clip(2.0 - 2.0 * tau, 0.0, 4.0))
    rho[~sparse] = 0.0
    if not sparse.any():
        return exact("no target has a ball smaller than the sphere")

    # the grid: spacing about half the median radius, at most MAX_CELLS cells
    gz_dims = 3 if d == 3 else 2
    h = max(CELL_FACTOR * float(np.median(rho[sparse])), 2.0 / MAX_CELLS ** (1.0 / gz_dims), 1e-6)
    g = int(math.ceil(2.0 / h))
    h = 2.0 / g
    gz = g if d == 3 else 1
    P3 = np.zeros((len(Ym), 3))
    P3[:, :d] = Ym
    C3 = np.zeros((n, 3))
    C3[:, :d] = qhat
    cells = _grid(P3, h, g)
    if d == 2:
        cells[:, 2] = 0
    cell_id = (cells[:, 0] * g + cells[:, 1]) * gz + cells[:, 2]
    order = np.argsort(cell_id, kind="stable")
    cell_start = np.searchsorted(cell_id[order], np.arange(g * g * gz + 1)).astype(np.int64)
    Ys = Ym[order]
    YsT = np.ascontiguousarray(Ys.T)
    VsT = np.ascontiguousarray(model.V @ Ys.T)
    Ls = np.ascontiguousarray(l2[order])
    q2 = np.ascontiguousarray((LOG2E * beta) * b)

    kernel = _make_kernel(d, d)
    idx = np.flatnonzero(sparse)
    tcells = _grid(C3[idx], h, g)
    if d == 2:
        tcells[:, 2] = 0
    idx = idx[np.argsort((tcells[:, 0] * g + tcells[:, 1]) * gz + tcells[:, 2], kind="stable")]
    q_s, c_s, r_s = q2[idx], np.ascontiguousarray(C3[idx]), np.ascontiguousarray(rho[idx])
    ns = len(idx)
    num_s = np.empty((ns, d))
    den_s = np.empty(ns)
    smax_s = np.empty(ns)
    scanned_s = np.empty(ns, dtype=np.int64)
    kernel(q_s, c_s, r_s, YsT, VsT, Ls, cell_start, h, g, gz, True, num_s, den_s, smax_s, scanned_s)
    dense = np.flatnonzero(~sparse)
    if scanned_s.sum() + len(dense) * len(Ym) > FALLBACK_FRACTION * n * len(Ym):
        return exact("truncation would not pay")
    kernel(q_s, c_s, r_s, YsT, VsT, Ls, cell_start, h, g, gz, False, num_s, den_s, smax_s, scanned_s)

    num = np.empty((n, d))
    den = np.empty(n)
    smax = np.empty(n)
    num[idx], den[idx], smax[idx] = num_s, den_s, smax_s
    scanned = np.full(n, m_all, dtype=np.int64)
    scanned[idx] = scanned_s
    if len(dense):
        num[dense], den[dense], smax[dense] = exact_sums(model, X[dense], Y, weights)
    if return_info:
        return num, den, smax, TruncationInfo("truncated", scanned)
    return num, den, smax
