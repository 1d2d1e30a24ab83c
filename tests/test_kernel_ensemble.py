"""Ensembles in the kernel (issue #19): X of shape (S, n, d) holds S independent systems.

Against the NumPy reference per system, the bit-for-bit rule (system s of an ensemble equals
the single-system call ``velocity(X[s], weights=W[s])`` exactly), interactions kept inside a
system, the beta = inf kernels, and the one-line refusal of kernels that take one system."""

import numpy as np
import pytest

import mfpde
from mfpde.kernels import make_attention
from mfpde.kernels.registry import registered
from mfpde.sphere import retract, tangent_projection


def _ensemble(rng, systems, n, d):
    return retract(rng.standard_normal((systems, n, d)))


def _model(rng, d, beta=1.0, normalization="softmax", **kw):
    return mfpde.Model(d=d, beta=beta, Q=rng.standard_normal((d, d)) / np.sqrt(d),
                       K=rng.standard_normal((d, d)) / np.sqrt(d), V=rng.standard_normal((d, d)),
                       normalization=normalization, **kw)


def _masses(rng, systems, n):
    W = rng.random((systems, n))
    W[:, ::3] = 0.0  # massless sources in every system
    W[:, 1] += 0.1
    return W


@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 30.0, 1e6])
@pytest.mark.parametrize("d", [2, 3, 8])
def test_ensemble_against_the_reference_per_system(rng, d, beta, normalization):
    model = _model(rng, d, beta, normalization)
    X = _ensemble(rng, 4, 23, d)
    W = _masses(rng, 4, 23)
    att = make_attention(model)
    ref = make_attention(model, backend="numpy")
    if normalization == "uniform" and beta == 1e6:
        with pytest.raises(OverflowError, match="uniform normalization overflows float64"):
            att.velocity(X, weights=W)
        return
    v = att.velocity(X, weights=W)
    assert v.shape == X.shape and np.all(np.isfinite(v))
    expect = np.stack([ref.velocity(X[s], weights=W[s]) for s in range(len(X))])
    assert np.array_equal(ref.velocity(X, weights=W), expect)  # the reference's own ensemble loop
    scale = np.abs(expect).max()
    assert np.abs(v - expect).max() <= 1e-13 * scale
    if beta <= 30.0:
        v32 = make_attention(model, precision="float32").velocity(X, weights=W)
        assert np.abs(v32 - expect).max() <= 4e-7 * (1 + beta * np.linalg.norm(model.B, 2)) * scale
    avg = att.average(X, X, W)
    avg_ref = np.stack([ref.average(X[s], X[s], W[s]) for s in range(len(X))])
    assert np.abs(avg - avg_ref).max() <= 1e-13 * np.abs(avg_ref).max()
    if beta < 1e6:
        logz = att.log_partition(X, weights=W)
        logz_ref = np.stack([ref.log_partition(X[s], weights=W[s]) for s in range(len(X))])
        assert logz.shape == (4, 23)
        assert np.abs(logz - logz_ref).max() <= 1e-12 * max(1.0, np.abs(logz_ref).max())


def test_ensemble_sources_different_from_targets(rng):
    model = _model(rng, 3, 2.0)
    X, Y = _ensemble(rng, 3, 10, 3), _ensemble(rng, 3, 17, 3)
    W = _masses(rng, 3, 17)
    v = make_attention(model).velocity(X, Y, W)
    ref = make_attention(model, backend="numpy")
    expect = np.stack([ref.velocity(X[s], Y[s], W[s]) for s in range(3)])
    assert np.abs(v - expect).max() <= 1e-13 * np.abs(expect).max()


