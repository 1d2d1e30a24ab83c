"""The self-attention model: Q, K, V, the inverse temperature beta and the normalization.

Tokens x on S^{d-1} move by (docs/theory.md section 1)

    dx_i/dt = P_{x_i} ( sum_j w_ij V x_j ),     w_ij ~ exp(beta <Q x_i, K x_j>)

with ``B = Q^T K`` (so ``<Q x, K y> = <B^T x, y>``) and ``A = V B^T`` (the matrix that
drives the zero-temperature flow, section 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Model", "NORMALIZATIONS", "ZERO_TEMPERATURE_FIELDS", "MAX_ENTRY", "parse_beta"]

#: The attention normalizations (``Model.normalization``).
NORMALIZATIONS = ("softmax", "uniform")
#: Largest entry accepted in Q, K, V and in B = Q^T K, A = V B^T: the eigen- and singular-value
#: solvers square entries, which must stay within float64.
MAX_ENTRY = 1e100

#: The fields at beta = inf (``Model.zero_temperature``).
ZERO_TEMPERATURE_FIELDS = ("continuum", "hardmax")


def parse_beta(beta: object, show: Callable[[object], str] = repr) -> float:
    """beta as a float >= 0 (``inf`` allowed): a number, or the string ``"inf"`` (also
    ``"infinity"``, ``"+inf"``, any case).  The one rule for ``model.beta`` (the Model and the
    config loader); ValueError ``"model.beta must be ..., got <show(beta)>"`` otherwise."""
    wrong = f"model.beta must be a number >= 0 or \"inf\", got {show(beta)}"
    if isinstance(beta, str):
        if beta.strip().lower() in ("inf", "infinity", "+inf"):
            return math.inf
        raise ValueError(wrong)
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.integer, np.floating)):
        raise ValueError(wrong)
    try:
        value = float(beta)
    except OverflowError:
        raise ValueError("model.beta must be a number >= 0 or \"inf\", got an integer too large for a float") from None
    if math.isnan(value):
        raise ValueError(wrong)
    if value < 0:
        raise ValueError(f"model.beta must be >= 0 (or \"inf\"), got {show(beta)}")
    return value


def _as_matrix(name: str, value, d: int) -> np.ndarray:
    """A read-only float64 (d, d) matrix; ``None`` is the identity, a number c is c I."""
    if value is None:
        mat = np.eye(d)
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        mat = float(value) * np.eye(d)
    else:
        try:
            mat = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"model.{name} must be a {d} x {d} matrix of numbers, got {value!r}") from None
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            raise ValueError(f"model.{name} must be a square matrix, got shape {mat.shape}")
        if mat.shape != (d, d):
            raise ValueError(f"model.{name} must be {d} x {d} (d = {d}), got {mat.shape[0]} x {mat.shape[1]}")
    if not np.all(np.isfinite(mat)):
        raise ValueError(f"model.{name} must have finite entries")
    mat = np.ascontiguousarray(mat, dtype=np.float64)
    mat.setflags(write=False)
    return mat


def _infer_d(d, Q, K, V) -> int:
    shapes = [np.shape(m) for m in (Q, K, V) if m is not None and np.ndim(m) == 2]
    if d is None:
        if not shapes:
            raise ValueError("model.d is required when Q, K and V are all identity or scalars")
        d = shapes[0][0]
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 2:
        raise ValueError(f"model.d must be an integer >= 2, got {d!r}")
    return int(d)


@dataclass(frozen=True, eq=False)
class Model:
    """Self-attention dynamics on S^{d-1}.

    Parameters
    ----------
    Q, K, V : (d, d) array_like, number or None
        Query, key and value matrices; ``None`` is the identity and a number c means c I.
    beta : float or "inf"
        Inverse temperature, >= 0.  ``inf`` selects a zero-temperature field.
    d : int, optional
        Ambient dimension (the sphere is S^{d-1}); inferred from the matrices when omitted.
    normalization : {"softmax", "uniform"}
        ``softmax`` (SA): w_ij = exp(beta <Qx_i, Kx_j>) / Z_i.
        ``uniform`` (USA): w_ij = m_j exp(beta <Qx_i, Kx_j>) (1/N for equal masses).
    zero_temperature : {"continuum", "hardmax"}
        Which beta = inf field (docs/theory.md section 3): ``continuum`` is
        P_x V B^T x / |B^T x| (no interaction), ``hardmax`` attends to
        argmax_j <Q x_i, K x_j> with ties split in proportion to the masses.
    """

    Q: np.ndarray = None
    K: np.ndarray = None
    V: np.ndarray = None
    beta: float = 1.0
    d: int = None
    normalization: str = "softmax"
    zero_temperature: str = "continuum"
    B: np.ndarray = field(init=False, repr=False)
    A: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        d = _infer_d(self.d, self.Q, self.K, self.V)
        set_ = object.__setattr__
        set_(self, "d", d)
        for name in ("Q", "K", "V"):
            set_(self, name, _as_matrix(name, getattr(self, name), d))
        set_(self, "beta", parse_beta(self.beta))
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"model.normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization!r}"
            )
        if self.zero_temperature not in ZERO_TEMPERATURE_FIELDS:
            raise ValueError(
                "model.zero_temperature must be one of "
                f"{', '.join(ZERO_TEMPERATURE_FIELDS)}, got {self.zero_temperature!r}"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            B = self.Q.T @ self.K
            A = self.V @ B.T
        peak = max(float(np.abs(m).max()) for m in (self.Q, self.K, self.V, B, A))
        if not peak <= MAX_ENTRY:  # NaN or inf too
            raise ValueError(f"model matrices Q, K, V, B = Q^T K and A = V B^T must have entries of size <= "
                             f"{MAX_ENTRY:.0e} (float64 eigen- and singular-value solvers square them), got "
                             f"{peak:.3g}")
        for mat in (B, A):
            mat.setflags(write=False)
        set_(self, "B", B)
        set_(self, "A", A)

    @property
    def is_zero_temperature(self) -> bool:
        """True when beta = inf."""
        return math.isinf(self.beta)

    def replace(self, **changes) -> "Model":
        """A copy with some parameters changed (``model.replace(beta=50)``)."""
        params = {k: getattr(self, k) for k in ("Q", "K", "V", "beta", "d", "normalization", "zero_temperature")}
        params.update(changes)
        return Model(**params)

    def to_dict(self) -> dict:
        """The model as plain JSON-able data (beta = inf as the string ``"inf"``)."""
        return {
            "d": self.d,
            "beta": "inf" if self.is_zero_temperature else self.beta,
            "normalization": self.normalization,
            "zero_temperature": self.zero_temperature,
            "Q": self.Q.tolist(),
            "K": self.K.tolist(),
            "V": self.V.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"Model(d={self.d}, beta={self.beta!r}, normalization={self.normalization!r}, "
            f"zero_temperature={self.zero_temperature!r})"
        )

    def _repr_html_(self) -> str:
        """The parameters and the matrices Q, K, V (Jupyter)."""
        import html

        def matrix(a):
            rows = "".join("<tr>" + "".join(f"<td>{v:.4g}</td>" for v in row) + "</tr>" for row in a[:8, :8])
            more = "<tr><td>...</td></tr>" if a.shape[0] > 8 else ""
            return f"<table>{rows}{more}</table>"

        cells = "".join(f"<td>{name}<br>{matrix(np.asarray(getattr(self, name)))}</td>" for name in ("Q", "K", "V"))
        return f"<b>{html.escape(repr(self))}</b><table><tr>{cells}</tr></table>"
