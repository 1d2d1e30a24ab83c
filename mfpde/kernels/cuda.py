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

The kernels themselves are in ``_cuda_kernels``, imported on first use (``import
mfpde.kernels`` does not import numba.cuda).  The module imports without a GPU; building
the Attention checks the device and raises one line when there is none.  With
``NUMBA_ENABLE_CUDASIM=1`` (set before numba.cuda is first imported) the same kernels
run on numba's CUDA simulator: Python per thread, for tests only.

:class:`DeviceStepper` keeps particle positions on the device between steps: the field
(queries, values, sums, softmax / uniform finishing, tangent projection) and the euler /
heun / rk4 stage combinations and retraction are small kernels on device arrays; the
particle solver copies positions back only at the requested times.
"""

from __future__ import annotations

import math

import numba
import numpy as np

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
#: The static shared-memory limit of a block: one source (2 d + 1 values) must fit in it.
SHARED_LIMIT = 48 * 1024

_NEG_INF = -math.inf


def device_problem() -> str | None:
    """Why no CUDA device can run the kernels (one line), or None when one can (or the simulator is on)."""
    from numba import cuda

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


def _blocks(n: int) -> int:
    return max(1, -(-n // THREADS))


def make_sums_kernel(precision: str, d: int, dv: int):
    """The sums kernel specialized to (precision, d, dv), compiled on first launch:
    ``kernel[blocks, THREADS](q, Y, VY, L, num, den, smax)``."""
    from ._cuda_kernels import make_sums_kernel as make

    return make(precision, d, dv)


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
        itemsize = np.dtype(PRECISIONS[precision]).itemsize
        if (2 * model.d + 1) * itemsize > SHARED_LIMIT:
            largest = (SHARED_LIMIT // itemsize - 1) // 2
            raise ValueError(f"the cuda kernel holds a source's point and value in shared memory: "
                             f"d <= {largest} in {precision}, got d = {model.d}")
        super().__init__(model, tolerance=tolerance, precision=precision)

    def kernel_sums(self, q, Y, VY, log2m):
        """(N, S, M) from host arrays: copied to the device, summed there, copied back."""
        from numba import cuda

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
        from numba import cuda

        from ._cuda_kernels import step_kernels

        if attention.precision != "float64":
            raise ValueError("the device-resident particle stepping is float64 only")
        model = attention.model
        self.model = model
        self.d = model.d
        self.n = len(weights)
        self.kernels = step_kernels(model.d)
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
        from numba import cuda

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
