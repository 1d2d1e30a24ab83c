"""Studies never report stale numbers: a stored run is reused only when its config equals
the requested one (issue #15, item 1), and study files are readable by `info` (item 6)."""

import math
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mfpde
from mfpde.cli import main
from mfpde.study import load_study, run_study

TINY = """
[model]
d = 3
beta = 10.0
V = [[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.2]]
[initial]
n = 24
[solver]
dt = 0.05
t_end = 0.5
[output]
path = "study.h5"
save_every = 0.25
diagnostics = ["w_to_limit", "energy"]
[study]
sweep = {{ "model.beta" = {betas} }}
fit = "model.beta"
metric = "w_to_limit"
"""

#: columns that say how a run was obtained, not what it computed
HOW = ("wall_time", "status", "note")


def write(tmp_path, betas="[2, 4]"):
    path = tmp_path / "study.toml"
    path.write_text(TINY.format(betas=betas))
    return path


def assert_same_numbers(a, b):
    """Two StudyResults hold the same summary (every column but how each run was obtained)
    and the same fitted rates, bit for bit."""
    assert sorted(a.summary) == sorted(b.summary)
    for column in a.summary:
        if column in HOW:
            continue
        x, y = a.summary[column], b.summary[column]
        if x.dtype == object:
            assert list(x) == list(y), column
        else:
            np.testing.assert_array_equal(x, y, err_msg=column)
    assert a.rates.keys() == b.rates.keys()
    for key, value in a.rates.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(b.rates[key]), key
        else:
            assert value == b.rates[key], key


# ------------------------------------------------------------------ the reproducers of #15 item 1

@pytest.mark.parametrize("first, second, changed", [
    (["--set", 'study.sweep={"model.beta" = [10, 30]}'], ["--set", 'study.sweep={"model.beta" = [300, 1000]}'],
     "model.beta"),
    ([], ["--set", "model.normalization=uniform"], "model.normalization"),
    ([], ["--set", "initial.n=40"], "initial.n"),
], ids=["other-betas", "normalization", "initial.n"])
def test_a_rerun_with_another_config_recomputes_and_says_so(tmp_path, capsys, first, second, changed):
    cfg = write(tmp_path)
    out = str(tmp_path / "study.h5")
    assert main(["study", str(cfg), "-o", out, "-q", *first]) == 0
    capsys.readouterr()
    assert main(["study", str(cfg), "-o", out, "-q", *second]) == 0
    err = capsys.readouterr().err
    again = load_study(out)
    assert list(again.summary["status"]) == ["complete", "complete"]  # not "skipped"
    assert err.count("recomputed") == 2 and changed in err and "failed" not in err
    assert all(changed in note for note in again.summary["note"])
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    assert main(["study", str(cfg), "-o", str(fresh_dir / "study.h5"), "-q", *second]) == 0
    assert_same_numbers(again, load_study(fresh_dir / "study.h5"))
    # the run files hold what the index says
    for path in again.run_paths:
        run = mfpde.load(path)
        n = 40 if changed == "initial.n" else 24
        assert run.positions.shape[1] == n and run.config["initial"]["n"] == n


def test_an_identical_rerun_reuses_every_run(tmp_path, capsys):
    cfg = write(tmp_path)
    out = str(tmp_path / "study.h5")
    first = run_study(cfg, output=out)
    with h5py.File(first.run_paths[0], "r") as f:
        created = f.attrs["created"]
    again = run_study(cfg, output=out)
    assert list(again.summary["status"]) == ["skipped", "skipped"]
    assert list(again.summary["note"]) == ["", ""]
    assert_same_numbers(first, again)
    with h5py.File(first.run_paths[0], "r") as f:
        assert f.attrs["created"] == created


def test_an_unreadable_run_file_is_recomputed(tmp_path):
    cfg = write(tmp_path)
    out = tmp_path / "study.h5"
    first = run_study(cfg, output=out)
    Path(first.run_paths[1]).write_bytes(b"not an HDF5 file")
    again = run_study(cfg, output=out)
    assert list(again.summary["status"]) == ["skipped", "complete"]
    assert "could not be read" in again.summary["note"][1]
    assert_same_numbers(first, again)


