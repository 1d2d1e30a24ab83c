"""The exact kernel in high dimension: scores and value sums as blocked matrix products.

Same sums as ``attention.make_softmax_sums`` (log2 units, q_i = log2(e) beta B^T x_i,
v_j = V y_j, l_j = log2 m_j):

    M_i = max_j (<q_i, y_j> + l_j),  S_i = sum_j 2^(s_ij - M_i),  N_i = sum_j 2^(s_ij - M_i) v_j

The low-rank structure is used once per point, outside the pair loop: q_i = B^T x_i (with
B = Q^T K) and v_j = V y_j are formed by one NumPy product each, so a pair costs d
multiply-adds for its score and dv for its value sum, 2 (d + dv) flops in all.

Tiling (``make_blocked_sums``).  Targets are cut into tiles of ``tn`` rows (the queries
padded with zero rows to a multiple of tn), sources into tiles of ``tm`` (padded with zero
points and values and log-mass -inf, which add exactly 0).  ``prange`` runs over target
tiles; each thread walks all source tiles in order, so every target's sums are formed in
one fixed order whatever the thread count.  Per source tile:

1. S = Q_t Y_b^T, a (tn, d) x (d, tm) product by BLAS (``np.dot`` inside the jitted
   code, i.e. scipy's BLAS gemm, into a preallocated buffer);
2. per row, one vectorized read-only pass takes the tile maximum of s + l; where it
   raises the running maximum, S_i and N_i are rescaled by 2^(M_old - M_new) (online
   log-sum-exp: no exponent is ever positive, safe at any beta); a second pass replaces
   the scores by P = 2^(s + l - M_i) (``fastexp.exp2_64`` / ``exp2_32``) and adds them
   to S_i (the tile's sum in the working precision, then into the float64 S_i);
3. P V_b, a (tn, tm) x (tm, dv) product by BLAS, added to the float64 running numerator.

Equal masses (the usual empirical measure) skip the log-masses: the kernel runs with
l = 0 on the real sources and log2 m is added to M_i afterwards (only the last source
tile, which holds the padding, reads its -inf log-masses).

Tile sizes (``tile_sizes``): tn = 128, tm = 256 for d, dv <= 64, tn = tm = 256 above
(float32: 256 x 512 at every d); a (tn, tm) score buffer of at most 512 KB per thread.  Measured on a 2-core AMD EPYC (Zen 5, OpenBLAS 0.3.31): within
~10 % of the best of 8 shapes from 32 to 512 at d = 16 ... 1024 (the differences between
shapes are at the level of the shared machine's noise).  Fewer than 8 x tn targets take
smaller target tiles (multiples of 16, at least 8 tiles), so that few targets against
many sources still use every thread.

Memory: the padded copies of the queries, sources and values, O((N + M)(d + dv)), plus a
(tn, tm) and a (tn, dv) buffer per thread; never N x M.

float32 mode: the queries, points, values, scores, exponentials and the per-tile products
are float32 (sgemm); the running sums S_i, N_i and the maximum are float64, as in the
other exact kernel.

BLAS threads.  The parallelism is numba's (one target tile per thread); the BLAS calls
inside must be single-threaded.  A multithreaded OpenBLAS called from numba's threads
oversubscribes the cores and serializes the callers on its own thread pool (measured 10x
to 40x slower at d = 64 on 2 cores), so ``blocked_sums`` sets every loaded OpenBLAS to one
thread for the duration of the kernel and restores the previous count afterwards
(``single_threaded_blas``).  With one BLAS thread each gemm is a fixed sequence of
operations, so results are bit-identical whatever numba's thread count.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading

import numpy as np
from numba import prange

from ._jit import jit_parallel
from ._tile import raise_running_max
from ._base import LOG2E, PRECISIONS
from .fastexp import exp2_32, exp2_64, maxnum

__all__ = ["blocked_sums", "make_blocked_sums", "tile_sizes", "single_threaded_blas", "BLOCKED_MIN_D"]

#: ``exact_sums`` uses this path for d >= BLOCKED_MIN_D (measured crossover, see
#: docs/methods.md "The exact kernel in high dimension").
BLOCKED_MIN_D = 16


def tile_sizes(d, dv, precision="float64"):
    """(tn, tm): targets and sources per tile.

    Larger tiles amortize the gemm's packing of the query and source tiles (each source
    tile is packed once per target tile, each query tile once per source tile); the score
    buffer (tn, tm) stays <= 512 KB per thread.  float32 (half the bytes) takes twice as
    many sources per tile."""
    width = max(d, dv, 1)
    if precision == "float32":
        return (256, 512)
    return (128, 256) if width <= 64 else (256, 256)


@functools.lru_cache(maxsize=None)
def make_blocked_sums(precision, tn, tm):
    """The blocked exact kernel for a working precision and tile sizes (any d, dv).

    ``kernel(q, Y, V, L, equal, num, den, smax)``: q (Nt, d) queries, Nt a multiple of
    tn; Y (Mt, d) points, V (Mt, dv) values, L (Mt,) log2-masses, Mt a multiple of tm (all of the working dtype,
    C-contiguous); fills num (N, dv), den (N,), smax (N,) (float64, N <= Nt the real
    targets); dv = 0 skips the numerator.  ``equal``: L is 0 on every real source, so only the last source tile (the
    one with padding) reads it.  Memoized; cached on disk.
    """
    ftype = PRECISIONS[precision]
    IS64 = precision == "float64"
    TN = int(tn)
    TM = int(tm)

    @jit_parallel
    def kernel(q, Y, V, L, equal, num, den, smax):
        n = num.shape[0]
        ntt = q.shape[0] // TN
        nst = Y.shape[0] // TM
        dv = V.shape[1]
        for t in prange(ntt):
            qt = q[t * TN : (t + 1) * TN]
            s = np.empty((TN, TM), dtype=ftype)
            part = np.empty((TN, dv), dtype=ftype)
            acc = np.zeros((TN, dv))
            total = np.zeros(TN)
            run_max = np.full(TN, -np.inf)
            for b in range(nst):
                j0 = b * TM
                # 1. scores of the tile
                np.dot(qt, Y[j0 : j0 + TM].T, s)
                lb = L[j0 : j0 + TM]
                masses = not equal or b == nst - 1  # equal masses: log-masses 0 but the padding's
                for r in range(TN):
                    # 2. tile maximum of the scores + log-masses, online rescale, exponentials
                    m = ftype(-np.inf)
                    if masses:
                        for jj in range(TM):
                            m = maxnum(m, s[r, jj] + lb[jj])
                    else:
                        for jj in range(TM):
                            m = maxnum(m, s[r, jj])
                    tile_max = np.float64(m)
                    raise_running_max(r, tile_max, run_max, total, acc, dv)
                    if run_max[r] == -np.inf:
                        for jj in range(TM):  # only massless sources so far: add nothing
                            s[r, jj] = 0.0
                        continue
                    mr = ftype(run_max[r])
                    t_sum = ftype(0.0)  # the tile's sum in the working precision
                    if masses:
                        for jj in range(TM):
                            e = exp2_64((s[r, jj] + lb[jj]) - mr) if IS64 else exp2_32((s[r, jj] + lb[jj]) - mr)
                            s[r, jj] = e
                            t_sum += e
                    else:
                        for jj in range(TM):
                            e = exp2_64(s[r, jj] - mr) if IS64 else exp2_32(s[r, jj] - mr)
                            s[r, jj] = e
                            t_sum += e
                    total[r] += t_sum
                # 3. weighted value sums of the tile
                if dv > 0:
                    np.dot(s, V[j0 : j0 + TM], part)
                    for r in range(TN):
                        for k in range(dv):
                            acc[r, k] += part[r, k]
            for r in range(min(TN, n - t * TN)):
                i = t * TN + r
                for k in range(dv):
                    num[i, k] = acc[r, k]
                den[i] = total[r]
                smax[i] = run_max[r]

    return kernel


# --------------------------------------------------------------------------- BLAS threads

_SETTERS = ("scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_", "openblas_set_num_threads", "openblas_set_num_threads64_")
_GETTERS = ("scipy_openblas_get_num_threads", "scipy_openblas_get_num_threads64_", "openblas_get_num_threads", "openblas_get_num_threads64_")


@functools.lru_cache(maxsize=1)
def _openblas_controls():
    """(get, set) pairs of every OpenBLAS loaded in this process (after scipy's BLAS)."""
    import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls this BLAS)

    paths = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                name = os.path.basename(fields[-1]).lower() if len(fields) >= 6 else ""
                if "openblas" in name and ".so" in name:
                    paths.add(fields[-1])
    except OSError:  # not Linux: no control (set OPENBLAS_NUM_THREADS=1 instead)
        return ()
    controls = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        get = next((getattr(lib, g) for g in _GETTERS if hasattr(lib, g)), None)
        set_ = next((getattr(lib, s) for s in _SETTERS if hasattr(lib, s)), None)
        if get is not None and set_ is not None:
            get.restype = ctypes.c_int
            get.argtypes = []
            set_.restype = None
            set_.argtypes = [ctypes.c_int]
            controls.append((get, set_))
    return tuple(controls)


