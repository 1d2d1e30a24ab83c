"""Truncated attention kernel for large beta: each target sums only the sources that matter.

For target x_i (any point, on the sphere or not) write b_i = B^T x_i, c_i = beta |b_i|,
q_i = b_i / |b_i|, and for source y_j = r_j u_j (r_j = |y_j|, u_j on the unit sphere)
s_ij + log m_j = c_i r_j <q_i, u_j> + log m_j with <q_i, u> = 1 - |q_i - u|^2 / 2.  The
sources with mass have radii in [r_lo, r_hi] (1 for points on the sphere; 1 + O(h^2) at
the stage points x + h k of a Runge-Kutta step).  With tolerance tol, the sources to keep
are those with

    m_j e^{s_ij} >= tol * max_k m_k e^{s_ik},   i.e.   s_ij + log m_j >= M_i + log tol.

Finding them (all in log2 units inside, as in the exact kernel):

1. The sources with positive mass are sorted by (polar band, azimuth) of their directions
   u_j (d = 3: bands of polar angle theta = atan2(|(y_1, y_2)|, y_3) of height
   ``CELL_FACTOR`` times the median angular radius of the smallest possible balls, at
   least ``MIN_BAND_SOURCES`` sources per band on average; d = 2: one band, sorted by
   angle; the angles do not depend on r_j): one quicksort of a combined key,
   each band then checked and, where near-ties broke its order, sorted exactly.  Each
   band's azimuths get a sector index (``PER_SECTOR`` sources per sector), so a search is a
   table look-up and a bisection of a few entries.
2. A lower bound A_i <= M_i: the best score among the ``NEIGHBOURS`` sources on either side
   of q_i's azimuth in q_i's own band (the nearest non-empty bands if it is empty): their
   actual scores s_ij + log m_j (at the actual points y_j); any source's score is a lower
   bound, a near one a tight one.
3. Any kept source has c_i r_j <q_i, u_j> + L >= A_i + log tol, L = max_j log m_j, i.e.
   r_j <q_i, u_j> >= t_i = (A_i + log tol - L) / c_i, which implies <q_i, u_j> >= tau_i =
   t_i / r_hi if t_i >= 0 and t_i / r_lo if t_i < 0 (the weakest threshold over [r_lo,
   r_hi]).  So u_j lies in the chordal ball |q_i - u_j|^2 <= rho_i^2 = 2 - 2 tau_i, the cap
   of angular radius alpha_i = 2 asin(rho_i / 2) (t_i is lowered by a few ulps of its
   terms, tau_i by 1e-12 and alpha_i widened by a few ulps, so that rounding never
   shrinks the ball).
4. Targets are sorted by (fine polar band, azimuth) of q_i (fine bands ``GROUP_SHAPE``
   mean target spacings high, so that four consecutive targets form a compact group) and
   taken in groups of four.  Per band met by a member's cap, each member's azimuth
   half-width over that band is computed exactly (``_band_half_width``) and the group scans
   the union of the members' intervals: one or two contiguous ranges of the sorted sources.
   Each source loaded serves four targets (register blocking, as in the exact kernel).
5. Every source of those ranges (a superset of each member's ball) is summed, with its
   actual score at the actual point y_j, by the exact kernel's fused shifted pass with the
   shift U_i = A_i: scores, vectorized exp and weighted sums of four targets in one loop,
   no running maximum.  Every kept term is then >= tol (no underflow) and every term <=
   2^(c_i r_hi + L - A_i); targets where c_i r_hi + L - A_i > ``SHIFT_SAFE`` = 900 (a
   very large beta with far-apart sources) use the exact kernel's tile loop with a running
   maximum instead.  So the kept set always contains every source with relative weight
   >= tol.

Cost O(N k) after O(N log N + M log M) sorts, k the number of sources scanned per target
(about 1.35 times the ball's at beta = 1000, N = 1e5 on S^2, where the summation is about
3/4 of the time and runs at the exact kernel's pairs/s); memory O(N + M).

Error bound.  Let D_i be the dropped sources of target i, W_i = sum_j m_j e^{s_ij} and
w_max = max_j m_j e^{s_ij} <= W_i.  Every dropped source has m_j e^{s_ij} < tol w_max, so
the dropped relative weight is

    delta_i = sum_{j in D_i} m_j e^{s_ij} / W_i < tol |D_i| <= tol M.

Softmax: with a = N / W and the truncated a' = N' / W' (N = N' + N_D, W = W' + W_D),
a - a' = (N_D - a' W_D) / W, so |a - a'| <= (max_j |V y_j| + |a'|) delta_i
<= 2 max_j |V y_j| delta_i; the field P_x a is off by at most as much (P_x = I - x x^T
is a contraction for |x| <= sqrt 2, so for targets off the sphere too).  Uniform
normalization: |a - a'| = |N_D| <= max_j |V y_j| W_i delta_i, i.e. the error relative
to the attention mass W_i max_j |V y_j| is below delta_i.  The bound counts every dropped
source at the threshold; the weights decay like e^{-c_i |q - y|^2 / 2} beyond the ball,
so the actual error is usually orders of magnitude smaller.

Fallback to the exact kernel (same result bit for bit as ``kernel="exact"``):

- tol = 0, N M < ``MIN_PAIRS`` = 2e7 (the sorts, bounds and range searches would cost
  more than the exact sum), d > 3 (no band structure), or source radii too spread (a
  source with mass at the origin, or r_hi > ``MAX_RADIUS_RATIO`` r_lo = 1.5 r_lo: the caps,
  built for the extreme radii, would be far wider than most sources' balls): for all
  targets;
- per target where B^T x_i = 0 or the ball is the whole sphere (tau_i <= -1);
- for all targets when the sources to scan exceed ``FALLBACK_FRACTION`` of all pairs
  (small beta: the balls cover a large part of the sphere and truncation would not pay),
  estimated from the ranges of ``COUNT_GROUPS`` evenly spaced groups.
"""