# ------------------------------------------------------------------ property: one key changed

#: alternatives for one key of the tiny study's config (TOML values, as for --set)
CHANGES = {
    "model.normalization": ['"uniform"'],
    "model.V": ["[[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, -0.2]]", "[[-1.0, 0.0, 0.0], [0.0, -2.0, 0.0], [0.0, 0.0, -2.0]]"],
    "model.Q": ["2.0"],
    "model.beta": ["5.0"],  # swept: the sweep wins, nothing changes
    "initial.n": ["16", "30"],
    "initial.seed": ["1", "7"],
    "initial.kind": ['"vmf_mixture"'],
    "solver.integrator": ['"euler"', '"heun"'],
    "solver.dt": ["0.025", "0.125"],
    "solver.t_end": ["0.25", "0.75"],
    "output.save_every": ["0.125", "0.5"],
    "output.diagnostics": ['["w_to_limit"]', '["w_to_limit", "energy", "mass"]'],
    "wasserstein.p": ["1"],
    "wasserstein.ground": ['"chordal"'],
    "study.t_min_rtol": ["0.1"],
    "study.sweep": ['{"model.beta" = [2, 3]}', '{"model.beta" = [4, 2]}', '{"model.beta" = [2, 4], "initial.seed" = [0, 3]}'],
}
VMF = ['initial.means=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]', "initial.kappas=[20.0, 5.0]", "initial.weights=[0.5, 0.5]"]

one_change = st.sampled_from(sorted(CHANGES)).flatmap(
    lambda key: st.sampled_from(CHANGES[key]).map(lambda value: f"{key}={value}"))


@pytest.fixture(scope="module")
def finished_study():
    """A finished tiny study (2 runs), copied afresh by each example."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = write(tmp)
        run_study(cfg, output=tmp / "study.h5")
        yield cfg


def check_change_then_rerun(finished_study, change):
    overrides = [change] + (VMF if change.startswith("initial.kind") else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(finished_study.parent, tmp / "old")
        rerun = run_study(finished_study, output=tmp / "old" / "study.h5", overrides=overrides)
        (tmp / "fresh").mkdir()
        fresh = run_study(finished_study, output=tmp / "fresh" / "study.h5", overrides=overrides)
        assert_same_numbers(rerun, fresh)
        assert not any(s == "failed" for s in fresh.summary["status"])
        # a run is read back only when its stored config is the requested one
        for status, path in zip(rerun.summary["status"], rerun.run_paths):
            stored = mfpde.load(path).config
            assert stored == mfpde.load_config(stored).to_dict()
            if status == "skipped":
                assert Path(path).parent.parent == tmp / "old"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=one_change)
def test_changing_one_key_of_a_finished_study_gives_a_fresh_studys_summary(finished_study, change):
    check_change_then_rerun(finished_study, change)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(change=one_change)
def test_changing_one_key_of_a_finished_study_gives_a_fresh_studys_summary_many(finished_study, change):
    check_change_then_rerun(finished_study, change)


# ------------------------------------------------------------------ info and load on a study file (#15 item 6)

def test_info_summarises_a_study_and_load_points_to_load_study(tmp_path, capsys):
    cfg = write(tmp_path)
    out = tmp_path / "study.h5"
    run_study(cfg, output=out)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mfpde study index" in text and "status: complete; 2 runs (2 complete)" in text
    assert "sweep: model.beta = [2, 4]" in text and "slope =" in text
    assert "metric_min" in text  # the summary table
    with pytest.raises(ValueError, match=r"study index.*mfpde\.study\.load_study") as err:
        mfpde.load(out)
    assert "\n" not in str(err.value)
    assert main(["info", str(Path(load_study(out).run_paths[0]))]) == 0  # a run file still works
    assert "status: complete" in capsys.readouterr().out
