"""The shipped low-temperature study (data/configs/study_beta.toml, THEORY.md section 4).

V = diag(-1, -2, -2), Q = K = I: E = span e1, Pi#rho_0 = (delta_e1 + delta_-e1) / 2.  At
finite beta each cluster settles at the width where a Gaussian of variance sigma^2 per
tangent direction is stationary, beta sigma^2 / (1 + beta sigma^2) = lambda_1 / lambda_perp
= 1/2, so sigma^2 = 1/beta and min_t W_1 = E|u| = sigma sqrt(pi / 2) = 1.25 / sqrt(beta)
(flat tangent-plane limit, docs/study.md).  The zero-temperature alignment (rate g = 1)
reaches that width after a time ~ log(beta) / (2 g), so the settling time grows with beta.
"""

import math
from pathlib import Path

import numpy as np
import pytest

import mfpde
from mfpde.study import load_study, run_study, summarize_run

CONFIG = Path(__file__).resolve().parents[1] / "data" / "configs" / "study_beta.toml"


def check_summary(study, betas):
    s = study.summary
    order = np.argsort(s["model.beta"])
    beta = np.asarray(s["model.beta"], float)[order]
    w_min = np.asarray(s["metric_min"], float)[order]
    t_min = np.asarray(s["t_min"], float)[order]
    assert list(beta) == sorted(betas)
    assert np.all(np.diff(w_min) < 0), w_min                      # min_t W decreasing in beta
    assert np.all(np.diff(t_min) > 0), t_min                      # settling time increasing
    assert study.rates["slope"] == pytest.approx(-0.5, abs=0.1)   # W_min ~ beta^(-1/2)
    # the Gaussian-equilibrium prediction where the cluster is small (beta = 1000, sigma = 0.03):
    # within 10% (finite N, and the plateau is still settling at t_end)
    assert w_min[-1] == pytest.approx(1.25 / math.sqrt(beta[-1]), rel=0.1)
    return beta, w_min, t_min


def test_small_beta_study_shows_the_low_temperature_trends(tmp_path):
    betas = [10, 100, 1000]
    study = run_study(CONFIG, output=tmp_path / "s.h5",
                      overrides=["initial.n=2000", "solver.t_end=12", "solver.kernel=exact",
                                 f"study.sweep.model.beta={betas}"])
    check_summary(study, betas)
    # no interior minimum: the plain argmin of W_1 at beta = 1000 is at the end of the run
    run = mfpde.load(Path(study.path).parent / "s.runs" / "run_0002.h5")
    plain = summarize_run(run, "w_to_limit")
    assert plain["t_min"] >= 0.9 * run.times[-1]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_shipped_beta_study(tmp_path):
    study = run_study(CONFIG, output=tmp_path / "study_beta.h5")
    check_summary(study, [10, 30, 100, 300, 1000])
    assert np.all(study.summary["wall_time"] < 600)
    from mfpde.plotting import plot_file, save_plot

    out = save_plot(plot_file(study.path, "rate"), tmp_path / "rate.png")
    assert Path(out).stat().st_size > 10_000
