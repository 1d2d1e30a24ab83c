"""Attention kernels: the weighted attention average behind the velocity field.

``attention_average(model, X, Y, weights)`` returns, at targets X, the average of the
values V y_j over sources Y weighted by the attention of the model's normalization:

    softmax:  sum_j m_j e^{beta <B^T x, y_j>} V y_j / sum_j m_j e^{beta <B^T x, y_j>}
    uniform:  sum_j m_j e^{beta <B^T x, y_j>} V y_j
    hardmax:  mean of V y_j over the argmax set of <B^T x, y_j> (masses as weights)

The numba kernels live in ``attention``; ``reference`` holds the plain NumPy versions
they are tested against.
"""

import math

import numpy as np

from .attention import hardmax_sums, softmax_sums

__all__ = ["attention_average", "log_partition", "LOG_FLOAT_MAX"]

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


def _log_masses(weights):
    with np.errstate(divide="ignore"):
        return np.log(weights)


def attention_average(model, X, Y, weights):
    """The attention-weighted average of V y_j at each target, shape (N, d).

    X: (N, d) targets; Y: (M, d) sources; weights: (M,) masses m_j >= 0 with positive sum
    (validated by the caller).  beta = inf uses the hardmax kernel.  For the uniform
    normalization the result is exp(M_i) N_i, formed in log space; an ``OverflowError``
    names the offending exponent when it exceeds float64's range.
    """
    q, yT, vT, m = _prepared(model, X, Y, weights)
    n, d = X.shape
    num = np.empty((n, d))
    den = np.empty(n)
    if model.is_zero_temperature:
        ynorm = float(np.sqrt((Y * Y).sum(axis=1)).max()) if len(Y) else 0.0
        tie_tol = HARDMAX_TIE_ULPS * np.finfo(np.float64).eps * np.linalg.norm(q, axis=1) * ynorm
        hardmax_sums(q, yT, vT, m, tie_tol, num, den)
        return num / den[:, None]
    smax = np.empty(n)
    softmax_sums(q, yT, vT, _log_masses(m), num, den, smax)
    if model.normalization == "softmax":
        return num / den[:, None]
    with np.errstate(divide="ignore"):
        log_size = smax + np.log(np.abs(num).max(axis=1))
    worst = int(np.argmax(log_size))
    if log_size[worst] > LOG_FLOAT_MAX:
        raise OverflowError(
            "uniform normalization overflows float64: the field at target "
            f"{worst} is about exp({log_size[worst]:.4g}) (beta = {model.beta:g}); "
            "use normalization = \"softmax\" or a smaller beta"
        )
    return num * np.exp(smax)[:, None]


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
    q, yT, _, m = _prepared(model, X, Y, m)
    n = len(X)
    den = np.empty(n)
    smax = np.empty(n)
    softmax_sums(q, yT, np.empty((0, len(Y))), _log_masses(m), np.empty((n, 0)), den, smax)
    return smax + np.log(den)
