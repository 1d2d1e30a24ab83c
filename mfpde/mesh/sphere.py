"""A quasi-uniform mesh of S^2 without pole singularity: the Voronoi dual of a subdivided icosahedron.

Construction (``SphereMesh.icosahedral(cells)``):

1. Generators: the 12 vertices of the icosahedron, n - 1 equally spaced points on each of its
   30 edges and the interior points of the n-frequency triangular grid of each of its 20
   faces (flat subdivision), projected radially onto the sphere: 10 n^2 + 2 unit vectors.
   They are the cell centers.  The icosahedron is turned by the fixed rotation
   exp([w]_x), w = (0.1, 0.2, 0.3) rad (``MESH_ROTATION``), from the standard position in which
   its 2-fold axes are the coordinate axes: then no center lies on a coordinate plane, so
   the limit map Pi of a diagonal V (top eigenvector e_k) is defined at every center and
   no cell straddles E-perp symmetrically by accident.  The set stays symmetric under x -> -x.  ``cells`` picks the frequency n >= 1 whose count 10 n^2 + 2 is
   nearest to it (ties go to the finer mesh), so ``mesh.M`` is generally not ``cells``.
2. The spherical Delaunay triangulation of the centers is their convex hull (qhull), each
   triangle oriented counter-clockwise seen from outside.  Its circumcenters (the unit
   normals of the triangles) are the Voronoi vertices; the Voronoi cell of center i is the
   spherical polygon of the circumcenters of the triangles around i, in counter-clockwise
   order (sorted by angle in the tangent plane at i).
3. Faces: one per Delaunay edge (i, j), i < j.  The face is the great-circle arc between the
   circumcenters of the two triangles sharing the edge; it lies on the bisector plane
   {x : <x, c_i> = <x, c_j>}, whose unit normal (c_j - c_i) / |c_j - c_i| is therefore tangent
   to the sphere all along the face and points from the left cell i into the right cell j.
4. Areas: each face cuts its two cells' polygons into the spherical triangles
   (c_i, p, q) and (c_j, q, p) (p, q its endpoints); their areas (Van Oosterom-Strackee:
   tan(E / 2) = det(a, b, c) / (1 + a.b + b.c + c.a)) summed per cell tile the sphere, so the
   areas add up to 4 pi to round-off.  They agree with ``scipy.spatial.SphericalVoronoi``
   (tested).

The mesh of a frequency is built once and memoised; its arrays are read-only.  Cell sizes
(measured): area / mean area lies in [0.62, 1.20] at n = 16 and [0.59, 1.21] at n = 64; the
flat subdivision shrinks the cells near the icosahedron's 12 vertices (the 12 pentagons are
the smallest) and enlarges those at its face centers.  Every other cell is a hexagon.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from numba import prange

from ..kernels._jit import jit, jit_parallel

__all__ = ["SphereMesh", "icosahedral_frequency", "spherical_triangle_areas", "greedy_walk"]

#: Rotation vector (radians) of the fixed turn applied to the icosahedron (module docstring).
MESH_ROTATION = (0.1, 0.2, 0.3)

#: Largest icosahedral frequency accepted (10 n^2 + 2 = 4.0e6 cells); a bound, not a target.
MAX_FREQUENCY = 632
#: The most cells of an icosahedral mesh (frequency MAX_FREQUENCY: 10 n^2 + 2 cells).
MAX_CELLS = 10 * MAX_FREQUENCY**2 + 2


def _frozen(a: np.ndarray, dtype=np.float64) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    a.setflags(write=False)
    return a


def icosahedral_frequency(cells) -> int:
    """The frequency n >= 1 whose cell count 10 n^2 + 2 is nearest to ``cells`` (ties: the finer)."""
    if isinstance(cells, bool) or not isinstance(cells, (int, np.integer)) or cells < 1:
        raise ValueError(f"solver.cells must be an integer >= 1 for the sphere mesh, got {cells!r}")
    cells = int(cells)
    guess = max(1, int(round(math.sqrt(max(cells - 2, 0) / 10.0))))
    candidates = [n for n in (guess - 1, guess, guess + 1) if n >= 1]
    n = min(candidates, key=lambda k: (abs(10 * k * k + 2 - cells), -k))
    if n > MAX_FREQUENCY:
        raise ValueError(
            f"solver.cells = {cells} asks for more than {10 * MAX_FREQUENCY**2 + 2} sphere cells "
            f"(frequency {MAX_FREQUENCY})"
        )
    return n


def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """Unit vertices (12, 3) and counter-clockwise faces (20, 3) of the regular icosahedron."""
    from scipy.spatial import ConvexHull

    phi = (1.0 + math.sqrt(5.0)) / 2.0
    v = []
    for a in (-1.0, 1.0):
        for b in (-phi, phi):
            v += [(0.0, a, b), (a, b, 0.0), (b, 0.0, a)]
    v = np.array(v) / math.sqrt(1.0 + phi * phi)
    v = v @ _rotation_matrix(MESH_ROTATION).T
    faces = _oriented(v, ConvexHull(v).simplices)
    return v, faces


def _rotation_matrix(w) -> np.ndarray:
    """exp([w]_x): the rotation by |w| radians about w (Rodrigues)."""
    w = np.asarray(w, dtype=np.float64)
    angle = float(np.linalg.norm(w))
    k = w / angle
    Kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * Kx + (1.0 - math.cos(angle)) * (Kx @ Kx)


def _oriented(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Triangles re-ordered counter-clockwise seen from outside: det(a, b, c) > 0."""
    tri = np.array(tri, dtype=np.int64)
    a, b, c = points[tri[:, 0]], points[tri[:, 1]], points[tri[:, 2]]
    flip = np.einsum("ij,ij->i", a, np.cross(b, c)) < 0
    tri[flip, 1], tri[flip, 2] = tri[flip, 2], tri[flip, 1].copy()
    return tri


