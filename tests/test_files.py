"""Robustness of run files (#15, #16): provenance, --resume of the same config only (or a
longer t_end), one writer per file, write errors that keep every finished snapshot, large
matrices stored as datasets, and readers that verify a file before trusting it."""

import json
import os
import resource
import signal
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import mfpde
from mfpde._provenance import config_digest
from mfpde.cli import main
from mfpde.config import load_config
from mfpde.io import DamagedFileError, FileBusyError, FileError, RunWriter, info, load

CONFIG = """
[model]
d = 3
beta = 4.0
Q = {{ random = "gaussian", seed = 3 }}
V = [[1.0, 0.2, 0.0], [0.0, 0.5, 0.1], [0.0, 0.0, -0.3]]

[initial]
kind = "vmf_mixture"
n = {n}
seed = 5
means = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
kappas = [2.0, 5.0]

[solver]
integrator = "{integrator}"
dt = {dt}
t_end = {t_end}
kernel = "{kernel}"

[output]
path = "out.h5"
save_every = {save_every}
diagnostics = ["mass", "energy"]
"""


@pytest.fixture
def config_file(tmp_path):
    def make(n=60, t_end=1.0, integrator="rk4", dt=0.05, save_every=0.1, kernel="exact", name="run.toml"):
        path = tmp_path / name
        path.write_text(CONFIG.format(n=n, t_end=t_end, integrator=integrator, dt=dt, save_every=save_every,
                                      kernel=kernel))
        return path

    return make


def mfpde_cmd(*args, cwd, **kwargs):
    return subprocess.run([sys.executable, "-m", "mfpde", *args], cwd=cwd, capture_output=True, text=True,
                          **kwargs)


def cli(capsys, *argv):
    """``mfpde ARGV`` in this process: (exit status, stderr)."""
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_line(stderr):
    return stderr.count("\n") == 1 and "Traceback" not in stderr


def interrupted_run(config, path, after, overrides=()):
    """Run ``config`` into ``path`` and stop it (as Ctrl-C does) once t > ``after``."""

    def stop(t):
        if t > after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mfpde.run(config, output=path, overrides=list(overrides), on_step=stop)
    return load(path)


def assert_same_run(a, b):
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert sorted(a.diagnostics) == sorted(b.diagnostics)
    for name in a.diagnostics:
        np.testing.assert_array_equal(a.diagnostics[name], b.diagnostics[name])


# ----------------------------------------------------------------------------- provenance (#15)


