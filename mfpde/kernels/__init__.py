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

import math

import numpy as np

from .attention import LOG2E, PRECISIONS, hardmax_sums, make_softmax_sums, pack_sources

__all__ = ["attention_average", "exact_sums", "log_partition", "LOG_FLOAT_MAX", "KERNELS", "PRECISIONS"]

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


def exact_sums(model, X, Y, weights, precision="float64", values=True):
    """(N_i, S_i, M_i) of the exact kernel (``attention`` module docstring), M_i in log2 units.

    Finite beta only.  ``values=False`` skips the numerator (N_i has shape (N, 0)).
    """
    dtype = PRECISIONS[precision]
    n, d = X.shape
    q = np.ascontiguousarray((LOG2E * model.beta) * (X @ model.B), dtype=dtype)
    VY = Y @ model.V.T if values else np.empty((len(Y), 0))
    Yp, Vp, Lp = pack_sources(Y, VY, _log2_masses(weights), dtype)
    num = np.empty((n, VY.shape[1]))
    den = np.empty(n)
    smax = np.empty(n)
    if n:
        make_softmax_sums(precision, d, VY.shape[1])(q, Yp, Vp, Lp, num, den, smax)
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


def attention_average(model, X, Y, weights, kernel="exact", tolerance=1e-12, precision="float64"):
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


def log_partition(model, X, Y=None, weights=None):
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
