"""numba kernels for the attention average, O(N) memory, parallel over targets.

For targets i with pre-scaled queries q_i = beta B^T x_i and sources j with points y_j,
values v_j = V y_j and log-masses l_j = log m_j, every kernel computes per target

    M_i = max_j (<q_i, y_j> + l_j)
    S_i = sum_j exp(<q_i, y_j> + l_j - M_i)                       (denominator, >= 1)
    N_i = sum_j exp(<q_i, y_j> + l_j - M_i) v_j                   (numerator, (d,))

by an online log-sum-exp over tiles of ``TILE`` sources: scores of a tile go into a small
buffer, the running max is raised once per tile (rescaling S and N by exp(M_old - M_new)),
then the exponentials and the weighted sums.  Every exponent is <= 0, so nothing
overflows for any beta.  Softmax is N_i / S_i; USA is exp(M_i) N_i (formed by the caller
in log space).  Massless sources (l_j = -inf) never set the max and add exactly 0.

A target is processed start to finish by one thread, so results are bit-identical
whatever the number of threads.
"""

import numpy as np
from numba import prange

from ._jit import jit_parallel

__all__ = ["softmax_sums", "hardmax_sums", "TILE", "BLOCK"]

TILE = 128  # sources per tile: the score buffer stays in L1
BLOCK = 16  # targets per parallel work item: buffers are allocated once per block


@jit_parallel
def softmax_sums(q, yT, vT, logm, num, den, smax):
    """Fill num (N, dv), den (N,), smax (N,) with N_i, S_i, M_i (see module docstring).

    q: (N, d) queries beta B^T x_i;  yT: (d, M) source points, transposed;
    vT: (dv, M) source values V y_j, transposed (dv = 0 skips the numerator);
    logm: (M,) log-masses (-inf for massless sources).
    """
    n, d = q.shape
    m = yT.shape[1]
    dv = vT.shape[0]
    nblocks = (n + BLOCK - 1) // BLOCK
    for b in prange(nblocks):
        s = np.empty(TILE)
        acc = np.empty(dv)
        for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
            run_max = -np.inf
            total = 0.0
            acc[:] = 0.0
            for j0 in range(0, m, TILE):
                t = min(TILE, m - j0)
                for jj in range(t):
                    s[jj] = logm[j0 + jj]
                for k in range(d):
                    qk = q[i, k]
                    for jj in range(t):
                        s[jj] += qk * yT[k, j0 + jj]
                tile_max = -np.inf
                for jj in range(t):
                    if s[jj] > tile_max:
                        tile_max = s[jj]
                if tile_max > run_max:
                    scale = np.exp(run_max - tile_max)  # 0 on the first massive tile
                    total *= scale
                    for k in range(dv):
                        acc[k] *= scale
                    run_max = tile_max
                if run_max == -np.inf:
                    continue  # only massless sources so far
                tile_sum = 0.0
                for jj in range(t):
                    s[jj] = np.exp(s[jj] - run_max)
                    tile_sum += s[jj]
                total += tile_sum
                for k in range(dv):
                    a = 0.0
                    for jj in range(t):
                        a += s[jj] * vT[k, j0 + jj]
                    acc[k] += a
            for k in range(dv):
                num[i, k] = acc[k]
            den[i] = total
            smax[i] = run_max


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