import collections
import functools
import math

import numpy as np
from numba import prange

from ._base import LOG2E
from ._jit import jit, jit_parallel
from .attention import TARGETS, TILE, exact_sums
from ._tile import fused_shifted_pass, online_tile_pass
from .registry import Attention, register_kernel

__all__ = ["truncated_sums", "TruncationInfo", "NumbaTruncated", "FALLBACK_FRACTION", "OUTCOMES"]

#: Use the exact kernel when the truncated one would scan more than this fraction of pairs.
FALLBACK_FRACTION = 0.25
#: Below this many pairs the sorts, bounds and range searches cost more than the exact sum.
MIN_PAIRS = 2e7
#: Polar band height as a fraction of the median angular radius of the smallest balls.
CELL_FACTOR = 0.35
#: Upper bound on the number of polar bands.
MAX_BANDS = 1 << 16
#: At least this many sources per polar band on average: a band costs each group two
#: searches and four half-widths, about as much as scanning this many sources.
MIN_BAND_SOURCES = 64
#: Targets are grouped within fine polar bands this many mean target spacings high.
GROUP_SHAPE = 2.0
#: Lower bound A_i: sources examined on each side of the target's azimuth, per band.
NEIGHBOURS = 4
#: Azimuth index: about this many sources per sector of a band (``_sector_index``).
PER_SECTOR = 8
#: The fused pass shifts by A_i when the Cauchy-Schwarz bound exceeds A_i by at most this
#: (log2 units): every term is then < 2^SHIFT_SAFE.  Other targets use the online maximum.
SHIFT_SAFE = 900.0
#: The fallback decision counts the scanned sources of about this many groups of targets.
COUNT_GROUPS = 1024
#: Use the exact kernel when the largest source radius |y_j| exceeds the smallest by more
#: than this factor (or a source with mass is at the origin): the caps, built for the
#: extreme radii, would be much wider than the balls of most sources.
MAX_RADIUS_RATIO = 1.5

_EPS = np.finfo(np.float64).eps
#: Columns of the per-target cap geometry (``_bounds_and_caps``).
_THETA, _PHI, _ALPHA, _DPHI, _COS_T, _SIN_T, _COS_A, _T_STAR = range(8)


class TruncationInfo:
    """What a truncated call did (for tests and benchmarks).

    ``mode``: "truncated" or the reason for the exact fallback; ``scanned`` (N,): sources
    summed per target (M for the targets summed exactly); ``lower_bound`` (N,): the bound
    A_i <= M_i of each truncated target's ball, log2 units (NaN for the exact ones);
    ``sources_of(i)``: the indices into Y of the sources summed for target i.
    """

    def __init__(self, mode, scanned, lower_bound, m, groups=None):
        self.mode = mode
        self.scanned = scanned
        self.lower_bound = lower_bound
        self._m = m
        self._groups = groups  # (group of each target or -1, range offsets, ranges, source index)

    def sources_of(self, i):
        if self._groups is None or self._groups[0][i] < 0:
            return np.arange(self._m)
        group, offsets, ranges, source = self._groups
        g = group[i]
        return np.concatenate([source[a:b] for a, b in ranges[offsets[g] : offsets[g + 1]]] + [np.empty(0, int)])


