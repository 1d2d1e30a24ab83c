"""Certified sparse optimal transport on the sphere and the exact two-atom path.

Private engine of ``mfpde.distances`` (methods ``sparse`` and ``two_atom``); the derivation,
cost and error bound are in docs/methods.md ("Wasserstein distances at scale").

Problem (discrete Kantorovich, costs c_ij = h(theta_ij)^p, theta_ij the angle between x_i
and y_j, h(theta) = theta (geodesic) or 2 sin(theta/2) (chordal), both increasing on
[0, pi]):

    OT = min_{pi >= 0, pi 1 = a, pi^T 1 = b} sum_ij pi_ij c_ij      (= W_p^p, radians^p)

Certificate.  Any feasible plan gives an upper bound U >= OT (its cost).  Any g in R^m
with its c-transform f_i = min_j (c_ij - g_j), taken over *all* j, is dual feasible, so
L = sum_i a_i f_i + sum_j b_j g_j <= OT (weak duality).  The c-transform is computed
exactly over all n m pairs in O(n + m) memory by a branch-and-bound over a ball tree of the
y_j: a node with centre z and angular radius r holds no y with angle(x, y) <
angle(x, z) - r, so it is skipped when h(max(0, angle(x, z) - r))^p - max_node g >= the
best value found so far.
"""

from __future__ import annotations

import math

import numpy as np

from .kernels._jit import jit, jit_parallel

import numba

#: Pairs added per violated row / column and round in the general (HiGHS) path.
ADD_PER_ROW = 16
#: Relative gap after the first (nearest-neighbour) round above which the assignment solver
#: restarts from the coarse problem's potential.
WARM_GAP = 0.005
#: Clusters per measure of the coarse problem that warm-starts the sparse solvers.
COARSE_CLUSTERS = 1024
#: First auction eps = mean candidate cost / COARSE_EPS_DIVISOR (prices start near optimal).
COARSE_EPS_DIVISOR = 50.0
#: Bids allowed per auction phase: MAX_BIDS_PER_PERSON n + 1e7; beyond, the candidate graph
#: is taken to have no perfect matching (WassersteinError).  400 n + 1e6 was exceeded by a
#: legitimate price war (5000 tokens of a non-normal flow at t = 2, W_2 = 0.05).
MAX_BIDS_PER_PERSON = 4000
#: Leaf size of the ball tree over the targets.
LEAF_SIZE = 16
#: Margin (radians) subtracted from every tree lower bound on an angle (covers the round-off
#: of 2 arcsin(|x - z| / 2) and of the radius).
ANGLE_MARGIN = 1e-12


# --------------------------------------------------------------------------- costs


@jit
def _angle(x, y):
    """angle(x, y) = 2 arcsin(|x - y| / 2) for unit vectors (accurate for nearby points)."""
    s = 0.0
    for k in range(x.shape[0]):
        t = x[k] - y[k]
        s += t * t
    half = math.sqrt(s) / 2.0
    if half > 1.0:
        half = 1.0
    return 2.0 * math.asin(half)


@jit
def _cost_of_angle(theta, geodesic, p):
    """h(theta)^p: h = theta (geodesic) or 2 sin(theta / 2) (chordal)."""
    c = theta if geodesic else 2.0 * math.sin(theta / 2.0)
    if p == 1.0:
        return c
    if p == 2.0:
        return c * c
    return c ** p


@jit_parallel
def _edge_costs(X, Y, rows, cols, geodesic, p):
    """c(x_rows[e], y_cols[e]) for every edge e."""
    out = np.empty(rows.shape[0])
    for e in numba.prange(rows.shape[0]):
        out[e] = _cost_of_angle(_angle(X[rows[e]], Y[cols[e]]), geodesic, p)
    return out


def edge_costs_reference(X, Y, rows, cols, geodesic, p):
    """NumPy reference of ``_edge_costs``."""
    chord = np.linalg.norm(X[rows] - Y[cols], axis=1)
    theta = 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))
    c = theta if geodesic else 2.0 * np.sin(theta / 2.0)
    return c ** p


# --------------------------------------------------------------------------- ball tree


