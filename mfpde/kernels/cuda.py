"""The exact kernel on NVIDIA GPUs (numba.cuda): backend "cuda", kernel "exact".

Same sums as the numba CPU kernel (``attention``), in log2 units: per target i

    M_i = max_j s_ij,  S_i = sum_j 2^(s_ij - M_i),  N_i = sum_j 2^(s_ij - M_i) v_j,
    s_ij = <q_i, y_j> + log2 m_j

One CUDA thread per target, ``THREADS`` targets per block.  The sources stream through
shared-memory tiles of ``tile`` sources (points (tile, d), values (tile, dv), log-masses
(tile,)), loaded cooperatively by the block; ``tile`` shrinks with d so a tile fits in
``SHARED_BYTES`` (correct at every d; large d is not tuned).  Per tile each thread

1. computes its scores against the tile and their maximum (working precision);
2. where the tile raises the running maximum M, rescales S and N by 2^(M_old - M_new)
   (online log-sum-exp: every exponent is <= 0, nothing overflows at any beta);
3. recomputes the scores, sums e = 2^(s - M) and e v_j over the tile in the working
   precision and adds the tile sums to S and N (float64 in both precisions).

A massless source (log2 m = -inf) adds exactly 0; a tile of massless sources is skipped.
Memory O(N + M): no N x M array exists.  A target's arithmetic depends on its own query
and the sources only (not on the block it shares).

The module imports without a GPU (nothing is compiled or initialized at import); building
the Attention checks the device and raises one line when there is none.  With
``NUMBA_ENABLE_CUDASIM=1`` (set before numba.cuda is first imported) the same kernels
run on numba's CUDA simulator: Python per thread, for tests only.

:class:`DeviceStepper` keeps particle positions on the device between steps: the field
(queries, values, sums, softmax / uniform finishing, tangent projection) and the euler /
heun / rk4 stage combinations and retraction are small kernels on device arrays; the
particle solver copies positions back only at the requested times.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda  # no device is touched at import

from ._base import LOG2E, LOG_FLOAT_MAX, PRECISIONS, finish, log2_masses
from .registry import Attention, register_kernel

__all__ = ["CudaExact", "DeviceStepper", "device_problem", "THREADS", "SHARED_BYTES", "tile_size", "simulated"]

def simulated() -> bool:
    """True when numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1``)."""
    return bool(numba.config.ENABLE_CUDASIM)


#: Targets (threads) per block: 128 on a GPU; 32 under the simulator (a Python thread per
#: CUDA thread), which also makes the tests' sources span several tiles.
THREADS = 32 if simulated() else 128
#: Shared memory one block's source tile may use (bytes; below the 48 KiB static limit).
SHARED_BYTES = 40 * 1024

_NEG_INF = -math.inf


def device_problem() -> str | None:
    """Why no CUDA device can run the kernels (one line), or None when one can (or the simulator is on)."""
    if simulated():
        return None
    try:
        cuda.current_context()
    except Exception as exc:
        reason = " ".join(str(exc).split()).rstrip(" :") or type(exc).__name__
        return reason if len(reason) <= 240 else reason[:237] + "..."
    return None


def _require_device() -> None:
    problem = device_problem()
    if problem is not None:
        raise ValueError(f"solver.backend = \"cuda\" needs an NVIDIA GPU with a working CUDA driver: {problem}")


def tile_size(precision: str, d: int, dv: int) -> int:
    """Sources per shared-memory tile: THREADS, fewer when (d + dv + 1) values per source
    would overflow ``SHARED_BYTES``."""
    per_source = (d + max(dv, 1) + 1) * np.dtype(PRECISIONS[precision]).itemsize
    return max(1, min(THREADS, SHARED_BYTES // per_source))


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


def _blocks(n: int) -> int:
    return max(1, -(-n // THREADS))


def device_sums(precision, q, Y, VY, L, num, den, smax) -> None:
    """Launch the sums kernel on device (or host) arrays of the working precision."""
    kernel = make_sums_kernel(precision, q.shape[1], VY.shape[1])
    kernel[_blocks(q.shape[0]), THREADS](q, Y, VY, L, num, den, smax)


@register_kernel("cuda", "exact", precisions=("float64", "float32"))
class CudaExact(Attention):
    """The exact kernel on an NVIDIA GPU (numba.cuda), float64 or float32 working precision.

    Building it checks the device: without a GPU and driver (and without the simulator)
    ``ValueError`` says so in one line.
    """

    def __init__(self, model, tolerance: float = 1e-12, precision: str = "float64"):
        _require_device()
        super().__init__(model, tolerance=tolerance, precision=precision)

    def kernel_sums(self, q, Y, VY, log2m):
        """(N, S, M) from host arrays: copied to the device, summed there, copied back."""
        ftype = PRECISIONS[self.precision]
        n, dv = len(q), VY.shape[1]
        dq = cuda.to_device(np.ascontiguousarray(q, dtype=ftype))
        dY = cuda.to_device(np.ascontiguousarray(Y, dtype=ftype))
        dV = cuda.to_device(np.ascontiguousarray(VY, dtype=ftype).reshape(len(Y), dv))
        dL = cuda.to_device(np.ascontiguousarray(log2m, dtype=ftype))
        num = cuda.device_array((n, max(dv, 1)), dtype=np.float64)
        den = cuda.device_array(n, dtype=np.float64)
        smax = cuda.device_array(n, dtype=np.float64)
        device_sums(self.precision, dq, dY, dV, dL, num, den, smax)
        return num.copy_to_host()[:, :dv], den.copy_to_host(), smax.copy_to_host()

    def device_stepper(self, weights: np.ndarray) -> "DeviceStepper":
        """A :class:`DeviceStepper` for the particle system with these masses (float64 only)."""
        return DeviceStepper(self, weights)


# --------------------------------------------------------------------------- device-resident stepping


@functools.lru_cache(maxsize=None)
def _step_kernels(d: int):
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


class DeviceStepper:
    """Particle positions on the device and the fixed-step integrators as device kernels.

    ``upload(x)`` copies positions (N, d) to the device; ``step(name, X, h)`` advances
    them in place by one euler / heun / rk4 step followed by the retraction, evaluating
    the field (sources = the particles, masses ``weights``) on the device; ``download(X)``
    copies them back.  float64 only.  The uniform normalization's overflow check reduces
    to one number per field evaluation on the device (an atomic maximum); only when it
    overflows are the sums copied back to raise the same ``OverflowError`` as the CPU.
    """

    STAGES = {"euler": 1, "heun": 2, "rk4": 4}

    def __init__(self, attention: CudaExact, weights: np.ndarray):
        if attention.precision != "float64":
            raise ValueError("the device-resident particle stepping is float64 only")
        model = attention.model
        self.model = model
        self.d = model.d
        self.n = len(weights)
        self.kernels = _step_kernels(model.d)
        self.Bc = cuda.to_device(np.ascontiguousarray((LOG2E * model.beta) * model.B))
        self.V = cuda.to_device(np.ascontiguousarray(model.V, dtype=np.float64))
        self.L = cuda.to_device(np.ascontiguousarray(log2_masses(np.asarray(weights, dtype=np.float64))))
        n, d = self.n, self.d
        self.q = cuda.device_array((n, d))
        self.VY = cuda.device_array((n, d))
        self.num = cuda.device_array((n, d))
        self.den = cuda.device_array(n)
        self.smax = cuda.device_array(n)
        self.worst = cuda.device_array(1)
        self.K = [cuda.device_array((n, d)) for _ in range(4)]
        self.tmp = cuda.device_array((n, d))
        self.n_field_evaluations = 0

    def upload(self, x: np.ndarray):
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.shape != (self.n, self.d):
            raise ValueError(f"positions must have shape ({self.n}, {self.d}), got {x.shape}")
        return cuda.to_device(x)

    @staticmethod
    def download(X) -> np.ndarray:
        return X.copy_to_host()

    def field(self, X, out) -> None:
        """out <- the tangent field at the positions X (device arrays, (N, d))."""
        kern, blocks = self.kernels, _blocks(self.n)
        self.n_field_evaluations += 1
        kern["prepare"][blocks, THREADS](X, self.Bc, self.V, self.q, self.VY)
        device_sums("float64", self.q, X, self.VY, self.L, self.num, self.den, self.smax)
        if self.model.normalization == "softmax":
            kern["softmax"][blocks, THREADS](X, self.num, self.den, out)
            return
        self.worst.copy_to_device(np.array([_NEG_INF]))
        kern["uniform"][blocks, THREADS](X, self.num, self.smax, out, self.worst)
        if self.worst.copy_to_host()[0] > LOG_FLOAT_MAX:
            finish(self.model, self.num.copy_to_host(), self.den.copy_to_host(), self.smax.copy_to_host())

    def step(self, name: str, X, h: float) -> None:
        """One step of size h of euler / heun / rk4 on the device positions X, then the retraction."""
        kern, blocks = self.kernels, _blocks(self.n)
        K1, K2, K3, K4 = self.K
        tmp = self.tmp
        self.field(X, K1)
        if name == "euler":
            kern["euler"][blocks, THREADS](X, h, K1)
        elif name == "heun":
            kern["stage"][blocks, THREADS](tmp, X, h, K1)
            self.field(tmp, K2)
            kern["heun"][blocks, THREADS](X, 0.5 * h, K1, K2)
        elif name == "rk4":
            kern["stage"][blocks, THREADS](tmp, X, 0.5 * h, K1)
            self.field(tmp, K2)
            kern["stage"][blocks, THREADS](tmp, X, 0.5 * h, K2)
            self.field(tmp, K3)
            kern["stage"][blocks, THREADS](tmp, X, h, K3)
            self.field(tmp, K4)
            kern["rk4"][blocks, THREADS](X, h / 6.0, K1, K2, K3, K4)
        else:
            raise ValueError(f"the device stepper runs euler, heun and rk4, got {name!r}")
