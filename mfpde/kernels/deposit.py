"""Deposition and interpolation on a mesh: the particle-in-cell transfer kernels.

``deposit(idx, lam, weights, M)``: cell masses m_i = sum_p w_p lambda_i(x_p) of weighted points
with a linear stencil (``mfpde.mesh.sphere_stencil`` / ``circle_stencil``): the transpose of
interpolation.  The weights are >= 0 and sum to 1, so the cell masses are >= 0 and sum to the
particle mass (to round-off).  Each of a fixed number of particle chunks (``DEPOSIT_CHUNKS``,
at most ``DEPOSIT_BUFFER`` float64 of buffers) scatters into its own buffer of M cells and the
buffers are summed after, chunk by chunk in order: the result does not depend on the number
of threads.

``interpolate(idx, lam, F, X=None)``: the gather v_p = sum_k lambda_pk F[idx_pk], projected
to P_x v = v - <x, v> x at the points when X is given (the smooth extension of the projection
off the sphere).

``stencil_deposit(mesh, X, guess, weights)`` fuses the stencil and the deposition per chunk
(one start of the threads; the same numbers as the separate calls) and ``gather`` is
``interpolate`` without the input checks: the inner loop of
:class:`~mfpde.solvers.PICSolver`.  ``deposit_numpy`` and ``interpolate_numpy`` are the NumPy
references.  Threads: :func:`mfpde.mesh.locate.parallel`.
"""

from __future__ import annotations

import numpy as np
from numba import prange
from numpy.typing import ArrayLike

from ..mesh.circle import CircleMesh
from ..mesh.locate import BLOCK, circle_stencil_rows, parallel, sphere_stencil_rows, triangulation
from ._jit import jit, jit_parallel

__all__ = [
    "deposit",
    "interpolate",
    "stencil_deposit",
    "gather",
    "deposit_numpy",
    "interpolate_numpy",
    "DEPOSIT_CHUNKS",
    "DEPOSIT_BUFFER",
]

#: Particles are split into up to this many chunks for the deposition, each with its own
#: buffer of M cells, and at most DEPOSIT_BUFFER float64 in all (a count fixed by N and M, not
#: by the thread count: the sum is the same on any number of threads).
DEPOSIT_CHUNKS = 16
DEPOSIT_BUFFER = 2**24


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
        sphere_stencil_rows(lo, hi, X, guess, seeds, centers, ptr, nbr, edge, slot_tri, tri, normals, adjacent,
                            tris, idx, lam)
        _deposit_rows(lo, hi, idx, lam, weights, buffers[c])


@jit_parallel
def _circle_deposit_par(size, weights, buffers, X, M, idx, lam):  # pragma: no cover - compiled
    n = X.shape[0]
    for c in prange(buffers.shape[0]):
        lo, hi = c * size, min(n, (c + 1) * size)
        circle_stencil_rows(lo, hi, X, M, idx, lam)
        _deposit_rows(lo, hi, idx, lam, weights, buffers[c])


def _chunks(n: int, M: int):
    """The fixed partition of n particles into DEPOSIT_CHUNKS chunks: (chunk size, buffers)."""
    chunks = max(1, min(DEPOSIT_CHUNKS, n, DEPOSIT_BUFFER // M))
    return -(-n // chunks), np.empty((chunks, M))


def stencil_deposit(mesh, X: np.ndarray, guess: np.ndarray | None, weights: np.ndarray) -> tuple:
    """(tris or None, idx, lam, cell masses) of checked points X with masses ``weights``: the
    stencil and the deposition fused per chunk (the same numbers as the separate calls).

    X (N, d) contiguous float64 (``mfpde.mesh.locate.check_points``), ``guess`` (N,) int64
    triangles of an earlier call (-1: none; unused on the circle), ``weights`` (N,)
    contiguous float64; no checks are made."""
    M, n = mesh.M, len(X)
    size, buffers = _chunks(n, M)
    if isinstance(mesh, CircleMesh):
        tris = None
        idx = np.empty((n, 2), dtype=np.int64)
        lam = np.empty((n, 2))
        if parallel(n):
            _circle_deposit_par(size, weights, buffers, X, M, idx, lam)
        else:
            circle_stencil_rows(0, n, X, M, idx, lam)
            _deposit_ser(size, idx, lam, weights, buffers)
    else:
        tr = triangulation(mesh)
        tris = np.empty(n, dtype=np.int64)
        idx = np.empty((n, 3), dtype=np.int64)
        lam = np.empty((n, 3))
        args = (X, guess, tr.seeds, mesh.centers, mesh.neighbor_ptr, mesh.neighbor_idx, tr.edge, tr.slot_tri,
                tr.tri, tr.normals, tr.adjacent, tris, idx, lam)
        if parallel(n):
            _sphere_deposit_par(size, weights, buffers, *args)
        else:
            sphere_stencil_rows(0, n, *args)
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


def deposit(idx: ArrayLike, lam: ArrayLike, weights: ArrayLike, M: int) -> np.ndarray:
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
    (_deposit_par if parallel(len(idx)) else _deposit_ser)(size, idx, lam, weights, buffers)
    out = np.empty(M)
    _reduce(buffers, out)
    return out


def deposit_numpy(idx: ArrayLike, lam: ArrayLike, weights: ArrayLike, M: int) -> np.ndarray:
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


def interpolate(idx: ArrayLike, lam: ArrayLike, F: ArrayLike, X: ArrayLike | None = None) -> np.ndarray:
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
    return gather(idx, lam, F, X)


def gather(idx: np.ndarray, lam: np.ndarray, F: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
    """:func:`interpolate` on prepared input (idx (N, K) contiguous int64 in range, lam (N, K)
    and F (M, d) and X (N, d) or None contiguous float64): no checks are made."""
    project = X is not None
    if X is None:
        X = np.zeros((0, F.shape[1]))
    out = np.empty((len(idx), F.shape[1]))
    if parallel(len(idx)):
        _interpolate_par(BLOCK, idx, lam, F, X, project, out)
    else:
        _interpolate_rows(0, len(idx), idx, lam, F, X, project, out)
    return out


def interpolate_numpy(idx: ArrayLike, lam: ArrayLike, F: ArrayLike, X: ArrayLike | None = None) -> np.ndarray:
    """NumPy reference of :func:`interpolate`."""
    v = np.einsum("pk,pkc->pc", np.asarray(lam), np.asarray(F)[np.asarray(idx)])
    if X is None:
        return v
    return v - np.sum(X * v, axis=1, keepdims=True) * X