class BallTree:
    """A binary tree over the targets Y: node k covers Yp[lo[k]:hi[k]] (Yp = Y[perm]).

    Children have larger indices than their parent (``left = right = -1`` at a leaf);
    ``center`` (unit vectors) and ``radius`` (angles, radians) bound every member.
    """

    def __init__(self, Y, leaf_size=LEAF_SIZE):
        m = len(Y)
        perm = np.arange(m)
        lo, hi, left, right = [0], [m], [-1], [-1]
        k = 0
        while k < len(lo):
            a, b = lo[k], hi[k]
            if b - a > leaf_size:
                idx = perm[a:b]
                pts = Y[idx]
                axis = int(np.argmax(pts.max(axis=0) - pts.min(axis=0)))
                mid = (a + b) // 2
                part = np.argpartition(pts[:, axis], mid - a)
                perm[a:b] = idx[part]
                left[k], right[k] = len(lo), len(lo) + 1
                lo += [a, mid]
                hi += [mid, b]
                left += [-1, -1]
                right += [-1, -1]
            k += 1
        self.perm = perm
        self.Yp = np.ascontiguousarray(Y[perm])
        self.lo = np.array(lo, dtype=np.int64)
        self.hi = np.array(hi, dtype=np.int64)
        self.left = np.array(left, dtype=np.int64)
        self.right = np.array(right, dtype=np.int64)
        self.center, self.radius = _node_balls(self.Yp, self.lo, self.hi)

    def node_max(self, gp):
        """max of gp (values in tree order) over every node."""
        return _node_max(gp, self.lo, self.hi, self.left, self.right)


@jit_parallel
def _node_balls(Yp, lo, hi):
    """Centre (normalised mean, or the first member when the mean vanishes) and angular radius."""
    K, d = lo.shape[0], Yp.shape[1]
    center = np.empty((K, d))
    radius = np.empty(K)
    for k in numba.prange(K):
        c = np.zeros(d)
        for j in range(lo[k], hi[k]):
            for q in range(d):
                c[q] += Yp[j, q]
        nrm = 0.0
        for q in range(d):
            nrm += c[q] * c[q]
        nrm = math.sqrt(nrm)
        if nrm > 1e-8 * (hi[k] - lo[k]):
            for q in range(d):
                c[q] /= nrm
        else:
            for q in range(d):
                c[q] = Yp[lo[k], q]
        r = 0.0
        for j in range(lo[k], hi[k]):
            t = _angle(c, Yp[j])
            if t > r:
                r = t
        for q in range(d):
            center[k, q] = c[q]
        radius[k] = r
    return center, radius


@jit
def _node_max(gp, lo, hi, left, right):
    K = lo.shape[0]
    out = np.empty(K)
    for k in range(K - 1, -1, -1):
        if left[k] < 0:
            v = -np.inf
            for j in range(lo[k], hi[k]):
                if gp[j] > v:
                    v = gp[j]
            out[k] = v
        else:
            out[k] = max(out[left[k]], out[right[k]])
    return out


@jit_parallel
def _c_transform(X, Yp, gp, f0, center, radius, gmax, lo, hi, left, right, geodesic, p):
    """f_i = min_j (c(x_i, y_j) - g_j) over all j, and its argmin (tree order).

    f0[i] must be >= the true minimum (a value attained by some j, e.g. the best sparse
    edge); it only seeds the pruning.  Branch and bound, depth first, nearer child first.
    """
    n = X.shape[0]
    f = np.empty(n)
    arg = np.full(n, -1, dtype=np.int64)
    for i in numba.prange(n):
        x = X[i]
        best = f0[i]
        barg = -1
        stack = np.empty(256, dtype=np.int64)
        top = 0
        stack[0] = 0
        top = 1
        while top > 0:
            top -= 1
            k = stack[top]
            t = _angle(x, center[k]) - radius[k] - ANGLE_MARGIN
            if t < 0.0:
                t = 0.0
            if _cost_of_angle(t, geodesic, p) - gmax[k] >= best:
                continue
            if left[k] < 0:
                for j in range(lo[k], hi[k]):
                    v = _cost_of_angle(_angle(x, Yp[j]), geodesic, p) - gp[j]
                    if v < best:
                        best = v
                        barg = j
            else:
                l, r = left[k], right[k]
                if _angle(x, center[l]) <= _angle(x, center[r]):
                    stack[top] = r
                    stack[top + 1] = l
                else:
                    stack[top] = l
                    stack[top + 1] = r
                top += 2
        f[i] = best
        arg[i] = barg
    return f, arg


