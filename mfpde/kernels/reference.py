"""Plain NumPy versions of the attention kernels, chunked over targets.

These are the references the numba kernels are tested and benchmarked against.  They
materialise a (chunk, M) score matrix, so memory is chunk * M * 8 bytes.
"""

import numpy as np

from ._base import continuum_average
from .registry import Attention, register_kernel

__all__ = ["attention_average_numpy", "log_partition_numpy", "NumpyReference", "ContinuumAttention"]


def attention_average_numpy(model, X, Y, weights, chunk=2048):
    """Same contract as ``mfpde.kernels.attention_average`` for finite beta (dense softmax)."""
    out = np.empty_like(X)
    VY = Y @ model.V.T
    with np.errstate(divide="ignore"):
        logm = np.log(weights)
    for start in range(0, len(X), chunk):
        x = X[start : start + chunk]
        s = model.beta * (x @ model.B) @ Y.T + logm
        smax = s.max(axis=1, keepdims=True)
        w = np.exp(s - smax)
        avg = w @ VY
        if model.normalization == "softmax":
            avg /= w.sum(axis=1, keepdims=True)
        else:
            avg *= np.exp(smax)
        out[start : start + chunk] = avg
    return out


def log_partition_numpy(model, X, Y, weights, chunk=1024):
    """Same contract as ``mfpde.kernels.log_partition``: log sum_j m_j exp(beta <Q x_i, K y_j>)
    by a chunked dense log-sum-exp."""
    with np.errstate(divide="ignore"):
        logm = np.log(weights)
    out = np.empty(len(X))
    for start in range(0, len(X), chunk):
        s = model.beta * (X[start : start + chunk] @ model.B) @ Y.T + logm
        smax = s.max(axis=1)
        out[start : start + chunk] = smax + np.log(np.exp(s - smax[:, None]).sum(axis=1))
    return out


@register_kernel("numpy", "exact")
class NumpyReference(Attention):
    """The dense NumPy reference (finite beta): ``attention_average_numpy`` and
    ``log_partition_numpy`` in blocks of targets; memory chunk * M * 8 bytes.  Ensembles: a
    plain loop over the systems (the reference of the ensemble kernels)."""

    ensembles = True

    def kernel_sums(self, q, Y, VY, log2m, chunk=1024):
        """(N, S, M) by dense blocks of targets (log2 units; the backend contract)."""
        n = len(q)
        num, den, smax = np.empty((n, VY.shape[1])), np.empty(n), np.empty(n)
        for start in range(0, n, chunk):
            s = q[start : start + chunk] @ Y.T + log2m
            m = s.max(axis=1)
            w = np.exp2(s - m[:, None])
            num[start : start + chunk] = w @ VY
            den[start : start + chunk] = w.sum(axis=1)
            smax[start : start + chunk] = m
        return num, den, smax

    def average(self, X, Y, weights):
        if np.ndim(X) == 3:
            return self.ensemble_average(*self._ensemble_inputs(X, Y, weights))
        return attention_average_numpy(self.model, X, Y, weights)

    def ensemble_log_partition(self, X, Y, weights):
        return np.stack([log_partition_numpy(self.model, X[s], Y[s], weights[s]) for s in range(len(X))])

    def log_partition(self, X, Y=None, weights=None):
        if self.model.is_zero_temperature:
            raise ValueError("log_partition needs a finite beta")
        if np.ndim(X) == 3:
            return self.ensemble_log_partition(*self._ensemble_inputs(X, Y, weights))
        X = np.asarray(X, dtype=np.float64)
        Y = X if Y is None else np.asarray(Y, dtype=np.float64)
        m = np.full(len(Y), 1.0 / len(Y)) if weights is None else np.asarray(weights, dtype=np.float64)
        return log_partition_numpy(self.model, X, Y, m)


@register_kernel("numpy", "continuum", zero_temperature=True)
class ContinuumAttention(Attention):
    """beta = inf, ``zero_temperature = "continuum"``: P_x V B^T x / |B^T x| (the Laplace
    limit for a density with full support; the sources play no part).  Pointwise, so an
    ensemble (S, n, d) is one stacked computation (numpy's matmul runs one gemm per system:
    the same bits as the system alone)."""

    ensembles = True

    def average(self, X, Y=None, weights=None):
        return continuum_average(self.model, X)