_BLAS_LOCK = threading.Lock()
_BLAS_STATE = {"depth": 0, "previous": []}


@contextlib.contextmanager
def single_threaded_blas():
    """Every loaded OpenBLAS at one thread inside the block, restored on exit.

    Process-wide for the duration (OpenBLAS has one global thread count): a BLAS call made
    by another Python thread meanwhile runs single-threaded too.  Re-entrant and safe
    across threads: the first block to enter saves the counts, the last to leave restores
    them.  Other BLAS libraries (MKL, BLIS) are left alone; with those, set their thread
    count to 1 in the environment for the best speed."""
    controls = _openblas_controls()
    with _BLAS_LOCK:
        if _BLAS_STATE["depth"] == 0:
            _BLAS_STATE["previous"] = [get() for get, _ in controls]
            for (_, set_), p in zip(controls, _BLAS_STATE["previous"]):
                if p != 1:
                    set_(1)
        _BLAS_STATE["depth"] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_STATE["depth"] -= 1
            if _BLAS_STATE["depth"] == 0:
                for (_, set_), p in zip(controls, _BLAS_STATE["previous"]):
                    if p != 1:
                        set_(p)


# --------------------------------------------------------------------------- entry point


def _padded(a, rows, dtype):
    out = np.zeros((rows, a.shape[1]), dtype)
    out[: len(a)] = a
    return out


