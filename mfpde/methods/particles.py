"""Particle methods: ``particles`` (the exact N-body field) and ``pic`` (particle-in-cell).

The state of both is the positions (N, d) of the tokens; their masses are fixed, drawn with
the positions from ``[initial]`` and stored once in ``/state/weights``.
"""

from __future__ import annotations

import numpy as np

from ..initial import initial_measure
from ..solvers.integrators import INTEGRATORS
from .base import POSITIONS, Method, check_solver_options, register_method

__all__ = ["Particles", "ParticleInCell"]


@register_method
class Particles(Method):
    """``solver.method = "particles"``: dx_i/dt = X_beta[mu_t](x_i), mu_t = sum_j m_j delta_{x_j}."""

    name = "particles"
    state = POSITIONS
    integrators = INTEGRATORS
    backends = ("cpu", "cuda")
    ensembles = True

    @classmethod
    def unused(cls, section, key, config):
        if section == "solver" and key == "cfl":
            return "its step is solver.dt (the CFL number bounds the finite-volume step only)"
        if section == "solver" and key == "cells" and cls.name == "particles":
            return "particles use no mesh"
        if section == "solver" and key == "tolerance" and config.solver.kernel != "truncated":
            return "it is the threshold of solver.kernel = \"truncated\" only"
        if section == "solver" and key == "backend" and config.model.is_zero_temperature:
            return "at beta = inf the zero-temperature field runs on the CPU"
        return super().unused(section, key, config)

    @classmethod
    def check(cls, config):
        from ..config import ConfigError

        solver = config.solver
        if solver.backend == "cuda" and solver.kernel != "exact":
            raise ConfigError(config.source, "solver.backend",
                              f"\"cuda\" runs solver.kernel = \"exact\" only, got solver.kernel = {solver.kernel!r}")
        S = config.initial.systems
        if S > 1 and not config.model.is_zero_temperature:
            if solver.kernel != "exact":
                raise ConfigError(config.source, "initial.systems",
                                  f"an ensemble ({S} systems) runs with solver.kernel = \"exact\", "
                                  f"got solver.kernel = {solver.kernel!r}")
            if solver.backend != "cpu":
                raise ConfigError(config.source, "initial.systems",
                                  f"an ensemble ({S} systems) runs on solver.backend = \"cpu\", "
                                  f"got solver.backend = {solver.backend!r}")

    def __init__(self, config):
        super().__init__(config)
        self.solver = self._make_solver(config)
        self.weights = None

    @staticmethod
    def _make_solver(config):
        from ..solvers import ParticleSolver

        return ParticleSolver(config.model, config.solver)

    def initial_state(self):
        positions, self.weights = initial_measure(self.config.initial, self.config.model.d)
        return positions

    def restore(self, result):
        self.weights = result.weights
        return result.positions[0]

    @classmethod
    def stored_conflict(cls, config, result):
        N, initial = result.positions.shape[-2], config.initial
        if result.systems != initial.systems:
            return f"it holds {result.systems} system(s) but its config says initial.systems = {initial.systems}"
        if initial.kind != "file" and N != initial.n:
            return f"it holds {N} particles but its config says initial.n = {initial.n}"
        return None

    def write_static(self, writer):
        writer.write_weights(self.weights)

    def measure(self, positions):
        return positions, self.weights

    def snapshots(self, positions, times, t0=0.0, on_step=None):
        return self.solver.snapshots(positions, self.weights, times, t0=t0, on_step=on_step)

    def provenance(self):
        out = super().provenance()
        out["backend"] = "cuda" if getattr(self.solver, "attention", None) is not None and \
            self.solver.attention.backend == "cuda" else "cpu"
        return out


@register_method
class ParticleInCell(Particles):
    """``solver.method = "pic"``: particles moved by the field of their deposition on a mesh (d = 2, 3),
    stored like particles plus the mesh in ``/grid``."""

    name = "pic"
    backends = ("cpu",)
    ensembles = False

    @classmethod
    def check(cls, config):
        from ..solvers import PICSolver

        check_solver_options(config, PICSolver)

    @classmethod
    def state_size(cls, config):
        size = super().state_size(config)
        cells, d = config.solver.cells, config.model.d
        if cells > config.initial.n:
            return cells * d, f"{cells} cells x {d}", "solver.cells"
        return size

    @staticmethod
    def _make_solver(config):
        from ..solvers import PICSolver

        return PICSolver(config.model, config.solver)

    def write_static(self, writer):
        writer.write_weights(self.weights)
        mesh = self.solver.mesh
        attrs = ({"mesh": "uniform_circle"} if self.config.model.d == 2
                 else {"mesh": "icosahedral_voronoi", "frequency": mesh.frequency})
        writer.write_grid(np.asarray(self.solver.nodes), mesh.areas, attrs=attrs)
