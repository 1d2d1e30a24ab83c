"""Finite volumes on the circle: the density of the continuity equation on S^1.

    d/dt rho + d/dt_angle (rho u) = 0,   u(t) = <X_beta[rho](x), x_perp>   (docs/theory.md section 2)

State: the masses m_i of M uniform cells of the angle (``CircleMesh``), summing to 1.
One step (docs/methods.md, "Finite volumes on the circle"):

1. the tangent speed u at the M faces from the nonlocal field of the current masses
   (sources at the cell centers): an FFT circular convolution when B = a I + b J, with
   the faces where the FFT is not accurate recomputed by ``mfpde.velocity``; the direct
   ``mfpde.velocity`` for a general B; the continuum field for beta = inf;
2. MUSCL: the density rho_i = m_i / dx is reconstructed linearly in each cell with a
   limited slope (``mc``: monotonized central, or ``minmod``) so that both face values
   lie in [0, 2 rho_i] and sum to 2 rho_i;
3. upwind fluxes F_i = u_i rho(face i, upwind side) and dm_i/dt = -(F_{i+1} - F_i):
   flux form, so the total mass is conserved to round-off;
4. SSP-RK3 (Shu-Osher) in time, a convex combination of three Euler steps, each
   positivity-preserving when dt max|u| / dx <= 1/2.  dt = cfl dx / max|u| capped by
   ``solver.dt`` and by the next requested time (hit exactly); the speed at the two later
   stages is checked against the same bound and the step is redone with a smaller dt
   when it is violated, so masses never become negative.
"""

from __future__ import annotations


import numpy as np
from numpy.typing import ArrayLike

from ..field import continuum_field
from ..kernels import make_attention
from ..kernels.fft_circle import rotation_parameters
from ..mesh import CircleMesh
from ..model import Model
from ..options import SolverOptions
from ._stepping import FVStepping

__all__ = ["FVCircleSolver", "LIMITERS", "FIELD_PATHS", "MAX_CFL", "muscl_rhs"]

LIMITERS = ("mc", "minmod")
FIELD_PATHS = ("auto", "fft", "direct")
#: The largest CFL number for which each Euler stage of SSP-RK3 + MUSCL keeps masses >= 0.
MAX_CFL = 0.5


def limited_slopes(rho: np.ndarray, limiter: str = "mc") -> np.ndarray:
    """Slope times dx in each cell (periodic), limited so both face values stay in [0, 2 rho]."""
    d_left = rho - np.roll(rho, 1)
    d_right = np.roll(rho, -1) - rho
    same = d_left * d_right > 0
    a, b = np.abs(d_left), np.abs(d_right)
    if limiter == "minmod":
        mag = np.minimum(a, b)
    elif limiter == "mc":
        mag = np.minimum(np.minimum(2.0 * a, 2.0 * b), 0.5 * (a + b))
    else:
        raise ValueError(f"limiter must be one of {', '.join(LIMITERS)}, got {limiter!r}")
    return np.where(same, np.copysign(mag, d_left), 0.0)


def muscl_rhs(masses: np.ndarray, u: np.ndarray, dx: float, limiter: str = "mc") -> np.ndarray:
    """dm/dt = -(F_{i+1} - F_i) with upwind fluxes of the limited linear reconstruction.

    ``u[i]`` is the speed at face i (left edge of cell i).  Face values of cell i:
    left rho_i - s_i / 2, right rho_i + s_i / 2 (s_i the limited slope times dx).
    """
    rho = masses / dx
    s = limited_slopes(rho, limiter)
    right = np.maximum(rho + 0.5 * s, 0.0)  # >= 0 already in exact arithmetic
    left = np.maximum(rho - 0.5 * s, 0.0)
    flux = np.where(u > 0.0, u * np.roll(right, 1), u * left)
    return flux - np.roll(flux, -1)