def c_transform(X, g, tree, geodesic, p, f0=None):
    """(f, argmin) with f_i = min_j (c_ij - g_j) over all j; argmin in Y's order (-1: f0 kept)."""
    gp = np.ascontiguousarray(g[tree.perm])
    gmax = tree.node_max(gp)
    if f0 is None:
        f0 = np.full(len(X), np.inf)
    f, arg = _c_transform(X, tree.Yp, gp, np.ascontiguousarray(f0, dtype=np.float64), tree.center, tree.radius,
                          gmax, tree.lo, tree.hi, tree.left, tree.right, geodesic, float(p))
    arg = np.where(arg >= 0, tree.perm[np.maximum(arg, 0)], -1)
    return f, arg


def c_transform_reference(X, g, Y, geodesic, p):
    """NumPy reference: f_i = min_j (c_ij - g_j) from the dense cost matrix."""
    chord = np.linalg.norm(X[:, None, :] - Y[None, :, :], axis=2)
    theta = 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))
    C = (theta if geodesic else 2.0 * np.sin(theta / 2.0)) ** p
    V = C - g[None, :]
    return V.min(axis=1), V.argmin(axis=1)


@jit_parallel
def _c_transform_k(X, Yp, gp, center, radius, gmax, lo, hi, left, right, geodesic, p, k):
    """The k smallest values of c(x_i, y_j) - g_j over all j and their j (tree order), sorted."""
    n = X.shape[0]
    vals = np.empty((n, k))
    args = np.empty((n, k), dtype=np.int64)
    for i in numba.prange(n):
        x = X[i]
        bd = np.full(k, np.inf)
        bj = np.full(k, -1, dtype=np.int64)
        stack = np.empty(256, dtype=np.int64)
        stack[0] = 0
        top = 1
        while top > 0:
            top -= 1
            q = stack[top]
            t = _angle(x, center[q]) - radius[q] - ANGLE_MARGIN
            if t < 0.0:
                t = 0.0
            if _cost_of_angle(t, geodesic, p) - gmax[q] >= bd[k - 1]:
                continue
            if left[q] < 0:
                for j in range(lo[q], hi[q]):
                    v = _cost_of_angle(_angle(x, Yp[j]), geodesic, p) - gp[j]
                    if v < bd[k - 1]:
                        s = k - 1
                        while s > 0 and bd[s - 1] > v:
                            bd[s] = bd[s - 1]
                            bj[s] = bj[s - 1]
                            s -= 1
                        bd[s] = v
                        bj[s] = j
            else:
                l, r = left[q], right[q]
                if _angle(x, center[l]) <= _angle(x, center[r]):
                    stack[top] = r
                    stack[top + 1] = l
                else:
                    stack[top] = l
                    stack[top + 1] = r
                top += 2
        for s in range(k):
            vals[i, s] = bd[s]
            args[i, s] = bj[s]
    return vals, args


def c_transform_k(X, g, tree, geodesic, p, k):
    """(values (n, k), argmins (n, k), in Y's order): the k smallest c_ij - g_j of each row."""
    gp = np.ascontiguousarray(g[tree.perm])
    gmax = tree.node_max(gp)
    vals, args = _c_transform_k(X, tree.Yp, gp, tree.center, tree.radius, gmax, tree.lo, tree.hi, tree.left,
                                tree.right, geodesic, float(p), int(min(k, len(g))))
    return vals, np.where(args >= 0, tree.perm[np.maximum(args, 0)], -1)


# --------------------------------------------------------------------------- auction


