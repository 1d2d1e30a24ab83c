"""Solvers: each turns an initial state into snapshots at requested times."""

from .fv_circle import FVCircleSolver
from .particles import ParticleSolver
from .pic import PICSolver

__all__ = ["ParticleSolver", "FVCircleSolver", "PICSolver"]
