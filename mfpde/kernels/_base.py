"""Pieces shared by every attention kernel (private): units, precisions, the finishing step.

All kernels work in log2 units: for targets x_i and sources y_j with masses m_j,

    q_i = log2(e) beta B^T x_i          (queries, log2 units; B = Q^T K)
    l_j = log2 m_j                      (-inf for a massless source)
    s_ij = <q_i, y_j> + l_j             (so 2^s_ij = m_j e^{beta <Q x_i, K y_j>})

and return, per target, N_i = sum_j 2^(s_ij - M_i) V y_j, S_i = sum_j 2^(s_ij - M_i) and
the shift M_i (log2 units, ideally max_j s_ij).  ``finish`` turns them into the attention
average: N / S (softmax) or 2^M N (uniform normalization, formed in log space).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..model import Model

__all__ = ["LOG2E", "PRECISIONS", "LOG_FLOAT_MAX", "log2_masses", "finish", "continuum_average"]

#: log2(e): a score beta <q, y> in natural units is LOG2E beta <q, y> in log2 units.
LOG2E = 1.4426950408889634

#: Working precisions by name (numpy dtypes).
PRECISIONS = {"float64": np.float64, "float32": np.float32}

#: log of the largest float64: exp(x) overflows for x above this.
LOG_FLOAT_MAX = math.log(np.finfo(np.float64).max)


def log2_masses(weights: np.ndarray) -> np.ndarray:
    """log2 m_j, -inf for massless sources (no warning)."""
    with np.errstate(divide="ignore"):
        return np.log2(weights)


def finish(model: "Model", num: np.ndarray, den: np.ndarray, smax2: np.ndarray) -> np.ndarray:
    """The attention average from the sums: N / S (softmax) or 2^M N (uniform, in log space).

    Raises ``OverflowError`` naming the exponent when a uniform-normalization average
    exceeds float64's range.
    """
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


def continuum_average(model: "Model", X: np.ndarray) -> np.ndarray:
    """The beta = inf continuum drift V B^T x / |B^T x| (zero where B^T x = 0), untangented."""
    bx = X @ model.B  # rows (B^T x)^T; (S, n, d) ensembles: numpy's stacked matmul, one gemm per system
    norm = np.linalg.norm(bx, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (bx @ model.V.T) / norm, 0.0)
