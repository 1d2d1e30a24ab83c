"""Exact and robustness tiers for the HDF5 writer/reader (mfpde.io)."""

import json
import math

import h5py
import numpy as np
import pytest

from mfpde.config import load_config
from mfpde.io import FORMAT_VERSION, Result, RunWriter, info, load
from mfpde.model import Model


@pytest.fixture
def cfg():
    return load_config({"model": {"d": 3, "beta": "inf", "V": [[2, 0, 0], [0, 1, 0], [0, 0, 0.5]],
                                  "Q": {"random": "gaussian", "seed": 2}},
                        "output": {"diagnostics": ["mass", "energy"]}})


def _write_particles(path, cfg, rng, T=4, N=7, **kw):
    model = cfg.model
    times = np.sort(rng.random(T))
    pos = rng.standard_normal((T, N, model.d))
    weights = rng.random(N)
    mass = rng.random(T)
    energy = rng.standard_normal(T)
    with RunWriter(path, model=model, config=cfg.to_dict(), **kw) as w:
        w.write_weights(weights)
        for k in range(T):
            n = w.append_snapshot(times[k], positions=pos[k], diagnostics={"mass": mass[k], "energy": energy[k]})
            assert n == k + 1
        w.set_status("complete")
    return times, pos, weights, {"mass": mass, "energy": energy}


