"""Particle-in-cell: N weighted particles whose field is computed on a mesh (d = 2 and 3).

    dx_p/dt = P_{x_p} I[F](x_p),   F_i = X_beta[nu](c_i),   nu = sum_i m_i delta_{c_i},
    m_i = sum_p w_p lambda_i(x_p)                                      (docs/methods.md)

At every stage of the integrator (euler / heun / rk4 / rk45, as in the particle solver):

1. *Stencil* (``mfpde.mesh.sphere_stencil`` / ``circle_stencil``, in ``mfpde.mesh.locate``).
   S^2: the Delaunay triangle of centers (a, b, c) whose cone contains x, and the barycentric coordinates of the central projection of x onto the flat triangle,
   lambda_a : lambda_b : lambda_c = det(x, b, c) : det(a, x, c) : det(a, b, x), summing to 1.
   A particle is first tested against its triangle of the previous stage (three inner
   products; it moves a fraction of a triangle per stage), then walked across the edge of
   its most negative coordinate for a few steps; failing that (and at the first stage) a
   greedy walk on the cell graph finds the nearest center c_i and the fan of triangles around
   c_i holds x (every triangle of the icosahedral mesh is acute, so a Voronoi cell lies
   inside the fan of its center).  The result does not depend on the path.
   S^1: linear (cloud-in-cell) weights in the angle between the two nearest cell centers.
2. *Deposition* (the transpose of interpolation, in ``mfpde.kernels.deposit``):
   m_i = sum_p w_p lambda_i(x_p).  The weights are >= 0 and sum to 1, so the cell masses are >= 0 and sum to the particle mass
   (to round-off).  Each of a fixed number of particle chunks scatters into its own buffer
   and the buffers are summed after: the result does not depend on the
   number of threads.
3. *Field on the mesh*: ``mfpde.velocity(model, centers, centers, m)``, the attention field
   at the M nodes from point masses m_i at the nodes (O(M^2), or less with the truncated
   kernel).
4. *Interpolation* (a gather): v_p = sum_i lambda_i(x_p) F_i, then the tangent projection
   P_x v = v - <x, v> x at the particle (the smooth extension off the sphere, like the
   particle solver's, so the sphere stays invariant under the stage flow).

Orders: linear interpolation and its transpose are second order in the mesh spacing h
(the field of a smooth kernel from the deposited measure differs from the particles' by
the interpolation error of the kernel, O(beta^2 h^2)); measured in tests/test_pic.py.
Cost per stage O(N + M^2).  beta = inf with ``zero_temperature = "continuum"`` uses the
continuum field P_x V B^T x / |B^T x| at the particles directly (no mesh: there is no
interaction); ``hardmax`` is refused (the argmax of a mesh measure is not a smooth field).
"""

from __future__ import annotations

import math

from typing import Callable

import numpy as np
from numpy.typing import ArrayLike

from ..field import continuum_field
from ..kernels.deposit import deposit
# the names the field method reads: the unchecked interpolation, the fused stencil and
# deposition, the point check
from ..kernels.deposit import gather as _interpolate
from ..kernels.deposit import stencil_deposit as _stencil_deposit
from ..mesh import CircleMesh, SphereMesh, circle_stencil, sphere_stencil
from ..mesh.locate import check_points as _check_points
from ..mesh.sphere import MAX_CELLS
from ..model import Model
from ..options import SolverOptions
from ._stepping import check_continuum_limit
from .particles import ParticleSolver

__all__ = ["PICSolver", "pic_mesh", "MIN_CELLS"]

#: Smallest ``solver.cells`` for PIC: d = 2, three cells; d = 3, the icosahedron (12 cells).
MIN_CELLS = {2: 3, 3: 12}


def pic_mesh(d: int, cells):
    """The PIC mesh: ``CircleMesh(cells)`` for d = 2, ``SphereMesh.icosahedral(cells)`` for d = 3."""
    if d not in MIN_CELLS:
        raise ValueError(f"pic is implemented for d = 2 (the circle) and d = 3 (the sphere S^2), got d = {d}")
    if isinstance(cells, bool) or not isinstance(cells, (int, np.integer)) or cells < MIN_CELLS[d]:
        raise ValueError(f"solver.cells must be an integer >= {MIN_CELLS[d]} for pic with d = {d}, got {cells!r}")
    return CircleMesh(int(cells)) if d == 2 else SphereMesh.icosahedral(int(cells))


