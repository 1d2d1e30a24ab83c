"""The attention sums on the circle as FFT circular convolutions (docs/theory.md section 2).

On S^1 with x = (cos t, sin t), y = (cos s, sin s) and B = Q^T K = a I + b J
(J the rotation by 90 degrees, so B = r R(alpha), a = r cos alpha, b = r sin alpha):

    <B^T x, y> = <x, B y> = r cos(t - s - alpha)

depends on t - s only, so the attention sums over sources at the cell centers s_j with
masses m_j, evaluated at the faces t_i, are circular convolutions:

    Z_i = sum_j m_j e^{beta r cos(t_i - s_j - alpha)}            (the softmax denominator)
    C_i = sum_j m_j e^{...} cos s_j,   S_i = sum_j m_j e^{...} sin s_j   (numerator: V (C, S))

With faces t_i = i dx and centers s_j = (j + 1/2) dx the offset t_i - s_j = (i - j - 1/2) dx
depends on (i - j) mod M only: one real FFT of the kernel and one of each weighted mass
vector, O(M log M).

Large beta: the kernel is evaluated shifted, k_n = e^{beta r (cos(phi_n - alpha) - 1)}
in [e^{-2 beta r}, 1] (it never overflows; for beta r > ~372 its far values underflow to 0,
harmlessly), and the factor e^{beta r} is returned separately as ``log_scale``.  Softmax
never needs it (it cancels in C / Z); the uniform normalization multiplies by it in the
caller, in log space.

Accuracy: an FFT convolution has an absolute error of a few eps times
max_n k_n sum_j |f_j| <= eps sum_j m_j, not a relative one.  Where the true Z_i is
tiny (no mass within the kernel's reach, at most e^{-2 beta r} below its maximum) the
computed Z_i, C_i, S_i carry a large relative error; ``unreliable`` flags faces where
Z_i < ``RELIABLE_FLOOR`` sum_j m_j, for which the caller recomputes the sums directly
(docs/methods.md, "Finite volumes on the circle").
"""

from __future__ import annotations

import math

import numpy as np

from ._base import LOG_FLOAT_MAX
from .registry import Attention, register_kernel

__all__ = [
    "CircleFFT",
    "rotation_parameters",
    "circle_attention_sums",
    "circle_attention_sums_direct",
    "circle_attention_sums_at",
    "unreliable",
    "RELIABLE_FLOOR",
]

#: Faces whose FFT denominator is below this fraction of the total mass are recomputed
#: directly: there the FFT's absolute round-off (~1e-16 of the total) would exceed
#: ~1e-10 of the value.
RELIABLE_FLOOR = 1e-6


def rotation_parameters(B, rtol: float = 1e-13):
    """(r, alpha) with B = r R(alpha) = a I + b J, or None if B (2 x 2) is not of that form.

    a = B[0,0] = B[1,1], b = B[1,0] = -B[0,1] within ``rtol`` times |B|.
    """
    B = np.asarray(B, dtype=np.float64)
    if B.shape != (2, 2):
        return None
    scale = max(float(np.abs(B).max()), 1e-300)
    a = 0.5 * (B[0, 0] + B[1, 1])
    b = 0.5 * (B[1, 0] - B[0, 1])
    if abs(B[0, 0] - B[1, 1]) > rtol * scale or abs(B[1, 0] + B[0, 1]) > rtol * scale:
        return None
    return math.hypot(a, b), math.atan2(b, a)


def _kernel(beta_r: float, alpha: float, M: int) -> np.ndarray:
    """k_n = e^{beta r (cos((n - 1/2) dx - alpha) - 1)}, n = 0 .. M-1 (the shifted kernel)."""
    dx = 2.0 * math.pi / M
    phi = (np.arange(M) - 0.5) * dx - alpha
    # cos(phi) - 1 = -2 sin^2(phi / 2): no cancellation near the peak
    with np.errstate(under="ignore"):
        return np.exp(-2.0 * beta_r * np.sin(0.5 * phi) ** 2)


def _weighted(masses: np.ndarray) -> np.ndarray:
    M = masses.shape[0]
    s = (np.arange(M) + 0.5) * (2.0 * math.pi / M)
    return np.stack([masses, masses * np.cos(s), masses * np.sin(s)])


def circle_attention_sums(beta_r: float, alpha: float, masses) -> tuple[np.ndarray, float]:
    """(sums (3, M), log_scale): Z, C, S at the M faces by FFT, times e^{-log_scale}.

    ``masses`` (M,) at the cell centers (j + 1/2) dx; faces at i dx.  The true sums are
    e^{log_scale} sums with log_scale = beta r.
    """
    masses = np.ascontiguousarray(masses, dtype=np.float64)
    M = masses.shape[0]
    k_hat = np.fft.rfft(_kernel(beta_r, alpha, M))
    f_hat = np.fft.rfft(_weighted(masses), axis=1)
    return np.fft.irfft(f_hat * k_hat, n=M, axis=1), float(beta_r)


def circle_attention_sums_direct(beta_r: float, alpha: float, masses) -> tuple[np.ndarray, float]:
    """The same sums by the O(M^2) direct double sum (NumPy reference of the FFT path)."""
    masses = np.ascontiguousarray(masses, dtype=np.float64)
    M = masses.shape[0]
    n = (np.arange(M)[:, None] - np.arange(M)[None, :]) % M
    K = _kernel(beta_r, alpha, M)[n]  # K[i, j] = k_{(i - j) mod M}
    return _weighted(masses) @ K.T, float(beta_r)


