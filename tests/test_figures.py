"""Every plot kind on every run kind it applies to (particles, PIC, finite volumes on S^1 and
S^2, a study), checked for content; animations (one frame per snapshot); the views a notebook
user gets: Result.to_xarray, StudyResult.to_dataframe, CF attributes in the files."""

import io
import subprocess
import sys

import h5py
import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

import mfpde
from mfpde.plotting import plot_file, save_plot
from mfpde.study import load_study, run_study

V3 = [[1.0, 0, 0], [0, 0.5, 0], [0, 0, 0.2]]
RUNS = {
    "particles2": ({"d": 2, "beta": 5.0}, {"n": 120}, {"t_end": 1.0, "dt": 0.1}),
    "particles3": ({"d": 3, "beta": 5.0, "V": V3}, {"n": 120}, {"t_end": 1.0, "dt": 0.1}),
    "pic2": ({"d": 2, "beta": 5.0}, {"n": 200}, {"method": "pic", "cells": 64, "t_end": 1.0, "dt": 0.1}),
    "pic3": ({"d": 3, "beta": 5.0, "V": V3}, {"n": 200}, {"method": "pic", "cells": 162, "t_end": 1.0, "dt": 0.1}),
    "fv2": ({"d": 2, "beta": 5.0}, {"kind": "perturbed_uniform", "amplitude": 0.05}, {"method": "fv", "cells": 64, "t_end": 1.0}),
    "fv3": ({"d": 3, "beta": 5.0, "V": V3}, {}, {"method": "fv", "cells": 162, "t_end": 1.0}),
}
KIND_OF = {name: name.rstrip("23") for name in RUNS}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("figures")
    for name, (model, initial, solver) in RUNS.items():
        diags = ["mass", "energy", "w_to_limit", "dist_to_subspace", "n_clusters"]
        if model["d"] == 2:
            diags.append("fourier_modes")
        mfpde.run({"model": model, "initial": initial, "solver": solver,
                   "output": {"path": str(tmp / f"{name}.h5"), "save_every": 0.25, "diagnostics": diags}})
    (tmp / "study.toml").write_text(
        '[model]\nd = 3\nbeta = 5.0\nV = [[1.0, 0, 0], [0, 0.5, 0], [0, 0, 0.2]]\n'
        '[initial]\nn = 50\n[solver]\nt_end = 0.5\ndt = 0.1\n'
        '[output]\nsave_every = 0.25\ndiagnostics = ["w_to_limit", "energy", "n_clusters"]\n'
        '[study]\nsweep = { "model.beta" = [3, 6], "initial.seed" = [0, 1] }\nfit = "model.beta"\n')
    run_study(tmp / "study.toml", output=tmp / "study.h5")
    return tmp


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def pixels(fig):
    """The rendered RGB image of a figure (saved as PNG and read back)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def assert_drawn(fig):
    img = pixels(fig)
    non_white = np.mean(np.any(img < 245, axis=2))
    colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert non_white > 0.05 and colours > 30, (non_white, colours)
    for ax in fig.axes:
        if ax.get_visible() and ax.get_label() != "<colorbar>":
            assert ax.get_title() or ax.get_xlabel() or ax.get_ylabel()


def limit_marked(fig):
    labels = [h.get_label() for ax in fig.axes for h in ax.collections + ax.lines]
    return any(r"\Pi_\#\rho_0" in str(label) for label in labels)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_density_of_every_run_kind(files, name):
    res = mfpde.load(files / f"{name}.h5")
    fig = plot_file(files / f"{name}.h5", "density")
    assert_drawn(fig)
    assert limit_marked(fig), "the atoms of the limit measure are not marked"
    if name.endswith("2"):
        (mesh,) = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)]
        rho = mesh.get_array().reshape(len(res.times), -1)
        assert np.ptp(rho[-1]) > 0  # a density that varies in angle
        lo, hi = fig.axes[0].get_ylim()
        assert lo == pytest.approx(0.0) and hi == pytest.approx(res.times[-1])  # no overshoot past t_end
    elif name == "fv3":
        polys = [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(polys) == 8  # 4 times x (front, back)
        assert sum(len(p.get_paths()) for p in polys[:2]) == res.mass.shape[1]  # both hemispheres: every cell
        last = np.concatenate([p.get_array() for p in polys[-2:]])
        first = np.concatenate([p.get_array() for p in polys[:2]])
        assert np.ptp(last) > np.ptp(first)  # mass concentrates: the colours spread
    else:
        front = [c for c in fig.axes[0].collections if c.get_label() == "front hemisphere"]
        assert front and len(front[0].get_offsets()) > 0


@pytest.mark.parametrize("name", sorted(RUNS))
def test_trajectories_where_there_are_particles(files, name):
    if name.startswith("fv"):
        with pytest.raises(ValueError, match="particle positions"):
            plot_file(files / f"{name}.h5", "trajectories")
        return
    fig = plot_file(files / f"{name}.h5", "trajectories")
    assert_drawn(fig)
    assert len(fig.axes[0].lines) >= 60


@pytest.mark.parametrize("name", sorted(RUNS))
def test_series_kinds_of_every_run_kind(files, name):
    res = mfpde.load(files / f"{name}.h5")
    fig = plot_file(files / f"{name}.h5", "distance")
    assert_drawn(fig)
    assert "W_{2}" in fig.axes[0].get_ylabel() and "geodesic" in fig.axes[0].get_ylabel()
    fig = plot_file(files / f"{name}.h5", "energy")
    assert r"\langle Qx, Ky \rangle" in fig.axes[0].get_ylabel() and "{beta" not in fig.axes[0].get_ylabel()
    assert_drawn(fig)
    fig = plot_file(files / f"{name}.h5", "diagnostics")
    assert_drawn(fig)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    n_fourier = sum(k.startswith("fourier_mode_") for k in res.diagnostics)
    assert len(panels) == len(res.diagnostics) - n_fourier + (1 if n_fourier else 0)
    if n_fourier:
        (fourier,) = [ax for ax in panels if ax.get_title() == "Fourier modes"]
        assert len(fourier.lines) == n_fourier
    for ax in panels:
        assert any(len(line.get_xdata()) == len(res.times) for line in ax.lines)


def test_diagnostics_kind_by_name_and_bad_name(files, tmp_path):
    fig = plot_file(files / "particles3.h5", "diagnostics", ["n_clusters"])
    assert [ax.get_ylabel() for ax in fig.axes if ax.get_visible()] == ["number of clusters"]
    done = subprocess.run([sys.executable, "-m", "mfpde", "plot", str(files / "fv3.h5"), "--kind", "diagnostics",
                           "--series", "no_such", "-o", str(tmp_path / "x.png")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no_such" in done.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("kind", ["distance", "energy", "diagnostics", "rate"])
def test_study_kinds_and_legends(files, kind):
    fig = plot_file(files / "study.h5", kind)
    assert_drawn(fig)
    if kind != "rate":
        labels = {line.get_label() for line in fig.axes[0].lines}
        assert {"β = 3, seed = 0", "β = 6, seed = 1"} <= labels, labels
        assert not any(".0" in label for label in labels)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_animation_has_one_frame_per_snapshot(files, name, tmp_path):
    from PIL import Image

    from mfpde.cli import main

    out = tmp_path / f"{name}.gif"
    assert main(["animate", str(files / f"{name}.h5"), "-o", str(out), "-q"]) == 0
    with Image.open(out) as gif:
        assert gif.n_frames == mfpde.load(files / f"{name}.h5").n_snapshots == 5
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB"))
    assert len(np.unique(last.reshape(-1, 3), axis=0)) > 10


def test_animate_bad_output_is_one_line_and_writes_nothing(files, tmp_path):
    from matplotlib import animation

    cases = [["-o", str(tmp_path / "x.avi")], ["-o", str(tmp_path / "no" / "x.gif")]]
    if not animation.writers.is_available("ffmpeg"):
        cases.append(["-o", str(tmp_path / "x.mp4")])
    for extra in cases:
        done = subprocess.run([sys.executable, "-m", "mfpde", "animate", str(files / "particles3.h5"), *extra],
                              capture_output=True, text=True)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    done = subprocess.run([sys.executable, "-m", "mfpde", "animate", str(files / "study.h5"), "-o",
                           str(tmp_path / "s.gif")], capture_output=True, text=True)
    assert done.returncode == 2 and "study file" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_to_xarray_particles_and_finite_volumes(files):
    ds = mfpde.load(files / "pic3.h5").to_xarray()
    assert ds["positions"].dims == ("time", "particle", "component")
    assert ds.sizes["particle"] == 200 and ds.sizes["component"] == 3 and ds.sizes["time"] == 5
    assert ds["w_to_limit"].attrs["units"] == "rad" and "W_2" in ds["w_to_limit"].attrs["long_name"]
    assert ds["areas"].attrs["units"] == "sr"
    fv = mfpde.load(files / "fv2.h5").to_xarray()
    assert fv["mass"].dims == ("time", "cell") and fv["centers"].dims == ("cell", "component")
    assert fv["areas"].attrs["units"] == "rad"
    np.testing.assert_allclose(fv["mass"].sum("cell"), fv["mass_total"], rtol=1e-12)
    for name, var in fv.data_vars.items():
        assert var.attrs.get("units") and var.attrs.get("long_name"), name


def test_files_carry_cf_attributes(files):
    with h5py.File(files / "fv3.h5", "r") as f:
        assert f["state/mass"].attrs["units"] == "1"
        assert f["grid/areas"].attrs["units"] == "sr"
        assert f["time"].attrs["units"] == "1"
        for name, ds in f["diagnostics"].items():
            if name != "time":
                assert ds.attrs["units"] in ("1", "rad") and ds.attrs["long_name"], name
        assert f["limit/weights"].attrs["long_name"].startswith("masses of the atoms")
    xr = pytest.importorskip("xarray")
    with xr.open_dataset(files / "fv3.h5", engine="h5netcdf", group="diagnostics") as ds:
        assert ds["dist_to_subspace"].attrs["units"] == "rad"


def test_study_to_dataframe(files):
    df = load_study(files / "study.h5").to_dataframe()
    assert list(df.columns[:3]) == ["run_id", "model.beta", "initial.seed"]
    assert df["model.beta"].tolist() == [3, 3, 6, 6] and df["initial.seed"].tolist() == [0, 1, 0, 1]
    assert df["model.beta"].dtype.kind == "i"
    assert (df["status"] == "complete").all() and np.isfinite(df["metric_min"]).all()
    assert df.attrs["fit"] == "model.beta" and "slope" in df.attrs
    assert df.groupby("model.beta")["metric_min"].mean().shape == (2,)