@jit
def _auction(indptr, cols, costs, m, prices, eps_start, eps_end, factor, max_bids):
    """Forward auction with eps-scaling for the assignment min sum_i c_{i sigma(i)} (n = m).

    Person i bids for the object j minimising c_ij + p_j (its edges only), raising p_j by
    (second best - best) + eps.  Each phase starts with every person unassigned and keeps
    the prices; eps shrinks by ``factor`` from eps_start to eps_end.  At the end every
    person holds an object within eps of its best (eps-complementary slackness).

    Returns (assignment (n,), ok); ok is False when a phase needed more than max_bids bids
    (the sparse graph may have no perfect matching).
    """
    n = indptr.shape[0] - 1
    owner = np.empty(m, dtype=np.int64)
    assign = np.empty(n, dtype=np.int64)
    stack = np.empty(n, dtype=np.int64)
    eps = eps_start
    while True:
        owner[:] = -1
        assign[:] = -1
        for i in range(n):
            stack[i] = n - 1 - i
        top = n
        bids = 0
        while top > 0:
            top -= 1
            i = stack[top]
            best = np.inf
            second = np.inf
            bj = -1
            for e in range(indptr[i], indptr[i + 1]):
                v = costs[e] + prices[cols[e]]
                if v < best:
                    second = best
                    best = v
                    bj = cols[e]
                elif v < second:
                    second = v
            if bj < 0:
                return assign, False
            if second == np.inf:
                second = best + 1.0
            prices[bj] += (second - best) + eps
            prev = owner[bj]
            owner[bj] = i
            assign[i] = bj
            if prev >= 0:
                assign[prev] = -1
                stack[top] = prev
                top += 1
            bids += 1
            if bids > max_bids:
                return assign, False
        if eps <= eps_end:
            return assign, True
        eps = max(eps / factor, eps_end)


# --------------------------------------------------------------------------- two atoms


def two_atom_cost(C, a, b):
    """Exact OT cost from sum_i a_i delta_{x_i} to b_1 delta_{y_1} + b_2 delta_{y_2}.

    C is (n, 2) (costs c_i1, c_i2).  The plan sends t_i <= a_i of x_i to y_1 with
    sum t_i = b_1: cost sum a_i c_i2 + sum t_i (c_i1 - c_i2), a fractional knapsack whose
    optimum fills y_1 with the atoms of smallest c_i1 - c_i2 first.  O(n log n).
    """
    diff = C[:, 0] - C[:, 1]
    order = np.argsort(diff, kind="stable")
    a_sorted = a[order]
    before = np.cumsum(a_sorted) - a_sorted
    t = np.clip(b[0] - before, 0.0, a_sorted)
    return float(a @ C[:, 1] + t @ diff[order])


# --------------------------------------------------------------------------- driver


def _candidate_keys(X, Y, k, seed, tree, xtree, g, geodesic, p):
    """Edges i * m + j: the k best j of each x and the k best i of each y for the reduced
    costs c_ij - g_j and c_ij - f_i (f = g^c; f = 0 when g = 0: nearest neighbours), and 2
    random pairs each way (a random 2-out
    bipartite graph has a perfect matching with high probability, Walkup 1980)."""
    n, m = len(X), len(Y)
    kx, ky = min(k, m), min(k, n)
    _, jx = c_transform_k(X, g, tree, geodesic, p, kx)
    if np.any(g != 0):
        f, _ = c_transform(X, g, tree, geodesic, p)
    else:
        # plain nearest neighbours both ways: with f = 0^c every token near the pole of a
        # great circle has a reduced cost ~0 to all of it, and the search would not prune
        f = np.zeros(n)
    _, iy = c_transform_k(Y, f, xtree, geodesic, p, ky)
    rng = np.random.default_rng(seed)
    r = min(2, m)
    parts = [
        (np.repeat(np.arange(n), kx) * m + jx.ravel()),
        (iy.ravel() * m + np.repeat(np.arange(m), ky)),
        (np.repeat(np.arange(n), r) * m + rng.integers(0, m, n * r)),
        (rng.integers(0, n, m * r) * m + np.repeat(np.arange(m), r)),
    ]
    keys = np.concatenate(parts).astype(np.int64)
    return _sorted_unique(keys[keys >= 0])


