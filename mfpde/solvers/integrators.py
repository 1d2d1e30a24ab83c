"""Explicit Runge-Kutta steps on the sphere, each followed by the retraction x -> x/|x|.

The field is evaluated at the (slightly off-sphere) stage points through its smooth
extension F(x) = P_x(...) with P_x y = y - <x, y> x.  The sphere is invariant under
dx/dt = F(x) (d|x|^2/dt = 2 <x, y> (1 - |x|^2)), so each method keeps its classical order
p on the sphere and the retraction moves the result by O(dt^{p+1}) only.

Orders: euler 1, heun 2, rk4 4; rk45 is the Dormand-Prince 5(4) pair with local
extrapolation (order 5) and an embedded order-4 error estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..sphere import retract

__all__ = ["FIXED_STEP", "fixed_step", "DormandPrince", "ORDER", "INTEGRATORS"]

Field = Callable[[np.ndarray], np.ndarray]

#: The integrators of the particle methods and their orders: the registry of ``solver.integrator``.
ORDER = {"euler": 1, "heun": 2, "rk4": 4, "rk45": 5}
#: The values of ``solver.integrator``.
INTEGRATORS = tuple(ORDER)


def _euler(f: Field, x, h):
    return x + h * f(x)


def _heun(f: Field, x, h):
    k1 = f(x)
    k2 = f(x + h * k1)
    return x + (0.5 * h) * (k1 + k2)


def _rk4(f: Field, x, h):
    k1 = f(x)
    k2 = f(x + (0.5 * h) * k1)
    k3 = f(x + (0.5 * h) * k2)
    k4 = f(x + h * k3)
    return x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


FIXED_STEP = {"euler": _euler, "heun": _heun, "rk4": _rk4}


def fixed_step(name: str, f: Field, x: np.ndarray, h: float) -> np.ndarray:
    """One step of size h of the named method, then the retraction."""
    return retract(FIXED_STEP[name](f, x, h))


# Dormand-Prince 5(4) coefficients (Dormand & Prince 1980; Hairer, Norsett, Wanner I, table 5.2).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4))


@dataclass
class DormandPrince:
    """Adaptive Dormand-Prince 5(4) with the standard controller.

    The error of a step is the RMS over all coordinates of e / (atol + rtol max(|x|, |x_new|)),
    e the difference of the embedded solutions (for an ensemble (S, N, d): the largest of the
    S systems' RMS errors, so every system is stepped at least as accurately as alone); a step is accepted when it is <= 1 and the
    next step is h * min(5, max(0.2, 0.9 err^(-1/5))).
    """

    rtol: float
    atol: float
    safety: float = 0.9
    min_factor: float = 0.2
    max_factor: float = 5.0

    def step(self, f: Field, x: np.ndarray, h: float):
        """Try one step: returns (x_new retracted, err norm)."""
        k = []
        for i in range(7):
            xi = x
            for a, kj in zip(_A[i], k):
                if a != 0.0:
                    xi = xi + (h * a) * kj
            k.append(f(xi))
        x_new = x + h * sum(b * kj for b, kj in zip(_B5, k) if b != 0.0)
        err = h * sum(e * kj for e, kj in zip(_E, k) if e != 0.0)
        scale = self.atol + self.rtol * np.maximum(np.abs(x), np.abs(x_new))
        if x.ndim == 3:  # an ensemble (S, N, d): the largest of the systems' RMS errors
            err_norm = math.sqrt(float(np.max(np.mean((err / scale) ** 2, axis=(1, 2)))))
        else:
            err_norm = math.sqrt(float(np.mean((err / scale) ** 2)))
        return retract(x_new), err_norm

    def next_h(self, h: float, err_norm: float) -> float:
        if err_norm == 0.0:
            return h * self.max_factor
        factor = self.safety * err_norm ** (-0.2)
        return h * min(self.max_factor, max(self.min_factor, factor))
