"""Studies: sweeps, summaries, rate fits, Dask execution, restarts and failures."""

import math
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from mfpde import load
from mfpde.study import fit_rates, load_study, run_study

STUDY = """
[model]
d = 3
beta = 10.0
normalization = "{normalization}"
V = [[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.2]]
[initial]
n = {n}
[solver]
dt = 0.05
t_end = {t_end}
[output]
path = "study.h5"
save_every = 0.25
diagnostics = ["w_to_limit", "energy"]
[study]
sweep = {{ "model.beta" = {betas}, "initial.seed" = [0, 1] }}
fit = "model.beta"
metric = "w_to_limit"
"""


def write_config(tmp_path, n=60, t_end=1.0, betas="[4, 8, 16]", normalization="softmax"):
    path = tmp_path / "study.toml"
    path.write_text(STUDY.format(n=n, t_end=t_end, betas=betas, normalization=normalization))
    return path


def test_fit_rates_recovers_a_power_law_and_its_spread():
    beta = np.array([10, 30, 100, 300] * 3, dtype=float)
    seed = np.repeat([0, 1, 2], 4)
    rng = np.random.default_rng(0)
    noise = np.exp(0.02 * rng.standard_normal(12))
    rates = fit_rates({"model.beta": beta, "initial.seed": seed}, 2.0 * beta**-0.5 * noise, "model.beta")
    assert rates["slope"] == pytest.approx(-0.5, abs=3 * rates["slope_stderr"] + 1e-12)
    assert 0 < rates["slope_stderr"] < 0.05
    assert rates["slope_groups_mean"] == pytest.approx(rates["slope"], abs=1e-12)  # balanced design
    assert 0 < rates["slope_ci95"] < 0.1
    exact = fit_rates({"model.beta": beta[:4]}, np.sqrt(np.log(beta[:4]) / beta[:4]), "model.beta")
    assert exact["slope_vs_log_ratio"] == pytest.approx(0.5, abs=1e-12)


def test_serial_and_two_workers_give_identical_results(tmp_path):
    cfg = write_config(tmp_path)
    serial = run_study(cfg, output=tmp_path / "serial.h5")
    parallel = run_study(cfg, output=tmp_path / "parallel.h5", workers=2)
    assert list(serial.summary["status"]) == ["complete"] * 6
    for column in ("metric_min", "t_min", "metric_final", "model.beta", "initial.seed"):
        np.testing.assert_array_equal(serial.summary[column], parallel.summary[column])
    for key in ("slope", "slope_stderr", "slope_vs_log_ratio"):
        assert serial.rates[key] == parallel.rates[key]
    # the index links each run file; the runs are ordinary mfpde files
    with h5py.File(tmp_path / "serial.h5", "r") as f:
        assert sorted(f["runs"]) == [f"run_{i:04d}" for i in range(6)]
        assert f["runs/run_0003/time"].shape[0] == 5
        assert f["summary/metric_min"].dims[0][0].name == "/summary/run"
    # metric_min really is the minimum of each run's series
    for i, p in enumerate(serial.run_paths):
        series = load(p).diagnostics["w_to_limit"]
        assert serial.summary["metric_min"][i] == series.min()