class FVCircleSolver(FVStepping):
    """Second-order finite volumes for the mean-field equation on S^1 (d = 2).

    ``solver.snapshots(masses, times)`` is a generator of ``(t, masses)`` at each requested
    time, like :class:`~mfpde.solvers.ParticleSolver` (masses of ``solver.mesh``, which has
    ``options.cells`` cells).

    Parameters
    ----------
    model : Model with d = 2.  beta = inf needs ``zero_temperature = "continuum"``.
    options : SolverOptions (cells, cfl <= 0.5, dt: the largest step, t_end unused here).
    limiter : "mc" (default) or "minmod".
    field_path : "auto" (FFT when B = a I + b J, else direct), "fft" (error if B is not of
        that form) or "direct" (always ``mfpde.velocity``: O(M^2) per evaluation).
    """

    def __init__(self, model: Model, options: SolverOptions | None = None, *, limiter: str = "mc",
                 field_path: str = "auto"):
        options = options or SolverOptions(method="fv")
        self.check_options(model, options)
        if limiter not in LIMITERS:
            raise ValueError(f"limiter must be one of {', '.join(LIMITERS)}, got {limiter!r}")
        if field_path not in FIELD_PATHS:
            raise ValueError(f"field_path must be one of {', '.join(FIELD_PATHS)}, got {field_path!r}")
        self.model = model
        self.options = options
        self.limiter = limiter
        self.mesh = CircleMesh(options.cells)
        self.rotation = rotation_parameters(model.B)
        if field_path == "fft" and self.rotation is None:
            raise ValueError("field_path = \"fft\" needs B = Q^T K = a I + b J; use \"auto\" or \"direct\"")
        self.field_path = "direct" if field_path == "auto" and self.rotation is None else (
            "fft" if field_path == "auto" else field_path)
        # the field, built once: FFT at the faces (and the direct sums where it is unreliable)
        # or the exact kernel
        self.direct = make_attention(model, options)
        self.attention = make_attention(model, "fft", mesh=self.mesh, backend="numpy") if (
            self.field_path == "fft" and not model.is_zero_temperature) else self.direct
        self._fixed_speed = None
        if model.is_zero_temperature:  # continuum field: independent of rho (linear transport)
            v = continuum_field(model, np.asarray(self.mesh.face_points))
            self._fixed_speed = np.sum(v * self.mesh.face_normals, axis=1)
        self.n_field_evaluations = 0
        self.n_steps = 0
        self.n_rejected = 0

    # ------------------------------------------------------------------ the field

    @classmethod
    def check_options(cls, model, options: SolverOptions) -> None:
        """ValueError naming the key unless this solver can run ``model`` with ``options``."""
        super().check_options(model, options)
        if options.kernel != "exact":
            raise ValueError(f"solver.kernel must be \"exact\" for finite volumes on the circle (the field is "
                             f"exact: FFT or direct sums), got {options.kernel!r}")

    def _direct_speed(self, masses: np.ndarray, faces=None) -> np.ndarray:
        mesh = self.mesh
        X = mesh.face_points if faces is None else mesh.face_points[faces]
        normals = mesh.face_normals if faces is None else mesh.face_normals[faces]
        v = self.direct.velocity(X, mesh.center_points, weights=masses)
        return np.sum(v * normals, axis=1)

    @property
    def n_direct_faces(self) -> int:
        """Faces recomputed directly on the FFT path (diagnostic)."""
        return getattr(self.attention, "n_direct_faces", 0)

    def face_speed(self, masses: ArrayLike) -> np.ndarray:
        """The tangent speed u_i = <X_beta[rho](x_i), x_i^perp> at the M faces."""
        masses = np.asarray(masses, dtype=np.float64)
        self.n_field_evaluations += 1
        if self._fixed_speed is not None:
            return self._fixed_speed
        if self.field_path == "direct":
            return self._direct_speed(masses)
        return self.attention.normal_speed(masses, self.mesh.face_normals)

    def rhs(self, masses: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """dm/dt of the semi-discrete scheme (speed computed from ``masses`` if not given)."""
        if u is None:
            u = self.face_speed(masses)
        return muscl_rhs(masses, u, self.mesh.dx, self.limiter)

    # ------------------------------------------------------------------ time stepping
    # (step, advance, snapshots: FVStepping; the Courant number is dt max|u| / dx)

    _max_cfl = MAX_CFL
    _d, _mesh_name, _min_cells = 2, "circle", 3
    _cfl_reason = "MUSCL + SSP-RK3 keeps masses >= 0 only up to 1/2"

    @property
    def _cfl_length(self) -> float:
        return self.mesh.dx

    def _rate(self, u: np.ndarray) -> float:
        return float(np.abs(u).max())

    def _masses_shape_note(self) -> str:
        return "(solver.cells)"