def test_provenance_config_digest_and_what_was_used(config_file, tmp_path):
    cfg = load_config(config_file(kernel="truncated", t_end=0.2))
    res = mfpde.run(cfg, output=tmp_path / "p.h5")
    with h5py.File(tmp_path / "p.h5", "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
    assert attrs["config_sha256"] == config_digest(cfg.to_dict()) == config_digest(res.config)
    assert attrs["mfpde_version"] == mfpde.__version__
    assert (attrs["method"], attrs["integrator"], attrs["kernel"], attrs["precision"]) == (
        "particles", "rk4", "truncated", "float64")
    # 60 particles are too few for truncation to pay: the file says the exact kernel ran
    assert attrs["kernel_used"] == "exact (fallback: problem too small)"
    assert "kernel_used = exact (fallback: problem too small)" in info(tmp_path / "p.h5")


# ----------------------------------------------------------------------------- --resume (#15 item 2)


def test_resume_refuses_a_different_config_naming_the_keys(config_file, tmp_path, capsys):
    """Interrupted with --set initial.n=80 --set solver.t_end=2, resumed without them: refused,
    one line naming both keys, the file unchanged (it used to finish at the old t_end with n
    beside positions of the other shape)."""
    cfg = config_file(t_end=1.0)
    out = tmp_path / "out.h5"
    overrides = ["initial.n=80", "solver.t_end=2.0"]
    partial = interrupted_run(cfg, out, 0.25, overrides)
    assert partial.positions.shape[1] == 80 and partial.status == "interrupted"
    before = out.read_bytes()
    code, err = cli(capsys, "run", cfg, "-o", out, "--resume")
    assert code == 2 and one_line(err), err
    assert "initial.n" in err and "solver.t_end" in err and "different config" in err
    assert out.read_bytes() == before
    # with the same overrides it continues, bit for bit equal to the uninterrupted run
    code, err = cli(capsys, "run", cfg, "-o", out, "--resume", *[a for o in overrides for a in ("--set", o)])
    assert code == 0, err
    reference = mfpde.run(cfg, output=tmp_path / "ref.h5", overrides=overrides)
    resumed = load(out)
    assert resumed.status == "complete" and config_digest(resumed.config) == config_digest(reference.config)
    assert_same_run(resumed, reference)


@pytest.mark.parametrize("integrator", ["rk4", "euler"])
def test_resume_extends_t_end_bit_for_bit(config_file, tmp_path, capsys, integrator):
    """A complete run (t_end = 1) continued to t_end = 2 equals the run made to t = 2 at once;
    so does an interrupted one.  A smaller t_end is refused."""
    cfg = config_file(t_end=1.0, integrator=integrator)
    longer = load_config(cfg, ["solver.t_end=2.0"])
    reference = mfpde.run(longer, output=tmp_path / "ref.h5")
    out = tmp_path / "out.h5"
    mfpde.run(cfg, output=out)
    before = out.read_bytes()
    code, err = cli(capsys, "run", cfg, "-o", out, "--resume", "--set", "solver.t_end=0.5")
    assert code == 2 and one_line(err) and "solver.t_end" in err, err
    assert out.read_bytes() == before
    code, err = cli(capsys, "run", cfg, "-o", out, "--resume", "--set", "solver.t_end=2.0")
    assert code == 0, err
    extended = load(out)
    assert extended.status == "complete"
    assert_same_run(extended, reference)
    assert config_digest(extended.config) == config_digest(longer.to_dict())
    with h5py.File(out, "r") as f:
        assert f.attrs["config_sha256"] == config_digest(longer.to_dict())
    # an interrupted t_end = 1 run continued to 2
    out2 = tmp_path / "out2.h5"
    interrupted_run(cfg, out2, 0.35)
    code, err = cli(capsys, "run", cfg, "-o", out2, "--resume", "--set", "solver.t_end=2.0")
    assert code == 0, err
    assert_same_run(load(out2), reference)


def test_resume_refuses_a_t_end_off_the_snapshot_grid(config_file, tmp_path, capsys):
    """t_end = 1.05 stores a snapshot at 1.05, which a run to 2 never makes: refused, unchanged."""
    cfg = config_file(t_end=1.05)
    out = tmp_path / "out.h5"
    mfpde.run(cfg, output=out)
    before = out.read_bytes()
    code, err = cli(capsys, "run", cfg, "-o", out, "--resume", "--set", "solver.t_end=2.0")
    assert code == 2 and one_line(err) and "snapshot times" in err, err
    assert out.read_bytes() == before


# ----------------------------------------------------------------------------- one writer per file (#16)


def _wait_for(path, at_least, proc, timeout=120.0):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        assert proc.poll() is None, proc.communicate()
        try:
            if os.path.exists(path) and load(path).n_snapshots >= at_least:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError(path)


def test_second_writer_is_refused_and_the_live_file_keeps_its_data(config_file, tmp_path):
    """A second `mfpde run -o X.h5 --force` while a run writes X.h5: one line, exit 2, and the live
    run goes on to finish its file (it used to be truncated).  `plot` and `info` of the live file
    read what is flushed."""
    cfg = config_file(n=300, t_end=50.0, dt=0.01)
    out = tmp_path / "out.h5"
    proc = subprocess.Popen([sys.executable, "-m", "mfpde", "run", str(cfg), "-o", str(out)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out, 3, proc)
        second = mfpde_cmd("run", str(cfg), "-o", str(out), "--force", cwd=tmp_path)
        assert second.returncode == 2 and one_line(second.stderr), second.stderr
        assert "being written by another process" in second.stderr
        resume = mfpde_cmd("run", str(cfg), "-o", str(out), "--resume", cwd=tmp_path)
        assert resume.returncode == 2 and "being written" in resume.stderr, resume.stderr
        seen = load(out).n_snapshots
        assert seen >= 3
        for args in (("info", str(out)), ("plot", str(out), "-o", str(tmp_path / "live.png"))):
            live = mfpde_cmd(*args, cwd=tmp_path)
            assert live.returncode in (0, 2) and "Traceback" not in live.stderr, live.stderr
            assert live.returncode == 0 or one_line(live.stderr)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    done = load(out)  # the live run kept writing its own file to the end
    assert done.status == "interrupted" and done.n_snapshots >= seen
    np.testing.assert_allclose(done.times, 0.1 * np.arange(done.n_snapshots), rtol=1e-12)
    assert not os.path.exists(str(out) + ".lock")


def test_writer_lock_in_process_and_the_reusable_helper(tmp_path, config_file):
    from mfpde._filelock import exclusive, is_locked

    cfg = load_config(config_file())
    path = tmp_path / "x.h5"
    with RunWriter(path, model=cfg.model, config=cfg) as w:
        w.append_snapshot(0.0, positions=np.eye(3))
        assert is_locked(path)
        with pytest.raises(FileBusyError, match="being written"):
            RunWriter(path, model=cfg.model, config=cfg, force=True)
        with pytest.raises(FileBusyError):
            exclusive(path).acquire()
        assert load(path).n_snapshots == 1  # untouched by the refused writers
    assert not is_locked(path)
    with exclusive(path, "indexed"):
        with pytest.raises(FileBusyError, match="being indexed"):
            RunWriter(path, model=cfg.model, config=cfg, force=True)
    assert load(path).n_snapshots == 1


def test_a_failed_or_interrupted_start_leaves_the_old_file_and_no_new_one(config_file, tmp_path, monkeypatch):
    """A double Ctrl-C during the file's creation used to leave a file without /time that
    neither resumed nor reran; now nothing is created, and an existing file (--force) stays."""
    import mfpde.io.writer as io

    cfg = config_file(t_end=0.2)
    real = io._index_scale

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "_index_scale", interrupted)
    out = tmp_path / "fresh.h5"
    with pytest.raises(KeyboardInterrupt):
        mfpde.run(cfg, output=out)
    assert not out.exists() and os.listdir(tmp_path) == ["run.toml"]
    monkeypatch.setattr(io, "_index_scale", real)
    mfpde.run(cfg, output=out)
    before = out.read_bytes()
    monkeypatch.setattr(io, "_index_scale", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mfpde.run(cfg, output=out, force=True)
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["fresh.h5", "run.toml"]


def test_a_file_without_time_is_refused_by_resume_and_replaced_by_force(config_file, tmp_path, capsys):
    cfg = config_file(t_end=0.2)
    out = tmp_path / "out.h5"
    interrupted_run(cfg, out, 0.05)
    with h5py.File(out, "r+") as f:
        for name in ("state/time", "diagnostics/time", "time"):
            del f[name]
    code, err = cli(capsys, "run", cfg, "-o", out, "--resume")
    assert code == 2 and one_line(err) and "/time" in err, err
    code, err = cli(capsys, "run", cfg, "-o", out, "--force")
    assert code == 0, err
    assert load(out).status == "complete"


# ----------------------------------------------------------------------------- write errors (#16)


def _limited(limit):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_file_size_limit_keeps_every_snapshot_and_resume_continues(config_file, tmp_path):
    """EFBIG (RLIMIT_FSIZE, SIGXFSZ ignored): exit 1 with one line, the file opens with its
    finished snapshots (it used to be unopenable), --resume without the limit finishes it bit
    for bit."""
    cfg = config_file(n=2000, t_end=2.0, save_every=0.05, dt=0.05)
    reference = mfpde.run(cfg, output=tmp_path / "ref.h5")
    out = tmp_path / "out.h5"
    run = subprocess.run([sys.executable, "-m", "mfpde", "run", str(cfg), "-o", str(out)], cwd=tmp_path,
                         capture_output=True, text=True, preexec_fn=_limited(1_000_000))
    assert run.returncode == 1 and one_line(run.stderr), run.stderr
    assert "file-size limit" in run.stderr and "--resume" in run.stderr
    partial = load(out)
    T = partial.n_snapshots
    assert 1 <= T < len(reference.times) and partial.status == "interrupted"
    np.testing.assert_array_equal(partial.positions, reference.positions[:T])
    done = mfpde_cmd("run", str(cfg), "-o", str(out), "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_same_run(load(out), reference)


def test_a_write_error_inside_hdf5_is_one_line_and_exit_1(config_file, tmp_path):
    """With the room check switched off the limit is met inside an HDF5 write: still no
    segfault and no traceback, one line and exit 1 (the file may then not open: the check
    above is what keeps the snapshots)."""
    cfg = config_file(n=2000, t_end=2.0, save_every=0.05, dt=0.05)
    out = tmp_path / "out.h5"
    script = ("import sys, mfpde.io as io; io.RunWriter._check_room = lambda self, n: None; "
              "from mfpde.cli import main; sys.exit(main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", script, "run", str(cfg), "-o", str(out)], cwd=tmp_path,
                         capture_output=True, text=True, preexec_fn=_limited(1_000_000))
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and "mfpde: run failed" in run.stderr, run.stderr
    assert "File too large" in run.stderr


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_keeps_every_snapshot_and_resume_continues(config_file, tmp_path, small_tmpfs):
    """ENOSPC on a 4 MiB tmpfs that another process fills while the run writes (a run that
    cannot fit from the start is refused before anything is written): exit 1 with one line
    (it used to segfault), the snapshots stay, and once there is room again --resume
    finishes the run bit for bit."""
    cfg = config_file(n=1000, t_end=2.0, save_every=0.05, dt=0.01)
    reference = mfpde.run(cfg, output=tmp_path / "ref.h5")
    out = small_tmpfs / "out.h5"
    proc = subprocess.Popen([sys.executable, "-m", "mfpde", "run", str(cfg), "-o", str(out)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the file appears at its first snapshot
    filler = small_tmpfs / "filler"
    with open(filler, "wb") as fh:  # everything but 100 kB: a few more snapshots fit
        fh.write(b"\0" * max(0, shutil.disk_usage(small_tmpfs).free - 100_000))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and one_line(err), err
    assert "free disk space" in err
    partial = load(out)
    T = partial.n_snapshots
    assert 1 <= T < len(reference.times) and partial.status == "interrupted"
    np.testing.assert_array_equal(partial.positions, reference.positions[:T])
    filler.unlink()
    done = mfpde_cmd("run", str(cfg), "-o", str(out), "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_same_run(load(out), reference)


# ----------------------------------------------------------------------------- large matrices (#16)


def test_large_matrices_are_datasets_not_json_text(tmp_path):
    d = 40
    rng = np.random.default_rng(4)
    V = (np.eye(d) + 0.1 * np.diag(rng.standard_normal(d))).tolist()
    cfg = load_config({"model": {"d": d, "beta": 2.0, "V": V, "Q": {"random": "gaussian", "seed": 1}},
                       "initial": {"n": 20}, "solver": {"t_end": 0.1, "dt": 0.05},
                       "output": {"save_every": 0.05, "diagnostics": ["mass"]}})
    out = tmp_path / "big.h5"
    res = mfpde.run(cfg, output=out)
    with h5py.File(out, "r") as f:
        text = f.attrs["config"]
        stored = json.loads(text)
        assert stored["model"]["V"] == {"dataset": "/model/V"} and stored["model"]["Q"] == {"dataset": "/model/Q"}
        assert len(text) < 2000
        assert f.attrs["config_sha256"] == config_digest(cfg.to_dict())
    expected = load_config(cfg.to_dict() | {"output": dict(cfg.to_dict()["output"], path=str(out))}).to_dict()
    assert res.config == expected and load(out).config == expected
    assert "a 40 x 40 matrix" in info(out)


# ----------------------------------------------------------------------------- damaged files (#16)


def _positions_missing(f):
    del f["state/positions"]


def _positions_wrong_width(f):
    data = f["state/positions"][()]
    del f["state/positions"]
    f.create_dataset("state/positions", data=data[:, :, :2], maxshape=(None,) + data.shape[1:2] + (2,))


def _positions_fewer_rows(f):
    f["state/positions"].resize((1,) + f["state/positions"].shape[1:])


def _weights_missing(f):
    del f["state/weights"]


def _weights_wrong_length(f):
    w = f["state/weights"][()]
    del f["state/weights"]
    f["state/weights"] = w[:-1]


def _nan_time(f):
    f["time"][1] = np.nan


def _decreasing_time(f):
    f["time"][1] = -1.0


def _short_diagnostic(f):
    f["diagnostics/energy"].resize((1,))


def _stretched_time(f):  # times that claim the run is done: --resume must not stamp it complete
    T = f["time"].shape[0]
    f["time"][T - 1] = 0.2


DAMAGE = {
    "positions missing": _positions_missing,
    "positions of the wrong width": _positions_wrong_width,
    "positions with fewer rows than /time": _positions_fewer_rows,
    "weights missing": _weights_missing,
    "weights of the wrong length": _weights_wrong_length,
    "NaN time": _nan_time,
    "decreasing times": _decreasing_time,
    "short diagnostic": _short_diagnostic,
}


@pytest.fixture(scope="module")
def damaged_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    toml = root / "run.toml"
    toml.write_text(CONFIG.format(n=60, t_end=0.2, integrator="rk4", dt=0.05, save_every=0.05, kernel="exact"))
    out = root / "good.h5"
    interrupted_run(toml, out, 0.12)
    return toml, out


@pytest.mark.parametrize("damage", sorted(DAMAGE) + ["times stretched to t_end", "truncated", "random bytes",
                                                     "empty"])
def test_damaged_files_are_refused_with_one_line(damage, damaged_source, tmp_path, capsys):
    toml, good = damaged_source
    path = tmp_path / "bad.h5"
    path.write_bytes(good.read_bytes())
    if damage in DAMAGE:
        with h5py.File(path, "r+") as f:
            DAMAGE[damage](f)
    elif damage == "times stretched to t_end":
        with h5py.File(path, "r+") as f:
            _stretched_time(f)
    elif damage == "truncated":
        path.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    elif damage == "random bytes":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    else:
        path.write_bytes(b"")
    before = path.read_bytes()
    if damage != "times stretched to t_end":  # a stretched time is still a readable series
        with pytest.raises(FileError) as exc:
            load(path)
        assert "\n" not in str(exc.value)
        for argv in (("info", path), ("plot", path, "-o", tmp_path / "fig.png")):
            code, err = cli(capsys, *argv)
            assert code == 2 and one_line(err), (argv, err)
        assert not (tmp_path / "fig.png").exists()
    code, err = cli(capsys, "run", toml, "-o", path, "--resume")
    assert code == 2 and one_line(err), err
    assert path.read_bytes() == before  # never stamped complete, never touched


def test_info_of_a_short_diagnostic_is_one_line_not_an_index_error(damaged_source, tmp_path):
    _, good = damaged_source
    path = tmp_path / "short.h5"
    path.write_bytes(good.read_bytes())
    with h5py.File(path, "r+") as f:
        f["diagnostics/energy"].resize((0,))
    with pytest.raises(DamagedFileError, match="/diagnostics/energy has 0 entries"):
        info(path)


def test_a_start_that_fails_reading_its_initial_file_creates_no_output(config_file, tmp_path, capsys):
    """#15 item 4: `initial.path` naming a non-mfpde .h5 used to leave the output behind
    (0 snapshots, "interrupted"), which the next run then refused to overwrite."""
    cfg = config_file(t_end=0.2)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    out = tmp_path / "out.h5"
    code, err = cli(capsys, "run", cfg, "-o", out, "--set", "initial.kind=file", "--set", f"initial.path={other}")
    assert code == 2 and one_line(err), err
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["other.h5", "run.toml"]
