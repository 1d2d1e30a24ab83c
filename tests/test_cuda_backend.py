"""The cuda backend (mfpde/kernels/cuda.py) without a GPU: its kernels under numba's CUDA
simulator (tests/cuda_simulated.py, in a subprocess: the simulator must be on before
numba.cuda is first imported) and the one-line error where no GPU is present.

GPU speed is not measured here (benchmarks/gpu.py, on a GPU machine)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mfpde.kernels.cuda import device_problem

ROOT = Path(__file__).resolve().parents[1]


def _env(simulator: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    if simulator:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    return env


def test_the_kernels_under_the_cuda_simulator():
    """Against the NumPy reference (float64 to 1e-12, float32 to its bound; softmax and
    uniform; zero masses; beta to 1e6), a short run equal to the CPU run, the device-resident
    stepping and the benchmark's smoke mode."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "cuda_simulated.py")],
                          cwd=ROOT, env=_env(True), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]


no_gpu_here = pytest.mark.skipif(device_problem() is None, reason="a CUDA device is present")


@no_gpu_here
def test_choosing_cuda_without_a_gpu_says_so_in_one_line():
    code = ("import mfpde, numpy as np\n"
            "from mfpde.kernels import cuda\n"  # importing is fine without a GPU
            "try:\n"
            "    mfpde.velocity(mfpde.Model(d=3), np.eye(3), backend='cuda')\n"
            "except ValueError as exc:\n"
            "    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(False), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('solver.backend = "cuda" needs an NVIDIA GPU with a working CUDA '
                                                   'driver: '), proc.stdout


@no_gpu_here
def test_mfpde_run_without_a_gpu_exits_2_with_one_line(tmp_path):
    (tmp_path / "run.toml").write_text('[model]\nd = 3\n[initial]\nn = 10\n[solver]\nbackend = "cuda"\nt_end = 0.1\n')
    proc = subprocess.run([sys.executable, "-m", "mfpde", "run", "run.toml"], cwd=tmp_path, env=_env(False),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'solver.backend = "cuda" needs an NVIDIA GPU' in lines[0], proc.stderr
    assert not (tmp_path / "run.h5").exists()


@no_gpu_here
def test_the_benchmark_exits_with_a_message_without_a_gpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py")], env=_env(False),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs an NVIDIA GPU" in lines[0], proc.stderr


def test_mesh_methods_refuse_the_cuda_backend(tmp_path):
    from mfpde.config import ConfigError, load_config

    for method, d in (("pic", 2), ("fv", 2), ("fv", 3)):
        with pytest.raises(ConfigError, match="solver.backend: is not used by") as err:
            load_config({"model": {"d": d}, "solver": {"method": method, "backend": "cuda", "cells": 42},
                         "output": {"path": str(tmp_path / "mesh.h5")}})
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="solver.backend") as err:  # the truncated kernel is CPU only
        load_config({"model": {"d": 3}, "solver": {"backend": "cuda", "kernel": "truncated"}})
    assert "\n" not in str(err.value)
