"""The cuda backend's checks, run under numba's CUDA simulator by tests/test_cuda_backend.py.

Not collected by the main suite (the simulator must be switched on before numba.cuda is
first imported): ``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_simulated.py``.
Sizes are tiny (the simulator runs Python per CUDA thread); THREADS = 32 under the
simulator, so 70 sources make three tiles, the last one partial.
"""

import numpy as np
import pytest

import mfpde
from mfpde.config import load_config
from mfpde.kernels import make_attention
from mfpde.kernels import cuda as cuda_backend
from mfpde.kernels.reference import log_partition_numpy

pytestmark = pytest.mark.skipif(not cuda_backend.simulated(), reason="needs NUMBA_ENABLE_CUDASIM=1")


def unit_rows(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(20261129)


def _case(rng, d, beta, normalization, n=40, m=70):
    model = mfpde.Model(Q=rng.standard_normal((d, d)), V=rng.standard_normal((d, d)), beta=beta,
                        normalization=normalization)
    X, Y = unit_rows(rng, n, d), unit_rows(rng, m, d)
    w = rng.random(m)
    w[:33] = 0.0  # the whole first tile (32 sources) and one more are massless: they add exactly 0
    w[50::4] = 0.0
    return model, X, Y, w


def _float32_bound(model):
    """The documented float32 error: 4e-7 (1 + beta ||B||_2) relative to max |field|."""
    return 4e-7 * (1.0 + model.beta * np.linalg.norm(model.B, 2))


@pytest.mark.parametrize("d", [2, 3, 16])
@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
def test_kernel_matches_the_numpy_reference(rng, d, normalization):
    model, X, Y, w = _case(rng, d, 6.0, normalization)
    ref = make_attention(model, backend="numpy").velocity(X, Y, w)
    scale = np.abs(ref).max()
    att = make_attention(model, backend="cuda")
    assert (att.backend, att.kernel, att.precision) == ("cuda", "exact", "float64")
    got = att.velocity(X, Y, w)
    assert np.abs(got - ref).max() <= 1e-12 * scale
    single = make_attention(model, backend="cuda", precision="float32").velocity(X, Y, w)
    assert np.abs(single - ref).max() <= _float32_bound(model) * scale
    # the functional wrapper and log Z (the values-free kernel, dv = 0)
    np.testing.assert_allclose(mfpde.velocity(model, X, Y, w, backend="cuda"), got, rtol=0, atol=0)
    np.testing.assert_allclose(att.log_partition(X, Y, w), log_partition_numpy(model, X, Y, w), rtol=1e-13, atol=1e-12)


def test_sums_contract_and_massless_sources(rng):
    model, X, Y, w = _case(rng, 3, 4.0, "softmax")
    cuda_sums = make_attention(model, backend="cuda").sums(X, Y, w)
    ref_sums = make_attention(model, backend="numpy").sums(X, Y, w)
    for a, b in zip(cuda_sums, ref_sums):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    # massless sources add exactly 0: dropping them changes nothing, bit for bit
    keep = w > 0
    att = make_attention(model, backend="cuda")
    a = att.sums(X, Y, w)
    b = att.sums(X, Y[keep], w[keep])
    # the same sources in the same order, tiles aligned differently: equal to rounding
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-14, atol=0)


@pytest.mark.parametrize("beta", [1e3, 1e6])
def test_large_beta_does_not_overflow(rng, beta):
    model, X, Y, w = _case(rng, 3, beta, "softmax")
    ref = make_attention(model, backend="numpy").velocity(X, Y, w)
    for precision in ("float64", "float32"):
        got = make_attention(model, backend="cuda", precision=precision).velocity(X, Y, w)
        assert np.all(np.isfinite(got))
        if precision == "float64":
            assert np.abs(got - ref).max() <= 1e-12 * np.abs(ref).max()
    # uniform normalization beyond float64: the same one-line OverflowError as the CPU kernel
    uniform = model.replace(normalization="uniform")
    with pytest.raises(OverflowError) as cpu:
        make_attention(uniform).velocity(X, Y, w)
    with pytest.raises(OverflowError) as gpu:
        make_attention(uniform, backend="cuda").velocity(X, Y, w)
    assert str(gpu.value).split(" is about")[0] == str(cpu.value).split(" is about")[0]


