"""Point location on the meshes: the linear interpolation stencil of points on S^1 and S^2.

``sphere_stencil(mesh, X, guess=None)``: for each point x of S^2, the Delaunay triangle of the
centers of a :class:`~mfpde.mesh.SphereMesh`, (a, b, c), whose cone contains x, and the
barycentric coordinates of the central projection of x onto the flat triangle,
lambda_a : lambda_b : lambda_c = det(x, b, c) : det(a, x, c) : det(a, b, x), summing to 1.
A point is first tested against its triangle of an earlier call (three inner products; a
particle moves a fraction of a triangle per stage), then walked across the edge of its most
negative coordinate for a few steps (``TRIANGLE_STEPS``); failing that (and without a guess)
a greedy walk on the cell graph (:func:`~mfpde.mesh.sphere.greedy_walk`) finds the nearest
center c_i and the fan of triangles around c_i holds x (every triangle of the icosahedral mesh
is acute, so a Voronoi cell lies inside the fan of its center).  The result does not depend
on the path.

``circle_stencil(mesh, X)``: on a :class:`~mfpde.mesh.CircleMesh`, the two cell centers around
the angle of x and the linear (cloud-in-cell) weights between them.

``sphere_stencil_numpy`` and ``circle_stencil_numpy`` are the NumPy references the kernels are
tested against.  The row kernels (``sphere_stencil_rows``, ``circle_stencil_rows``) and the
triangle tables (:func:`triangulation`) are public for the fused stencil-and-deposition kernels
of :mod:`mfpde.kernels.deposit`; :func:`parallel` (``PARALLEL_MIN``, ``BLOCK``) decides when
both run on numba threads.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import prange
from numpy.typing import ArrayLike

from ..kernels._jit import jit, jit_parallel
from .circle import CircleMesh
from .sphere import SphereMesh, greedy_walk

__all__ = [
    "sphere_stencil",
    "circle_stencil",
    "sphere_stencil_numpy",
    "circle_stencil_numpy",
    "check_points",
    "triangulation",
    "Triangulation",
    "sphere_stencil_rows",
    "circle_stencil_rows",
    "parallel",
    "PARALLEL_MIN",
    "BLOCK",
    "TRIANGLE_STEPS",
]

#: The stencil kernels here and the deposition / interpolation kernels of
#: :mod:`mfpde.kernels.deposit` run on numba threads from this many rows (points) on, in
#: blocks of BLOCK rows; below it one thread does the work (a parallel region costs more than
#: a small problem, up to milliseconds when the cores are shared).  Results are the same
#: either way.
PARALLEL_MIN = 32768
BLOCK = 4096

#: Longest walk across triangle edges from a point's guessed triangle; beyond it (a particle
#: that moved far) the walk on the cell graph takes over, which cannot cycle.
TRIANGLE_STEPS = 8


def parallel(n: int) -> bool:
    """Whether a kernel over n rows runs on threads (n >= ``PARALLEL_MIN``, read at call time)."""
    return n >= PARALLEL_MIN


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
class Triangulation:
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
def triangulation(mesh: SphereMesh) -> Triangulation:
    """The :class:`Triangulation` of ``mesh`` (built once per mesh and cached)."""
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
    return Triangulation(
        tri=np.ascontiguousarray(tri),
        normals=np.ascontiguousarray(normals),
        adjacent=np.ascontiguousarray(adjacent, dtype=np.int64),
        slot_tri=np.ascontiguousarray(mesh.region_idx, dtype=np.int64),
        edge=np.ascontiguousarray(np.cross(C[own], C[right])),
        seeds=np.unique(mesh.locate(coarse.centers)),
    )


@jit
def sphere_stencil_rows(lo, hi, X, guess, seeds, centers, ptr, nbr, edge, slot_tri, tri, normals, adjacent,
                        tris, idx, lam):  # pragma: no cover - compiled
    """:func:`sphere_stencil` of rows lo .. hi - 1 of X into ``tris``, ``idx``, ``lam`` (the
    mesh arrays and the :class:`Triangulation` tables passed one by one)."""
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
            i = greedy_walk(x0, x1, x2, i, centers, ptr, nbr)
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
        sphere_stencil_rows(b * block, min(n, (b + 1) * block), X, *args)


def check_points(X: ArrayLike, d: int) -> np.ndarray:
    """X as a contiguous float64 (N, d) array of finite points (ValueError otherwise)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"points must have shape (N, {d}), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("points must be finite")
    return X


def _sphere_stencil(mesh: SphereMesh, X, guess):
    """:func:`sphere_stencil` on checked input: X (N, 3) contiguous float64, guess (N,) int64
    (entries < 0: no guess)."""
    tr = triangulation(mesh)
    tris = np.empty(len(X), dtype=np.int64)
    idx = np.empty((len(X), 3), dtype=np.int64)
    lam = np.empty((len(X), 3))
    args = (X, guess, tr.seeds, mesh.centers, mesh.neighbor_ptr, mesh.neighbor_idx, tr.edge, tr.slot_tri,
            tr.tri, tr.normals, tr.adjacent, tris, idx, lam)
    if parallel(len(X)):
        _sphere_par(BLOCK, *args)
    else:
        sphere_stencil_rows(0, len(X), *args)
    return tris, idx, lam


def sphere_stencil(mesh: SphereMesh, X: ArrayLike, guess: ArrayLike | None = None) -> tuple:
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
    X = check_points(X, 3)
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


def sphere_stencil_numpy(mesh: SphereMesh, X: ArrayLike) -> tuple:
    """NumPy reference of :func:`sphere_stencil`: every triangle tested for every point (the
    one whose smallest barycentric weight is largest taken), weights from determinants of the
    corner centers: ``(tris, idx, lam)``."""
    X = check_points(X, 3)
    tri = triangulation(mesh).tri
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
def circle_stencil_rows(lo, hi, X, M, idx, lam):  # pragma: no cover - compiled
    """:func:`circle_stencil` of rows lo .. hi - 1 of X on M cells into ``idx``, ``lam``."""
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
        circle_stencil_rows(b * block, min(n, (b + 1) * block), X, M, idx, lam)


def circle_stencil(mesh: CircleMesh, X: ArrayLike) -> tuple:
    """Cloud-in-cell stencil of points X (N, 2) on the cell centers (i + 1/2) dx of ``mesh``.

    Returns ``(idx, lam)``: the two centers around each point's angle t, (N, 2) int64, and the
    linear weights (1 - f, f), f = t / dx - 1/2 - floor(t / dx - 1/2) in [0, 1).
    """
    X = check_points(X, 2)
    idx = np.empty((len(X), 2), dtype=np.int64)
    lam = np.empty((len(X), 2))
    if parallel(len(X)):
        _circle_par(BLOCK, X, mesh.M, idx, lam)
    else:
        circle_stencil_rows(0, len(X), X, mesh.M, idx, lam)
    return idx, lam


def circle_stencil_numpy(mesh: CircleMesh, X: ArrayLike) -> tuple:
    """NumPy reference of :func:`circle_stencil`."""
    X = check_points(X, 2)
    t = np.mod(np.arctan2(X[:, 1], X[:, 0]), 2.0 * math.pi)
    s = t / mesh.dx - 0.5
    f = np.floor(s)
    i = np.mod(f.astype(np.int64), mesh.M)
    return np.stack([i, (i + 1) % mesh.M], axis=1), np.stack([1.0 - (s - f), s - f], axis=1)
