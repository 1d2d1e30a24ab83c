"""Meshes for the finite-volume solvers: cells, centers, areas and faces.

``CircleMesh(M)``: M uniform cells of the angle t in [0, 2 pi) on S^1.
``SphereMesh.icosahedral(cells)``: the Voronoi dual of a subdivided icosahedron on S^2
(10 n^2 + 2 cells, n chosen so the count is nearest to ``cells``).
"""

from .circle import CircleMesh
from .sphere import SphereMesh

__all__ = ["CircleMesh", "SphereMesh"]
