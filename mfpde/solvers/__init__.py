"""Solvers: each turns an initial state into snapshots at requested times."""

from .fv_circle import FVCircleSolver
from .fv_sphere import FVSphereSolver
from .particles import ParticleSolver
from .pic import PICSolver

__all__ = ["ParticleSolver", "FVCircleSolver", "FVSphereSolver", "PICSolver"]
