"""The numba.cuda kernels of the cuda backend (private; ``mfpde.kernels.cuda`` explains them).

Kept apart so that ``import mfpde.kernels`` does not import numba.cuda: this module is
imported on first use.  The kernels refer to the module global ``cuda``, which numba's
simulator swaps for its own (``NUMBA_ENABLE_CUDASIM=1``).
"""

import functools
import math

import numba
from numba import cuda  # no device is touched at import

from .cuda import THREADS, _NEG_INF, tile_size

__all__ = ["make_sums_kernel", "step_kernels"]


@functools.lru_cache(maxsize=None)
def make_sums_kernel(precision: str, d: int, dv: int):
    """The sums kernel specialized to (precision, d, dv): ``kernel[blocks, THREADS](q, Y, VY, L, num, den, smax)``.

    q (n, d), Y (m, d), VY (m, dv), L (m,) in the working precision; num (n, max(dv, 1)),
    den (n,), smax (n,) float64 outputs.  dv = 0 skips the numerator.
    """
    ftype = numba.float64 if precision == "float64" else numba.float32
    D, DV = int(d), int(dv)
    DVA = max(DV, 1)
    TILE = tile_size(precision, D, DV)
    TPB = THREADS
    NEG_INF = _NEG_INF

    @cuda.jit
    def kernel(q, Y, VY, L, num, den, smax):
        n = q.shape[0]
        m = Y.shape[0]
        i = cuda.grid(1)
        t = cuda.threadIdx.x
        sY = cuda.shared.array((TILE, D), ftype)
        sV = cuda.shared.array((TILE, DVA), ftype)
        sL = cuda.shared.array(TILE, ftype)
        qi = cuda.local.array(D, ftype)
        tn = cuda.local.array(DVA, ftype)
        acc = cuda.local.array(DVA, numba.float64)
        active = i < n
        for k in range(D):
            qi[k] = q[i, k] if active else ftype(0.0)
        for k in range(DVA):
            acc[k] = 0.0
        total = 0.0
        run_max = NEG_INF
        two = ftype(2.0)
        for base in range(0, m, TILE):
            cnt = min(TILE, m - base)
            for e in range(t, cnt * D, TPB):  # cooperative load of the tile
                j = e // D
                sY[j, e - j * D] = Y[base + j, e - j * D]
            for e in range(t, cnt * DV, TPB):
                j = e // DV
                sV[j, e - j * DV] = VY[base + j, e - j * DV]
            for e in range(t, cnt, TPB):
                sL[e] = L[base + e]
            cuda.syncthreads()
            if active:
                tmax = ftype(NEG_INF)
                for j in range(cnt):
                    s = sL[j]
                    for k in range(D):
                        s += qi[k] * sY[j, k]
                    if s > tmax:
                        tmax = s
                if tmax > NEG_INF:  # a tile of massless sources adds nothing
                    if tmax > run_max:
                        scale = math.pow(2.0, run_max - numba.float64(tmax))  # 0 while run_max = -inf
                        total *= scale
                        for k in range(DV):
                            acc[k] *= scale
                        run_max = numba.float64(tmax)
                    shift = ftype(run_max)
                    ts = ftype(0.0)
                    for k in range(DV):
                        tn[k] = ftype(0.0)
                    for j in range(cnt):
                        s = sL[j]
                        for k in range(D):
                            s += qi[k] * sY[j, k]
                        w = ftype(math.pow(two, s - shift))
                        ts += w
                        for k in range(DV):
                            tn[k] += w * sV[j, k]
                    total += numba.float64(ts)
                    for k in range(DV):
                        acc[k] += numba.float64(tn[k])
            cuda.syncthreads()
        if active:
            for k in range(DV):
                num[i, k] = acc[k]
            den[i] = total
            smax[i] = run_max

    return kernel


@functools.lru_cache(maxsize=None)
def step_kernels(d: int):
    """Row kernels for dimension d: prepare (queries, values), finish (average, tangent
    projection), stage point, and the euler / heun / rk4 final combinations with the retraction."""
    D = int(d)

    @cuda.jit
    def prepare(X, Bc, V, q, VY):  # q_i = x_i^T (c B), v_i = V x_i
        i = cuda.grid(1)
        if i < X.shape[0]:
            for k in range(D):
                a = 0.0
                b = 0.0
                for l in range(D):
                    a += X[i, l] * Bc[l, k]
                    b += V[k, l] * X[i, l]
                q[i, k] = a
                VY[i, k] = b

    @cuda.jit
    def finish_softmax(X, num, den, out):
        i = cuda.grid(1)
        if i < X.shape[0]:
            inner = 0.0
            for k in range(D):
                out[i, k] = num[i, k] / den[i]
                inner += X[i, k] * out[i, k]
            for k in range(D):
                out[i, k] = out[i, k] - inner * X[i, k]

    @cuda.jit
    def finish_uniform(X, num, smax, out, worst):
        i = cuda.grid(1)
        if i < X.shape[0]:
            big = 0.0
            for k in range(D):
                big = max(big, abs(num[i, k]))
            size = smax[i] * math.log(2.0) + (math.log(big) if big > 0.0 else _NEG_INF)
            cuda.atomic.max(worst, 0, size)
            scale = math.pow(2.0, smax[i])
            inner = 0.0
            for k in range(D):
                out[i, k] = num[i, k] * scale
                inner += X[i, k] * out[i, k]
            for k in range(D):
                out[i, k] = out[i, k] - inner * X[i, k]

    @cuda.jit
    def stage(out, X, a, K):  # out = x + a k
        i = cuda.grid(1)
        if i < X.shape[0]:
            for k in range(D):
                out[i, k] = X[i, k] + a * K[i, k]

    @cuda.jit(device=True)
    def normalize(X, i):
        r = 0.0
        for k in range(D):
            r += X[i, k] * X[i, k]
        r = math.sqrt(r)
        for k in range(D):
            X[i, k] = X[i, k] / r

    @cuda.jit
    def euler(X, h, K1):  # x <- retract(x + h k1)
        i = cuda.grid(1)
        if i < X.shape[0]:
            for k in range(D):
                X[i, k] = X[i, k] + h * K1[i, k]
            normalize(X, i)

    @cuda.jit
    def heun(X, h2, K1, K2):  # x <- retract(x + h/2 (k1 + k2))
        i = cuda.grid(1)
        if i < X.shape[0]:
            for k in range(D):
                X[i, k] = X[i, k] + h2 * (K1[i, k] + K2[i, k])
            normalize(X, i)

    @cuda.jit
    def rk4(X, h6, K1, K2, K3, K4):  # x <- retract(x + h/6 (k1 + 2 k2 + 2 k3 + k4))
        i = cuda.grid(1)
        if i < X.shape[0]:
            for k in range(D):
                X[i, k] = X[i, k] + h6 * (K1[i, k] + 2.0 * K2[i, k] + 2.0 * K3[i, k] + K4[i, k])
            normalize(X, i)

    return {"prepare": prepare, "softmax": finish_softmax, "uniform": finish_uniform, "stage": stage,
            "euler": euler, "heun": heun, "rk4": rk4}
