"""Kernels built once from options: make_attention, the (backend, kernel) registry, the
documented way to add a backend (docs/methods.md, "Adding a kernel backend"), and the
one-line errors for bad options."""

import math
import re
from pathlib import Path

import numpy as np
import pytest

import mfpde
from mfpde.kernels import Attention, make_attention, registered, unregister_kernel
from mfpde.kernels.reference import attention_average_numpy
from mfpde.options import SolverOptions
from mfpde.sphere import tangent_projection

from .conftest import unit_rows

METHODS = Path(__file__).resolve().parents[1] / "docs" / "methods.md"


def backend_example() -> str:
    """The first ```python block of the section "Adding a kernel backend"."""
    text = METHODS.read_text()
    section = text.split("## Adding a kernel backend", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]


@pytest.fixture
def documented_backend():
    """Run the documented example (it registers "numpy_chunked"); unregister afterwards."""
    namespace = {"__name__": "__doc_example__"}
    exec(compile(backend_example(), "methods.md[Adding a kernel backend]", "exec"), namespace)
    yield "numpy_chunked"
    unregister_kernel("numpy_chunked", "exact")


@pytest.mark.parametrize("d", [2, 3, 5])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_documented_backend_matches_numba(rng, documented_backend, d, normalization):
    model = mfpde.Model(Q=rng.standard_normal((d, d)), V=rng.standard_normal((d, d)), beta=15.0,
                        normalization=normalization)
    X = unit_rows(rng, 700, d)
    Y = unit_rows(rng, 300, d)
    m = rng.random(300)
    m[::7] = 0.0  # massless sources add exactly 0
    ref = make_attention(model).velocity(X, Y, m)
    mine = make_attention(model, backend=documented_backend)
    assert (mine.backend, mine.kernel, mine.precision) == ("numpy_chunked", "exact", "float64")
    scale = np.abs(ref).max()
    np.testing.assert_allclose(mine.velocity(X, Y, m), ref, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(mfpde.velocity(model, X, Y, m, backend=documented_backend), ref, rtol=0,
                               atol=1e-12 * scale)
    np.testing.assert_allclose(mine.log_partition(X, Y, m), mfpde.kernels.log_partition(model, X, Y, m),
                               rtol=1e-12, atol=1e-12)
    assert documented_backend in mfpde.kernels.backends()


def test_every_registered_kernel_matches_the_reference(rng):
    """numba exact / truncated and numpy exact at finite beta; float32 to its bound."""
    d = 3
    model = mfpde.Model(d=d, beta=8.0, V=rng.standard_normal((d, d)))
    X = unit_rows(rng, 400, d)
    ref = tangent_projection(X, attention_average_numpy(model, X, X, np.full(400, 1 / 400)))
    for (backend, kernel), cls in registered().items():
        if cls.zero_temperature or kernel == "fft" or backend in ("numpy_chunked", "cuda"):
            continue  # cuda: tests/test_cuda_backend.py, under numba's CUDA simulator
        att = make_attention(model, kernel, backend=backend)
        np.testing.assert_allclose(att.velocity(X), ref, rtol=0, atol=1e-12 * np.abs(ref).max(),
                                   err_msg=f"{backend} {kernel}")
    # the NumPy reference also meets the sums contract (log2 units)
    w = np.full(400, 1 / 400)
    got = mfpde.kernels.finish(model, *make_attention(model, backend="numpy").sums(X, X, w))
    np.testing.assert_allclose(tangent_projection(X, got), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_attention_is_built_once_and_names_what_runs(rng):
    model = mfpde.Model(d=3, beta=4.0)
    att = make_attention(model, SolverOptions(kernel="truncated", tolerance=1e-9))
    assert (att.backend, att.kernel, att.precision, att.tolerance) == ("numba", "truncated", "float64", 1e-9)
    assert att.provenance == {"backend": "numba", "kernel": "truncated", "precision": "float64", "tolerance": 1e-9}
    assert isinstance(att, Attention) and "truncated" in repr(att)
    # beta = inf: the model's zero-temperature field, whatever kernel= says
    hard = make_attention(model.replace(beta="inf", zero_temperature="hardmax"), "truncated")
    assert (hard.backend, hard.kernel) == ("numba", "hardmax")
    cold = make_attention(model.replace(beta="inf"))
    assert cold.kernel == "continuum"
    X = unit_rows(rng, 50, 3)
    np.testing.assert_array_equal(cold.velocity(X), mfpde.field.continuum_field(model, X))
    with pytest.raises(ValueError, match="finite beta"):
        hard.log_partition(X)
    # the solvers build theirs once
    from mfpde.solvers import ParticleSolver

    solver = ParticleSolver(model, SolverOptions(kernel="truncated", tolerance=1e-6))
    assert solver.attention.kernel == "truncated" and solver.attention.tolerance == 1e-6


def test_the_circle_fft_kernel_is_registered_and_matches_the_exact_one(rng):
    from mfpde.mesh import CircleMesh

    mesh = CircleMesh(256)
    model = mfpde.Model(d=2, beta=30.0, Q=np.array([[1.0, -0.4], [0.4, 1.0]]), V=rng.standard_normal((2, 2)))
    m = rng.random(256)
    m /= m.sum()
    fft = make_attention(model, "fft", backend="numpy", mesh=mesh)
    assert (fft.backend, fft.kernel) == ("numpy", "fft")
    X, Y = mesh.face_points, mesh.center_points
    exact = make_attention(model).average(X, Y, m)
    np.testing.assert_allclose(fft.average(X, Y, m), exact, rtol=0, atol=1e-10 * np.abs(exact).max())
    with pytest.raises(ValueError, match="a I \\+ b J"):
        make_attention(model.replace(Q=rng.standard_normal((2, 2))), "fft", backend="numpy", mesh=mesh)


@pytest.mark.parametrize(
    "kwargs, bad, choices",
    [
        ({"backend": "opencl"}, "'opencl'", lambda: mfpde.kernels.backends()),
        ({"kernel": "fast"}, "'fast'", lambda: mfpde.kernels.kernels("numba")),
        ({"kernel": "truncated", "backend": "numpy"}, "'truncated'", lambda: mfpde.kernels.kernels("numpy")),
        ({"precision": "float16"}, "'float16'", lambda: ("float64", "float32")),
        ({"kernel": "truncated", "precision": "float32"}, "'float32'", lambda: ("float64",)),
        ({"tolerance": 1.5}, "1.5", lambda: ()),
        ({"tolerance": "x"}, "'x'", lambda: ()),
        ({"tolerance": math.nan}, "nan", lambda: ()),
    ],
)
def test_bad_options_are_refused_once_in_one_line(kwargs, bad, choices):
    model = mfpde.Model(d=3, beta=1.0)
    with pytest.raises(ValueError) as err:
        make_attention(model, **kwargs)
    message = str(err.value)
    assert "\n" not in message and bad in message
    for choice in choices():
        assert choice in message
    with pytest.raises(ValueError, match=re.escape(message)):  # the wrappers say the same
        mfpde.velocity(model, np.eye(3), **kwargs)


def test_choice_lists_come_from_the_registry():
    class Dummy(Attention):
        pass

    mfpde.kernels.register_kernel("dummy_backend", "dummy_kernel", Dummy)
    try:
        with pytest.raises(ValueError, match="dummy_backend"):
            make_attention(mfpde.Model(d=3), backend="nope")
        with pytest.raises(ValueError, match="dummy_kernel"):
            make_attention(mfpde.Model(d=3), kernel="nope", backend="dummy_backend")
    finally:
        unregister_kernel("dummy_backend", "dummy_kernel")
    assert "dummy_backend" not in mfpde.kernels.backends()
    with pytest.raises(TypeError, match="Attention subclass"):
        mfpde.kernels.register_kernel("x", "y", object)