def _generators(n: int) -> np.ndarray:
    """The 10 n^2 + 2 points of the n-frequency flat subdivision, projected onto the sphere."""
    verts, faces = _icosahedron()
    pts = [verts]
    k = np.arange(1, n)[:, None] / n
    edges = {tuple(sorted((int(f[i]), int(f[(i + 1) % 3])))) for f in faces for i in range(3)}
    for a, b in sorted(edges):
        pts.append(verts[a] + k * (verts[b] - verts[a]))
    ij = [(i, j) for i in range(1, n) for j in range(1, n) if i + j <= n - 1]
    if ij:
        ij = np.array(ij, dtype=np.float64) / n
        for a, b, c in faces:
            A, B, C = verts[a], verts[b], verts[c]
            pts.append(A + ij[:, :1] * (B - A) + ij[:, 1:] * (C - A))
    X = np.concatenate(pts)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def spherical_triangle_areas(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Signed areas (steradians) of the spherical triangles (a, b, c), rows of unit vectors.

    Van Oosterom and Strackee (1983): tan(E / 2) = det(a, b, c) / (1 + a.b + b.c + c.a);
    positive for counter-clockwise triangles seen from outside.
    """
    det = np.einsum("ij,ij->i", a, np.cross(b, c))
    den = 1.0 + np.einsum("ij,ij->i", a, b) + np.einsum("ij,ij->i", b, c) + np.einsum("ij,ij->i", c, a)
    return 2.0 * np.arctan2(det, den)


@dataclass(frozen=True, eq=False)
class SphereMesh:
    """Voronoi cells of a quasi-uniform point set on S^2 (build with :meth:`icosahedral`).

    Attributes (read-only, C-contiguous; float64 unless said)
    ----------------------------------------------------------
    M : int
        Number of cells.
    frequency : int
        The icosahedral subdivision n (M = 10 n^2 + 2).
    centers : (M, 3)
        Cell centers (the Voronoi generators), unit vectors.
    areas : (M,)
        Spherical polygon areas (steradians), summing to 4 pi.
    neighbor_ptr : (M + 1,) int64, neighbor_idx : (2F,) int64
        CSR adjacency: the neighbors of cell i are ``neighbor_idx[neighbor_ptr[i]:neighbor_ptr[i+1]]``
        in counter-clockwise order around c_i (5 or 6 of them).
    neighbor_faces : (2F,) int64
        The face between cell i and each of its neighbors, aligned with ``neighbor_idx``.
    vertices : (T, 3)
        Voronoi vertices (circumcenters of the Delaunay triangles), unit vectors.
    region_idx : (2F,) int64
        Vertices of cell i, counter-clockwise: ``region_idx[neighbor_ptr[i]:neighbor_ptr[i+1]]``;
        vertex k lies between the faces of neighbors k and k + 1 (same CSR pointer).
    face_cells : (F, 2) int64
        (left, right) cells of each face, left < right.
    face_endpoints : (F, 2, 3)
        The two ends of the face arc, counter-clockwise around the left cell.
    face_midpoints : (F, 3)
        Midpoints of the arcs (unit).
    face_lengths : (F,)
        Arc lengths (radians).
    face_normals : (F, 3)
        Unit normals (c_right - c_left) / |c_right - c_left|: tangent to the sphere along the
        face, pointing from the left into the right cell.
    spacing : float
        Mean geodesic distance between the centers of neighboring cells (radians).
    """

    M: int
    frequency: int
    centers: np.ndarray = field(repr=False)
    areas: np.ndarray = field(repr=False)
    neighbor_ptr: np.ndarray = field(repr=False)
    neighbor_idx: np.ndarray = field(repr=False)
    neighbor_faces: np.ndarray = field(repr=False)
    vertices: np.ndarray = field(repr=False)
    region_idx: np.ndarray = field(repr=False)
    face_cells: np.ndarray = field(repr=False)
    face_endpoints: np.ndarray = field(repr=False)
    face_midpoints: np.ndarray = field(repr=False)
    face_lengths: np.ndarray = field(repr=False)
    face_normals: np.ndarray = field(repr=False)
    spacing: float
    _tree: object = field(repr=False, default=None)

    @classmethod
    def icosahedral(cls, cells) -> "SphereMesh":
        """The Voronoi dual of the icosahedron subdivided to about ``cells`` cells (memoised).

        The count is 10 n^2 + 2 for the frequency n nearest to ``cells`` (12, 42, 92, 162,
        252, 362, ..., 2562 at n = 16, 10242 at n = 32, 40962 at n = 64).
        """
        return _icosahedral_mesh(icosahedral_frequency(cells))

    @property
    def n_faces(self) -> int:
        return len(self.face_cells)

    def density(self, masses: ArrayLike) -> np.ndarray:
        """Cell averages of the density (per steradian): mass / area."""
        return np.asarray(masses, dtype=np.float64) / self.areas

    def locate(self, points: ArrayLike, guess: ArrayLike | None = None) -> np.ndarray:
        """The cell of each point: the index of its nearest center (its Voronoi cell).

        Parameters
        ----------
        points : (N, 3) array
            Nonzero points; only their direction matters.
        guess : int or (N,) int array, optional
            Starting cells (e.g. the previous cells of moving particles).  From a guess, a
            greedy walk moves to the neighbor with the largest <x, c_j> until no neighbor is
            nearer: exact on the Delaunay graph (a point outside cell i violates the bisector
            of some Delaunay neighbor of i) and O(distance / spacing) steps per point.
            Without a guess a KD-tree of the centers answers (chordal nearest = geodesic nearest).

        Returns (N,) int64 cell indices.  Exact ties (a point on a face) go either way.
        """
        X = np.ascontiguousarray(points, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("points must be finite")
        if not np.all(X.any(axis=1)):
            raise ValueError("points must be nonzero (a direction on the sphere)")
        if guess is None:
            _, idx = self._kdtree().query(X / np.linalg.norm(X, axis=1, keepdims=True))
            return np.ascontiguousarray(idx, dtype=np.int64)
        g = np.asarray(guess)
        if g.dtype.kind not in "iu":
            raise ValueError(f"guess must hold integer cell indices, got dtype {g.dtype}")
        g = np.ascontiguousarray(np.broadcast_to(g, (len(X),)), dtype=np.int64)
        if len(g) and (g.min() < 0 or g.max() >= self.M):
            raise ValueError(f"guess must hold cell indices in [0, {self.M}), got {g.min()} .. {g.max()}")
        out = np.empty(len(X), dtype=np.int64)
        _walk(X, g, self.centers, self.neighbor_ptr, self.neighbor_idx, out)
        return out

    def _kdtree(self):
        if self._tree is None:
            from scipy.spatial import cKDTree

            object.__setattr__(self, "_tree", cKDTree(self.centers))
        return self._tree

    def __repr__(self) -> str:
        return f"SphereMesh(M={self.M}, frequency={self.frequency}, spacing={self.spacing:.4g})"


@jit
def greedy_walk(x0, x1, x2, i, centers, ptr, nbr):  # pragma: no cover - compiled
    """The cell nearest to x = (x0, x1, x2): from cell i, move to the neighbor with the largest
    <x, c_j> until no neighbor is nearer (``SphereMesh.locate``; also the PIC stencil's walk)."""
    best = x0 * centers[i, 0] + x1 * centers[i, 1] + x2 * centers[i, 2]
    while True:
        nxt = i
        for k in range(ptr[i], ptr[i + 1]):
            j = nbr[k]
            s = x0 * centers[j, 0] + x1 * centers[j, 1] + x2 * centers[j, 2]
            if s > best:
                best = s
                nxt = j
        if nxt == i:
            return i
        i = nxt


@jit_parallel
def _walk(X, guess, centers, ptr, nbr, out):  # pragma: no cover - compiled
    for p in prange(X.shape[0]):
        out[p] = greedy_walk(X[p, 0], X[p, 1], X[p, 2], guess[p], centers, ptr, nbr)


@functools.lru_cache(maxsize=16)
def _icosahedral_mesh(n: int) -> SphereMesh:
    from scipy.spatial import ConvexHull

    C = _generators(n)
    M = len(C)
    tri = _oriented(C, ConvexHull(C).simplices)
    T = len(tri)
    a, b, c = C[tri[:, 0]], C[tri[:, 1]], C[tri[:, 2]]
    cc = np.cross(b - a, c - a)
    vertices = cc / np.linalg.norm(cc, axis=1, keepdims=True)

    # corners (triangle t, position p): vertex i = tri[t, p]; sort the corners of each vertex
    # counter-clockwise by the angle of the circumcenter in the tangent plane at c_i
    cid = tri.ravel()
    tid = np.repeat(np.arange(T), 3)
    pos = np.tile(np.arange(3), T)
    ref = np.where(np.abs(C[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    e1 = ref - np.sum(ref * C, axis=1, keepdims=True) * C
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(C, e1)
    w = vertices[tid] - C[cid]
    angle = np.arctan2(np.sum(w * e2[cid], axis=1), np.sum(w * e1[cid], axis=1))
    order = np.lexsort((angle, cid))
    cid, tid, pos = cid[order], tid[order], pos[order]
    counts = np.bincount(cid, minlength=M)
    ptr = np.zeros(M + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    # in the counter-clockwise triangle (i, j, k) the next triangle around i shares edge (i, k):
    # the neighbor between region vertex s and s + 1 is k, the vertex two places after i
    nbr = tri[tid, (pos + 2) % 3]
    nxt_vertex = np.arange(len(cid)) + 1
    last = ptr[1:] - 1
    nxt_vertex[last] = ptr[:-1]
    region = tid
    p_end, q_end = region, region[nxt_vertex]
    own = cid

    # faces: each Delaunay edge seen from both cells; keep the view from the smaller index
    key = np.minimum(own, nbr) * M + np.maximum(own, nbr)
    left_view = own < nbr
    face_keys = key[left_view]
    face_order = np.argsort(face_keys)
    face_keys = face_keys[face_order]
    if np.any(np.diff(face_keys) == 0):
        raise RuntimeError("the Delaunay triangulation of the mesh centers has a repeated edge")
    left = own[left_view][face_order]
    right = nbr[left_view][face_order]
    P = vertices[p_end[left_view][face_order]]
    Qe = vertices[q_end[left_view][face_order]]
    neighbor_faces = np.searchsorted(face_keys, key)
    F = len(face_keys)

    # the right cell sees each face from the other side: its endpoints (q, p) must match
    mid = P + Qe
    mid /= np.linalg.norm(mid, axis=1, keepdims=True)
    chord = np.linalg.norm(P - Qe, axis=1)
    lengths = 2.0 * np.arcsin(np.minimum(0.5 * chord, 1.0))
    normals = C[right] - C[left]
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)

    tri_left = spherical_triangle_areas(C[left], P, Qe)
    tri_right = spherical_triangle_areas(C[right], Qe, P)
    areas = np.bincount(left, weights=tri_left, minlength=M) + np.bincount(right, weights=tri_right, minlength=M)
    dist = 2.0 * np.arcsin(np.minimum(0.5 * np.linalg.norm(C[right] - C[left], axis=1), 1.0))

    return SphereMesh(
        M=M,
        frequency=n,
        centers=_frozen(C),
        areas=_frozen(areas),
        neighbor_ptr=_frozen(ptr, np.int64),
        neighbor_idx=_frozen(nbr, np.int64),
        neighbor_faces=_frozen(neighbor_faces, np.int64),
        vertices=_frozen(vertices),
        region_idx=_frozen(region, np.int64),
        face_cells=_frozen(np.stack([left, right], axis=1), np.int64),
        face_endpoints=_frozen(np.stack([P, Qe], axis=1)),
        face_midpoints=_frozen(mid),
        face_lengths=_frozen(lengths),
        face_normals=_frozen(normals),
        spacing=float(dist.mean()),
    )