def _radius_range(Y):
    """(r_lo, r_hi): the smallest and largest |y_j| over the rows of Y, widened by a few
    ulps so that rounding never narrows the range."""
    r = np.sqrt(np.einsum("ij,ij->i", Y, Y))
    return float(r.min()) * (1 - 4 * _EPS), float(r.max()) * (1 + 4 * _EPS)


@jit_parallel
def _angles(P, theta, phi):
    """Polar angle theta (pi / 2 for d = 2) and azimuth phi in [-pi, pi] of the rows of P
    (their directions).  theta = atan2(|(x, y)|, z) is accurate near the poles too (acos(z)
    is not)."""
    n, d = P.shape
    for i in prange(n):
        x = P[i, 0]
        y = P[i, 1]
        theta[i] = math.atan2(math.sqrt(x * x + y * y), P[i, 2]) if d > 2 else 0.5 * math.pi
        phi[i] = math.atan2(y, x)


def _band_order(band, phi, nbands):
    """Indices sorted by (band, phi), as ``np.lexsort((phi, band))`` up to the order of
    equal keys, and the band offsets (nbands + 1): one (SIMD) quicksort of phi + 8 band
    (bands are 8 > 2 pi apart and rounding is monotone, so it can tie distinct phi closer
    than ~1e-10 but never invert two bands), then ``_fix_bands`` sorts exactly any band
    that such a tie left unsorted."""
    order = np.argsort(phi + 8.0 * band)
    start = np.searchsorted(band[order], np.arange(nbands + 1)).astype(np.int64)
    _fix_bands(order, start, phi)
    return order, start


@jit_parallel
def _fix_bands(order, start, phi):
    """Within each band [start[b], start[b + 1]) of ``order``, sort by phi if it is not."""
    for b in prange(start.size - 1):
        a = start[b]
        e = start[b + 1]
        ok = True
        for k in range(a + 1, e):
            if phi[order[k]] < phi[order[k - 1]]:
                ok = False
                break
        if not ok:
            seg = order[a:e].copy()
            keys = np.empty(e - a)
            for k in range(e - a):
                keys[k] = phi[seg[k]]
            perm = np.argsort(keys, kind="mergesort")
            for k in range(e - a):
                order[a + k] = seg[perm[k]]


@jit
def _sector(x, scale, nsec):
    """Azimuth sector of x among nsec sectors of a band (scale = nsec / 2 pi): monotone
    non-decreasing in x, clamped to [0, nsec - 1]."""
    return min(nsec - 1, max(0, int((x + math.pi) * scale)))


