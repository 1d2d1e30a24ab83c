"""Meshes for the finite-volume solvers: cells, centers, areas and faces.

``CircleMesh(M)``: M uniform cells of the angle t in [0, 2 pi) on S^1.
"""

from .circle import CircleMesh

__all__ = ["CircleMesh"]
