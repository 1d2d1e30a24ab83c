"""Finite volumes on S^2: the density of the continuity equation on the Voronoi mesh of a sphere.

    d/dt rho + div_S (rho X_beta[rho]) = 0     (docs/theory.md section 2, d = 3)

State: the masses m_i of the M cells of ``SphereMesh.icosahedral(solver.cells)``, summing to 1.
One step (docs/methods.md, "Finite volumes on S^2"):

1. the field X_beta[rho] at the F face midpoints, sources at the cell centers with the
   masses as weights (``mfpde.velocity`` with ``solver.kernel`` and ``solver.tolerance``; the
   continuum field, computed once, at beta = inf); u_f = <X(m_f), n_f> is the normal speed;
2. a linear reconstruction of rho_i = m_i / area_i in each cell about its center, in the
   geodesic normal coordinates of the tangent plane (rho_i + g_i . log_{c_i}(x)): the gradient
   g_i by weighted least squares over the neighbors' centers, limited (Barth-Jespersen,
   tightened) so that every face value lies in [min_nb rho, min(max_nb rho, 2 rho_i)];
3. upwind fluxes F_f = u_f len_f rho_upwind(m_f) and dm_i/dt = -sum_out F + sum_in F: flux
   form, so the total mass is conserved to round-off;
4. SSP-RK3 (Shu-Osher), each stage a forward-Euler step that keeps masses >= 0 when
   dt * max_i (sum of outflow u_f len_f over the faces of i) / area_i <= 1/2; dt = cfl / that
   rate, capped by ``solver.dt`` and the next requested time; the bound is re-checked with
   the speeds of the later stages and the step redone with a smaller dt if violated.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from ..field import continuum_field
from ..kernels import make_attention
from ..kernels._jit import jit
from ..mesh import SphereMesh
from ..mesh.sphere import MAX_CELLS
from ..model import Model
from ..options import SolverOptions
from ._stepping import FVStepping

__all__ = [
    "FVSphereSolver",
    "RECONSTRUCTIONS",
    "MAX_CFL",
    "SphereStencil",
    "sphere_stencil",
    "sphere_rhs",
    "sphere_rhs_numpy",
    "outflow_rate",
]

#: ``linear``: limited second-order reconstruction (default); ``constant``: first-order upwind.
RECONSTRUCTIONS = ("linear", "constant")
#: The largest CFL number for which each Euler stage keeps masses >= 0 (face values <= 2 rho_i).
MAX_CFL = 0.5


def _log_map(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log_p(x): the tangent vector at p of length dist(p, x) pointing along the geodesic to x."""
    c = np.sum(p * x, axis=1, keepdims=True)
    perp = x - c * p
    s = np.linalg.norm(perp, axis=1, keepdims=True)
    theta = np.arctan2(s, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, perp * (theta / s), 0.0)


@dataclass(frozen=True, eq=False)
class SphereStencil:
    """Precomputed reconstruction data of a ``SphereMesh`` (half-faces in the mesh's CSR order).

    grad_weights : (H, 3)
        g_i = sum_k grad_weights[k] (rho[neighbor_idx[k]] - rho_i) is the weighted
        least-squares gradient (tangent at c_i), k over the half-faces of cell i.
    face_offsets : (H, 3)
        log_{c_i}(midpoint of the face of half-face k): the face value is rho_i + g_i . offset.
    half_sign : (H,) float64
        +1 when cell i is the left cell of the face (its outflow is u > 0), else -1.
    face_halves : (F, 2) int64
        The half-face of the face's left and of its right cell.
    """

    grad_weights: np.ndarray
    face_offsets: np.ndarray
    half_sign: np.ndarray
    face_halves: np.ndarray


