"""SphereMesh: the Voronoi dual of a subdivided icosahedron (exact geometric invariants)."""

import math
import time

import numpy as np
import pytest
from scipy.spatial import SphericalVoronoi

from mfpde.mesh import SphereMesh
from mfpde.mesh.sphere import icosahedral_frequency, spherical_triangle_areas

from .conftest import unit_rows

SIZES = [12, 42, 642, 2562]


@pytest.fixture(params=SIZES, ids=lambda c: f"cells{c}")
def mesh(request):
    return SphereMesh.icosahedral(request.param)


def test_refinement_counts():
    assert [SphereMesh.icosahedral(10 * n * n + 2).M for n in (1, 2, 3, 8, 16)] == [12, 42, 92, 642, 2562]
    # nearest count 10 n^2 + 2, ties to the finer mesh
    assert icosahedral_frequency(1) == 1
    assert icosahedral_frequency(2000) == 14  # 1962 (off by 38) beats 2252 (off by 252)
    assert icosahedral_frequency(2048) == 14
    assert icosahedral_frequency(2300) == 15  # 2252 (48) beats 2562 (262)
    assert icosahedral_frequency(27) == 2  # 12 and 42 are 15 away: the finer one
    for cells in (1, 7, 100, 1000, 5000, 12345):
        n = icosahedral_frequency(cells)
        M = 10 * n * n + 2
        for k in (n - 1, n + 1):
            if k >= 1:
                assert abs(M - cells) <= abs(10 * k * k + 2 - cells)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "100", None])
def test_bad_cells(bad):
    with pytest.raises(ValueError, match="solver.cells"):
        SphereMesh.icosahedral(bad)


def test_memoised_and_read_only():
    a, b = SphereMesh.icosahedral(642), SphereMesh.icosahedral(650)
    assert a is b
    for name in ("centers", "areas", "neighbor_ptr", "neighbor_idx", "neighbor_faces", "vertices",
                 "region_idx", "face_cells", "face_endpoints", "face_midpoints", "face_lengths", "face_normals"):
        arr = getattr(a, name)
        assert arr.flags.c_contiguous and not arr.flags.writeable, name
        assert arr.dtype == (np.int64 if name in ("neighbor_ptr", "neighbor_idx", "neighbor_faces",
                                                  "region_idx", "face_cells") else np.float64), name
        with pytest.raises(ValueError):
            arr[0] = 0


def test_areas_sum_to_4pi_and_match_scipy(mesh):
    assert abs(mesh.areas.sum() - 4.0 * math.pi) < 1e-12
    assert np.all(mesh.areas > 0)
    sv = SphericalVoronoi(np.asarray(mesh.centers))
    np.testing.assert_allclose(mesh.areas, sv.calculate_areas(), rtol=1e-11, atol=0)


def test_centers_unit_and_counts(mesh):
    n = mesh.frequency
    assert mesh.M == 10 * n * n + 2 == len(mesh.centers)
    np.testing.assert_allclose(np.linalg.norm(mesh.centers, axis=1), 1.0, atol=1e-15)
    assert len(np.unique(np.round(mesh.centers, 12), axis=0)) == mesh.M
    deg = np.diff(mesh.neighbor_ptr)
    assert np.sum(deg == 5) == 12 and np.all((deg == 5) | (deg == 6))


def test_euler_characteristic(mesh):
    # Voronoi vertices - edges (faces of the FV mesh) + cells = 2
    assert len(mesh.vertices) - mesh.n_faces + mesh.M == 2
    assert mesh.n_faces == len(mesh.neighbor_idx) // 2


def test_normals_tangent_unit_oriented(mesh):
    nrm, mid = mesh.face_normals, mesh.face_midpoints
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(mid, axis=1), 1.0, atol=1e-15)
    assert np.abs(np.sum(nrm * mid, axis=1)).max() < 1e-14
    # tangent along the whole face: orthogonal to both endpoints (the bisector plane)
    assert np.abs(np.einsum("fkj,fj->fk", mesh.face_endpoints, nrm)).max() < 1e-14
    left, right = mesh.face_cells[:, 0], mesh.face_cells[:, 1]
    assert np.all(left < right)
    C = mesh.centers
    assert np.all(np.sum(nrm * (C[right] - C[left]), axis=1) > 0)
    # the midpoint is equidistant from both centers and nearer to them than to any other
    np.testing.assert_allclose(np.sum(mid * C[left], axis=1), np.sum(mid * C[right], axis=1), atol=1e-14)
    nearest = np.max(mid @ C.T, axis=1)
    np.testing.assert_allclose(nearest, np.sum(mid * C[left], axis=1), atol=1e-14)
    # midpoints bisect the arcs; lengths are the arc lengths
    P, Q = mesh.face_endpoints[:, 0], mesh.face_endpoints[:, 1]
    np.testing.assert_allclose(np.sum(mid * P, axis=1), np.sum(mid * Q, axis=1), atol=1e-14)
    np.testing.assert_allclose(mesh.face_lengths, np.arccos(np.clip(np.sum(P * Q, axis=1), -1, 1)), atol=1e-7)


