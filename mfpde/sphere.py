"""Geometry of the unit sphere S^{d-1} in R^d: projection, retraction, distances, sampling.

All angles are in radians.  Points are rows of an (N, d) float64 array.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "tangent_projection",
    "retract",
    "geodesic_distance",
    "chordal_distance",
    "sample_uniform",
    "angle_to_point",
    "point_to_angle",
]


def tangent_projection(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """P_x y = y - <x, y> x, row by row (the tangent projection for |x| = 1)."""
    return Y - np.sum(X * Y, axis=-1, keepdims=True) * X


def retract(X: np.ndarray) -> np.ndarray:
    """The retraction x -> x / |x| onto the sphere, row by row."""
    return X / np.linalg.norm(X, axis=-1, keepdims=True)


def geodesic_distance(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Great-circle distance arccos<x, y> in radians, row by row (broadcasts).

    Computed as 2 arcsin(|x - y| / 2), which stays accurate for nearby points where
    arccos of a clipped inner product loses half the digits.
    """
    chord = np.linalg.norm(X - Y, axis=-1)
    return 2.0 * np.arcsin(np.minimum(chord / 2.0, 1.0))


def chordal_distance(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Euclidean distance |x - y|, row by row (broadcasts)."""
    return np.linalg.norm(X - Y, axis=-1)


def sample_uniform(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n points drawn from the uniform (surface) measure on S^{d-1}: normalised Gaussians."""
    return retract(rng.standard_normal((n, d)))


def angle_to_point(theta: ArrayLike) -> np.ndarray:
    """Angle(s) t in radians -> points (cos t, sin t) on S^1, shape (..., 2)."""
    theta = np.asarray(theta, dtype=np.float64)
    return np.stack([np.cos(theta), np.sin(theta)], axis=-1)


def point_to_angle(X: np.ndarray) -> np.ndarray:
    """Points on S^1 -> angles in [0, 2 pi)."""
    X = np.asarray(X, dtype=np.float64)
    return np.mod(np.arctan2(X[..., 1], X[..., 0]), 2.0 * np.pi)