@functools.lru_cache(maxsize=16)
def sphere_stencil(mesh: SphereMesh) -> SphereStencil:
    """Least-squares gradient weights and face offsets of a mesh (memoised per mesh).

    Weighted least squares with weights 1 / |r_ij|^2 over the neighbors j of cell i,
    r_ij = log_{c_i}(c_j), solved in an orthonormal basis of the tangent plane at c_i.
    """
    ptr, nbr, hf = mesh.neighbor_ptr, mesh.neighbor_idx, mesh.neighbor_faces
    C = np.asarray(mesh.centers)
    M = mesh.M
    own = np.repeat(np.arange(M), np.diff(ptr))
    r = _log_map(C[own], C[nbr])
    w = 1.0 / np.sum(r * r, axis=1)
    ref = np.where(np.abs(C[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    e1 = ref - np.sum(ref * C, axis=1, keepdims=True) * C
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(C, e1)
    x = np.sum(r * e1[own], axis=1)
    y = np.sum(r * e2[own], axis=1)
    a = np.bincount(own, weights=w * x * x, minlength=M)
    b = np.bincount(own, weights=w * x * y, minlength=M)
    c = np.bincount(own, weights=w * y * y, minlength=M)
    det = a * c - b * b
    # inverse of [[a, b], [b, c]] applied to w (x, y)
    gx = w * (c[own] * x - b[own] * y) / det[own]
    gy = w * (a[own] * y - b[own] * x) / det[own]
    G = gx[:, None] * e1[own] + gy[:, None] * e2[own]
    offsets = _log_map(C[own], np.asarray(mesh.face_midpoints)[hf])
    left = np.asarray(mesh.face_cells)[hf, 0]
    sign = np.where(left == own, 1.0, -1.0)
    halves = np.empty((mesh.n_faces, 2), dtype=np.int64)
    k = np.arange(len(own))
    halves[hf[sign > 0], 0] = k[sign > 0]
    halves[hf[sign < 0], 1] = k[sign < 0]
    arrays = {}
    for name, arr in (("grad_weights", G), ("face_offsets", offsets), ("half_sign", sign), ("face_halves", halves)):
        arr = np.ascontiguousarray(arr)
        arr.setflags(write=False)
        arrays[name] = arr
    return SphereStencil(**arrays)


# ----------------------------------------------------------------------------- the rhs


def sphere_rhs_numpy(masses, flux_speed, mesh: SphereMesh, reconstruction: str = "linear") -> np.ndarray:
    """NumPy reference of :func:`sphere_rhs` (same formulas, vectorised over half-faces)."""
    st = sphere_stencil(mesh)
    ptr, nbr, hf = mesh.neighbor_ptr, mesh.neighbor_idx, mesh.neighbor_faces
    M = mesh.M
    own = np.repeat(np.arange(M), np.diff(ptr))
    rho = np.asarray(masses, dtype=np.float64) / mesh.areas
    if reconstruction == "constant":
        values = rho[own]
    else:
        diff = rho[nbr] - rho[own]
        g = np.zeros((M, 3))
        for j in range(3):
            g[:, j] = np.bincount(own, weights=st.grad_weights[:, j] * diff, minlength=M)
        delta = np.sum(g[own] * st.face_offsets, axis=1)
        lo = np.minimum(rho, np.minimum.reduceat(rho[nbr], ptr[:-1]))
        hi = np.minimum(np.maximum(rho, np.maximum.reduceat(rho[nbr], ptr[:-1])), 2.0 * rho)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(delta > 0, (hi[own] - rho[own]) / delta,
                             np.where(delta < 0, (lo[own] - rho[own]) / delta, np.inf))
        phi = np.minimum(1.0, np.minimum.reduceat(ratio, ptr[:-1]))
        values = np.minimum(np.maximum(rho[own] + phi[own] * delta, 0.0), 2.0 * rho[own])
    u = np.asarray(flux_speed, dtype=np.float64)
    halves = st.face_halves
    flux = np.where(u > 0.0, u * values[halves[:, 0]], u * values[halves[:, 1]])
    return -np.bincount(own, weights=st.half_sign * flux[hf], minlength=M)


@jit
def _rhs_kernel(masses, areas, flux_speed, ptr, nbr, hf, G, offsets, sign, halves, linear, out):  # pragma: no cover - compiled
    M = masses.shape[0]
    H = nbr.shape[0]
    F = flux_speed.shape[0]
    rho = np.empty(M)
    for i in range(M):
        rho[i] = masses[i] / areas[i]
    values = np.empty(H)
    for i in range(M):
        r = rho[i]
        k0, k1 = ptr[i], ptr[i + 1]
        if not linear:
            for k in range(k0, k1):
                values[k] = r
            continue
        g0 = 0.0
        g1 = 0.0
        g2 = 0.0
        lo = r
        hi = r
        for k in range(k0, k1):
            rj = rho[nbr[k]]
            d = rj - r
            g0 += G[k, 0] * d
            g1 += G[k, 1] * d
            g2 += G[k, 2] * d
            lo = min(lo, rj)
            hi = max(hi, rj)
        hi = min(hi, 2.0 * r)
        phi = 1.0
        for k in range(k0, k1):
            delta = g0 * offsets[k, 0] + g1 * offsets[k, 1] + g2 * offsets[k, 2]
            if delta > 0.0:
                phi = min(phi, (hi - r) / delta)
            elif delta < 0.0:
                phi = min(phi, (lo - r) / delta)
        for k in range(k0, k1):
            delta = g0 * offsets[k, 0] + g1 * offsets[k, 1] + g2 * offsets[k, 2]
            values[k] = min(max(r + phi * delta, 0.0), 2.0 * r)
    flux = np.empty(F)
    for f in range(F):
        u = flux_speed[f]
        flux[f] = u * values[halves[f, 0]] if u > 0.0 else u * values[halves[f, 1]]
    for i in range(M):
        acc = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            acc += sign[k] * flux[hf[k]]
        out[i] = -acc


@jit
def _outflow_kernel(flux_speed, areas, ptr, hf, sign):  # pragma: no cover - compiled
    M = areas.shape[0]
    rate = np.empty(M)
    for i in range(M):
        s = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            s += max(sign[k] * flux_speed[hf[k]], 0.0)
        rate[i] = s / areas[i]
    return rate.max()


def sphere_rhs(masses, flux_speed, mesh: SphereMesh, reconstruction: str = "linear") -> np.ndarray:
    """dm/dt of the semi-discrete scheme for face fluxes ``flux_speed`` = u_f len_f (F,).

    The upwind face value of the limited linear reconstruction (``linear``) or the cell
    average (``constant``) times ``flux_speed`` is the flux from the left into the right cell.
    """
    if reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction must be one of {', '.join(RECONSTRUCTIONS)}, got {reconstruction!r}")
    st = sphere_stencil(mesh)
    m = np.ascontiguousarray(masses, dtype=np.float64)
    u = np.ascontiguousarray(flux_speed, dtype=np.float64)
    if m.shape != (mesh.M,) or u.shape != (mesh.n_faces,):
        raise ValueError(f"masses must have shape ({mesh.M},) and flux_speed ({mesh.n_faces},), "
                         f"got {m.shape} and {u.shape}")
    out = np.empty(mesh.M)
    _rhs_kernel(m, mesh.areas, u, mesh.neighbor_ptr, mesh.neighbor_idx, mesh.neighbor_faces,
                st.grad_weights, st.face_offsets, st.half_sign, st.face_halves,
                reconstruction == "linear", out)
    return out


def outflow_rate(flux_speed, mesh: SphereMesh) -> float:
    """max_i (sum over the faces of cell i of its outflow u len) / area_i: dt times it is the Courant number."""
    st = sphere_stencil(mesh)
    u = np.ascontiguousarray(flux_speed, dtype=np.float64)
    return float(_outflow_kernel(u, mesh.areas, mesh.neighbor_ptr, mesh.neighbor_faces, st.half_sign))


# ----------------------------------------------------------------------------- the solver


class FVSphereSolver(FVStepping):
    """Second-order finite volumes for the mean-field equation on S^2 (d = 3).

    ``solver.snapshots(masses, times)`` is a generator of ``(t, masses)`` at each requested
    time, like :class:`~mfpde.solvers.FVCircleSolver` (masses of ``solver.mesh``, the
    icosahedral Voronoi mesh with about ``options.cells`` cells: ``solver.mesh.M`` of them).

    Parameters
    ----------
    model : Model with d = 3.  beta = inf needs ``zero_temperature = "continuum"``.
    options : SolverOptions (cells, cfl <= 0.5, dt: the largest step, kernel and tolerance
        of the field evaluation; t_end unused here).
    reconstruction : "linear" (default: limited, second order) or "constant" (first order).
    """

    def __init__(self, model: Model, options: SolverOptions | None = None, *, reconstruction: str = "linear"):
        options = options or SolverOptions(method="fv")
        self.check_options(model, options)
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction must be one of {', '.join(RECONSTRUCTIONS)}, got {reconstruction!r}")
        self.model = model
        self.options = options
        self.reconstruction = reconstruction
        self.mesh = SphereMesh.icosahedral(options.cells)
        #: The field's kernel, built once from the options (kernel, tolerance).
        self.attention = make_attention(model, options)
        self._fixed_speed = None
        if model.is_zero_temperature:  # continuum field: independent of rho (linear transport)
            self._fixed_speed = self._normal_speed(continuum_field(model, np.asarray(self.mesh.face_midpoints)))
        self.n_field_evaluations = 0
        self.n_steps = 0
        self.n_rejected = 0

    def _normal_speed(self, v: np.ndarray) -> np.ndarray:
        return np.sum(v * self.mesh.face_normals, axis=1)

    def face_speed(self, masses: ArrayLike) -> np.ndarray:
        """The normal speed u_f = <X_beta[rho](m_f), n_f> at the F face midpoints."""
        self.n_field_evaluations += 1
        if self._fixed_speed is not None:
            return self._fixed_speed
        mesh = self.mesh
        v = self.attention.velocity(mesh.face_midpoints, mesh.centers, weights=np.asarray(masses, dtype=np.float64))
        return self._normal_speed(v)

    def rhs(self, masses: ArrayLike, u: np.ndarray | None = None) -> np.ndarray:
        """dm/dt of the semi-discrete scheme (normal speeds computed from ``masses`` if not given)."""
        if u is None:
            u = self.face_speed(masses)
        return sphere_rhs(masses, u * self.mesh.face_lengths, self.mesh, self.reconstruction)

    # ------------------------------------------------------------------ time stepping
    # (step, advance, snapshots: FVStepping; the Courant number is dt outflow_rate)

    _max_cfl = MAX_CFL
    _d, _mesh_name, _min_cells, _max_cells = 3, "sphere", 1, MAX_CELLS
    _cfl_reason = "face values <= 2 rho keep masses >= 0 only up to 1/2"

    def _rate(self, u: np.ndarray) -> float:
        return outflow_rate(u * self.mesh.face_lengths, self.mesh)

    def _masses_shape_note(self) -> str:
        return f"(the sphere mesh for solver.cells = {self.options.cells} has {self.mesh.M} cells)"
