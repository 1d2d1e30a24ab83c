"""Meshes for the finite-volume and particle-in-cell solvers: cells, centers, areas, faces,
and point location.

``CircleMesh(M)``: M uniform cells of the angle t in [0, 2 pi) on S^1.
``SphereMesh.icosahedral(cells)``: the Voronoi dual of a subdivided icosahedron on S^2
(10 n^2 + 2 cells, n chosen so the count is nearest to ``cells``).
``circle_stencil(mesh, X)`` and ``sphere_stencil(mesh, X, guess=None)``: the linear
interpolation stencil of points on the cell centers (module ``mfpde.mesh.locate``).
"""

from .circle import CircleMesh
from .sphere import SphereMesh
from .locate import circle_stencil, sphere_stencil

__all__ = ["CircleMesh", "SphereMesh", "circle_stencil", "sphere_stencil"]
