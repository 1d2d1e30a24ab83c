"""Solvers: each turns an initial state into snapshots at requested times."""

from .particles import ParticleSolver

__all__ = ["ParticleSolver"]
