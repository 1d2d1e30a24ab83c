"""Particle-in-cell: N weighted particles whose field is computed on a mesh (d = 2 and 3).

    dx_p/dt = P_{x_p} I[F](x_p),   F_i = X_beta[nu](c_i),   nu = sum_i m_i delta_{c_i},
    m_i = sum_p w_p lambda_i(x_p)                                      (docs/methods.md)

At every stage of the integrator (euler / heun / rk4 / rk45, as in the particle solver):

1. *Stencil.*  S^2: the Delaunay triangle of centers (a, b, c) whose cone contains x, and
   the barycentric coordinates of the central projection of x onto the flat triangle,
   lambda_a : lambda_b : lambda_c = det(x, b, c) : det(a, x, c) : det(a, b, x), summing to 1.
   A particle is first tested against its triangle of the previous stage (three inner
   products; it moves a fraction of a triangle per stage), then walked across the edge of
   its most negative coordinate for a few steps; failing that (and at the first stage) a
   greedy walk on the cell graph finds the nearest center c_i and the fan of triangles around
   c_i holds x (every triangle of the icosahedral mesh is acute, so a Voronoi cell lies
   inside the fan of its center).  The result does not depend on the path.
   S^1: linear (cloud-in-cell) weights in the angle between the two nearest cell centers.
2. *Deposition* (the transpose of interpolation): m_i = sum_p w_p lambda_i(x_p).  The
   weights are >= 0 and sum to 1, so the cell masses are >= 0 and sum to the particle mass
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

import functools
import math
from dataclasses import dataclass

from typing import Callable

import numpy as np
from numba import prange
from numpy.typing import ArrayLike

from ..field import continuum_field, velocity
from ..kernels._jit import jit, jit_parallel
from ..mesh import CircleMesh, SphereMesh
from ..mesh.sphere import _greedy_walk
from ..model import Model
from ..options import SolverOptions
from .particles import ParticleSolver

__all__ = [
    "PICSolver",
    "pic_mesh",
    "sphere_stencil",
    "circle_stencil",
    "deposit",
    "interpolate",
    "sphere_stencil_numpy",
    "circle_stencil_numpy",
    "deposit_numpy",
    "interpolate_numpy",
    "MIN_CELLS",
    "DEPOSIT_CHUNKS",
    "PARALLEL_MIN",
]

#: Smallest ``solver.cells`` for PIC: d = 2, three cells; d = 3, the icosahedron (12 cells).
MIN_CELLS = {2: 3, 3: 12}

#: Kernels run on numba threads from this many rows (particles) on, in blocks of BLOCK rows;
#: below it one thread does the work (a parallel region costs more than a small problem,
#: up to milliseconds when the cores are shared).  Results are the same either way.
PARALLEL_MIN = 32768
BLOCK = 4096

#: Longest walk across triangle edges from a particle's previous triangle; beyond it (a
#: particle that moved far) the walk on the cell graph takes over, which cannot cycle.
TRIANGLE_STEPS = 8

#: Particles are split into up to this many chunks for the deposition, each with its own
#: buffer of M cells, and at most DEPOSIT_BUFFER float64 in all (a count fixed by N and M, not
#: by the thread count: the sum is the same on any number of threads).
DEPOSIT_CHUNKS = 16
DEPOSIT_BUFFER = 2**24


def _parallel(n: int) -> bool:
    return n >= PARALLEL_MIN


def pic_mesh(d: int, cells):
    """The PIC mesh: ``CircleMesh(cells)`` for d = 2, ``SphereMesh.icosahedral(cells)`` for d = 3."""
    if d not in MIN_CELLS:
        raise ValueError(f"pic is implemented for d = 2 (the circle) and d = 3 (the sphere S^2), got d = {d}")
    if isinstance(cells, bool) or not isinstance(cells, (int, np.integer)) or cells < MIN_CELLS[d]:
        raise ValueError(f"solver.cells must be an integer >= {MIN_CELLS[d]} for pic with d = {d}, got {cells!r}")
    return CircleMesh(int(cells)) if d == 2 else SphereMesh.icosahedral(int(cells))


# ------------------------------------------------------------------------------- stencils


def _fan_triangles(mesh: SphereMesh):
    """(i, j, k) of each fan slot s of cell i: the counter-clockwise Delaunay triangle
    (c_i, c_{nbr[s-1]}, c_{nbr[s]}) (cyclic in the cell's slots); its circumcenter is the
    mesh vertex ``region_idx[s]``, whose index is the triangle's id."""
    ptr, nbr = mesh.neighbor_ptr, mesh.neighbor_idx
    s = np.arange(len(nbr))
    prev = s - 1
    prev[ptr[:-1]] = ptr[1:] - 1
    return np.repeat(np.arange(mesh.M), np.diff(ptr)), nbr[prev], nbr


@dataclass(frozen=True, eq=False)
class _Triangulation:
    """The Delaunay triangles of a SphereMesh's centers, as the stencil kernel reads them.

    tri (T, 3) int64: the three centers of triangle t (t indexes ``mesh.vertices``, its
    circumcenter), counter-clockwise, the smallest cell index first (one canonical order);
    normals (T, 3, 3): normals[t, k] = c_{tri[t, k+1]} x c_{tri[t, k+2]}, so the barycentric
    weights of x are proportional to <x, normals[t, k]>; adjacent (T, 3) int64: the triangle
    across the edge opposite corner k; slot_tri (2F,): the triangle of each
    fan slot; edge (2F, 3): c_i x c_{nbr[s]} for slot s of cell i; seeds: cells of the mesh
    nearest to the centers of a coarse icosahedral mesh (about sqrt(M) / 2 of them).
    """

    tri: np.ndarray
    normals: np.ndarray
    adjacent: np.ndarray
    slot_tri: np.ndarray
    edge: np.ndarray
    seeds: np.ndarray


@functools.lru_cache(maxsize=8)
def _triangulation(mesh: SphereMesh) -> _Triangulation:
    own, left, right = _fan_triangles(mesh)
    C = mesh.centers
    T = len(mesh.vertices)
    corners = np.stack([own, left, right], axis=1)
    tri = np.empty((T, 3), dtype=np.int64)
    tri[mesh.region_idx] = corners
    shift = np.argmin(tri, axis=1)  # rotate (keeps the orientation) to put the smallest first
    tri = np.take_along_axis(tri, (shift[:, None] + np.arange(3)) % 3, axis=1)
    P = C[tri]
    normals = np.stack([np.cross(P[:, (k + 1) % 3], P[:, (k + 2) % 3]) for k in range(3)], axis=1)
    # the edge opposite corner k runs tri[k+1] -> tri[k+2]; the neighbor holds it reversed
    M = mesh.M
    heads, tails = tri[:, [1, 2, 0]], tri[:, [2, 0, 1]]
    keys = (heads * M + tails).ravel()
    order = np.argsort(keys)
    where = np.searchsorted(keys[order], (tails * M + heads).ravel())
    adjacent = (order[where] // 3).reshape(T, 3)
    if not np.array_equal(keys[order][where], (tails * M + heads).ravel()):  # pragma: no cover
        raise RuntimeError("the Delaunay triangles of the mesh do not close up")
    coarse = SphereMesh.icosahedral(max(12, min(mesh.M, int(math.sqrt(mesh.M) / 2))))
    return _Triangulation(
        tri=np.ascontiguousarray(tri),
        normals=np.ascontiguousarray(normals),
        adjacent=np.ascontiguousarray(adjacent, dtype=np.int64),
        slot_tri=np.ascontiguousarray(mesh.region_idx, dtype=np.int64),
        edge=np.ascontiguousarray(np.cross(C[own], C[right])),
        seeds=np.unique(mesh.locate(coarse.centers)),
    )


@jit
def _sphere_rows(lo, hi, X, guess, seeds, centers, ptr, nbr, edge, slot_tri, tri, normals, adjacent,
                 tris, idx, lam):  # pragma: no cover - compiled
    for p in range(lo, hi):
        x0, x1, x2 = X[p, 0], X[p, 1], X[p, 2]
        t = guess[p]
        inside = False
        if t >= 0:  # fast path: still in the triangle of the previous stage
            l0 = x0 * normals[t, 0, 0] + x1 * normals[t, 0, 1] + x2 * normals[t, 0, 2]
            l1 = x0 * normals[t, 1, 0] + x1 * normals[t, 1, 1] + x2 * normals[t, 1, 2]
            l2 = x0 * normals[t, 2, 0] + x1 * normals[t, 2, 1] + x2 * normals[t, 2, 2]
            inside = l0 >= 0.0 and l1 >= 0.0 and l2 >= 0.0
            # a short walk across the edge of the most negative weight (a particle moves a
            # fraction of a triangle per stage); a longer one is left to the cell walk below
            steps = 0
            while not inside and steps < TRIANGLE_STEPS:
                if l0 <= l1 and l0 <= l2:
                    t = adjacent[t, 0]
                elif l1 <= l2:
                    t = adjacent[t, 1]
                else:
                    t = adjacent[t, 2]
                l0 = x0 * normals[t, 0, 0] + x1 * normals[t, 0, 1] + x2 * normals[t, 0, 2]
                l1 = x0 * normals[t, 1, 0] + x1 * normals[t, 1, 1] + x2 * normals[t, 1, 2]
                l2 = x0 * normals[t, 2, 0] + x1 * normals[t, 2, 1] + x2 * normals[t, 2, 2]
                inside = l0 >= 0.0 and l1 >= 0.0 and l2 >= 0.0
                steps += 1
        if not inside:
            # 1. the nearest center: SphereMesh.locate's greedy walk on the Delaunay graph
            #    from a corner of the previous triangle, or from the nearest seed cell
            if t >= 0:
                i = tri[t, 0]
            else:
                i = seeds[0]
                best = x0 * centers[i, 0] + x1 * centers[i, 1] + x2 * centers[i, 2]
                for k in range(1, seeds.shape[0]):
                    j = seeds[k]
                    q = x0 * centers[j, 0] + x1 * centers[j, 1] + x2 * centers[j, 2]
                    if q > best:
                        best = q
                        i = j
            i = _greedy_walk(x0, x1, x2, i, centers, ptr, nbr)
            # 2. the fan sector of x around c_i: e_s = det(c_i, c_{nbr[s]}, x) goes from >= 0
            #    to <= 0 across the triangle (c_i, c_{nbr[s-1]}, c_{nbr[s]}) containing x (the
            #    Voronoi cell of c_i lies in its fan: every triangle of the mesh is acute)
            a, b = ptr[i], ptr[i + 1]
            e_prev = x0 * edge[b - 1, 0] + x1 * edge[b - 1, 1] + x2 * edge[b - 1, 2]
            slot = a  # no sign change happens only by rounding at x = c_i: any slot is right
            for s in range(a, b):
                e = x0 * edge[s, 0] + x1 * edge[s, 1] + x2 * edge[s, 2]
                if e_prev >= 0.0 and e <= 0.0:
                    slot = s
                    break
                e_prev = e
            t = slot_tri[slot]
            l0 = x0 * normals[t, 0, 0] + x1 * normals[t, 0, 1] + x2 * normals[t, 0, 2]
            l1 = x0 * normals[t, 1, 0] + x1 * normals[t, 1, 1] + x2 * normals[t, 1, 2]
            l2 = x0 * normals[t, 2, 0] + x1 * normals[t, 2, 1] + x2 * normals[t, 2, 2]
        # barycentric weights det(x, b, c) : det(a, x, c) : det(a, b, x) of the triangle (a, b, c);
        # a point on an edge may come out a rounding error outside: clamp, then normalise
        l0, l1, l2 = max(l0, 0.0), max(l1, 0.0), max(l2, 0.0)
        tot = l0 + l1 + l2
        if not tot > 0.0:  # not reached for nonzero finite x (near c_i its weight is ~1)
            l0, tot = 1.0, 1.0
        tris[p] = t
        idx[p, 0], idx[p, 1], idx[p, 2] = tri[t, 0], tri[t, 1], tri[t, 2]
        lam[p, 0], lam[p, 1], lam[p, 2] = l0 / tot, l1 / tot, l2 / tot


@jit_parallel
def _sphere_par(block, X, *args):  # pragma: no cover - compiled
    n = X.shape[0]
    for b in prange((n + block - 1) // block):
        _sphere_rows(b * block, min(n, (b + 1) * block), X, *args)


def _check_points(X, d):
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"points must have shape (N, {d}), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("points must be finite")
    return X


def _sphere_stencil(mesh: SphereMesh, X, guess):
    """:func:`sphere_stencil` on checked input: X (N, 3) contiguous float64, guess (N,) int64
    (entries < 0: no guess)."""
    tr = _triangulation(mesh)
    tris = np.empty(len(X), dtype=np.int64)
    idx = np.empty((len(X), 3), dtype=np.int64)
    lam = np.empty((len(X), 3))
    args = (X, guess, tr.seeds, mesh.centers, mesh.neighbor_ptr, mesh.neighbor_idx, tr.edge, tr.slot_tri,
            tr.tri, tr.normals, tr.adjacent, tris, idx, lam)
    if _parallel(len(X)):
        _sphere_par(BLOCK, *args)
    else:
        _sphere_rows(0, len(X), *args)
    return tris, idx, lam


def sphere_stencil(mesh: SphereMesh, X, guess=None):
    """Linear interpolation stencil of points X (N, 3) on the Delaunay triangles of ``mesh``.

    Returns ``(tris, idx, lam)``: the Delaunay triangle containing each point (N,) int64 (its
    index into ``mesh.vertices``, the triangle's circumcenter), its three centers (N, 3)
    int64 (counter-clockwise, the smallest index first) and the barycentric weights (N, 3),
    >= 0 and summing to 1 (to round-off).  ``guess`` (N,) are triangles from an earlier call
    (-1: none): a point still inside its guess costs three inner products; otherwise a greedy
    walk on the Delaunay graph, started from the guess or from the nearest of a few seed cells,
    finds the nearest center and a search of its fan of triangles the containing one.  The
    result does not depend on the guess (a point exactly on an edge may go either way).  Only
    the direction of a point matters.
    """
    X = _check_points(X, 3)
    T = len(mesh.vertices)
    if guess is None:
        guess = np.full(len(X), -1, dtype=np.int64)
    else:
        guess = np.asarray(guess)
        if guess.dtype.kind not in "iu" or guess.shape != (len(X),):
            raise ValueError(f"guess must be ({len(X)},) integer triangle indices, got {guess.dtype} {guess.shape}")
        guess = np.ascontiguousarray(guess, dtype=np.int64)
        if len(guess) and (guess.min() < -1 or guess.max() >= T):
            raise ValueError(f"guess must hold triangle indices in [-1, {T}), got {guess.min()} .. {guess.max()}")
    return _sphere_stencil(mesh, X, guess)


def sphere_stencil_numpy(mesh: SphereMesh, X):
    """NumPy reference of :func:`sphere_stencil`: every triangle tested for every point (the
    one whose smallest barycentric weight is largest taken), weights from determinants of the
    corner centers: ``(tris, idx, lam)``."""
    X = _check_points(X, 3)
    tri = _triangulation(mesh).tri
    A, B, C = (mesh.centers[tri[:, k]] for k in range(3))
    nA, nB, nC = np.cross(B, C), np.cross(C, A), np.cross(A, B)
    tris = np.empty(len(X), dtype=np.int64)
    lam = np.empty((len(X), 3))
    for p, x in enumerate(X):
        dets = np.stack([nA @ x, nB @ x, nC @ x], axis=1)
        tot = dets.sum(axis=1)
        low = np.where(tot > 0, dets.min(axis=1) / np.where(tot > 0, tot, 1.0), -np.inf)
        t = int(np.argmax(low))
        w = np.maximum(dets[t], 0.0)
        tris[p] = t
        lam[p] = w / w.sum()
    return tris, tri[tris], lam


@jit
def _circle_rows(lo, hi, X, M, idx, lam):  # pragma: no cover - compiled
    dx = 2.0 * math.pi / M
    for p in range(lo, hi):
        t = math.atan2(X[p, 1], X[p, 0])
        if t < 0.0:
            t += 2.0 * math.pi
        s = t / dx - 0.5
        f = math.floor(s)
        frac = s - f
        i = int(f)
        if i < 0:
            i += M
        if i >= M:
            i -= M
        j = i + 1
        if j >= M:
            j -= M
        idx[p, 0], idx[p, 1] = i, j
        lam[p, 0], lam[p, 1] = 1.0 - frac, frac


@jit_parallel
def _circle_par(block, X, M, idx, lam):  # pragma: no cover - compiled
    n = X.shape[0]
    for b in prange((n + block - 1) // block):
        _circle_rows(b * block, min(n, (b + 1) * block), X, M, idx, lam)


def circle_stencil(mesh: CircleMesh, X):
    """Cloud-in-cell stencil of points X (N, 2) on the cell centers (i + 1/2) dx of ``mesh``.

    Returns ``(idx, lam)``: the two centers around each point's angle t, (N, 2) int64, and the
    linear weights (1 - f, f), f = t / dx - 1/2 - floor(t / dx - 1/2) in [0, 1).
    """
    X = _check_points(X, 2)
    idx = np.empty((len(X), 2), dtype=np.int64)
    lam = np.empty((len(X), 2))
    if _parallel(len(X)):
        _circle_par(BLOCK, X, mesh.M, idx, lam)
    else:
        _circle_rows(0, len(X), X, mesh.M, idx, lam)
    return idx, lam


def circle_stencil_numpy(mesh: CircleMesh, X):
    """NumPy reference of :func:`circle_stencil`."""
    X = _check_points(X, 2)
    t = np.mod(np.arctan2(X[:, 1], X[:, 0]), 2.0 * math.pi)
    s = t / mesh.dx - 0.5
    f = np.floor(s)
    i = np.mod(f.astype(np.int64), mesh.M)
    return np.stack([i, (i + 1) % mesh.M], axis=1), np.stack([1.0 - (s - f), s - f], axis=1)


# --------------------------------------------------------------------- deposit / interpolate


@jit
def _deposit_rows(lo, hi, idx, lam, weights, row):  # pragma: no cover - compiled
    """Scatter particles lo .. hi - 1 into ``row`` (zeroed first): one chunk's own buffer."""
    for i in range(row.shape[0]):
        row[i] = 0.0
    for p in range(lo, hi):
        m = weights[p]
        for k in range(idx.shape[1]):
            row[idx[p, k]] += m * lam[p, k]


@jit
def _reduce(buffers, out):  # pragma: no cover - compiled
    """out_i = sum over the chunks of buffers[c, i], chunk by chunk in order (serial: M x chunks
    additions cost less than starting threads)."""
    for i in range(out.shape[0]):
        out[i] = buffers[0, i]
    for c in range(1, buffers.shape[0]):
        for i in range(out.shape[0]):
            out[i] += buffers[c, i]


@jit_parallel
def _deposit_par(size, idx, lam, weights, buffers):  # pragma: no cover - compiled
    n = idx.shape[0]
    for c in prange(buffers.shape[0]):
        _deposit_rows(c * size, min(n, (c + 1) * size), idx, lam, weights, buffers[c])


@jit
def _deposit_ser(size, idx, lam, weights, buffers):  # pragma: no cover - compiled
    n = idx.shape[0]
    for c in range(buffers.shape[0]):
        _deposit_rows(c * size, min(n, (c + 1) * size), idx, lam, weights, buffers[c])


@jit_parallel
def _sphere_deposit_par(size, weights, buffers, X, guess, seeds, centers, ptr, nbr, edge, slot_tri, tri,
                        normals, adjacent, tris, idx, lam):  # pragma: no cover - compiled
    """Stencil and deposition of each chunk in one parallel region (one start of the threads)."""
    n = X.shape[0]
    for c in prange(buffers.shape[0]):
        lo, hi = c * size, min(n, (c + 1) * size)
        _sphere_rows(lo, hi, X, guess, seeds, centers, ptr, nbr, edge, slot_tri, tri, normals, adjacent,
                     tris, idx, lam)
        _deposit_rows(lo, hi, idx, lam, weights, buffers[c])


@jit_parallel
def _circle_deposit_par(size, weights, buffers, X, M, idx, lam):  # pragma: no cover - compiled
    n = X.shape[0]
    for c in prange(buffers.shape[0]):
        lo, hi = c * size, min(n, (c + 1) * size)
        _circle_rows(lo, hi, X, M, idx, lam)
        _deposit_rows(lo, hi, idx, lam, weights, buffers[c])


def _chunks(n: int, M: int):
    """The fixed partition of n particles into DEPOSIT_CHUNKS chunks: (chunk size, buffers)."""
    chunks = max(1, min(DEPOSIT_CHUNKS, n, DEPOSIT_BUFFER // M))
    return -(-n // chunks), np.empty((chunks, M))


def _stencil_deposit(mesh, X, guess, weights):
    """(tris or None, idx, lam, cell masses) of checked points X with masses ``weights``: the
    stencil and the deposition fused per chunk (the same numbers as the separate calls)."""
    M, n = mesh.M, len(X)
    size, buffers = _chunks(n, M)
    if isinstance(mesh, CircleMesh):
        tris = None
        idx = np.empty((n, 2), dtype=np.int64)
        lam = np.empty((n, 2))
        if _parallel(n):
            _circle_deposit_par(size, weights, buffers, X, M, idx, lam)
        else:
            _circle_rows(0, n, X, M, idx, lam)
            _deposit_ser(size, idx, lam, weights, buffers)
    else:
        tr = _triangulation(mesh)
        tris = np.empty(n, dtype=np.int64)
        idx = np.empty((n, 3), dtype=np.int64)
        lam = np.empty((n, 3))
        args = (X, guess, tr.seeds, mesh.centers, mesh.neighbor_ptr, mesh.neighbor_idx, tr.edge, tr.slot_tri,
                tr.tri, tr.normals, tr.adjacent, tris, idx, lam)
        if _parallel(n):
            _sphere_deposit_par(size, weights, buffers, *args)
        else:
            _sphere_rows(0, n, *args)
            _deposit_ser(size, idx, lam, weights, buffers)
    masses = np.empty(M)
    _reduce(buffers, masses)
    return tris, idx, lam, masses


def _check_stencil(idx, lam, n_rows=None):
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    lam = np.ascontiguousarray(lam, dtype=np.float64)
    if idx.ndim != 2 or lam.shape != idx.shape:
        raise ValueError(f"idx and lam must be (N, K) arrays of one shape, got {idx.shape} and {lam.shape}")
    if n_rows is not None and len(idx) != n_rows:
        raise ValueError(f"the stencil must have one row per particle ({n_rows}), got {len(idx)}")
    return idx, lam


def deposit(idx, lam, weights, M: int) -> np.ndarray:
    """Cell masses m_i = sum_p weights_p lam_pk over the stencil entries idx_pk = i, (M,).

    ``idx`` (N, K) cell indices in [0, M), ``lam`` (N, K) weights, ``weights`` (N,) masses.
    """
    idx, lam = _check_stencil(idx, lam)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    if weights.shape != (len(idx),):
        raise ValueError(f"weights must have shape ({len(idx)},), got {weights.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= M):
        raise ValueError(f"idx must hold cell indices in [0, {M}), got {idx.min()} .. {idx.max()}")
    return _deposit(idx, lam, weights, M)


def _deposit(idx, lam, weights, M):
    size, buffers = _chunks(len(idx), M)
    (_deposit_par if _parallel(len(idx)) else _deposit_ser)(size, idx, lam, weights, buffers)
    out = np.empty(M)
    _reduce(buffers, out)
    return out


def deposit_numpy(idx, lam, weights, M: int) -> np.ndarray:
    """NumPy reference of :func:`deposit` (``np.bincount``)."""
    w = np.asarray(lam) * np.asarray(weights)[:, None]
    return np.bincount(np.asarray(idx).ravel(), weights=w.ravel(), minlength=M)


@jit
def _interpolate_rows(lo, hi, idx, lam, F, X, project, out):  # pragma: no cover - compiled
    K = idx.shape[1]
    d = F.shape[1]
    for p in range(lo, hi):
        if d == 3:  # registers, not stores to out, in the common case
            v0 = v1 = v2 = 0.0
            for k in range(K):
                i = idx[p, k]
                w = lam[p, k]
                v0 += w * F[i, 0]
                v1 += w * F[i, 1]
                v2 += w * F[i, 2]
            if project:
                xv = X[p, 0] * v0 + X[p, 1] * v1 + X[p, 2] * v2
                v0 -= xv * X[p, 0]
                v1 -= xv * X[p, 1]
                v2 -= xv * X[p, 2]
            out[p, 0], out[p, 1], out[p, 2] = v0, v1, v2
            continue
        for c in range(d):
            out[p, c] = 0.0
        for k in range(K):
            i = idx[p, k]
            w = lam[p, k]
            for c in range(d):
                out[p, c] += w * F[i, c]
        if project:
            xv = 0.0
            for c in range(d):
                xv += X[p, c] * out[p, c]
            for c in range(d):
                out[p, c] -= xv * X[p, c]


@jit_parallel
def _interpolate_par(block, idx, lam, F, X, project, out):  # pragma: no cover - compiled
    n = idx.shape[0]
    for b in prange((n + block - 1) // block):
        _interpolate_rows(b * block, min(n, (b + 1) * block), idx, lam, F, X, project, out)


def interpolate(idx, lam, F, X=None) -> np.ndarray:
    """v_p = sum_k lam_pk F[idx_pk] (N, d), projected to P_x v = v - <x, v> x when X is given.

    ``F`` (M, d) node values; ``X`` (N, d) the particles (any length: the smooth extension of
    the projection off the sphere).
    """
    idx, lam = _check_stencil(idx, lam)
    F = np.ascontiguousarray(F, dtype=np.float64)
    if F.ndim != 2:
        raise ValueError(f"F must be an (M, d) array of node values, got shape {F.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(F)):
        raise ValueError(f"idx must hold node indices in [0, {len(F)}), got {idx.min()} .. {idx.max()}")
    if X is not None:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.shape != (len(idx), F.shape[1]):
            raise ValueError(f"X must have shape ({len(idx)}, {F.shape[1]}), got {X.shape}")
    return _interpolate(idx, lam, F, X)


def _interpolate(idx, lam, F, X):
    project = X is not None
    if X is None:
        X = np.zeros((0, F.shape[1]))
    out = np.empty((len(idx), F.shape[1]))
    if _parallel(len(idx)):
        _interpolate_par(BLOCK, idx, lam, F, X, project, out)
    else:
        _interpolate_rows(0, len(idx), idx, lam, F, X, project, out)
    return out


def interpolate_numpy(idx, lam, F, X=None) -> np.ndarray:
    """NumPy reference of :func:`interpolate`."""
    v = np.einsum("pk,pkc->pc", np.asarray(lam), np.asarray(F)[np.asarray(idx)])
    if X is None:
        return v
    return v - np.sum(X * v, axis=1, keepdims=True) * X


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
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mfpde.Model, got {type(model).__name__}")
        options = options or SolverOptions(method="pic")
        if model.is_zero_temperature and model.zero_temperature != "continuum":
            raise ValueError(
                "pic at beta = inf needs model.zero_temperature = \"continuum\" (the hardmax field of a "
                f"mesh measure is not smooth enough to interpolate), got {model.zero_temperature!r}"
            )
        super().__init__(model, options)
        self.mesh = pic_mesh(model.d, options.cells)
        self.nodes = np.ascontiguousarray(self.mesh.center_points if model.d == 2 else self.mesh.centers)
        self.max_mass_error = 0.0
        self.min_cell_mass = math.inf
        self.cell_masses = None

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