def test_faces_shared_by_their_two_cells(mesh):
    ptr, nbr, fcs, reg = mesh.neighbor_ptr, mesh.neighbor_idx, mesh.neighbor_faces, mesh.region_idx
    V = mesh.vertices
    seen = np.zeros(mesh.n_faces, dtype=int)
    for i in range(mesh.M):
        k = np.arange(ptr[i], ptr[i + 1])
        ring = reg[k]
        for s, (j, f) in enumerate(zip(nbr[k], fcs[k])):
            assert set(mesh.face_cells[f]) == {i, j}
            seen[f] += 1
            # the face's endpoints are the two cell vertices around the neighbor's slot
            ends = {tuple(V[ring[s]]), tuple(V[ring[(s + 1) % len(ring)]])}
            assert ends == {tuple(mesh.face_endpoints[f, 0]), tuple(mesh.face_endpoints[f, 1])}
        # neighbors are symmetric
        for j in nbr[k]:
            assert i in nbr[ptr[j]:ptr[j + 1]]
    assert np.all(seen == 2)


def test_regions_counter_clockwise_and_tile(mesh):
    """Fan triangles (c_i, v_k, v_k+1) are counter-clockwise and their areas are the cell areas."""
    ptr, reg = mesh.neighbor_ptr, mesh.region_idx
    V = mesh.vertices
    own = np.repeat(np.arange(mesh.M), np.diff(ptr))
    nxt = np.arange(len(reg)) + 1
    nxt[ptr[1:] - 1] = ptr[:-1]
    fan = spherical_triangle_areas(mesh.centers[own], V[reg], V[reg[nxt]])
    assert np.all(fan > 0)
    np.testing.assert_allclose(np.bincount(own, weights=fan), mesh.areas, rtol=1e-12)


def test_spacing_and_uniformity(mesh):
    C = mesh.centers
    left, right = mesh.face_cells.T
    dist = np.arccos(np.clip(np.sum(C[left] * C[right], axis=1), -1, 1))
    np.testing.assert_allclose(mesh.spacing, dist.mean(), rtol=1e-9)
    if mesh.M >= 642:
        assert 0.55 < mesh.areas.min() / mesh.areas.mean() and mesh.areas.max() / mesh.areas.mean() < 1.25
        # hexagonal lattice: area = (sqrt 3 / 2) spacing^2
        assert 0.9 < mesh.spacing / (math.sqrt(4 * math.pi / mesh.M) * math.sqrt(2) / 3**0.25) < 1.1


def test_locate_matches_brute_force(mesh, rng):
    X = unit_rows(rng, 3000, 3) * rng.uniform(0.5, 2.0, size=(3000, 1))  # direction only matters
    brute = np.argmax(X @ mesh.centers.T, axis=1)
    np.testing.assert_array_equal(mesh.locate(X), brute)
    # greedy walks from arbitrary guesses (far away, antipodal, near) are exact
    for guess in (0, rng.integers(0, mesh.M, size=len(X)), brute, np.argmin(X @ mesh.centers.T, axis=1)):
        np.testing.assert_array_equal(mesh.locate(X, guess=guess), brute)
    # the centers themselves and the face midpoints nudged into the left cell
    np.testing.assert_array_equal(mesh.locate(mesh.centers, guess=0), np.arange(mesh.M))
    nudged = mesh.face_midpoints - 1e-6 * mesh.face_normals
    np.testing.assert_array_equal(mesh.locate(nudged, guess=mesh.face_cells[:, 1]), mesh.face_cells[:, 0])


def test_locate_bad_input(rng):
    mesh = SphereMesh.icosahedral(42)
    with pytest.raises(ValueError, match="shape"):
        mesh.locate(np.ones((4, 2)))
    with pytest.raises(ValueError, match="finite"):
        mesh.locate(np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="nonzero"):
        mesh.locate(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="nonzero"):
        mesh.locate(np.zeros((1, 3)), guess=0)
    with pytest.raises(ValueError, match="guess"):
        mesh.locate(unit_rows(rng, 3, 3), guess=np.array([0, 1, 42]))
    with pytest.raises(ValueError, match="guess"):
        mesh.locate(unit_rows(rng, 3, 3), guess=np.array([0.0, 1.0, 2.0]))


def test_locate_million_points_is_fast(rng):
    mesh = SphereMesh.icosahedral(10242)
    X = unit_rows(rng, 1_000_000, 3)
    mesh.locate(X[:10], guess=0)  # compile / load from cache
    t = time.perf_counter()
    cells = mesh.locate(X)
    t_tree = time.perf_counter() - t
    # moved a little (a particle step): the walk from the old cells
    Y = X + 0.01 * unit_rows(rng, len(X), 3)
    t = time.perf_counter()
    moved = mesh.locate(Y, guess=cells)
    t_walk = time.perf_counter() - t
    sample = rng.integers(0, len(X), size=2000)
    np.testing.assert_array_equal(cells[sample], np.argmax(X[sample] @ mesh.centers.T, axis=1))
    np.testing.assert_array_equal(moved[sample], np.argmax(Y[sample] @ mesh.centers.T, axis=1))
    assert t_walk < 2.0 and t_tree < 10.0, (t_walk, t_tree)