def blocked_sums(model, X, Y, weights, precision="float64", values=True):
    """(N_i, S_i, M_i) of the exact kernel by the blocked path: ``exact_sums``'s contract.

    N_i (N, dv) float64 (dv = 0 when ``values`` is False), S_i (N,), M_i (N,) in log2
    units.  Finite beta only."""
    dtype = PRECISIONS[precision]
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    n, d = X.shape
    mcount = len(Y)
    dv = model.V.shape[0] if values else 0
    num = np.empty((n, dv))
    den = np.empty(n)
    smax = np.empty(n)
    if not n:
        return num, den, smax
    tn, tm = tile_sizes(d, dv, precision)
    # few targets: smaller target tiles (multiples of 16), so that there are >= 8 tiles
    # for the threads to share (the tiles depend on N only, never on the thread count)
    tn = min(tn, 16 * max(1, -(-n // (16 * 8))))
    nt = -(-n // tn) * tn
    mt = max(1, -(-mcount // tm)) * tm
    q = _padded((LOG2E * model.beta) * (X @ model.B), nt, dtype)
    Yp = _padded(Y, mt, dtype)
    Vp = _padded(Y @ model.V.T, mt, dtype) if values else np.zeros((mt, 0), dtype)
    Lp = np.full(mt, -np.inf, dtype)
    with np.errstate(divide="ignore"):
        logm = np.log2(weights)
    # equal positive masses (the common case): log-masses 0 in the kernel, log2 m added to M
    equal = bool(mcount) and weights[0] > 0 and bool(np.all(weights == weights[0]))
    Lp[:mcount] = 0.0 if equal else logm
    with single_threaded_blas():
        make_blocked_sums(precision, tn, tm)(q, Yp, Vp, Lp, equal, num, den, smax)
    if equal:
        smax += logm[0]
    return num, den, smax

