"""Attention kernels: the weighted attention average behind the velocity field.

``attention_average(model, X, Y, weights)`` returns, at targets X, the average of the
values V y_j over sources Y weighted by the attention of the model's normalization:

    softmax:  sum_j m_j e^{beta <B^T x, y_j>} V y_j / sum_j m_j e^{beta <B^T x, y_j>}
    uniform:  sum_j m_j e^{beta <B^T x, y_j>} V y_j
    hardmax:  mean of V y_j over the argmax set of <B^T x, y_j> (masses as weights)

The numba kernels live in ``attention`` (exact), ``truncated`` (large beta) and
``fastexp`` (the vectorized exponential); ``reference`` holds the plain NumPy versions
they are tested against.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from ..model import Model
from .attention import LOG2E, PRECISIONS, hardmax_sums, make_shifted_sums, make_softmax_sums, pack_sources
from .blocked import BLOCKED_MIN_D, blocked_sums  # the high-d path (GEMM-blocked tiles)

__all__ = ["attention_average", "exact_sums", "log_partition", "LOG_FLOAT_MAX", "KERNELS", "PRECISIONS"]

#: The shifted exact kernel's S_i below this means the shift overshot the maximum by more
#: than ~900 (float64) / ~60 (float32) in log2 units: recompute with the online maximum.
SHIFT_UNDERFLOW = {"float64": 2.0**-900, "float32": 2.0**-60}

#: Names accepted by ``kernel=``.
KERNELS = ("exact", "truncated")

#: log of the largest float64: exp(x) overflows for x above this.
LOG_FLOAT_MAX = math.log(np.finfo(np.float64).max)

#: Scores within this many ulps (relative to |q| max|y|) of the maximum count as ties.
HARDMAX_TIE_ULPS = 64


def _prepared(model, X, Y, weights):
    """Contiguous float64 inputs for the kernels: queries, transposed sources and values."""
    beta = model.beta
    scale = 1.0 if math.isinf(beta) else beta
    q = np.ascontiguousarray(scale * (X @ model.B))  # rows beta (B^T x_i)^T
    yT = np.ascontiguousarray(Y.T)
    vT = np.ascontiguousarray(model.V @ Y.T)
    return q, yT, vT, np.ascontiguousarray(weights, dtype=np.float64)


def _log2_masses(weights):
    with np.errstate(divide="ignore"):
        return np.log2(weights)


def exact_sums(model: Model, X: ArrayLike, Y: ArrayLike | None, weights: ArrayLike, precision: str = "float64", values: bool = True) -> tuple:
    """(N_i, S_i, M_i) of the exact kernel (``attention`` module docstring), M_i in log2 units.

    For d <= 3 the shift M_i is the Cauchy-Schwarz bound |q_i| max|y_j| + max log2 m_j
    (``make_shifted_sums``: one fused pass, no running maximum); targets where it
    overshoots the true maximum so far that S_i < ``SHIFT_UNDERFLOW`` are recomputed with
    the online maximum (``make_softmax_sums``), as are all targets for d > 3.  Finite beta
    only.  ``values=False`` skips the numerator (N_i has shape (N, 0)).  For d >=
    ``blocked.BLOCKED_MIN_D`` the scores and value sums are blocked matrix products
    (``blocked.blocked_sums``, same contract).
    """
    # --- high-d path: GEMM-blocked scores and value sums (kernels.blocked) ---
    if X.shape[1] >= BLOCKED_MIN_D:
        return blocked_sums(model, X, Y, weights, precision, values)
    # --- end high-d path ---
    dtype = PRECISIONS[precision]
    n, d = X.shape
    q = np.ascontiguousarray((LOG2E * model.beta) * (X @ model.B), dtype=dtype)
    VY = Y @ model.V.T if values else np.empty((len(Y), 0))
    Yp, Vp, Lp = pack_sources(Y, VY, _log2_masses(weights), dtype)
    dv = VY.shape[1]
    num = np.empty((n, dv))
    den = np.empty(n)
    smax = np.empty(n)
    if not n:
        return num, den, smax
    redo = np.arange(n)
    if dv <= 3:
        # one fused pass with the shift U_i = |q_i| max|y_j| + max log2 m_j >= max_j s_ij
        massive = weights > 0
        ymax = math.sqrt(float(np.einsum("ij,ij->i", Y[massive], Y[massive]).max()))
        lmax = float(np.log2(weights[massive].max()))
        margin = 1e-12 if precision == "float64" else 1e-6
        qnorm = np.sqrt(np.einsum("ij,ij->i", q.astype(np.float64), q.astype(np.float64)))
        shift = (qnorm * (ymax * (1 + margin)) + lmax).astype(dtype).astype(np.float64)
        make_shifted_sums(precision, d, dv)(q, shift, Yp, Vp, Lp, num, den)
        smax[:] = shift
        # where the bound exceeds the true maximum so much that the largest term may have
        # underflowed, recompute with the online maximum
        redo = np.flatnonzero(~(den >= SHIFT_UNDERFLOW[precision]))
    if len(redo):
        sub_num = np.empty((len(redo), dv))
        sub_den = np.empty(len(redo))
        sub_smax = np.empty(len(redo))
        make_softmax_sums(precision, d, dv)(np.ascontiguousarray(q[redo]), Yp, Vp, Lp, sub_num, sub_den, sub_smax)
        num[redo], den[redo], smax[redo] = sub_num, sub_den, sub_smax
    return num, den, smax


def finish(model, num, den, smax2):
    """The attention average from the sums: N / S (softmax) or 2^M N (uniform, in log space)."""
    if model.normalization == "softmax":
        return num / den[:, None]
    with np.errstate(divide="ignore"):
        log_size = smax2 * math.log(2.0) + np.log(np.abs(num).max(axis=1))
    worst = int(np.argmax(log_size))
    if log_size[worst] > LOG_FLOAT_MAX:
        raise OverflowError(
            "uniform normalization overflows float64: the field at target "
            f"{worst} is about exp({log_size[worst]:.4g}) (beta = {model.beta:g}); "
            "use normalization = \"softmax\" or a smaller beta"
        )
    return num * np.exp2(smax2)[:, None]


def attention_average(model: Model, X: ArrayLike, Y: ArrayLike | None, weights: ArrayLike, kernel: str = "exact", tolerance: float = 1e-12, precision: str = "float64") -> np.ndarray:
    """The attention-weighted average of V y_j at each target, shape (N, d).

    X: (N, d) targets; Y: (M, d) sources; weights: (M,) masses m_j >= 0 with positive sum
    (validated by the caller).  beta = inf uses the hardmax kernel.  ``kernel`` is
    "exact" or "truncated" (``truncated.truncated_sums``; it falls back to the exact
    kernel where truncation would not pay); ``precision`` the exact kernel's working
    precision.  For the uniform normalization the result is 2^M_i N_i, formed in log
    space; an ``OverflowError`` names the offending exponent when it exceeds float64's
    range.
    """
    if model.is_zero_temperature:
        q, yT, vT, m = _prepared(model, X, Y, weights)
        n, d = X.shape
        num = np.empty((n, d))
        den = np.empty(n)
        ynorm = float(np.sqrt((Y * Y).sum(axis=1)).max()) if len(Y) else 0.0
        tie_tol = HARDMAX_TIE_ULPS * np.finfo(np.float64).eps * np.linalg.norm(q, axis=1) * ynorm
        hardmax_sums(q, yT, vT, m, tie_tol, num, den)
        return num / den[:, None]
    if kernel == "truncated":
        from .truncated import truncated_sums

        num, den, smax2 = truncated_sums(model, X, Y, weights, tolerance)
    else:
        num, den, smax2 = exact_sums(model, X, Y, weights, precision)
    return finish(model, num, den, smax2)


def log_partition(model: Model, X: ArrayLike, Y: ArrayLike | None = None, weights: ArrayLike | None = None) -> np.ndarray:
    """log Z_i = log sum_j m_j exp(beta <Q x_i, K y_j>) at each target, shape (N,).

    Exact for any finite beta (online log-sum-exp, O(N) memory).  Y defaults to X and
    the masses to 1/M.  Not defined for beta = inf (raises ``ValueError``).
    """
    if model.is_zero_temperature:
        raise ValueError("log_partition needs a finite beta")
    X = np.asarray(X, dtype=np.float64)
    Y = X if Y is None else np.asarray(Y, dtype=np.float64)
    m = np.full(len(Y), 1.0 / len(Y)) if weights is None else np.asarray(weights, dtype=np.float64)
    _, den, smax2 = exact_sums(model, X, Y, m, values=False)
    return smax2 * math.log(2.0) + np.log(den)
