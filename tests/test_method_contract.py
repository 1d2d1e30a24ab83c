"""The contract every registered method meets, checked the same way for each.

For each built-in method and dimension: the HDF5 layout its state kind declares, mass to
round-off (and positivity of mesh masses), a resumed run equal to the uninterrupted one bit
for bit, and a run killed by SIGKILL leaving a file with every finished snapshot that
``resume`` completes bit for bit.  Ensembles (``initial.systems`` > 1) are cases of their
own: the same layout with a system axis after time.  A new built-in method must add its cases here (the
first test fails until it does).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import mfpde
from mfpde.methods import MASS, POSITIONS, get_method, method_names

#: Small configs of each built-in method (method, d, extra keys).
CASES = {
    "particles-d3": ("particles", 3, {"initial": {"n": 96}, "solver": {"integrator": "rk4", "dt": 0.05}}),
    "particles-d2-rk45": ("particles", 2, {"initial": {"n": 64}, "solver": {"integrator": "rk45", "dt": 0.05}}),
    "ensemble-d3": ("particles", 3, {"initial": {"n": 24, "systems": 5}, "solver": {"integrator": "rk4", "dt": 0.05}}),
    "ensemble-d8-rk45": ("particles", 8, {"initial": {"n": 16, "systems": 3},
                                          "solver": {"integrator": "rk45", "dt": 0.05}}),
    "pic-d2": ("pic", 2, {"initial": {"n": 256}, "solver": {"cells": 64, "dt": 0.05}}),
    "pic-d3": ("pic", 3, {"initial": {"n": 256}, "solver": {"cells": 162, "dt": 0.05}}),
    "fv-d2": ("fv", 2, {"solver": {"cells": 64, "dt": 0.05}}),
    "fv-d3": ("fv", 3, {"solver": {"cells": 162, "dt": 0.05}}),
}


def _config(case, path, t_end=1.0):
    method, d, extra = CASES[case]
    cfg = {"model": {"d": d, "beta": 3.0}, "initial": {"kind": "uniform", "seed": 5, **extra.get("initial", {})},
           "solver": {"method": method, "t_end": t_end, **extra.get("solver", {})},
           "output": {"path": str(path), "save_every": 0.1, "diagnostics": ["mass", "min_mass", "energy"]}}
    if method == "fv":
        cfg["initial"] = {"kind": "vmf_mixture", "means": [[1.0] + [0.0] * (d - 1)], "kappas": [2.0]}
    return cfg


def _state(res, method):
    return res.mass if get_method(method).state is MASS else res.positions


def test_every_registered_method_has_contract_cases():
    assert {method for method, _, _ in CASES.values()} == set(method_names())


@pytest.mark.parametrize("case", sorted(CASES))
def test_layout_mass_and_provenance(case, tmp_path):
    method, d, _ = CASES[case]
    kind = get_method(method).state
    res = mfpde.run(_config(case, tmp_path / "run.h5"))
    T = len(res.times)
    assert res.complete and T == 11
    S = CASES[case][2].get("initial", {}).get("systems", 1)
    system = ["system"] if S > 1 else []
    assert res.systems == S
    with h5py.File(res.path) as f:
        ds = f["state"][kind.name]
        scales = [dim[0].name.rsplit("/", 1)[-1] for dim in ds.dims]  # each axis's dimension scale
        assert ds.shape[0] == T and scales == ["time", *system, *kind.dims]
        assert f.attrs["format_version"] == (2 if S > 1 else 1) and f.attrs.get("systems", 1) == S
        for name in ("mass", "energy"):
            ds = f["diagnostics"][name]
            assert ds.shape == (T, *([S] if S > 1 else [])) and \
                [dim[0].name.rsplit("/", 1)[-1] for dim in ds.dims] == ["time", *system]
        other = POSITIONS if kind is MASS else MASS
        assert other.name not in f["state"]
        assert f.attrs["method"] == method and f.attrs["status"] == "complete"
        integrators = get_method(method).integrators
        assert f.attrs["integrator"] in (integrators or (get_method(method).integrator_name,))
        assert f.attrs["wall_time"] > 0
        assert f["limit"]["points"].shape[-1] == d and f["limit"]["points"].shape[:-2] == tuple(S for _ in system)
    masses = res.mass if kind is MASS else np.broadcast_to(res.weights, (T,) + res.weights.shape)
    np.testing.assert_allclose(masses.sum(axis=-1), 1.0, rtol=0, atol=64 * np.finfo(float).eps)
    np.testing.assert_allclose(res.diagnostics["mass"], 1.0, rtol=0, atol=64 * np.finfo(float).eps)
    assert np.all(res.diagnostics["min_mass"] >= 0)
    state = _state(res, method)
    assert np.all(np.isfinite(state))
    if kind is POSITIONS:
        np.testing.assert_allclose(np.linalg.norm(state, axis=-1), 1.0, rtol=0, atol=1e-14)
    assert not np.array_equal(state[0], state[-1])  # it moved


@pytest.mark.parametrize("case", sorted(CASES))
def test_interrupted_then_resumed_is_bit_for_bit(case, tmp_path):
    method = CASES[case][0]
    reference = mfpde.run(_config(case, tmp_path / "ref.h5"))
    steps = []

    def stop(t):
        steps.append(t)
        if t > 0.45:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mfpde.run(_config(case, tmp_path / "run.h5"), on_step=stop)
    partial = mfpde.load(tmp_path / "run.h5")
    assert partial.status == "interrupted" and 1 < partial.n_snapshots < len(reference.times)
    done = mfpde.run(_config(case, tmp_path / "run.h5"), resume=True)
    np.testing.assert_array_equal(done.times, reference.times)
    np.testing.assert_array_equal(_state(done, method), _state(reference, method))
    for name in ("mass", "energy"):
        np.testing.assert_array_equal(done.diagnostics[name], reference.diagnostics[name])


_KILLED_RUN = """
import json, sys, time
import mfpde
cfg = json.loads(sys.argv[1])
mfpde.run(cfg, on_step=lambda t: time.sleep(0.01))
"""


@pytest.mark.parametrize("case", sorted(CASES))
def test_killed_run_keeps_every_finished_snapshot_and_resumes_bit_for_bit(case, tmp_path):
    method = CASES[case][0]
    cfg = _config(case, tmp_path / "run.h5", t_end=2.0)
    path = tmp_path / "run.h5"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, json.dumps(cfg)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            try:
                if mfpde.load(path).n_snapshots >= 3:
                    break
            except (OSError, ValueError):
                continue
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed = mfpde.load(path)
    assert killed.status == "running" and 3 <= killed.n_snapshots < 21
    reference = mfpde.run(_config(case, tmp_path / "ref.h5", t_end=2.0))
    T = killed.n_snapshots
    np.testing.assert_array_equal(_state(killed, method), _state(reference, method)[:T])
    done = mfpde.run(cfg, resume=True)
    np.testing.assert_array_equal(done.times, reference.times)
    np.testing.assert_array_equal(_state(done, method), _state(reference, method))
