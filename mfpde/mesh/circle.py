"""The uniform mesh of the circle S^1 used by the finite-volume solver.

Cell i (i = 0 .. M-1) is the arc [t_i, t_{i+1}) of the angle t, t_i = i dx, dx = 2 pi / M.
Face i is the left edge t_i of cell i (so cell i lies between faces i and i + 1, face M
being face 0 again: periodic).  Cell centers sit at (i + 1/2) dx.  The "area" of a cell
is its arc length dx, so the density of a cell is mass / dx (per radian).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from ..sphere import angle_to_point

__all__ = ["CircleMesh"]


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class CircleMesh:
    """M uniform cells on S^1.

    Attributes
    ----------
    M : int
        Number of cells (>= 3).
    dx : float
        Cell width 2 pi / M (radians).
    edges : (M + 1,) array
        Cell edges t_0 = 0, ..., t_M = 2 pi (t_M closes the circle).
    faces : (M,) array
        Face angles t_i = i dx (face i is the left edge of cell i).
    centers : (M,) array
        Cell-center angles (i + 1/2) dx.
    center_points, face_points : (M, 2) arrays
        (cos t, sin t) at the centers / faces.
    face_normals : (M, 2) array
        The unit tangent x_perp = (-sin t, cos t) at each face: the direction of increasing
        angle, along which the flux through the face is counted positive.
    areas : (M,) array
        Arc length of each cell (all equal to dx).
    """

    M: int
    dx: float = field(init=False)
    edges: np.ndarray = field(init=False, repr=False)
    faces: np.ndarray = field(init=False, repr=False)
    centers: np.ndarray = field(init=False, repr=False)
    center_points: np.ndarray = field(init=False, repr=False)
    face_points: np.ndarray = field(init=False, repr=False)
    face_normals: np.ndarray = field(init=False, repr=False)
    areas: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        M = self.M
        if isinstance(M, bool) or not isinstance(M, (int, np.integer)) or M < 3:
            raise ValueError(f"solver.cells must be an integer >= 3 for the circle mesh, got {M!r}")
        M = int(M)
        dx = 2.0 * math.pi / M
        idx = np.arange(M + 1, dtype=np.float64)
        edges = idx * dx
        edges[-1] = 2.0 * math.pi
        faces = edges[:-1]
        centers = (np.arange(M) + 0.5) * dx
        set_ = object.__setattr__
        set_(self, "M", M)
        set_(self, "dx", dx)
        set_(self, "edges", _frozen(edges))
        set_(self, "faces", _frozen(faces))
        set_(self, "centers", _frozen(centers))
        set_(self, "center_points", _frozen(angle_to_point(centers)))
        set_(self, "face_points", _frozen(angle_to_point(faces)))
        set_(self, "face_normals", _frozen(np.stack([-np.sin(faces), np.cos(faces)], axis=1)))
        set_(self, "areas", _frozen(np.full(M, dx)))

    def density(self, masses: ArrayLike) -> np.ndarray:
        """Cell averages of the density (per radian): mass / dx."""
        return np.asarray(masses, dtype=np.float64) / self.dx

    def restrict(self, masses: ArrayLike, factor: int) -> np.ndarray:
        """Masses of the coarse mesh with M / factor cells (sums of ``factor`` fine cells)."""
        masses = np.asarray(masses, dtype=np.float64)
        if self.M % factor:
            raise ValueError(f"factor {factor} must divide M = {self.M}")
        return masses.reshape(-1, factor).sum(axis=1)

    def __repr__(self) -> str:
        return f"CircleMesh(M={self.M}, dx={self.dx:.6g})"
