"""The phase diagram (mfpde plot --kind phase): phase_table's arrays on synthetic series,
the figure's content drawn from a table, and a small study of ensembles end to end."""

import math

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import QuadMesh

import mfpde
from mfpde import plotting as P
from mfpde.equiangular import equiangular_collapse_time, equiangular_positions
from mfpde.plotting import half_crossing_time, phase_table, plot_file

matplotlib.use("Agg")

T = np.array([0.0, 1.0, 2.0, 3.0])


def _table():
    """Two betas, three systems each; beta = 2 crosses 1/2 between t = 1 and 2, beta = 8 never."""
    a = np.array([[0.0, 0.0, 0.0], [0.3, 0.4, 0.5], [0.6, 0.9, 0.9], [1.0, 1.0, 1.0]])  # (T, S)
    b = np.array([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1], [0.2, 0.3, 0.1], [0.4, 0.2, 0.3]])
    swept = [{"model.beta": 8.0}, {"model.beta": 2}]  # unsorted on purpose
    return phase_table(swept, [T, T.copy()], [b, a]), a, b


def test_phase_table_mean_sem_crossing():
    panels, a, b = _table()
    assert len(panels) == 1
    p = panels[0]
    assert p.others == {} and p.betas.tolist() == [2.0, 8.0] and p.runs == (1, 0)
    np.testing.assert_array_equal(p.times, T)
    np.testing.assert_allclose(p.mean, [a.mean(axis=1), b.mean(axis=1)], rtol=0, atol=1e-15)
    np.testing.assert_allclose(p.mean[0], [0.0, 0.4, 0.8, 1.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(p.sem[0], a.std(axis=1, ddof=1) / math.sqrt(3), rtol=1e-15, atol=0)
    assert p.sem[0, 1] == pytest.approx(0.1 / math.sqrt(3), rel=1e-14)  # std (ddof 1) of 0.3, 0.4, 0.5 is 0.1
    # mean 0.4 at t = 1, 0.8 at t = 2: 1/2 at t = 1 + 0.1 / 0.4 = 1.25
    assert p.crossing[0] == pytest.approx(1.25, rel=1e-14)
    assert math.isnan(p.crossing[1])
    assert p.systems.tolist() == [3, 3] and p.theory is None


def test_single_systems_and_panels_per_other_axis():
    swept = [{"model.beta": b, "initial.seed": s} for s in (0, 1) for b in (1.0, 3.0)]
    series = [np.array([0.0, 0.5, 1.0, 1.0]), np.array([0.0, 0.0, 0.2, 0.6]),
              np.array([0.6, 0.7, 1.0, 1.0]), np.zeros(4)]
    panels = phase_table(swept, [T] * 4, series)
    assert [p.others for p in panels] == [{"initial.seed": 0}, {"initial.seed": 1}]
    np.testing.assert_array_equal(panels[0].mean, [series[0], series[1]])
    assert np.isnan(panels[0].sem).all() and panels[0].systems.tolist() == [1, 1]
    assert panels[0].crossing[0] == 1.0  # reached exactly at a snapshot
    assert panels[0].crossing[1] == pytest.approx(2.75, rel=1e-14)
    assert panels[1].crossing[0] == 0.0 and math.isnan(panels[1].crossing[1])
    assert panels[1].runs == (2, 3)


def test_half_crossing_time():
    assert half_crossing_time(T, [0.0, 0.2, 0.4, 0.45]) != half_crossing_time(T, [0, 0, 0, 0.5])
    assert math.isnan(half_crossing_time(T, [0.0, 0.2, 0.4, 0.45]))
    assert half_crossing_time(T, [0, 0, 0, 0.5]) == 3.0
    assert half_crossing_time(T, [0.7, 0.1, 0.9, 1.0]) == 0.0  # the first time at or above
    assert half_crossing_time(T, [0.0, 0.0, 1.0, 1.0], level=0.25) == 1.25
    assert half_crossing_time(T, [np.nan, 0.0, 1.0, 1.0]) == 1.5


@pytest.mark.parametrize("swept, times, values, message", [
    ([{"initial.seed": 0}], [T], [T], r"needs a model.beta sweep axis; the study sweeps \['initial.seed'\]"),
    ([{"model.beta": 1.0}, {"model.beta": 2.0}], [T, T[:3]], [T, T[:3]], "different time grids: run 1 has 3"),
    ([{"model.beta": 1.0}, {"model.beta": 2.0}], [T, T * 1.5], [T, T], "different time grids"),
    ([{"model.beta": 1.0}], [T], [np.zeros(3)], r"run 0: the series has shape \(3,\), expected \(4,\)"),
    ([{"model.beta": 1.0}, {"model.beta": 1}], [T, T], [T, T], "model.beta = 1 appears twice"),
    ([{"model.beta": "inf"}], [T], [T], "finite numbers on its model.beta axis, got 'inf'"),
    ([{"model.beta": 1.0}], [T, T], [T], "one time grid and one series per run"),
])
def test_phase_table_errors(swept, times, values, message):
    with pytest.raises(ValueError, match=message) as info:
        phase_table(swept, times, values)
    assert "\n" not in str(info.value)


def _mesh(ax):
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    return meshes[0]


def test_figure_content_from_a_table():
    import matplotlib.pyplot as plt

    panels, _, _ = _table()
    theory = np.array([0.5, 2.5])
    fig = P._draw_phase([P.replace(panels[0], theory=theory)], "clustered_fraction")
    try:
        ax = fig.axes[0]
        p = panels[0]
        np.testing.assert_array_equal(np.asarray(_mesh(ax).get_array()).reshape(p.mean.T.shape), p.mean.T)
        lines = {line.get_label(): line for line in ax.lines}
        half = lines["mean = 1/2"]
        np.testing.assert_array_equal(half.get_xdata(), [2.0])  # beta = 8 never crosses: no point
        np.testing.assert_array_equal(half.get_ydata(), [1.25])
        eq = lines["equiangular ODE (rho0 = 0)"]
        assert eq.get_linestyle() == "--"
        np.testing.assert_array_equal(eq.get_xdata(), [2.0, 8.0])
        np.testing.assert_array_equal(eq.get_ydata(), theory)
        colorbar = fig.axes[-1]
        assert "clustered fraction" in colorbar.get_ylabel() and "mean over systems" in colorbar.get_ylabel()
        assert "3 systems" in ax.get_title()
    finally:
        plt.close(fig)
    # no crossing and no theory: neither curve
    flat = P.replace(panels[0], crossing=np.full(2, np.nan))
    fig = P._draw_phase([flat, flat], "energy")
    try:
        assert [line.get_label() for line in fig.axes[0].lines] == []
        assert [any(isinstance(c, QuadMesh) for c in ax.collections) for ax in fig.axes[:2]] == [True, True]
    finally:
        plt.close(fig)


def test_log_beta_axis_when_beta_spans_decades():
    import matplotlib.pyplot as plt

    swept = [{"model.beta": b} for b in (1.0, 10.0, 100.0)]
    panels = phase_table(swept, [T] * 3, [np.linspace(0, 1, 4)] * 3)
    fig = P._draw_phase(panels)
    try:
        assert fig.axes[0].get_xscale() == "log"
        edges, log = P._beta_edges([1.0, 10.0, 100.0])
        assert log and edges == pytest.approx([10**-0.5, 10**0.5, 10**1.5, 10**2.5])
    finally:
        plt.close(fig)
    edges, log = P._beta_edges([0.0, 2.0, 4.0])
    assert not log and edges.tolist() == [0.0, 1.0, 3.0, 5.0]
    # evenly spaced betas spanning more than 20x (the shipped phase diagrams): a linear axis
    edges, log = P._beta_edges([0.1, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert not log and edges[0] == 0.0 and edges[-1] == pytest.approx(3.25)


def test_plot_file_refuses_misplaced_options(tmp_path):
    with pytest.raises(ValueError, match="--diagnostic goes with --kind phase"):
        plot_file(tmp_path / "x.h5", "rate", diagnostic="energy")
    assert "phase" in P.KINDS


# ----------------------------------------------------------------------- end to end


N = 5
SAVE_EVERY = 0.05


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Equiangular starts (n = d = 5, Q = K = V = I, an ensemble of 3 rotated frames per run),
    beta = 1 and 3."""
    from mfpde.study import run_study

    tmp = tmp_path_factory.mktemp("phase")
    np.save(tmp / "frame.npy", equiangular_positions(N, systems=3, seed=4))
    (tmp / "study.toml").write_text(
        f'[model]\nd = {N}\nbeta = 1.0\n'
        f'[initial]\nkind = "file"\npath = "frame.npy"\nn = {N}\nsystems = 3\n'
        f'[solver]\nt_end = 8.0\ndt = 0.01\n'
        f'[output]\nsave_every = {SAVE_EVERY}\ndiagnostics = ["clustered_fraction", "energy"]\n'
        '[study]\nsweep = { "model.beta" = [1.0, 3.0] }\nmetric = "energy"\n'
    )
    run_study(tmp / "study.toml", output=tmp / "study.h5")
    return tmp


def test_study_phase_plot_follows_the_equiangular_solution(study):
    import matplotlib.pyplot as plt

    from mfpde.study import load_study

    fig = plot_file(study / "study.h5", "phase")
    try:
        ax = fig.axes[0]
        lines = {line.get_label(): line for line in ax.lines}
        betas = np.array([1.0, 3.0])
        t_star = equiangular_collapse_time(betas, N, delta=1e-3)
        np.testing.assert_allclose(lines["equiangular ODE (rho0 = 0)"].get_ydata(), t_star, rtol=1e-12)
        # all pairs reach 1 - delta together: the fraction jumps from 0 to 1 between the two
        # snapshots around t*, and the interpolated half-crossing lies within a snapshot of it
        half = lines["mean = 1/2"]
        np.testing.assert_array_equal(half.get_xdata(), betas)
        assert np.all(np.abs(half.get_ydata() - t_star) <= SAVE_EVERY)
    finally:
        plt.close(fig)
    result = load_study(study / "study.h5")
    runs = [mfpde.load(p) for p in result.run_paths]
    panels = phase_table(result.swept_values(), [r.times for r in runs],
                         [r.diagnostics["clustered_fraction"] for r in runs])
    assert set(np.unique(panels[0].mean)) <= {0.0, 1.0}  # all pairs cross 1 - delta at once
    assert all(r.systems == 3 and r.diagnostics["clustered_fraction"].shape == (len(r.times), 3) for r in runs)
    np.testing.assert_array_equal(panels[0].mean, np.stack([r.diagnostics["clustered_fraction"].mean(axis=1)
                                                            for r in runs]))
    fig = plot_file(study / "study.h5", "phase")
    try:
        mesh = next(c for c in fig.axes[0].collections if isinstance(c, QuadMesh))
        np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(panels[0].mean.T.shape), panels[0].mean.T)
    finally:
        plt.close(fig)


def test_study_phase_errors_and_cli(study, tmp_path, capsys):
    from mfpde.cli import main

    out = tmp_path / "phase.png"
    assert main(["plot", str(study / "study.h5"), "--kind", "phase", "-o", str(out)]) == 0
    assert out.stat().st_size > 5000
    assert main(["plot", str(study / "study.h5"), "--kind", "phase", "--diagnostic", "energy",
                 "-o", str(tmp_path / "energy.png")]) == 0
    assert main(["plot", str(study / "study.h5"), "--kind", "rate", "--diagnostic", "energy"]) == 2
    assert "--diagnostic goes with --kind phase" in capsys.readouterr().err
    with pytest.raises(ValueError, match="the run has no diagnostic 'n_clusters'"):
        plot_file(study / "study.h5", "phase", diagnostic="n_clusters")
    from mfpde.study import load_study

    run = load_study(study / "study.h5").run_paths[0]
    with pytest.raises(ValueError, match="the phase plot needs a study file"):
        plot_file(run, "phase")
    import shutil

    shutil.move(run, tmp_path / "moved.h5")
    try:
        with pytest.raises(ValueError, match="the study's run file is missing"):
            plot_file(study / "study.h5", "phase")
    finally:
        shutil.move(tmp_path / "moved.h5", run)
