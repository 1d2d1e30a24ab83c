"""Every plot kind is drawn, with content, for runs on S^1 and S^2 and for a study."""

import subprocess
import sys

import numpy as np
import pytest

import mfpde
from mfpde.plotting import KINDS, plot_file, save_plot
from mfpde.study import run_study


def small_run(tmp_path, d, name):
    V = np.diag([1.0, 0.5, 0.2][:d]).tolist()
    return mfpde.run({"model": {"d": d, "beta": 5.0, "V": V}, "initial": {"n": 80},
                      "solver": {"t_end": 1.0, "dt": 0.1},
                      "output": {"path": str(tmp_path / name), "save_every": 0.25,
                                 "diagnostics": ["w_to_limit", "energy"]}})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plots")
    small_run(tmp, 2, "circle.h5")
    small_run(tmp, 3, "sphere.h5")
    (tmp / "study.toml").write_text(
        '[model]\nd = 3\nbeta = 5.0\nV = [[1.0, 0, 0], [0, 0.5, 0], [0, 0, 0.2]]\n'
        '[initial]\nn = 50\n[solver]\nt_end = 1.0\ndt = 0.1\n'
        '[output]\nsave_every = 0.25\ndiagnostics = ["w_to_limit", "energy"]\n'
        '[study]\nsweep = { "model.beta" = [3, 6, 12] }\nfit = "model.beta"\n'
    )
    run_study(tmp / "study.toml", output=tmp / "study.h5")
    return tmp


def drawn_elements(fig):
    return sum(len(ax.lines) + len(ax.collections) + len(ax.images) for ax in fig.axes)


@pytest.mark.parametrize("name", ["circle.h5", "sphere.h5"])
@pytest.mark.parametrize("kind", ["density", "trajectories", "distance", "energy"])
def test_run_plots_have_content(files, name, kind, tmp_path):
    fig = plot_file(files / name, kind)
    assert drawn_elements(fig) > 0
    assert all(ax.get_xlabel() or ax.get_ylabel() or ax.get_title() for ax in fig.axes)  # every panel says what it is
    out = save_plot(fig, tmp_path / f"{kind}.png")
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("kind", ["rate", "distance", "energy"])
def test_study_plots_have_content(files, kind):
    fig = plot_file(files / "study.h5", kind)
    assert drawn_elements(fig) >= (3 if kind == "rate" else 3)
    if kind == "rate":
        labels = [line.get_label() for line in fig.axes[0].lines]
        assert any(label.startswith("fit: slope") for label in labels)
        assert any("log β / β" in label for label in labels)


def test_cli_plot_png_and_pdf_and_bad_kind(files, tmp_path):
    assert set(KINDS) == {"density", "trajectories", "distance", "energy", "diagnostics", "rate", "phase"}
    for out in ("fig.png", "fig.pdf"):
        done = subprocess.run([sys.executable, "-m", "mfpde", "plot", str(files / "study.h5"), "-o", out],
                              cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / out).stat().st_size > 5000
    with open(tmp_path / "fig.pdf", "rb") as f:
        assert f.read(5) == b"%PDF-"
    bad = subprocess.run([sys.executable, "-m", "mfpde", "plot", str(files / "sphere.h5"), "--kind", "rate"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "study file" in bad.stderr and bad.stderr.count("\n") == 1