def test_cli_study_on_a_separately_started_scheduler(tmp_path):
    from distributed import LocalCluster

    cfg = write_config(tmp_path, betas="[4, 8]")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = subprocess.run([sys.executable, "-m", "mfpde", "study", str(cfg), "-o", "remote.h5",
                              "--scheduler", cluster.scheduler_address],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "slope =" in out.stdout
    study = load_study(tmp_path / "remote.h5")
    assert study.status == "complete" and list(study.summary["status"]) == ["complete"] * 4


def test_a_killed_study_recomputes_only_unfinished_runs(tmp_path):
    cfg = write_config(tmp_path, n=120, t_end=3.0, betas="[4, 8, 16, 32]")
    index = tmp_path / "study.h5"
    proc = subprocess.Popen([sys.executable, "-m", "mfpde", "study", str(cfg)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    done = []
    try:
        while time.monotonic() - start < 120:
            try:
                s = load_study(index)
                done = [rid for rid, st in zip(s.summary["run_id"], s.summary["status"]) if st == "complete"]
            except (OSError, ValueError, KeyError):
                pass
            if len(done) >= 2:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    # which runs were finished when the kill landed: read from the run files themselves
    # (a run may finish between the last look at the index and the kill)
    runs = tmp_path / "study.runs"
    done = []
    for path in sorted(runs.glob("run_*.h5")):
        try:
            if load(path).complete:
                done.append(path.stem)
        except (OSError, ValueError):
            pass
    assert 2 <= len(done) < 8
    created = {}
    for rid in done:
        with h5py.File(runs / f"{rid}.h5", "r") as f:
            created[rid] = f.attrs["created"]
    again = subprocess.run([sys.executable, "-m", "mfpde", "study", str(cfg)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    study = load_study(index)
    status = dict(zip(study.summary["run_id"], study.summary["status"]))
    for rid in done:  # finished runs were read back, not recomputed
        assert status[rid] == "skipped"
        with h5py.File(runs / f"{rid}.h5", "r") as f:
            assert f.attrs["created"] == created[rid]
    assert all(status[rid] == "complete" for rid in status if rid not in done)
    assert study.status == "complete"


def test_one_failing_run_does_not_stop_the_others(tmp_path):
    # the uniform normalization overflows float64 at beta = 1e4: that run fails at run time
    cfg = write_config(tmp_path, betas="[2, 10000]", normalization="uniform")
    out = subprocess.run([sys.executable, "-m", "mfpde", "study", str(cfg)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "failed: OverflowError: uniform normalization overflows" in out.stderr
    study = load_study(tmp_path / "study.h5")
    status = list(study.summary["status"])
    assert status.count("failed") == 2 and status.count("complete") == 2
    failed = study.summary["status"] == "failed"
    assert all(math.isnan(v) for v in study.summary["metric_min"][failed])
    assert all("OverflowError" in e for e in study.summary["error"][failed])


def test_bad_study_config_is_rejected_before_any_run(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(STUDY.format(n=60, t_end=1.0, betas="[4, -8]", normalization="softmax"))
    out = subprocess.run([sys.executable, "-m", "mfpde", "study", str(cfg)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "model.beta" in out.stderr
    assert not (tmp_path / "study.h5").exists() and not (tmp_path / "study.runs").exists()


class _Series:
    def __init__(self, times, values):
        self.times, self.diagnostics = times, {"w_to_limit": values}


def test_t_min_rtol_gives_the_time_a_plateau_is_reached():
    # W(t) = 0.1 + e^{-2 t} with wiggles of 1e-6 on the plateau: the plain argmin sits in the
    # wiggles; with rtol the first time within 1% is t* = ln(1/(0.01 * 0.1)) / 2 = 3.45...
    from mfpde.study import summarize_run

    t = np.linspace(0.0, 10.0, 1001)
    w = 0.1 + np.exp(-2.0 * t) + 1e-6 * np.sin(37.0 * t)
    plain = summarize_run(_Series(t, w), "w_to_limit")
    tol = summarize_run(_Series(t, w), "w_to_limit", t_min_rtol=0.01)
    assert plain["metric_min"] == tol["metric_min"] == w.min()
    assert plain["t_min"] == t[np.argmin(w)] and plain["t_min"] > 5.0
    # first grid time with e^{-2t} + wiggle <= 0.01 * min
    assert tol["t_min"] == pytest.approx(np.log(1.0 / (0.01 * w.min())) / 2.0, abs=0.011)
    # decay_rate is fitted over [0, t_min]: less of the plateau, a slope nearer the true 2
    assert plain["decay_rate"] < tol["decay_rate"] < 2.0


def test_t_min_rtol_must_be_nonnegative(tmp_path):
    from mfpde.config import ConfigError, load_config

    cfg = write_config(tmp_path)
    with pytest.raises(ConfigError, match="study.t_min_rtol"):
        load_config(cfg, ["study.t_min_rtol=-0.1"])
    assert load_config(cfg, ["study.t_min_rtol=0.05"]).study.t_min_rtol == 0.05