def _run(tmp_path, backend, integrator, normalization="softmax", n=24, d=3):
    cfg = load_config({"model": {"d": d, "beta": 4.0, "normalization": normalization, "V": {"random": "gaussian", "seed": 3}},
                       "initial": {"n": n, "seed": 1},
                       "solver": {"integrator": integrator, "dt": 0.05, "t_end": 0.1, "backend": backend},
                       "output": {"path": str(tmp_path / f"{backend}_{integrator}_{normalization}.h5"),
                                  "save_every": 0.05}})
    return mfpde.run(cfg)


@pytest.mark.parametrize("integrator, normalization", [("euler", "softmax"), ("heun", "softmax"), ("rk4", "softmax"),
                                                       ("rk4", "uniform"), ("rk45", "softmax")])
def test_a_run_on_the_gpu_equals_the_cpu_run(tmp_path, integrator, normalization):
    import h5py

    cpu = _run(tmp_path, "cpu", integrator, normalization)
    gpu = _run(tmp_path, "cuda", integrator, normalization)
    np.testing.assert_array_equal(cpu.times, gpu.times)
    assert np.abs(cpu.positions - gpu.positions).max() <= 1e-12
    with h5py.File(tmp_path / f"cuda_{integrator}_{normalization}.h5") as f:
        assert f.attrs["backend"] == "cuda"
    with h5py.File(tmp_path / f"cpu_{integrator}_{normalization}.h5") as f:
        assert f.attrs["backend"] == "cpu"


def test_the_device_stepper_keeps_positions_on_the_device(monkeypatch, rng):
    """euler/heun/rk4 with backend cuda step device arrays: the host field is never called,
    and only the requested times are copied back."""
    from mfpde.options import SolverOptions
    from mfpde.solvers import ParticleSolver

    model = mfpde.Model(d=3, beta=3.0)
    solver = ParticleSolver(model, SolverOptions(integrator="rk4", dt=0.05, backend="cuda"))
    calls = {"host": 0, "download": 0}
    monkeypatch.setattr(type(solver.attention), "kernel_sums",
                        lambda *a, **k: calls.__setitem__("host", calls["host"] + 1))
    real = cuda_backend.DeviceStepper.download

    def download(X):
        calls["download"] += 1
        return real(X)

    monkeypatch.setattr(cuda_backend.DeviceStepper, "download", staticmethod(download))
    x = unit_rows(rng, 20, 3)
    out = list(solver.snapshots(x, np.full(20, 1 / 20), [0.0, 0.1, 0.2]))
    assert [t for t, _ in out] == [0.0, 0.1, 0.2]
    assert calls == {"host": 0, "download": 3}
    assert solver.n_field_evaluations == 4 * 4
    np.testing.assert_allclose(np.linalg.norm(out[-1][1], axis=1), 1.0, rtol=0, atol=1e-14)


def test_the_benchmark_script_runs_on_the_simulator():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    proc = subprocess.run([sys.executable, str(script), "--simulator"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pairs/s" in proc.stdout and "rk4" in proc.stdout


def test_a_dimension_whose_source_does_not_fit_in_shared_memory_is_refused(monkeypatch):
    monkeypatch.setattr(cuda_backend, "SHARED_LIMIT", 100)  # 48 KiB on a GPU: d <= 3071 in float64
    with pytest.raises(ValueError, match=r"d <= 5 in float64, got d = 8"):
        make_attention(mfpde.Model(d=8), backend="cuda")
    make_attention(mfpde.Model(d=5), backend="cuda")