def _union(keys, more):
    return _sorted_unique(np.concatenate([keys, np.asarray(more, dtype=np.int64)]))


def _sorted_unique(keys):
    """np.unique for int64 keys by one sort (NumPy's unique was measured 100x slower here)."""
    keys = np.sort(keys)
    if len(keys) == 0:
        return keys
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def _clusters(tree, size):
    """Labels (in the tree's input order) of the highest tree nodes with <= size members."""
    labels = np.empty(len(tree.perm), dtype=np.int64)
    stack, K = [0], 0
    while stack:
        q = stack.pop()
        if tree.hi[q] - tree.lo[q] <= size or tree.left[q] < 0:
            labels[tree.perm[tree.lo[q]:tree.hi[q]]] = K
            K += 1
        else:
            stack += [int(tree.right[q]), int(tree.left[q])]
    return labels, K


def _coarse_measure(P, w, labels, K):
    pts = np.zeros((K, P.shape[1]))
    np.add.at(pts, labels, P * w[:, None])
    nrm = np.linalg.norm(pts, axis=1)
    first = np.zeros(K, dtype=np.int64)
    first[labels[::-1]] = np.arange(len(labels))[::-1]
    pts = np.where(nrm[:, None] > 1e-12, pts / np.maximum(nrm, 1e-300)[:, None], P[first])
    return pts, np.bincount(labels, weights=w, minlength=K)


