"""Attention kernels: the weighted attention average behind the velocity field.

Build a kernel once from options and call it (``registry``):

    attention = make_attention(model, kernel="exact", tolerance=1e-12, precision="float64", backend="numba")
    attention.average(X, Y, weights)     # (N, d) attention averages
    attention.velocity(X, Y, weights)    # (N, d) tangent field
    attention.log_partition(X, Y, weights)

The average at targets X of the values V y_j over sources Y, weighted by the attention of
the model's normalization:

    softmax:  sum_j m_j e^{beta <B^T x, y_j>} V y_j / sum_j m_j e^{beta <B^T x, y_j>}
    uniform:  sum_j m_j e^{beta <B^T x, y_j>} V y_j
    hardmax:  mean of V y_j over the argmax set of <B^T x, y_j> (masses as weights)

Registered implementations (backend, kernel): numba exact (``attention``), numba truncated
(``truncated``, large beta), numba hardmax (beta = inf), numpy exact (``reference``, the
dense reference the numba kernels are tested against), numpy continuum (beta = inf) and
numpy fft (``fft_circle``, sources at the cells of a circle mesh) and cuda exact (``cuda``,
numba.cuda on an NVIDIA GPU; building it without one raises ``ValueError``).  ``fastexp`` holds the
vectorized exponential; ``_tile`` the fused tile pass both numba kernels share.
``attention_average``, ``exact_sums`` and ``log_partition`` are the functional forms.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..model import Model
from ._base import LOG2E, LOG_FLOAT_MAX, PRECISIONS, finish
from .registry import Attention, backends, kernels, make_attention, register_kernel, registered, unregister_kernel
from .attention import HARDMAX_TIE_ULPS, SHIFT_UNDERFLOW, exact_sums
from . import truncated as truncated  # noqa: F401  (registers the truncated kernel)
from . import reference as reference  # noqa: F401  (registers the NumPy kernels)
from . import fft_circle as fft_circle  # noqa: F401  (registers the circle FFT)
from . import cuda as cuda  # noqa: F401  (registers the numba.cuda exact kernel; needs a GPU only when built)

__all__ = ["make_attention", "Attention", "register_kernel", "unregister_kernel", "registered", "backends",
           "kernels", "attention_average", "exact_sums", "log_partition", "finish", "LOG2E", "LOG_FLOAT_MAX", "KERNELS",
           "PRECISIONS"]

#: Kernels of the default (numba) backend, the names ``solver.kernel`` accepts.
KERNELS = kernels("numba")


def attention_average(model: Model, X: ArrayLike, Y: ArrayLike | None, weights: ArrayLike, kernel: str = "exact",
                      tolerance: float = 1e-12, precision: str = "float64", backend: str = "numba") -> np.ndarray:
    """The attention-weighted average of V y_j at each target, shape (N, d).

    ``make_attention(model, kernel, tolerance, precision, backend).average(X, Y, weights)``:
    X (N, d) targets, Y (M, d) sources, weights (M,) masses m_j >= 0 with positive sum
    (contiguous float64, validated by the caller).  For the uniform normalization an
    ``OverflowError`` names the offending exponent when it exceeds float64's range.
    """
    return make_attention(model, kernel, tolerance, precision, backend).average(X, Y, weights)


def log_partition(model: Model, X: ArrayLike, Y: ArrayLike | None = None, weights: ArrayLike | None = None) -> np.ndarray:
    """log Z_i = log sum_j m_j exp(beta <Q x_i, K y_j>) at each target, shape (N,).

    Exact for any finite beta (online log-sum-exp, O(N) memory).  Y defaults to X and
    the masses to 1/M.  Not defined for beta = inf (raises ``ValueError``).
    """
    return make_attention(model).log_partition(X, Y, weights)