@jit_parallel
def _sector_index(phis, band_start, per_sector, sec_start, sec):
    """Azimuth index of the sorted sources: band b is cut into nsec_b = max(1, size //
    per_sector) sectors of equal azimuth (``_sector``); sec[sec_start[b] + k] is the first
    source of band b in a sector >= k (k = 0..nsec_b, the last one the band's end).  The
    sector function is monotone, so a search only bisects within one sector."""
    nbands = band_start.size - 1
    sec_start[0] = 0
    for b in range(nbands):
        sec_start[b + 1] = sec_start[b] + max(1, (band_start[b + 1] - band_start[b]) // per_sector) + 1
    for b in prange(nbands):
        a = band_start[b]
        e = band_start[b + 1]
        off = sec_start[b]
        nsec = sec_start[b + 1] - off - 1
        scale = nsec / (2.0 * math.pi)
        j = a
        for k in range(nsec):
            while j < e and _sector(phis[j], scale, nsec) < k:
                j += 1
            sec[off + k] = j
        sec[off + nsec] = e


@jit
def _search(phis, sec, off, nsec, x, right):
    """Where x would be inserted into a band's sorted azimuths (``np.searchsorted`` with
    side "left", or "right" if ``right``): the sector of x, then a branch-free bisection
    within it."""
    k = _sector(x, nsec / (2.0 * math.pi), nsec)
    base = sec[off + k]
    size = sec[off + k + 1] - base
    while size > 1:
        half = size >> 1
        p = phis[base + half]
        base = base + half if (p <= x if right else p < x) else base
        size -= half
    if size == 1:
        p = phis[base]
        if p <= x if right else p < x:
            base += 1
    return base


@jit_parallel
def _bounds_and_caps(
    q, c2, theta, phi, perm, YsT, Ls, phis, band_start, sec_start, sec, hb, log2tol, lmax, r_lo, r_hi, low, geo
):
    """For the targets i = perm[k]: a lower bound A_i <= M_i and the cap of the ball.

    A_i is the best score among the ``NEIGHBOURS`` sources on each side of the target's
    azimuth in its own polar band (the nearest non-empty bands when it is empty): a
    source's score never exceeds the maximum, so any source gives a lower bound, and a
    near one a tight bound.  From it and the source radii [r_lo, r_hi], tau_i and the
    angular radius alpha_i = 2 asin(rho_i / 2) of the cap of directions (module docstring,
    step 3), widened by a few ulps.  Row i of ``geo`` gets
    theta_i, phi_i, alpha_i, the largest azimuth half-width dphi_i = asin(sin alpha_i /
    sin theta_i) (pi if the cap holds a pole; alpha_i for d = 2), cos theta_i,
    sin theta_i, cos alpha_i and the polar angle t*_i where the cap is widest (see
    ``_band_half_width``); alpha_i = -1 marks a target whose ball is the whole sphere.
    """
    d = q.shape[1]
    nbands = band_start.size - 1
    for k in prange(perm.size):
        i = perm[k]
        c = c2[i]
        bt = min(int(theta[i] / hb), nbands - 1)
        best = -np.inf
        lo_band = bt
        hi_band = bt
        while True:
            for band in range(lo_band, hi_band + 1):
                if lo_band < band < hi_band:
                    continue  # searched in an earlier round
                a = band_start[band]
                b = band_start[band + 1]
                size = b - a
                if size == 0:
                    continue
                if size <= 2 * NEIGHBOURS:
                    j0 = a
                    count = size
                else:
                    off = sec_start[band]
                    j0 = _search(phis, sec, off, sec_start[band + 1] - off - 1, phi[i], False) - NEIGHBOURS
                    count = 2 * NEIGHBOURS
                for m in range(count):
                    j = j0 + m
                    if j < a:
                        j += size
                    elif j >= b:
                        j -= size
                    s = Ls[j] + q[i, 0] * YsT[0, j] + q[i, 1] * YsT[1, j]
                    if d > 2:
                        s += q[i, 2] * YsT[2, j]
                    best = max(best, s)
            if best > -np.inf or (lo_band == 0 and hi_band == nbands - 1):
                break
            lo_band = max(0, lo_band - 1)
            hi_band = min(nbands - 1, hi_band + 1)
        low[i] = best
        # kept sources: c r_j <q_hat, u_j> + lmax >= A + log2tol (y_j = r_j u_j), the
        # threshold lowered by the rounding of the terms (slack), i.e. r_j <q_hat, u_j> >= t;
        # with r_j in [r_lo, r_hi] that implies <q_hat, u_j> >= t / r_hi (t >= 0) or
        # t / r_lo (t < 0), lowered by 1e-12 more
        slack = 8 * _EPS * (abs(best) + abs(log2tol) + abs(lmax) + c * r_hi)
        t = (best + log2tol - lmax - slack) / c
        tau = (t / r_hi if t >= 0.0 else t / r_lo) - 1e-12
        th = theta[i]
        geo[i, _THETA] = th
        geo[i, _PHI] = phi[i]
        if tau <= -1.0:
            geo[i, _ALPHA] = -1.0
            continue
        rho = math.sqrt(min(4.0, 2.0 - 2.0 * tau))
        alpha = 2.0 * math.asin(min(1.0, 0.5 * rho)) * (1 + 1e-12) + 1e-12
        geo[i, _ALPHA] = alpha
        st = math.sin(th)
        ct = math.cos(th)
        ca = math.cos(alpha)
        geo[i, _COS_T] = ct
        geo[i, _SIN_T] = st
        geo[i, _COS_A] = ca
        geo[i, _T_STAR] = th
        if d == 2:
            geo[i, _DPHI] = min(math.pi, alpha)
        elif th - alpha > 0.0 and th + alpha < math.pi:
            dphi = math.asin(min(1.0, math.sin(alpha) / st * (1 + 8 * _EPS))) * (1 + 1e-12) + 1e-12
            geo[i, _DPHI] = min(math.pi, dphi)
            geo[i, _T_STAR] = math.acos(min(1.0, ct / ca))
        else:
            geo[i, _DPHI] = math.pi  # the cap holds a pole


@jit
def _band_half_width(theta0, alpha, dphi_cap, ct0, st0, ca, t_star, ta, tb, cos_a, sin_a, cos_b, sin_b):
    """Azimuth half-width over the polar band [ta, tb] (with the cosines and sines of ta,
    tb) of the cap with centre polar angle theta0 and angular radius alpha (largest
    half-width dphi_cap, cos theta0, sin theta0, cos alpha, and t*, the polar angle where
    the cap is widest): -1 if the cap misses the band, pi if it holds a pole.

    At polar angle t the cap spans |dphi| <= acos((cos alpha - cos t cos theta0) /
    (sin t sin theta0)); over t this is largest at t* (cos t* = cos theta0 / cos alpha,
    where it equals dphi_cap = asin(sin alpha / sin theta0)) and decreases away from it, so
    over the band it is dphi_cap if the band holds t*, else the value at the band edge
    nearest to t*.  The argument of acos is lowered by a bound on its rounding error and
    the result widened by a few ulps, so that rounding never narrows it.
    """
    lo = max(ta, theta0 - alpha)
    hi = min(tb, theta0 + alpha)
    if hi < lo:
        return -1.0
    if dphi_cap >= math.pi:
        return math.pi
    if ta <= t_star <= tb:
        return dphi_cap
    if t_star < ta:
        ct = cos_a
        st = sin_a
    else:
        ct = cos_b
        st = sin_b
    den = st * st0
    if den <= 0.0:
        return math.pi
    cc = ct * ct0
    c = (ca - cc) / den
    c -= 16 * _EPS * ((abs(ca) + abs(cc)) / den + abs(c) + 1.0)
    if c <= -1.0:
        return math.pi
    return min(dphi_cap, math.acos(min(1.0, c)) * (1 + 1e-12) + 1e-12)


@jit
def _band_ranges(lo, hi, a, b, phis, sec, off, nsec, out, k):
    """Ranges of the band's sorted sources [a, b) with azimuth in [lo, hi] (lo < hi,
    hi - lo < 2 pi, both within [-3 pi, 3 pi]); wrap-around splits it in two.  Writes up to
    two (start, stop) pairs into out[k], out[k + 1]; returns their number."""
    two_pi = 2.0 * math.pi
    if hi < -math.pi:
        lo += two_pi
        hi += two_pi
    elif lo > math.pi:
        lo -= two_pi
        hi -= two_pi
    if lo < -math.pi:
        out[k, 0] = _search(phis, sec, off, nsec, lo + two_pi, False)
        out[k, 1] = b
        out[k + 1, 0] = a
        out[k + 1, 1] = _search(phis, sec, off, nsec, hi, True)
        return 2
    if hi > math.pi:
        out[k, 0] = _search(phis, sec, off, nsec, lo, False)
        out[k, 1] = b
        out[k + 1, 0] = a
        out[k + 1, 1] = _search(phis, sec, off, nsec, hi - two_pi, True)
        return 2
    out[k, 0] = _search(phis, sec, off, nsec, lo, False)
    out[k, 1] = _search(phis, sec, off, nsec, hi, True)
    return 1


@jit
def _group_ranges(geo, perm, k0, k1, phis, band_start, sec_start, sec, hb, edge_cos, edge_sin):
    """The source ranges scanned by the group of targets perm[k0..k1]: per polar band met
    by a member's cap, the union of the members' azimuth intervals over that band
    (``_band_half_width``), as one or two contiguous ranges of the sorted sources.  Returns
    (ranges (k, 2), nr, count): the nr non-empty ranges first, count their total length."""
    nbands = band_start.size - 1
    th0 = math.pi
    th1 = 0.0
    for k in range(k0, k1 + 1):
        g = geo[perm[k]]
        th0 = min(th0, g[_THETA] - g[_ALPHA])
        th1 = max(th1, g[_THETA] + g[_ALPHA])
    b0 = max(0, int(math.floor(th0 / hb)))
    b1 = min(nbands - 1, int(math.floor(th1 / hb)))
    ranges = np.empty((2 * (b1 - b0 + 1), 2), dtype=np.int64)
    ref = geo[perm[k0], _PHI]
    nr = 0
    count = 0
    for band in range(b0, b1 + 1):
        a_band = band_start[band]
        b_band = band_start[band + 1]
        if b_band == a_band:
            continue
        lo = np.inf
        hi = -np.inf
        full = False
        for k in range(k0, k1 + 1):
            g = geo[perm[k]]
            if nbands > 1:
                w = _band_half_width(
                    g[_THETA], g[_ALPHA], g[_DPHI], g[_COS_T], g[_SIN_T], g[_COS_A], g[_T_STAR], band * hb,
                    (band + 1) * hb, edge_cos[band], edge_sin[band], edge_cos[band + 1], edge_sin[band + 1],
                )
            else:
                w = g[_DPHI]  # d = 2 (or one band): the largest half-width
            if w < 0.0:
                continue  # this member's cap misses the band
            if w >= math.pi:
                full = True
                break
            c = g[_PHI]  # unwrapped to within pi of ref
            if c - ref > math.pi:
                c -= 2.0 * math.pi
            elif c - ref < -math.pi:
                c += 2.0 * math.pi
            lo = min(lo, c - w)
            hi = max(hi, c + w)
        if not full and hi < lo:
            continue
        if full or hi - lo >= 2.0 * math.pi:
            ranges[nr, 0] = a_band
            ranges[nr, 1] = b_band
            nk = 1
        else:
            off = sec_start[band]
            nk = _band_ranges(lo, hi, a_band, b_band, phis, sec, off, sec_start[band + 1] - off - 1, ranges, nr)
        for r in range(nr, nr + nk):
            if ranges[r, 1] > ranges[r, 0]:
                count += ranges[r, 1] - ranges[r, 0]
                ranges[nr, 0] = ranges[r, 0]
                ranges[nr, 1] = ranges[r, 1]
                nr += 1
    return ranges, nr, count


@jit_parallel
def _count_scanned(geo, perm, phis, band_start, sec_start, sec, hb, edge_cos, edge_sin, stride, out):
    """Sources that the groups 0, stride, 2 stride, ... of perm would scan per member."""
    n = perm.size
    for g in prange(out.size):
        k0 = g * stride * TARGETS
        k1 = min(n, k0 + TARGETS) - 1
        out[g] = _group_ranges(geo, perm, k0, k1, phis, band_start, sec_start, sec, hb, edge_cos, edge_sin)[2]


@jit
def _collect_ranges(geo, perm, phis, band_start, sec_start, sec, hb, edge_cos, edge_sin):
    """The ranges of every group of perm (for ``TruncationInfo``): offsets (G + 1,) into
    ranges (R, 2), group g's ranges being ranges[offsets[g]:offsets[g + 1]]."""
    n = perm.size
    ngroups = (n + TARGETS - 1) // TARGETS
    offsets = np.zeros(ngroups + 1, dtype=np.int64)
    index = (phis, band_start, sec_start, sec, hb, edge_cos, edge_sin)
    for g in range(ngroups):
        k0 = g * TARGETS
        offsets[g + 1] = offsets[g] + _group_ranges(geo, perm, k0, min(n, k0 + TARGETS) - 1, *index)[1]
    out = np.empty((offsets[ngroups], 2), dtype=np.int64)
    for g in range(ngroups):
        k0 = g * TARGETS
        ranges, nr, _ = _group_ranges(geo, perm, k0, min(n, k0 + TARGETS) - 1, *index)
        out[offsets[g] : offsets[g + 1]] = ranges[:nr]
    return offsets, out


@functools.lru_cache(maxsize=None)
def _make_kernel(d, dv, online):
    """Truncated kernel specialized to d (2 or 3), dv (<= 3) and the shift.

    ``kernel(q, geo, shift, perm, YsT, VsT, Ls, phis, band_start, sec_start, sec, hb,
    edge_cos, edge_sin, num, den, smax, scanned)`` takes the targets perm (sorted so that
    consecutive ones are close) in groups of ``TARGETS`` (register blocking, as in the
    exact kernel); each group scans the ranges of ``_group_ranges``, a superset of each
    member's ball, and writes N_i, S_i, M_i and the sources scanned at its members' rows.
    ``online=False``: the exact kernel's fused shifted pass (``_tile.fused_shifted_pass``, one
    call per range) with the shift U_i = A_i (the
    lower bound: every kept term is >= tol, and the caller passes only targets whose terms
    all stay < 2^SHIFT_SAFE).  ``online=True``: the exact kernel's tile loop with a
    running maximum (``_tile.online_tile_pass``, tiles of ``TILE`` sources of each range) (targets whose Cauchy-Schwarz bound exceeds A_i by more).
    """
    D = int(d)
    DV = int(dv)
    ONLINE = bool(online)

    @jit_parallel
    def kernel(
        q, geo, shift, perm, YsT, VsT, Ls, phis, band_start, sec_start, sec, hb, edge_cos, edge_sin,
        num, den, smax, scanned,
    ):
        n = perm.size
        ngroups = (n + TARGETS - 1) // TARGETS
        for grp in prange(ngroups):
            k0 = grp * TARGETS
            k1 = min(n, k0 + TARGETS) - 1
            index = (phis, band_start, sec_start, sec, hb, edge_cos, edge_sin)
            ranges, nr, nscan = _group_ranges(geo, perm, k0, k1, *index)
            i0 = perm[k0]
            i1 = perm[min(k0 + 1, k1)]  # a short last group repeats its last target
            i2 = perm[min(k0 + 2, k1)]
            i3 = perm[min(k0 + 3, k1)]
            acc = np.zeros((TARGETS, 4))  # column 3: the denominator
            run_max = np.full(TARGETS, -np.inf)
            if not ONLINE:
                u0 = shift[i0]
                u1 = shift[i1]
                u2 = shift[i2]
                u3 = shift[i3]
                q0 = q[i0]
                q1 = q[i1]
                q2 = q[i2]
                q3 = q[i3]
                for ri in range(nr):
                    a = ranges[ri, 0]
                    fused_shifted_pass(q0, q1, q2, q3, u0, u1, u2, u3, YsT, VsT, Ls, a, ranges[ri, 1] - a, D, DV,
                                       True, 0.0, acc)
                run_max[0] = u0
                run_max[1] = u1
                run_max[2] = u2
                run_max[3] = u3
            else:
                s = np.empty((TARGETS, TILE))
                cast = np.empty(1)
                total = np.zeros(TARGETS)
                q0 = q[i0]
                q1 = q[i1]
                q2 = q[i2]
                q3 = q[i3]
                for ri in range(nr):
                    for j0 in range(ranges[ri, 0], ranges[ri, 1], TILE):
                        online_tile_pass(q0, q1, q2, q3, YsT, VsT, Ls, j0, min(TILE, ranges[ri, 1] - j0), D, DV,
                                         True, True, 0.0, s, cast, acc, total, run_max)
                for r in range(TARGETS):
                    acc[r, 3] = total[r]
            for r in range(k1 + 1 - k0):
                i = perm[k0 + r]
                scanned[i] = nscan
                for k in range(DV):
                    num[i, k] = acc[r, k]
                den[i] = acc[r, 3]
                smax[i] = run_max[r]

    return kernel


def _band_count(alpha_median, m):
    """Polar bands for m sources whose balls have median angular radius alpha_median."""
    return int(max(1, min(MAX_BANDS, m // MIN_BAND_SOURCES, math.ceil(math.pi / (CELL_FACTOR * alpha_median)))))


#: Calls of :func:`truncated_sums` by outcome in this process: "truncated", or the reason of
#: the exact fallback (without its numbers).  A run records the difference over its steps
#: as the ``kernel_used`` attribute of its file.
OUTCOMES: collections.Counter = collections.Counter()


def truncated_sums(model, X, Y, weights, tolerance, return_info=False):
    """(N_i, S_i, M_i) (M_i in log2 units) of the truncated kernel; see the module docstring.

    ``return_info=True`` also returns a :class:`TruncationInfo`.
    """
    n, d = X.shape
    m_all = len(Y)

    def exact(reason):
        OUTCOMES["exact: " + reason.split(" (")[0]] += 1
        out = exact_sums(model, X, Y, weights)
        return (*out, TruncationInfo(reason, np.full(n, m_all), np.full(n, np.nan), m_all)) if return_info else out

    if tolerance <= 0.0:
        return exact("tolerance = 0")
    if float(n) * m_all < MIN_PAIRS:
        return exact("problem too small")
    if d > 3:
        return exact("d > 3")
    pos = np.flatnonzero(weights > 0)
    Ym = np.ascontiguousarray(Y[pos])
    r_lo, r_hi = _radius_range(Ym)
    if not (r_lo > 0.0 and r_hi <= MAX_RADIUS_RATIO * r_lo):
        return exact(f"source radii too spread ({r_lo:.3g} to {r_hi:.3g})")
    q = np.ascontiguousarray((LOG2E * model.beta) * (X @ model.B))  # log2 units
    c2 = np.sqrt(np.einsum("ij,ij->i", q, q))
    with np.errstate(divide="ignore"):
        l2 = np.log2(weights[pos])
    lmax = float(l2.max())
    log2tol = math.log2(tolerance)
    # candidates: the smallest possible ball is smaller than the sphere (A_i <= c_i r_hi +
    # lmax, so t_i <= r_hi + log2(tol) / c_i, and tau_i > -1 needs t_i > -r_lo, possible
    # iff c_i > -log2(tol) / (r_lo + r_hi))
    cand = np.flatnonzero(c2 > -log2tol / (r_lo + r_hi))
    if not len(cand):
        return exact("no target has a ball smaller than the sphere")

    # sources sorted by (polar band, azimuth); d = 2: one band, sorted by angle
    nbands = 1
    if d == 3:
        alpha_min = 2.0 * np.arcsin(np.minimum(1.0, np.sqrt(-0.5 * log2tol / (r_hi * c2[cand]))))
        nbands = _band_count(float(np.median(alpha_min)), len(Ym))
    hb = math.pi / nbands
    m_pos = len(Ym)
    theta = np.empty(m_pos)
    phi = np.empty(m_pos)
    _angles(Ym, theta, phi)
    band = np.minimum((theta * (nbands / math.pi)).astype(np.int64), nbands - 1)
    order, band_start = _band_order(band, phi, nbands)
    YsT = np.ascontiguousarray(Ym[order].T)
    VsT = np.ascontiguousarray(model.V @ YsT)
    Ls = np.ascontiguousarray(l2[order])
    phis = np.ascontiguousarray(phi[order])
    source = pos[order] if return_info else None
    del theta, phi, band, order, Ym, l2
    sec_start = np.empty(nbands + 1, dtype=np.int64)
    sec = np.empty(m_pos // PER_SECTOR + 2 * nbands, dtype=np.int64)
    _sector_index(phis, band_start, PER_SECTOR, sec_start, sec)
    edges = np.arange(nbands + 1) * hb
    index = (phis, band_start, sec_start, sec, hb, np.cos(edges), np.sin(edges))

    # candidate targets sorted by (fine band, azimuth) of q_i: consecutive ones are close.
    # Fine bands about GROUP_SHAPE mean target spacings high (uniform): four consecutive
    # targets then span about as much in azimuth as in polar angle
    theta = np.empty(n)
    phi = np.empty(n)
    _angles(q, theta, phi)
    nfine = 1
    if d == 3:
        nfine = int(min(MAX_BANDS, max(1, math.ceil(math.pi / (GROUP_SHAPE * math.sqrt(4 * math.pi / len(cand)))))))
    fine = np.minimum((theta[cand] * (nfine / math.pi)).astype(np.int64), nfine - 1)
    perm = cand[np.argsort(phi[cand] + 8.0 * fine)]
    del fine, cand
    low = np.full(n, np.nan)
    geo = np.empty((n, 8))
    geo[:, _ALPHA] = -1.0
    _bounds_and_caps(q, c2, theta, phi, perm, YsT, Ls, *index[:4], hb, log2tol, lmax, r_lo, r_hi, low, geo)
    del theta, phi
    alpha = geo[:, _ALPHA]
    perm = perm[alpha[perm] >= 0.0]
    if not len(perm):
        return exact("no target has a ball smaller than the sphere")
    dense = np.flatnonzero(alpha < 0.0)

    # fall back when the scan would not pay: count the ranges of evenly spaced groups
    ngroups = -(-len(perm) // TARGETS)
    stride = max(1, ngroups // COUNT_GROUPS)
    sample = np.empty(-(-ngroups // stride), dtype=np.int64)
    _count_scanned(geo, perm, *index, stride, sample)
    if sample.mean() * len(perm) + len(dense) * m_pos > FALLBACK_FRACTION * n * m_pos:
        return exact("truncation would not pay")

    num = np.empty((n, d))
    den = np.empty(n)
    smax = np.empty(n)
    scanned = np.full(n, m_all, dtype=np.int64)
    # the fused pass shifted by A_i where every term stays < 2^SHIFT_SAFE, else the online one
    safe = c2[perm] * r_hi + lmax - low[perm] <= SHIFT_SAFE
    parts = [(False, perm[safe]), (True, perm[~safe])]
    for online, part in parts:
        if len(part):
            _make_kernel(d, d, online)(q, geo, low, part, YsT, VsT, Ls, *index, num, den, smax, scanned)
    if len(dense):
        num[dense], den[dense], smax[dense] = exact_sums(model, X[dense], Y, weights)
    OUTCOMES["truncated"] += 1
    if not return_info:
        return num, den, smax
    group = np.full(n, -1, dtype=np.int64)
    offsets, ranges, ngroups = [np.zeros(1, dtype=np.int64)], [np.empty((0, 2), dtype=np.int64)], 0
    for _, part in parts:
        if len(part):
            part_offsets, part_ranges = _collect_ranges(geo, part, *index)
            group[part] = ngroups + np.arange(len(part)) // TARGETS
            offsets.append(part_offsets[1:] + offsets[-1][-1])
            ranges.append(part_ranges)
            ngroups += len(part_offsets) - 1
    groups = (group, np.concatenate(offsets), np.concatenate(ranges), source)
    info = TruncationInfo("truncated", scanned, np.where(alpha >= 0.0, low, np.nan), m_all, groups)
    return num, den, smax, info


@register_kernel("numba", "truncated")
class NumbaTruncated(Attention):
    """Large beta: per target only the sources of relative weight >= ``tolerance``
    (``truncated_sums``; the exact kernel where truncation would not pay).  log Z is always
    computed exactly."""

    def sums(self, X, Y, weights, values=True):
        if not values:
            return exact_sums(self.model, X, Y, weights, values=False)
        return truncated_sums(self.model, X, Y, weights, self.tolerance)