def test_particles_roundtrip_bit_identical(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    times, pos, weights, diags = _write_particles(path, cfg, rng)
    pts, lw = rng.standard_normal((3, 3)), rng.random(3)
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "complete"
    # write_limit on a finished file needs resume; write it into a fresh one instead
    path2 = tmp_path / "run2.h5"
    with RunWriter(path2, model=cfg.model, config=cfg) as w:
        w.write_weights(weights)
        w.write_limit(pts, lw)
        for k in range(len(times)):
            w.append_snapshot(times[k], positions=pos[k], diagnostics={"mass": diags["mass"][k],
                                                                        "energy": diags["energy"][k]})
        w.set_status("complete")
    for p, has_limit in ((path, False), (path2, True)):
        res = load(p)
        assert isinstance(res, Result)
        np.testing.assert_array_equal(res.times, times)
        np.testing.assert_array_equal(res.positions, pos)
        np.testing.assert_array_equal(res.weights, weights)
        assert res.mass is None and res.grid is None
        assert sorted(res.diagnostics) == ["energy", "mass"]
        for name in diags:
            np.testing.assert_array_equal(res.diagnostics[name], diags[name])
        assert res.config == cfg.to_dict()
        assert res.status == "complete" and res.complete
        assert res.model.to_dict() == cfg.model.to_dict()
        assert math.isinf(res.model.beta)
        if has_limit:
            np.testing.assert_array_equal(res.limit[0], pts)
            np.testing.assert_array_equal(res.limit[1], lw)
        else:
            assert res.limit is None


def test_fv_roundtrip_bit_identical(tmp_path, rng):
    cfg = load_config({"model": {"d": 2, "beta": 5}, "solver": {"method": "fv", "cells": 16}})
    M, T = 16, 3
    centers, areas = rng.standard_normal((M, 2)), rng.random(M)
    masses = rng.random((T, M))
    path = tmp_path / "fv.h5"
    with RunWriter(path, model=cfg.model, config=cfg) as w:
        w.write_grid(centers, areas)
        for k in range(T):
            w.append_snapshot(0.5 * k, mass=masses[k])
        w.set_status("complete")
    res = load(path)
    np.testing.assert_array_equal(res.mass, masses)
    np.testing.assert_array_equal(res.grid["centers"], centers)
    np.testing.assert_array_equal(res.grid["areas"], areas)
    np.testing.assert_array_equal(res.times, [0.0, 0.5, 1.0])
    assert res.positions is None and res.weights is None and res.diagnostics == {}


def test_root_attributes(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    _write_particles(path, cfg, rng)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "mfpde"
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert json.loads(f.attrs["config"]) == cfg.to_dict()
        assert f.attrs["created"].endswith("+00:00")
        assert f["model"].attrs["d"] == 3 and math.isinf(f["model"].attrs["beta"])
        assert f["model"].attrs["zero_temperature"] == "continuum"
        np.testing.assert_array_equal(f["model/Q"][()], cfg.model.Q)
        pos = f["state/positions"]
        assert pos.maxshape == (None, 7, 3) and pos.chunks == (1, 7, 3) and pos.dtype == np.float64
        assert pos.compression == "gzip"


def test_status_running_then_interrupted_on_close(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    w = RunWriter(path, model=cfg.model, config=cfg)
    w.append_snapshot(0.0, positions=rng.standard_normal((4, 3)))
    assert w.status == "running"
    w.close()
    assert load(path).status == "interrupted"


def test_refuses_to_overwrite_complete_without_force(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    _write_particles(path, cfg, rng)
    with pytest.raises(FileExistsError, match="--force") as info_:
        RunWriter(path, model=cfg.model, config=cfg)
    assert str(path) in str(info_.value)
    assert load(path).status == "complete"  # untouched
    times, *_ = _write_particles(path, cfg, rng, T=2, force=True)
    np.testing.assert_array_equal(load(path).times, times)


def test_refuses_to_overwrite_interrupted_suggests_resume(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    with RunWriter(path, model=cfg.model, config=cfg) as w:
        w.append_snapshot(0.0, positions=rng.standard_normal((4, 3)))
    with pytest.raises(FileExistsError, match="--resume"):
        RunWriter(path, model=cfg.model, config=cfg)
    other = tmp_path / "other.h5"
    other.write_bytes(b"not hdf5")
    with pytest.raises(FileExistsError, match="not an mfpde file"):
        RunWriter(other, model=cfg.model, config=cfg)


def test_resume_appends(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    pos = rng.standard_normal((5, 6, 3))
    with RunWriter(path, model=cfg.model, config=cfg) as w:
        for k in range(3):
            w.append_snapshot(k, positions=pos[k], diagnostics={"mass": 1.0})
    assert load(path).status == "interrupted"
    with RunWriter(path, model=cfg.model, config=cfg, mode="resume") as w:
        assert w.n_snapshots == 3
        t, last = w.last_snapshot()
        assert t == 2.0
        np.testing.assert_array_equal(last, pos[2])
        for k in range(3, 5):
            w.append_snapshot(k, positions=pos[k], diagnostics={"mass": 1.0})
        w.set_status("complete")
    res = load(path)
    np.testing.assert_array_equal(res.positions, pos)
    np.testing.assert_array_equal(res.times, np.arange(5.0))
    assert res.status == "complete"
    with pytest.raises(ValueError, match="complete run"):
        RunWriter(path, model=cfg.model, config=cfg, mode="resume")


def test_resume_refuses_another_model(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    with RunWriter(path, model=cfg.model, config=cfg) as w:
        w.append_snapshot(0.0, positions=rng.standard_normal((4, 3)))
    with pytest.raises(ValueError, match="different model"):
        RunWriter(path, model=cfg.model.replace(beta=3.0), config=cfg, mode="resume")


def test_half_written_snapshot_is_ignored_and_trimmed_on_resume(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    pos = rng.standard_normal((3, 5, 3))
    with RunWriter(path, model=cfg.model, config=cfg) as w:
        for k in range(2):
            w.append_snapshot(0.1 * k, positions=pos[k], diagnostics={"mass": 1.0})
    # simulate a crash inside append_snapshot: state and a diagnostic extended, /time not
    with h5py.File(path, "r+") as f:
        f["state/positions"].resize((3, 5, 3))
        f["state/positions"][2] = pos[2]
        f["diagnostics/mass"].resize((3,))
    res = load(path)
    assert res.times.shape == (2,)
    np.testing.assert_array_equal(res.positions, pos[:2])
    assert res.diagnostics["mass"].shape == (2,)
    # a crash between resizing /time and writing its value leaves a NaN fill: not a snapshot
    with h5py.File(path, "r+") as f:
        f["time"].resize((3,))
    res = load(path)
    assert res.times.shape == (2,) and res.positions.shape == (2, 5, 3)
    with RunWriter(path, model=cfg.model, config=cfg, mode="resume") as w:
        assert w.n_snapshots == 2
        w.append_snapshot(0.2, positions=pos[2], diagnostics={"mass": 1.0})
    res = load(path)
    np.testing.assert_array_equal(res.positions, pos)
    np.testing.assert_array_equal(res.times, [0.0, 0.1, 0.2])


def test_refuses_values_it_cannot_store(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    with RunWriter(path, model=cfg.model, config=cfg) as w:
        with pytest.raises(ValueError, match="real numbers"):
            w.append_snapshot(0.0, positions=np.ones((4, 3), dtype=complex))
        with pytest.raises(ValueError, match=r"shape \(\?, 3\)"):
            w.append_snapshot(0.0, positions=np.ones((4, 2)))
        with pytest.raises(ValueError, match="real scalar"):
            w.append_snapshot(0.0, positions=np.ones((4, 3)), diagnostics={"mass": [1.0, 2.0]})
        with pytest.raises(ValueError, match="not 'time'"):
            w.append_snapshot(0.0, positions=np.ones((4, 3)), diagnostics={"time": 1.0})
        with pytest.raises(ValueError, match="finite"):
            w.append_snapshot(math.nan, positions=np.ones((4, 3)))
        assert w.n_snapshots == 0
        w.append_snapshot(0.0, positions=np.ones((4, 3)), diagnostics={"mass": 1.0})
        with pytest.raises(ValueError, match="same names"):
            w.append_snapshot(1.0, positions=np.ones((4, 3)), diagnostics={"energy": 1.0})
        with pytest.raises(ValueError, match="positions snapshots"):
            w.append_snapshot(1.0, mass=np.ones(4), diagnostics={"mass": 1.0})
        with pytest.raises(ValueError, match="must not decrease"):
            w.append_snapshot(-1.0, positions=np.ones((4, 3)), diagnostics={"mass": 1.0})
        assert w.n_snapshots == 1
    with pytest.raises(ValueError, match="JSON"):
        RunWriter(tmp_path / "x.h5", model=cfg.model, config={"beta": math.inf})


def test_xarray_opens_root_and_groups(tmp_path, cfg, rng):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    path = tmp_path / "run.h5"
    times, pos, weights, diags = _write_particles(path, cfg, rng)
    with RunWriter(tmp_path / "lim.h5", model=cfg.model, config=cfg) as w:
        w.write_limit(rng.standard_normal((2, 3)), [0.5, 0.5])
    with xr.open_dataset(path, engine="h5netcdf") as root:
        np.testing.assert_array_equal(root["time"].values, times)
        assert root.attrs["status"] == "complete"
    with xr.open_dataset(path, engine="h5netcdf", group="diagnostics") as ds:
        assert set(ds.data_vars) == {"mass", "energy"}
        assert ds["mass"].dims == ("time",)
        np.testing.assert_array_equal(ds["mass"].coords["time"].values, times)
        np.testing.assert_array_equal(ds["energy"].values, diags["energy"])
    with xr.open_dataset(path, engine="h5netcdf", group="state") as ds:
        assert ds["positions"].dims == ("time", "particle", "component")
        np.testing.assert_array_equal(ds["positions"].values, pos)
        np.testing.assert_array_equal(ds["positions"].coords["time"].values, times)
        assert ds["weights"].dims == ("particle",)
    with xr.open_dataset(path, engine="h5netcdf", group="model") as ds:
        np.testing.assert_array_equal(ds["V"].values, cfg.model.V)
    with xr.open_dataset(tmp_path / "lim.h5", engine="h5netcdf", group="limit") as ds:
        assert ds["points"].dims == ("point", "component")


def test_xarray_opens_fv_file(tmp_path, rng):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    model = Model(d=2, beta=1.0)
    path = tmp_path / "fv.h5"
    with RunWriter(path, model=model, config={}) as w:
        w.write_grid(rng.standard_normal((8, 2)), rng.random(8))
        w.append_snapshot(0.0, mass=rng.random(8), diagnostics={"mass": 1.0})
    with xr.open_dataset(path, engine="h5netcdf", group="state") as ds:
        assert ds["mass"].dims == ("time", "cell")
    with xr.open_dataset(path, engine="h5netcdf", group="grid") as ds:
        assert ds["centers"].dims == ("cell", "component")


def test_not_an_mfpde_file(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError) as err:
        load(plain)
    assert str(err.value) == f"{plain} is not an mfpde file (no format attribute)"
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an mfpde file"):
        load(junk)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "absent.h5")


def test_info_summarises(tmp_path, cfg, rng):
    path = tmp_path / "run.h5"
    times, *_ = _write_particles(path, cfg, rng)
    text = info(path)
    assert "status: complete" in text
    assert "beta = inf" in text
    assert f"snapshots: 4, t = {times[0]:g} .. {times[-1]:g}" in text
    assert "energy" in text and "method = particles" in text


def test_killed_writer_leaves_a_readable_file(tmp_path):
    """Robustness: SIGKILL at an arbitrary moment keeps every flushed snapshot readable."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "killed.h5"
    script = f"""
import numpy as np
from mfpde.io import RunWriter
from mfpde.model import Model
with RunWriter({str(path)!r}, model=Model(d=3), config={{}}) as w:
    k = 0
    while True:
        w.append_snapshot(float(k), positions=np.full((2000, 3), float(k)), diagnostics={{"mass": float(k)}})
        k += 1
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                if load(path).times.shape[0] >= 5:
                    break
            except (OSError, ValueError, KeyError):
                continue
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    res = load(path)
    T = res.times.shape[0]
    assert T >= 5
    assert res.status == "running"  # it never ended
    np.testing.assert_array_equal(res.times, np.arange(T, dtype=float))
    assert res.positions.shape == (T, 2000, 3)
    np.testing.assert_array_equal(res.positions[:, 0, 0], np.arange(T, dtype=float))
    np.testing.assert_array_equal(res.diagnostics["mass"], np.arange(T, dtype=float))


def test_docs_hdf5_examples_run(tmp_path, monkeypatch):
    """Documentation that runs: every python block of docs/hdf5.md, in order."""
    import pathlib
    import re

    pytest.importorskip("xarray")
    doc = pathlib.Path(__file__).resolve().parent.parent / "docs" / "hdf5.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    ns = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), ns)
    assert ns["res"].times.shape == (3,) and ns["diag"]["energy"].dims == ("time",)