# ---------------------------------------------------------------------------------- solver


class PICSolver(ParticleSolver):
    """Particle-in-cell for the particle system of ``model`` (d = 2 or 3).

    Same interface and time stepping as :class:`~mfpde.solvers.ParticleSolver`
    (``snapshots(positions, weights, times, t0=0.0, on_step=None)`` yields ``(t, positions)``);
    only the field differs: at each stage the particles are deposited on ``self.mesh``
    (``options.cells`` cells: exactly on S^1, the nearest icosahedral count on S^2), the field
    is computed at the mesh nodes with ``options.kernel`` / ``options.tolerance`` and
    interpolated back (module docstring).

    Attributes recording the deposition over the solver's life (tests and diagnostics):
    ``max_mass_error`` = max |sum_i m_i - sum_p w_p| and ``min_cell_mass`` = min m_i over
    every deposition so far; ``cell_masses`` the latest deposition.
    """

    def __init__(self, model: Model, options: SolverOptions | None = None):
        options = options or SolverOptions(method="pic")
        self.check_options(model, options)
        super().__init__(model, options)
        self.mesh = pic_mesh(model.d, options.cells)
        self.nodes = np.ascontiguousarray(self.mesh.center_points if model.d == 2 else self.mesh.centers)
        self.max_mass_error = 0.0
        self.min_cell_mass = math.inf
        self.cell_masses = None

    @classmethod
    def check_options(cls, model, options: SolverOptions) -> None:
        """ValueError naming the key unless PIC can run ``model`` with ``options``."""
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mfpde.Model, got {type(model).__name__}")
        d, cells = model.d, options.cells
        if d not in MIN_CELLS:
            raise ValueError(f"'pic' is implemented for d = 2 (the circle) and d = 3 (S^2) in this version, got d = {d}")
        if cells < MIN_CELLS[d]:
            raise ValueError(f"solver.cells must be >= {MIN_CELLS[d]} for pic with d = {d}, got {cells!r}")
        if d == 3 and cells > MAX_CELLS:
            raise ValueError(f"solver.cells must be <= {MAX_CELLS} for pic on S^2, got {cells!r}")
        check_continuum_limit(model, "pic", "the hardmax field of a mesh measure cannot be interpolated")

    @property
    def uses_mesh(self) -> bool:
        """False at beta = inf (continuum field at the particles, no deposition)."""
        return not self.model.is_zero_temperature

    def stencil(self, X: ArrayLike, guess: ArrayLike | None = None) -> tuple:
        """(triangles or None, idx, lam) of points X on ``self.mesh``: :func:`sphere_stencil`
        (d = 3) or :func:`circle_stencil` (d = 2, no triangles)."""
        if self.model.d == 2:
            return (None, *circle_stencil(self.mesh, X))
        return sphere_stencil(self.mesh, X, guess)

    def deposit(self, positions: ArrayLike, weights: ArrayLike) -> np.ndarray:
        """Cell masses (M,) of the particles: the transpose of the linear interpolation."""
        _, idx, lam = self.stencil(positions)
        return deposit(idx, lam, weights, self.mesh.M)

    def field(self, weights: ArrayLike) -> Callable[[np.ndarray], np.ndarray]:
        """The PIC velocity x -> P_x I[F](x) with F the mesh field of the deposited ``weights``."""
        model = self.model
        if not self.uses_mesh:
            def f_inf(X):
                self.n_field_evaluations += 1
                return continuum_field(model, X)

            return f_inf
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        total = float(weights.sum())
        nodes = self.nodes
        attention = self.attention  # built once, from the options (ParticleSolver.__init__)
        guess = None

        def f(X):
            nonlocal guess
            self.n_field_evaluations += 1
            X = _check_points(X, self.model.d)
            if len(X) != len(weights):
                raise ValueError(f"positions and weights must have one row per particle, got {len(X)} and "
                                 f"{len(weights)}")
            if self.model.d == 3 and (guess is None or len(guess) != len(X)):
                guess = np.full(len(X), -1, dtype=np.int64)
            guess, idx, lam, masses = _stencil_deposit(self.mesh, X, guess, weights)
            self.max_mass_error = max(self.max_mass_error, abs(float(masses.sum()) - total))
            self.min_cell_mass = min(self.min_cell_mass, float(masses.min()))
            self.cell_masses = masses
            F = attention.velocity(nodes, nodes, masses)
            return _interpolate(idx, lam, F, X)

        return f