def coarse_potential(X, a, Y, b, tree, xtree, geodesic, p):
    """A starting potential g for the targets: exact OT (POT emd) between the measures
    clustered into ~COARSE_CLUSTERS tree nodes each, its column duals spread over each
    cluster, then improved by the double c-transform g <- (g^c)^c over all pairs.  Only a
    warm start: it chooses the candidate pairs and the first prices, never the certificate."""
    import ot

    size = max(LEAF_SIZE, -(-max(len(X), len(Y)) // COARSE_CLUSTERS))
    lx, Kx = _clusters(xtree, size)
    ly, Ky = _clusters(tree, size)
    cx, wx = _coarse_measure(X, a, lx, Kx)
    cy, wy = _coarse_measure(Y, b, ly, Ky)
    rows = np.repeat(np.arange(Kx), Ky)
    cols = np.tile(np.arange(Ky), Kx)
    C = _edge_costs(cx, cy, rows, cols, geodesic, float(p)).reshape(Kx, Ky)
    _, log = ot.emd(wx / wx.sum(), wy / wy.sum(), C, numItermax=10**7, log=True)
    g = np.asarray(log["v"], dtype=np.float64)[ly]
    f, _ = c_transform(X, g, tree, geodesic, p)
    g, _ = c_transform(Y, f, xtree, geodesic, p)
    return g


def integer_counts(w, total):
    """w * total as integers when every entry is within 1e-9 of one (else None)."""
    c = w * total
    r = np.rint(c)
    if np.all(np.abs(c - r) <= 1e-9 * max(1.0, total)) and r.sum() == total and np.all(r >= 1):
        return r.astype(np.int64)
    return None


class SparseResult:
    """Upper bound (cost of a feasible plan), lower bound (dual), rounds, edges (W_p^p units)."""

    def __init__(self, upper, lower, rounds, edges):
        self.upper, self.lower, self.rounds, self.edges = upper, lower, rounds, edges


def sparse_assignment(X, Y, geodesic, p, rel_tol, *, k=16, max_rounds=40, seed=0, abs_floor=1e-12):
    """Certified min_sigma (1/n) sum_i c(x_i, y_sigma(i)) for n = m equal masses.

    Column generation: an eps-scaling auction on the candidate pairs (first the k nearest
    neighbours both ways); g = -prices, f = g^c over all pairs (exact); L = mean f + mean g
    (dual feasible; if that does not certify, also with g2 = f^c in place of g); U = the
    assignment's mean cost.  The best pairs of violated rows and columns are added, eps
    shrinks, until U - L <= rel_tol U (or <= abs_floor).  When the first round leaves a gap above ``WARM_GAP`` (transport that
    is not local: the nearest neighbours miss the optimal partners), the candidates and
    prices are rebuilt from the coarse problem's potential (``coarse_potential``).
    Returns a SparseResult (possibly not certified: the caller checks the gap).
    """
    n = len(X)
    m = len(Y)
    tree = BallTree(Y)
    xtree = BallTree(X)
    g0 = np.zeros(m)
    keys = _candidate_keys(X, Y, k, seed, tree, xtree, g0, geodesic, p)
    prices = np.zeros(m)
    upper, lower = np.inf, -np.inf
    cmax = _cost_of_angle(math.pi, geodesic, float(p))
    eps, divisor = None, 4.0
    for rounds in range(1, max_rounds + 1):
        rows, cols = keys // m, keys % m
        indptr = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
        costs = _edge_costs(X, Y, rows, cols, geodesic, float(p))
        if eps is None:
            eps_start = max(float(np.mean(costs)), 1e-300) / divisor
            est = float(np.mean(costs[indptr[:-1]]))  # cost of each row's first edge: a scale
        else:
            eps_start = eps * 16.0
        target = max(rel_tol * max(upper if np.isfinite(upper) else est, abs_floor) / 4.0, 1e-14 * cmax)
        eps_end = min(target, eps_start)
        while True:
            assign, ok = _auction(indptr, cols, costs, m, prices, eps_start, eps_end, 6.0,
                                  MAX_BIDS_PER_PERSON * n + 10**7)
            if not ok:
                raise RuntimeError("auction: no perfect matching found on the candidate graph")
            sel = np.searchsorted(keys, np.arange(n) * m + assign)
            upper = min(upper, float(np.mean(costs[sel])))
            new_target = max(rel_tol * max(upper, abs_floor) / 4.0, 1e-14 * cmax)
            if eps_end <= new_target * 1.0000001:
                break
            eps_start, eps_end = eps_end, new_target
        eps = eps_end
        g = -prices
        f_sparse = np.minimum.reduceat(costs - g[cols], indptr[:-1])
        f, arg = c_transform(X, g, tree, geodesic, p, f0=f_sparse)
        lower = max(lower, float(np.mean(f) + np.mean(g)))
        if upper - lower <= rel_tol * upper or upper - lower <= abs_floor:
            return SparseResult(upper, lower, rounds, len(keys))
        # the double c-transform (f, f^c) is feasible and its dual value is >= (f, g)'s
        # (a second pass over all pairs, only when the first does not certify)
        g2, _ = c_transform(Y, f, xtree, geodesic, p)
        lower = max(lower, float(np.mean(f) + np.mean(g2)))
        if upper - lower <= rel_tol * upper or upper - lower <= abs_floor:
            return SparseResult(upper, lower, rounds, len(keys))
        if rounds == 1 and upper - lower > WARM_GAP * upper:
            g0 = coarse_potential(X, np.full(n, 1.0 / n), Y, np.full(m, 1.0 / m), tree, xtree, geodesic, p)
            f0, _ = c_transform(X, g0, tree, geodesic, p)
            lower = max(lower, float(np.mean(f0) + np.mean(g0)))
            keys = _union(keys, _candidate_keys(X, Y, k, seed, tree, xtree, g0, geodesic, p))
            prices = -g0
            eps, divisor = None, COARSE_EPS_DIVISOR
            continue
        keys = _union(keys, _violated_pairs(X, Y, f, g, f < f_sparse - 0.5 * eps, tree, xtree, geodesic, p,
                                                0.5 * eps))
    return SparseResult(upper, lower, max_rounds, len(keys))


def _violated_pairs(X, Y, f, g, rows_bad, tree, xtree, geodesic, p, margin):
    """Keys i * m + j of the ``ADD_PER_ROW`` best pairs (most negative c_ij - f_i - g_j) of
    every violated row (``rows_bad``) and of every column j with min_i (c_ij - f_i) < g_j - margin."""
    m = len(Y)
    out = []
    rows = np.flatnonzero(rows_bad)
    if len(rows):
        _, args = c_transform_k(np.ascontiguousarray(X[rows]), g, tree, geodesic, p, ADD_PER_ROW)
        out.append((np.repeat(rows, args.shape[1]) * m + args.ravel())[args.ravel() >= 0])
    gc, _ = c_transform(Y, f, xtree, geodesic, p)
    cols = np.flatnonzero(gc < g - margin)
    if len(cols):
        _, args = c_transform_k(np.ascontiguousarray(Y[cols]), f, xtree, geodesic, p, ADD_PER_ROW)
        out.append((args.ravel() * m + np.repeat(cols, args.shape[1]))[args.ravel() >= 0])
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def sparse_transport(X, a, Y, b, geodesic, p, rel_tol, *, k=12, max_rounds=8, seed=0, abs_floor=1e-12):
    """Certified OT cost for general masses: HiGHS (scipy.optimize.linprog) on candidate edges.

    Duals g of the column constraints, f = g^c over all pairs: L = a.f + b.g.  The LP's
    plan is clipped to >= 0, scaled down to rows <= a and columns <= b, and completed by the
    product of the deficits (Altschuler-Weed-Rigollet rounding): a feasible plan whose cost
    is at most cost(clipped) + deficit * max c, the upper bound U used.
    """
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, vstack

    n, m = len(X), len(Y)
    tree = BallTree(Y)
    xtree = BallTree(X)
    g0 = coarse_potential(X, a, Y, b, tree, xtree, geodesic, p)
    keys = _candidate_keys(X, Y, k, seed, tree, xtree, g0, geodesic, p)
    cmax = _cost_of_angle(math.pi, geodesic, float(p))
    upper, lower = np.inf, -np.inf
    for rounds in range(1, max_rounds + 1):
        rows, cols = keys // m, keys % m
        E = len(keys)
        costs = _edge_costs(X, Y, rows, cols, geodesic, float(p))
        ones = np.ones(E)
        A = vstack([csr_matrix((ones, (rows, np.arange(E))), shape=(n, E)),
                    csr_matrix((ones, (cols, np.arange(E))), shape=(m, E))]).tocsr()
        res = linprog(costs, A_eq=A, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
        if res.status != 0:
            raise RuntimeError(f"linprog (HiGHS) on the candidate edges failed: {res.message}")
        x = np.maximum(res.x, 0.0)
        rs = np.bincount(rows, weights=x, minlength=n)
        x *= np.minimum(1.0, a / np.maximum(rs, 1e-300))[rows]
        cs = np.bincount(cols, weights=x, minlength=m)
        x *= np.minimum(1.0, b / np.maximum(cs, 1e-300))[cols]
        deficit = max(0.0, 1.0 - float(x.sum()))
        upper = min(upper, float(x @ costs) + deficit * cmax)
        g = np.asarray(res.eqlin.marginals[n:], dtype=np.float64)
        vals, args = c_transform_k(X, g, tree, geodesic, p, ADD_PER_ROW)
        f = vals[:, 0]
        lower = max(lower, float(a @ f + b @ g))
        if upper - lower <= rel_tol * upper or upper - lower <= abs_floor:
            return SparseResult(upper, lower, rounds, E)
        # pairs with f_i + g_j > c_ij: the best few of each violated row, and of each
        # violated column (the same pass with the roles of X and Y exchanged)
        fr = np.asarray(res.eqlin.marginals[:n], dtype=np.float64)
        new = [(np.flatnonzero((vals < (fr[:, None] - 1e-12 * cmax)).ravel()) // vals.shape[1]) * m
               + args.ravel()[(vals < (fr[:, None] - 1e-12 * cmax)).ravel()]]
        cvals, cargs = c_transform_k(Y, fr, xtree, geodesic, p, ADD_PER_ROW)
        bad = (cvals < (g[:, None] - 1e-12 * cmax)).ravel()
        new.append(cargs.ravel()[bad] * m + np.flatnonzero(bad) // cvals.shape[1])
        add = np.concatenate(new)
        add = add[add >= 0]
        before = len(keys)
        keys = _union(keys, add)
        if len(keys) == before:
            break
    return SparseResult(upper, lower, rounds, len(keys))
