"""Ensembles (``initial.systems`` = S > 1): S independent systems in one run.

System s is drawn as the single run with seed + s and, with a fixed-step integrator, follows
exactly its steps: the ensemble's system s equals that single run bit for bit.  The file
holds a system axis after time; studies summarize the mean over systems and its standard
error; every method or kernel that cannot run an ensemble refuses it with one line.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import mfpde
from mfpde.config import ConfigError, load_config
from mfpde.initial import initial_measure
from mfpde.study import run_study


def _config(path, d=3, n=12, systems=4, seed=3, **solver):
    return {"model": {"d": d, "beta": 2.0}, "initial": {"n": n, "systems": systems, "seed": seed},
            "solver": {"t_end": 0.6, "dt": 0.05, **solver},
            "output": {"path": str(path), "save_every": 0.2, "diagnostics": ["mass", "energy", "w_to_limit"]}}


# --------------------------------------------------------------------------- drawing


@pytest.mark.parametrize("kind", [{"kind": "uniform"}, {"kind": "vmf_mixture", "means": [[0, 0, 1], [1, 0, 0]],
                                                        "kappas": [3.0, 8.0], "weights": [1, 2]}])
def test_system_s_is_the_single_draw_with_seed_plus_s_whatever_s(kind):
    opts = load_config({"model": {"d": 3}, "initial": {"n": 9, "systems": 6, "seed": 11, **kind}}).initial
    X, W = initial_measure(opts, 3)
    assert X.shape == (6, 9, 3) and W.shape == (6, 9)
    for s in range(6):
        x, w = initial_measure(opts.replace(systems=1, seed=11 + s), 3)
        np.testing.assert_array_equal(X[s], x)
        np.testing.assert_array_equal(W[s], w)
    fewer, _ = initial_measure(opts.replace(systems=2), 3)
    np.testing.assert_array_equal(fewer, X[:2])
    assert not np.array_equal(X[0], X[1])


def test_file_of_systems(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 7, 4))
    X /= np.linalg.norm(X, axis=-1, keepdims=True)
    np.save(tmp_path / "x.npy", X)
    opts = load_config({"model": {"d": 4}, "initial": {"kind": "file", "path": str(tmp_path / "x.npy"),
                                                        "systems": 3}}).initial
    P, W = initial_measure(opts, 4)
    for s in range(3):  # each system as the single-system file of its points reads it
        np.save(tmp_path / "one.npy", X[s])
        x, w = initial_measure(opts.replace(systems=1, path=str(tmp_path / "one.npy")), 4)
        np.testing.assert_array_equal(P[s], x)
        np.testing.assert_array_equal(W[s], w)
    with pytest.raises(ValueError, match=r"must hold an \(2, n, 4\) array.*got shape \(3, 7, 4\)"):
        initial_measure(opts.replace(systems=2), 4)
    with pytest.raises(ValueError, match=r"must hold an \(n, 4\) array"):
        initial_measure(opts.replace(systems=1), 4)


# --------------------------------------------------------------------------- running


@pytest.mark.parametrize("d, integrator", [(3, "rk4"), (8, "heun"), (2, "euler")])
def test_system_s_equals_the_single_run_with_seed_plus_s_bit_for_bit(tmp_path, d, integrator):
    ens = mfpde.run(_config(tmp_path / "ens.h5", d=d, integrator=integrator))
    assert ens.systems == 4 and ens.positions.shape == (4, 4, 12, d)
    for s in (0, 3):
        one = mfpde.run(_config(tmp_path / f"one{s}.h5", d=d, systems=1, seed=3 + s, integrator=integrator))
        np.testing.assert_array_equal(ens.positions[:, s], one.positions)
        np.testing.assert_array_equal(ens.weights[s], one.weights)
        for name in ("mass", "energy", "w_to_limit"):
            np.testing.assert_array_equal(ens.diagnostics[name][:, s], one.diagnostics[name])
        np.testing.assert_array_equal(ens.limit[0][s, :len(one.limit[1])], one.limit[0])
        np.testing.assert_array_equal(ens.limit[1][s, :len(one.limit[1])], one.limit[1])
    assert ens.diagnostic_attrs["w_to_limit"]["method"]


def test_rk45_ensemble_follows_each_single_run_to_its_tolerance(tmp_path):
    cfg = _config(tmp_path / "ens.h5", integrator="rk45", rtol=1e-9, atol=1e-12)
    ens = mfpde.run(cfg)
    exact = _config(tmp_path / "one.h5", systems=1, seed=4, integrator="rk4", dt=0.002)
    one = mfpde.run(exact)
    err = np.abs(ens.positions[:, 1] - one.positions).max()
    assert err < 1e-8, err


def test_single_system_layout_is_unchanged(tmp_path):
    res = mfpde.run(_config(tmp_path / "one.h5", systems=1))
    with h5py.File(res.path) as f:
        assert f.attrs["format_version"] == 1 and "systems" not in f.attrs
        assert f["state"]["positions"].ndim == 3 and f["diagnostics"]["mass"].ndim == 1
        assert "system" not in f["state"] and "system" not in f["diagnostics"]
    assert res.systems == 1


def test_xarray_info_and_study_summary(tmp_path):
    res = mfpde.run(_config(tmp_path / "ens.h5"))
    ds = res.to_xarray()
    assert ds["positions"].dims == ("time", "system", "particle", "component")
    assert ds["energy"].dims == ("time", "system") and ds["weights"].dims == ("system", "particle")
    assert ds["limit_points"].dims == ("system", "point", "component")
    np.testing.assert_array_equal(ds["positions"].values, res.positions)
    text = mfpde.io.info(res.path)
    assert "positions of 4 systems of 12 particles" in text and "mean over systems" in text

    cfg = _config(tmp_path / "study.h5")
    cfg["study"] = {"sweep": {"model.beta": [1.0, 4.0]}, "metric": "energy"}
    study = run_study(cfg)
    for i, beta in enumerate((1.0, 4.0)):
        run = mfpde.load(study.run_paths[i])
        final = run.diagnostics["energy"][-1]
        assert study.summary["metric_final"][i] == pytest.approx(final.mean(), rel=1e-15)
        assert study.summary["metric_sem"][i] == pytest.approx(final.std(ddof=1) / 2.0, rel=1e-12)
        assert study.summary["metric_min"][i] == pytest.approx(run.diagnostics["energy"].mean(axis=1).min(), rel=1e-15)


def test_resume_refuses_another_number_of_systems(tmp_path):
    path = tmp_path / "ens.h5"

    def stop(t):
        if t > 0.3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mfpde.run(_config(path), on_step=stop)
    with pytest.raises(ValueError, match="initial.systems"):
        mfpde.run(_config(path, systems=5), resume=True)
    done = mfpde.run(_config(path), resume=True)
    assert done.complete and done.positions.shape[1] == 4


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("change, key, words", [
    ({"solver": {"method": "fv", "cells": 64}}, "initial.systems", "particles"),
    ({"solver": {"method": "pic", "cells": 64}}, "initial.systems", "particles"),
    ({"solver": {"kernel": "truncated"}}, "initial.systems", "exact"),
    ({"solver": {"backend": "cuda"}}, "initial.systems", "cpu"),
    ({"initial": {"kind": "perturbed_uniform"}}, "initial.sampling", "random"),
    ({"initial": {"systems": 0}}, "initial.systems", "integer > 0"),
    ({"initial": {"systems": 2.5}}, "initial.systems", "integer"),
])
def test_what_cannot_run_an_ensemble_is_refused_in_one_line(tmp_path, change, key, words):
    cfg = _config(tmp_path / "x.h5", d=2)
    for section, values in change.items():
        cfg[section].update(values)
    if cfg["solver"].get("method") == "fv":
        del cfg["initial"]["n"], cfg["initial"]["seed"]  # the mesh method refuses these first
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.key == key and words in err.value.message and "\n" not in str(err.value)
    assert not (tmp_path / "x.h5").exists()


def test_seed_sweep_of_overlapping_ensembles_is_refused(tmp_path):
    cfg = _config(tmp_path / "s.h5")
    cfg["study"] = {"sweep": {"initial.seed": [0, 2, 100]}, "metric": "energy"}
    with pytest.raises(ConfigError, match="seeds 0 and 2 would share systems; space the swept seeds by at least 4"):
        load_config(cfg)
    cfg["study"]["sweep"]["initial.seed"] = [0, 4, 100]
    load_config(cfg)
    cfg["initial"]["systems"] = 1
    cfg["study"]["sweep"]["initial.seed"] = [0, 1]
    load_config(cfg)


# --------------------------------------------------------------------------- the exact check


@pytest.mark.parametrize("normalization", ["softmax", "uniform"])
@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_equiangular_ensemble_follows_the_scalar_ode(tmp_path, normalization, beta):
    """n = d = 32 tokens at R e_i (2 Haar-random rotations R, one per system), Q = K = V = I:
    every pair's inner product is rho(t), the solution of drho/dt = 2 b(rho)(1 - rho)(1 + (n-1) rho)
    (mfpde.equiangular), to 1e-9 up to t = 3 (past the collapse for all but softmax at beta = 4).
    rk4 with dt = 2e-3 errs by at most 1.8e-10 (uniform, beta = 4: the stiff approach to
    rho = 1), 2.7e-9 with dt = 4e-3 (measured)."""
    from mfpde.equiangular import equiangular_inner_product, equiangular_positions

    n, S = 32, 2
    X0 = equiangular_positions(n, n, systems=S, seed=7)
    np.save(tmp_path / "x0.npy", X0)
    cfg = {"model": {"d": n, "beta": beta, "normalization": normalization},
           "initial": {"kind": "file", "path": str(tmp_path / "x0.npy"), "systems": S},
           "solver": {"integrator": "rk4", "dt": 2e-3, "t_end": 3.0},
           "output": {"path": str(tmp_path / "eq.h5"), "save_every": 0.25, "diagnostics": ["clustered_fraction"]}}
    res = mfpde.run(cfg)
    rho = equiangular_inner_product(res.times, beta, n, normalization)
    gram = np.einsum("tsid,tsjd->tsij", res.positions, res.positions)
    off = ~np.eye(n, dtype=bool)
    err = np.abs(gram[:, :, off] - rho[:, None, None]).max()
    assert err < 1e-9, err
    assert rho[-1] > 0.3  # it went somewhere (0.33 for softmax at beta = 4, 1 for the others)
    expected = (rho >= 1 - 1e-3).astype(float)
    np.testing.assert_array_equal(res.diagnostics["clustered_fraction"], np.repeat(expected[:, None], S, axis=1))


def test_run_plots_show_system_0_and_the_means_over_systems(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mfpde.plotting import one_system, plot_diagnostics, plot_file, plot_trajectories

    res = mfpde.run(_config(tmp_path / "ens.h5", d=3))
    view = one_system(res)
    np.testing.assert_array_equal(view.positions, res.positions[:, 0])
    np.testing.assert_array_equal(view.weights, res.weights[0])
    np.testing.assert_array_equal(view.limit[0], res.limit[0][0])
    np.testing.assert_array_equal(view.diagnostics["energy"], res.diagnostics["energy"].mean(axis=1))
    assert one_system(view) is view and one_system(res, 3).positions[0].tolist() == res.positions[0, 3].tolist()
    with pytest.raises(ValueError, match=r"system must be an integer in \[0, 4\)"):
        one_system(res, 4)
    fig = plot_diagnostics(res, ["energy"])
    try:
        np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), res.diagnostics["energy"].mean(axis=1))
        assert fig._suptitle.get_text() == "mean over 4 systems"
    finally:
        plt.close(fig)
    fig = plot_trajectories(res, n_paths=12)
    try:
        assert "system 0 of 4" in fig.axes[0].get_title()
    finally:
        plt.close(fig)
    for kind in (None, "density", "distance", "energy"):
        plt.close(plot_file(res.path, kind))
