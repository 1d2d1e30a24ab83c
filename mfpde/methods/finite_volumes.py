"""``solver.method = "fv"``: finite volumes for the density on S^1 (d = 2) and S^2 (d = 3).

The state is the cell masses (M,); the mesh (centers, areas) is stored once in ``/grid``.
"""

from __future__ import annotations

import numpy as np

from ..initial import initial_cell_masses
from .base import MASS, Method, check_solver_options, register_method

__all__ = ["FiniteVolumes"]

#: ``FVCircleSolver`` for d = 2 and ``FVSphereSolver`` for d = 3, by name (imported on use).
_SOLVERS = {2: "FVCircleSolver", 3: "FVSphereSolver"}


def _solver_class(d: int):
    from .. import solvers

    return getattr(solvers, _SOLVERS[d])


@register_method
class FiniteVolumes(Method):
    """Finite volumes (SSP-RK3 under a CFL bound): ``FVCircleSolver`` on ``CircleMesh(solver.cells)``
    for d = 2, ``FVSphereSolver`` on ``SphereMesh.icosahedral(solver.cells)`` (10 n^2 + 2 cells, n
    nearest to solver.cells) for d = 3."""

    name = "fv"
    state = MASS
    integrators = None
    integrator_name = "ssp_rk3"

    @classmethod
    def check(cls, config):
        from ..config import ConfigError

        d = config.model.d
        if d not in _SOLVERS:
            raise ConfigError(config.source, "solver.method",
                              f"'fv' is implemented for d = 2 (the circle) and d = 3 (S^2), got d = {d}")
        check_solver_options(config, _solver_class(d))

    @classmethod
    def unused(cls, section, key, config):
        if section == "initial" and key in ("n", "seed", "sampling"):
            return "finite volumes integrate rho_0 over the cells (no particles, no sampling)"
        if section == "solver" and key == "integrator":
            return "finite volumes always step with SSP-RK3"
        if section == "solver" and key in ("rtol", "atol"):
            return "finite volumes always step with SSP-RK3"
        if section == "solver" and key in ("kernel", "tolerance") and config.model.d == 2:
            return "finite volumes on the circle compute the exact field (FFT or direct sums)"
        if section == "solver" and key == "tolerance" and config.solver.kernel != "truncated":
            return "it is the threshold of solver.kernel = \"truncated\" only"
        return super().unused(section, key, config)

    @classmethod
    def describe(cls, config):
        return f"{super().describe(config)} with d = {config.model.d}"

    @classmethod
    def state_size(cls, config):
        cells = config.solver.cells
        return cells, f"{cells} cells", "solver.cells"

    @classmethod
    def snapshot_size(cls, config):
        return config.solver.cells

    def __init__(self, config):
        super().__init__(config)
        d = config.model.d
        self.solver = _solver_class(d)(config.model, config.solver)
        mesh = self.solver.mesh
        if d == 2:
            self.centers = np.asarray(mesh.center_points)
            self._cells = mesh.edges
            self.grid_attrs = {"mesh": "uniform_circle"}
        else:
            self.centers = np.asarray(mesh.centers)
            self._cells = mesh
            self.grid_attrs = {"mesh": "icosahedral_voronoi", "frequency": mesh.frequency}
        self.cell_areas = mesh.areas

    def initial_state(self):
        return initial_cell_masses(self.config.initial, self._cells)

    def restore(self, result):
        return result.mass[0]

    def write_static(self, writer):
        writer.write_grid(self.centers, self.solver.mesh.areas, attrs=self.grid_attrs)

    def measure(self, masses):
        return self.centers, masses

    def snapshots(self, masses, times, t0=0.0, on_step=None):
        return self.solver.snapshots(masses, times, t0=t0, on_step=on_step)