def circle_attention_sums_at(beta_r: float, alpha: float, masses, faces) -> np.ndarray:
    """Z, C, S at the given faces (indices) by a direct log-sum-exp, each face scaled.

    Returns (3, len(faces)): the sums of face i times e^{-L_i}, L_i = max_j (s_ij + log m_j),
    so every exponent is <= 0 and nothing over- or underflows where mass is in reach.
    Only ratios (C / Z, S / Z: the softmax field) are meaningful.  O(len(faces) M).
    """
    masses = np.ascontiguousarray(masses, dtype=np.float64)
    M = masses.shape[0]
    dx = 2.0 * math.pi / M
    faces = np.asarray(faces)
    t = faces * dx
    s = (np.arange(M) + 0.5) * dx
    with np.errstate(divide="ignore"):
        logm = np.log(masses)
    scores = -2.0 * beta_r * np.sin(0.5 * (t[:, None] - s[None, :] - alpha)) ** 2 + logm[None, :]
    w = np.exp(scores - scores.max(axis=1, keepdims=True))
    return np.stack([w.sum(axis=1), w @ np.cos(s), w @ np.sin(s)])


def unreliable(sums: np.ndarray, masses) -> np.ndarray:
    """Boolean (M,): faces whose FFT denominator Z_i < RELIABLE_FLOOR sum_j m_j."""
    total = float(np.sum(masses))
    return sums[0] < RELIABLE_FLOOR * total


@register_kernel("numpy", "fft")
class CircleFFT(Attention):
    """The attention field of masses at the cell centers of a ``CircleMesh`` (``mesh=``),
    evaluated at its faces, by FFT convolution (module docstring): O(M log M) for
    B = a I + b J (``ValueError`` otherwise).  Softmax faces whose FFT denominator is not
    reliable (``unreliable``) are recomputed by the direct log-sum-exp; the uniform
    normalization is formed in log space (``OverflowError`` beyond float64's range).

    ``normal_speed(masses, normals)``: <average_i, n_i> at the faces (what finite volumes
    need); ``average(X, Y, weights)``: X must be ``mesh.face_points`` and Y
    ``mesh.center_points`` (the average V (C, S) / Z per face).  ``n_direct_faces``
    counts the faces recomputed directly.
    """

    def __init__(self, model, tolerance=1e-12, precision="float64", *, mesh=None):
        super().__init__(model, tolerance, precision)
        if mesh is None or not hasattr(mesh, "face_points"):
            raise ValueError("kernel = \"fft\" needs mesh = a CircleMesh (sources at its cell centers)")
        self.mesh = mesh
        self.rotation = rotation_parameters(model.B)
        if self.rotation is None:
            raise ValueError("kernel = \"fft\" needs B = Q^T K = a I + b J")
        self.n_direct_faces = 0

    def normal_speed(self, masses, normals):
        """u_i = <average_i, normals_i> at the M faces for ``masses`` (M,) at the centers.

        Units: those of V y (per unit time) times |normals|.
        """
        model = self.model
        r, alpha = self.rotation
        sums, log_scale = circle_attention_sums(model.beta * r, alpha, masses)
        V = model.V
        nx = V[0, 0] * sums[1] + V[0, 1] * sums[2]
        ny = V[1, 0] * sums[1] + V[1, 1] * sums[2]
        raw = nx * normals[:, 0] + ny * normals[:, 1]
        if model.normalization == "softmax":
            bad = unreliable(sums, masses)
            with np.errstate(divide="ignore", invalid="ignore"):
                u = raw / sums[0]
            if bad.any():  # recompute where the FFT's absolute round-off is not small
                idx = np.flatnonzero(bad)
                self.n_direct_faces += idx.size
                for lo in range(0, idx.size, 256):  # bounded (256, M) work arrays
                    part = idx[lo:lo + 256]
                    z, c, s = circle_attention_sums_at(model.beta * r, alpha, masses, part)
                    n = normals[part]
                    u[part] = ((V[0, 0] * c + V[0, 1] * s) * n[:, 0] + (V[1, 0] * c + V[1, 1] * s) * n[:, 1]) / z
            return u
        # uniform: e^{log_scale} raw, formed in log space (absolute FFT error is harmless here)
        peak = float(np.abs(raw).max())
        if peak > 0 and log_scale + math.log(peak) > LOG_FLOAT_MAX:
            raise OverflowError(
                "uniform normalization overflows float64: the speed is about "
                f"exp({log_scale + math.log(peak):.4g}) (beta = {model.beta:g}); "
                "use normalization = \"softmax\" or a smaller beta"
            )
        with np.errstate(divide="ignore"):
            return np.sign(raw) * np.exp(log_scale + np.log(np.abs(raw)))

    def average(self, X, Y, weights):
        mesh = self.mesh
        if X.shape != mesh.face_points.shape or Y.shape != mesh.center_points.shape or not (
                np.array_equal(X, mesh.face_points) and np.array_equal(Y, mesh.center_points)):
            raise ValueError("kernel = \"fft\" evaluates at the mesh faces (X = mesh.face_points) from sources "
                             "at its cell centers (Y = mesh.center_points)")
        # the two components as normal speeds along the unit axes
        axes = np.eye(2)
        return np.stack([self.normal_speed(weights, np.broadcast_to(axes[k], X.shape)) for k in range(2)], axis=1)