def _bit_cases():
    """Every (d, n, normalization, precision); the default tier keeps float64 at d = 2, 3, 8, 16
    with n = 1, 7, 32, 257 and float32 at d = 8 (each d compiles its own kernels), the rest is slow."""
    for precision in ("float64", "float32"):
        for normalization in ("softmax", "uniform"):
            for d in (2, 3, 5, 8, 16, 32, 64):
                for n in (1, 7, 32, 257, 300):
                    fast = (d in (2, 3, 8, 16) and n in (1, 7, 32, 257)) if precision == "float64" else \
                        (d == 8 and n in (7, 257))
                    yield pytest.param(d, n, normalization, precision, marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize("d,n,normalization,precision", list(_bit_cases()))
def test_bit_for_bit_rule(rng, d, n, normalization, precision):
    """velocity(X3, weights=W)[s] == velocity(X3[s], weights=W[s]) exactly, and with
    weights None; the same for log Z."""
    model = _model(rng, d, 1.5, normalization)
    systems = 3 if n > 100 or d > 16 else 5
    X = _ensemble(rng, systems, n, d)
    W = rng.random((systems, n)) + 0.05
    if n > 3:
        W[:, 2] = 0.0
    att = make_attention(model, precision=precision)
    v = att.velocity(X, weights=W)
    v0 = att.velocity(X)
    for s in range(systems):
        assert np.array_equal(v[s], att.velocity(X[s], weights=W[s])), s
        assert np.array_equal(v[s], att.velocity(X[s], X[s], W[s])), s  # Y is X: the same call
        assert np.array_equal(v0[s], att.velocity(X[s])), s
    if d <= 8 and n in (7, 257):
        logz = att.log_partition(X, weights=W)
        for s in range(systems):
            assert np.array_equal(logz[s], att.log_partition(X[s], weights=W[s])), s


@pytest.mark.parametrize("zero_temperature", ["hardmax", "continuum"])
@pytest.mark.parametrize("d,n", [(2, 7), (3, 32), (8, 300), (16, 9)])
def test_beta_inf_ensembles_bit_for_bit(rng, zero_temperature, d, n):
    model = _model(rng, d, np.inf, zero_temperature=zero_temperature)
    X = _ensemble(rng, 4, n, d)
    W = rng.random((4, n))
    att = make_attention(model)
    assert att.ensembles and att.kernel == zero_temperature
    v = att.velocity(X, weights=W)
    assert v.shape == X.shape
    for s in range(4):
        assert np.array_equal(v[s], att.velocity(X[s], weights=W[s])), s
    if zero_temperature == "hardmax":
        ref = np.stack([tangent_projection(X[s], att.average(X[s], X[s], W[s])) for s in range(4)])
        assert np.array_equal(v, ref)


@pytest.mark.parametrize("d,n", [(3, 32), (8, 7), (3, 300), (16, 20)])
def test_interactions_stay_inside_a_system(rng, d, n):
    model = _model(rng, d, 4.0)
    X = _ensemble(rng, 3, n, d)
    att = make_attention(model)
    v = att.velocity(X)
    X2 = X.copy()
    X2[1] = _ensemble(rng, 1, n, d)[0]
    v2 = att.velocity(X2)
    assert np.array_equal(v[0], v2[0]) and np.array_equal(v[2], v2[2])
    assert not np.array_equal(v[1], v2[1])


def test_sphere_operations_are_per_slice_identical(rng):
    """The solver applies these to (S, n, d) arrays: each system must get the bits of (n, d)."""
    for d in (2, 3, 5, 8, 16, 32, 64):
        for n in (1, 7, 32, 257):
            X = _ensemble(rng, 5, n, d)
            A = rng.standard_normal((5, n, d))
            T, R = tangent_projection(X, A), retract(X + 0.1 * A)
            for s in range(5):
                assert np.array_equal(T[s], tangent_projection(X[s], A[s]))
                assert np.array_equal(R[s], retract(X[s] + 0.1 * A[s]))


def test_ensemble_input_checks(rng):
    model = _model(rng, 3)
    att = make_attention(model)
    X = _ensemble(rng, 2, 5, 3)
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 5\)"):
        att.velocity(X, weights=np.ones(5))
    W = np.ones((2, 5))
    W[1] = 0.0
    with pytest.raises(ValueError, match=r"finite, >= 0 and have a positive sum in every system \(system 1\)"):
        att.velocity(X, weights=W)
    W = np.ones((2, 5))
    W[0, 1] = np.nan
    with pytest.raises(ValueError, match=r"\(system 0\)"):
        att.velocity(X, weights=W)
    with pytest.raises(ValueError, match=r"Y must have shape \(2, N, 3\)"):
        att.velocity(X, _ensemble(rng, 3, 5, 3))
    with pytest.raises(ValueError, match=r"X must have shape \(S, N, 3\)"):
        att.velocity(_ensemble(rng, 2, 5, 4))
    for value in (np.inf, -np.inf, np.nan):  # one non-finite coordinate anywhere is refused
        bad = X.copy()
        bad[1, 2, 0] = value
        with pytest.raises(ValueError, match="X must be finite"):
            att.velocity(bad)
        with pytest.raises(ValueError, match="Y must be finite"):
            att.velocity(X, bad)
    assert att.velocity(X[:0]).shape == (0, 5, 3)


