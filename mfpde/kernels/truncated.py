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
3. The ball is enumerated on spherical bands: the sources are sorted by (polar band,
   azimuth) (d = 3: bands of polar angle theta of height about half the median angular
   ball radius; d = 2: one band, sorted by angle).  The cap meets a few bands; in each,
   its azimuth half-width is computed exactly for that band (``_band_half_width``), and
   the sources in that azimuth interval are one or two contiguous ranges (binary search).
   Targets are sorted the same way and taken in groups of four whose intervals are
   merged, so each source tile loaded serves four targets (register blocking, as in the
   exact kernel).  Every source of those ranges (a superset of each member's ball) is
   summed by the exact kernel's tile loop (scores, maxnum, online log-sum-exp, vectorized
   exp, fused weighted sums), so the kept set always contains every source with relative
   weight >= tol.  Cost O(N k) after an O(M log M) sort and tree build, k the number of
   sources scanned per target (about 1.5 times the ball's at beta = 1000 on S^2); memory
   O(N + M).

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

- tol = 0, N M < ``MIN_PAIRS`` = 2e7 (the tree, sort and counting pass would cost more
  than the exact sum), d > 3 (no band structure), or sources not on the unit sphere
  (| |y|^2 - 1 | > 1e-12): for all targets;
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

from ._jit import jit, jit_parallel
from .attention import LOG2E, TARGETS, TILE
from .fastexp import exp2_64, maxnum

__all__ = ["truncated_sums", "TruncationInfo", "FALLBACK_FRACTION"]

#: Use the exact kernel when the truncated one would scan more than this fraction of pairs.
FALLBACK_FRACTION = 0.25
#: Below this many pairs the tree, sort and counting pass cost more than the exact sum.
MIN_PAIRS = 2e7
#: Polar band height as a fraction of the median angular ball radius.
CELL_FACTOR = 0.5
#: Upper bound on the number of polar bands.
MAX_BANDS = 1 << 16


class TruncationInfo:
    """What the last truncated call did (for tests and benchmarks): ``mode`` is "truncated"
    or the fallback reason; ``scanned`` (N,) sources summed per target (M for exact ones)."""

    def __init__(self, mode, scanned):
        self.mode = mode
        self.scanned = scanned


def _unit_sources(Y):
    return bool(np.all(np.abs(np.einsum("ij,ij->i", Y, Y) - 1.0) <= 1e-12))


@jit
def _band_ranges(lo, hi, a, b, phi, out):
    """Ranges of sorted sources [a, b) (sorted by azimuth phi) with phi in [lo, hi]
    (lo < hi, hi - lo < 2 pi, both within [-3 pi, 3 pi]); wrap-around splits it in two.
    Writes up to two (start, stop) pairs into out; returns their number."""
    two_pi = 2.0 * math.pi
    if lo < -math.pi:
        out[0, 0] = a + np.searchsorted(phi[a:b], lo + two_pi)
        out[0, 1] = b
        out[1, 0] = a
        out[1, 1] = a + np.searchsorted(phi[a:b], hi, side="right")
        return 2
    if hi > math.pi:
        out[0, 0] = a + np.searchsorted(phi[a:b], lo)
        out[0, 1] = b
        out[1, 0] = a
        out[1, 1] = a + np.searchsorted(phi[a:b], hi - two_pi, side="right")
        return 2
    out[0, 0] = a + np.searchsorted(phi[a:b], lo)
    out[0, 1] = a + np.searchsorted(phi[a:b], hi, side="right")
    return 1


@jit
def _band_half_width(theta0, alpha, dphi_cap, ta, tb):
    """Azimuth half-width of the cap (center polar angle theta0, angular radius alpha) over
    the polar band [ta, tb]: -1 if the cap misses the band, pi if the cap holds a pole.

    At polar angle t the cap spans |dphi| <= acos((cos alpha - cos t cos theta0) /
    (sin t sin theta0)); over t this is largest at cos t = cos theta0 / cos alpha
    (where it equals ``dphi_cap`` = asin(sin alpha / sin theta0)) and decreases away from
    it, so over the band it is the value at that t if the band holds it, else at the band
    edge nearest to it.  A few ulps are added so that rounding never narrows it.
    """
    lo = max(ta, theta0 - alpha)
    hi = min(tb, theta0 + alpha)
    if hi < lo:
        return -1.0
    if dphi_cap >= math.pi:
        return math.pi
    t_star = math.acos(min(1.0, math.cos(theta0) / math.cos(alpha)))
    t = min(max(t_star, lo), hi)
    st = math.sin(t) * math.sin(theta0)
    if st <= 0.0:
        return math.pi
    c = (math.cos(alpha) - math.cos(t) * math.cos(theta0)) / st
    if c <= -1.0:
        return math.pi
    return min(dphi_cap, math.acos(min(1.0, c)) * (1 + 1e-12) + 1e-12)


@functools.lru_cache(maxsize=None)
def _make_kernel(d, dv):
    """Truncated kernel specialized to d (2 or 3) and dv (<= 3).

    Targets come sorted by (band, azimuth) of their ball center and are processed in groups
    of ``TARGETS`` consecutive ones (register blocking, as in the exact kernel): per polar
    band the group scans one azimuth interval, the union of its members' intervals, which
    is one or two contiguous ranges of the sorted sources, with the exact kernel's tile
    loop.  Each member's sums are its own (over a superset of its ball).  Writes the number
    of sources scanned per target; ``count_only`` stops there.
    """
    D = int(d)
    DV = int(dv)

    @jit_parallel
    def kernel(q, theta, phi0, alpha, dphi, YsT, VsT, Ls, phi, band_start, hb, count_only, num, den, smax, scanned):
        n = q.shape[0]
        nbands = band_start.size - 1
        ngroups = (n + TARGETS - 1) // TARGETS
        for grp in prange(ngroups):
            s = np.empty((TARGETS, TILE))
            acc = np.zeros((TARGETS, 3))
            total = np.zeros(TARGETS)
            run_max = np.full(TARGETS, -np.inf)
            ranges = np.empty((2, 2), dtype=np.int64)
            i0 = grp * TARGETS
            last = min(n, i0 + TARGETS) - 1
            q0 = q[i0]
            q1 = q[min(i0 + 1, last)]
            q2 = q[min(i0 + 2, last)]
            q3 = q[min(i0 + 3, last)]
            # bands met by the group's caps
            th0 = math.pi
            th1 = 0.0
            ref = phi0[i0]
            for i in range(i0, last + 1):
                th0 = min(th0, theta[i] - alpha[i])
                th1 = max(th1, theta[i] + alpha[i])
            b0 = 0
            b1 = nbands - 1
            if D == 3:
                b0 = max(0, int(math.floor(th0 / hb)))
                b1 = min(nbands - 1, int(math.floor(th1 / hb)))
            nscan = 0
            for band in range(b0, b1 + 1):
                a_band = band_start[band]
                b_band = band_start[band + 1]
                # the union of the members' azimuth intervals within this band
                lo = np.inf
                hi = -np.inf
                full = False
                for i in range(i0, last + 1):
                    w = _band_half_width(theta[i], alpha[i], dphi[i], band * hb, (band + 1) * hb) if D == 3 else dphi[i]
                    if w < 0.0:
                        continue  # this member's cap misses the band
                    if w >= math.pi:
                        full = True
                    c = ref + (phi0[i] - ref + math.pi) % (2.0 * math.pi) - math.pi  # unwrapped near ref
                    lo = min(lo, c - w)
                    hi = max(hi, c + w)
                if hi < lo:
                    continue
                if hi - lo >= 2.0 * math.pi:
                    full = True
                if full:
                    ranges[0, 0] = a_band
                    ranges[0, 1] = b_band
                    nr = 1
                else:
                    nr = _band_ranges(lo, hi, a_band, b_band, phi, ranges)
                for ri in range(nr):
                    a = ranges[ri, 0]
                    b = ranges[ri, 1]
                    if b <= a:
                        continue
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
    if float(n) * m_all < MIN_PAIRS:
        return exact("problem too small")
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

    tree = cKDTree(Ym, balanced_tree=False, compact_nodes=False)
    q_sparse = qhat[sparse]
    _, jnn = tree.query(q_sparse, k=1, workers=numba.get_num_threads())
    del tree  # O(M) memory, not needed past this point
    s_nn = c2[sparse] * np.einsum("ij,ij->i", q_sparse, Ym[jnn]) + l2[jnn]
    del q_sparse, jnn
    num_tau = s_nn + log2tol - lmax
    slack = 8 * np.finfo(np.float64).eps * (np.abs(s_nn) + abs(log2tol) + abs(lmax) + c2[sparse])
    tau = np.full(n, -np.inf)
    tau[sparse] = (num_tau - slack) / c2[sparse] - 1e-15
    sparse &= tau > -1.0
    rho = np.sqrt(np.clip(2.0 - 2.0 * tau, 0.0, 4.0))
    rho[~sparse] = 0.0
    if not sparse.any():
        return exact("no target has a ball smaller than the sphere")

    # spherical bands: polar angle theta (d = 3; one band for d = 2), azimuth phi
    alpha = np.zeros(n)
    alpha[sparse] = 2.0 * np.arcsin(np.minimum(1.0, rho[sparse] / 2.0)) * (1 + 1e-12) + 1e-12
    theta_t = np.arccos(np.clip(qhat[:, 2], -1.0, 1.0)) if d == 3 else np.full(n, 0.5 * math.pi)
    phi_t = np.arctan2(qhat[:, 1], qhat[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        dphi = np.where(
            (theta_t - alpha > 0) & (theta_t + alpha < math.pi),
            np.arcsin(np.minimum(1.0, np.sin(alpha) / np.sin(theta_t))) * (1 + 1e-12) + 1e-12,
            math.pi,
        )
    if d == 2:
        dphi = alpha.copy()
    theta_s = np.arccos(np.clip(Ym[:, 2], -1.0, 1.0)) if d == 3 else np.full(len(Ym), 0.5 * math.pi)
    phi_s = np.arctan2(Ym[:, 1], Ym[:, 0])
    nbands = 1
    if d == 3:
        nbands = int(min(MAX_BANDS, max(1, math.ceil(math.pi / (CELL_FACTOR * float(np.median(alpha[sparse])))))))
    hb = math.pi / nbands
    band_s = np.minimum((theta_s / hb).astype(np.int64), nbands - 1)
    order = np.lexsort((phi_s, band_s))
    band_start = np.searchsorted(band_s[order], np.arange(nbands + 1)).astype(np.int64)
    Ys = Ym[order]
    YsT = np.ascontiguousarray(Ys.T)
    VsT = np.ascontiguousarray(model.V @ Ys.T)
    Ls = np.ascontiguousarray(l2[order])
    phis = np.ascontiguousarray(phi_s[order])
    m_pos = len(Ym)
    del Ys, Ym, theta_s, phi_s, band_s, order, qhat  # keep the peak memory O(N + M) small
    q2 = np.ascontiguousarray((LOG2E * beta) * b)
    del b

    kernel = _make_kernel(d, d)
    idx = np.flatnonzero(sparse)
    band_t = np.minimum((theta_t[idx] / (hb / 8)).astype(np.int64), 8 * nbands - 1)  # finer: tight groups
    idx = idx[np.lexsort((phi_t[idx], band_t))]
    args = (q2[idx], theta_t[idx], phi_t[idx], alpha[idx], dphi[idx], YsT, VsT, Ls, phis, band_start, hb)
    del q2, band_t, theta_t, phi_t, dphi
    ns = len(idx)
    num_s = np.empty((ns, d))
    den_s = np.empty(ns)
    smax_s = np.empty(ns)
    scanned_s = np.empty(ns, dtype=np.int64)
    kernel(*args, True, num_s, den_s, smax_s, scanned_s)
    dense = np.flatnonzero(~sparse)
    if scanned_s.sum() + len(dense) * m_pos > FALLBACK_FRACTION * n * m_pos:
        return exact("truncation would not pay")
    kernel(*args, False, num_s, den_s, smax_s, scanned_s)

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