def test_kernels_that_take_one_system_refuse_ensembles(rng):
    reg = registered()
    assert reg[("numba", "exact")].ensembles and reg[("numba", "hardmax")].ensembles
    assert reg[("numpy", "exact")].ensembles and reg[("numpy", "continuum")].ensembles
    assert not reg[("numba", "truncated")].ensembles and not reg[("numpy", "fft")].ensembles
    X = _ensemble(rng, 2, 5, 3)
    att = make_attention(_model(rng, 3, 50.0), kernel="truncated")
    assert not att.ensembles
    message = ("kernel 'truncated' takes one system (X of shape (n, d)); an ensemble (S, n, d) runs with the "
               "exact kernel on the cpu backend")
    with pytest.raises(ValueError) as err:
        att.velocity(X)
    assert str(err.value) == message
    for method in (att.average, att.log_partition):
        with pytest.raises(ValueError, match="takes one system"):
            method(X, X, np.ones((2, 5)))
    fft = object.__new__(reg[("numpy", "fft")])  # the refusal comes before the mesh is needed
    fft.model = _model(rng, 2)
    with pytest.raises(ValueError, match=r"^kernel 'fft' takes one system \(X of shape \(n, d\)\)"):
        fft.velocity(_ensemble(rng, 2, 5, 2))
    if ("cuda", "exact") in reg:
        cuda = object.__new__(reg[("cuda", "exact")])
        cuda.model = _model(rng, 3)
        assert not cuda.ensembles
        with pytest.raises(ValueError, match=r"^kernel 'exact' of backend 'cuda' takes one system"):
            cuda.velocity(X)


_FIELD_SCRIPT = """
import sys
import numpy as np
import mfpde
from mfpde.kernels import make_attention
rng = np.random.default_rng(0)
out = {}
for d in map(int, sys.argv[2].split(",")):
    X = rng.standard_normal((2, 40, d))
    X /= np.linalg.norm(X, axis=-1, keepdims=True)
    Q, K, V = (rng.standard_normal((d, d)) / np.sqrt(d) for _ in range(3))
    W = rng.random((2, 40))
    for norm in ("softmax", "uniform"):
        for precision in sys.argv[3].split(","):
            att = make_attention(mfpde.Model(d=d, beta=5.0, Q=Q, K=K, V=V, normalization=norm), precision=precision)
            out[f"v{d}{norm}{precision}"] = att.velocity(X, weights=W)
            out[f"z{d}{norm}{precision}"] = att.log_partition(X, weights=W)
np.savez(sys.argv[1], **out)
"""


def test_a_fresh_compilation_and_the_disk_cache_give_the_same_bits(tmp_path):
    """A run resumed in another process loads the kernel from numba's disk cache: its numbers
    must be those of the process that compiled it (an exponential fused into a sum in one
    compilation and not in the other once broke this by an ulp)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    for name in ("fresh", "cached"):
        subprocess.run([sys.executable, "-c", _FIELD_SCRIPT, str(tmp_path / f"{name}.npz"), "3,12", "float64"],
                       env=env, check=True, timeout=600)
    fresh, cached = np.load(tmp_path / "fresh.npz"), np.load(tmp_path / "cached.npz")
    assert any((tmp_path / "cache").rglob("*.nbi"))  # the second process did load from the cache
    for key in fresh.files:
        np.testing.assert_array_equal(cached[key], fresh[key], err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [256, 128])
def test_every_vector_width_gives_the_same_bits(tmp_path, bits):
    """Each target is one lane and lanes never mix, so vectors of 128 or 256 bits
    (``MFPDE_VECTOR_BITS``; 4 or 2 float64 lanes, 8 or 4 float32) give the bits of the
    default 512, in both precisions (d = 12: eight value coordinates in registers, four
    more in a pass of their own)."""
    import os
    import subprocess
    import sys

    results = {}
    for width in (512, bits):
        env = dict(os.environ, MFPDE_VECTOR_BITS=str(width))
        subprocess.run([sys.executable, "-c", _FIELD_SCRIPT, str(tmp_path / f"{width}.npz"), "12", "float64,float32"],
                       env=env, check=True, timeout=600)
        results[width] = np.load(tmp_path / f"{width}.npz")
    for key in results[512].files:
        np.testing.assert_array_equal(results[bits][key], results[512][key], err_msg=key)


def test_a_vector_width_other_than_128_256_512_is_refused_in_one_line():
    import os
    import subprocess
    import sys

    env = dict(os.environ, MFPDE_VECTOR_BITS="1024")
    proc = subprocess.run([sys.executable, "-c", "import mfpde.kernels"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "MFPDE_VECTOR_BITS must be 128, 256 or 512, got '1024'" in proc.stderr.strip().splitlines()[-1]
