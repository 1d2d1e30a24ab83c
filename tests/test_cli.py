"""The mfpde command end to end: exit codes, one-line errors, interruption and --resume."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mfpde
from mfpde.diagnostics import evaluate, make_context
from mfpde.initial import initial_measure
from mfpde.runner import snapshot_times
from mfpde.solvers import ParticleSolver

RUN_CONFIG = """
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
dt = 0.01
t_end = {t_end}

[output]
path = "out.h5"
save_every = 0.1
diagnostics = ["mass", "energy", "dist_to_subspace"]
"""


def mfpde_cmd(*args, cwd, **kwargs):
    return subprocess.run([sys.executable, "-m", "mfpde", *args], cwd=cwd, capture_output=True, text=True, **kwargs)


@pytest.fixture
def config_file(tmp_path):
    def make(n=200, t_end=1.0, integrator="rk4"):
        path = tmp_path / "run.toml"
        path.write_text(RUN_CONFIG.format(n=n, t_end=t_end, integrator=integrator))
        return path

    return make


def test_version_and_python_dash_m(tmp_path):
    out = mfpde_cmd("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"mfpde {mfpde.__version__}"


def test_run_writes_what_the_solver_computes_bit_for_bit(config_file, tmp_path):
    """Round trip through the CLI: the file holds exactly the solver's snapshots, the
    diagnostics of each, the weights and the resolved config."""
    cfg = mfpde.load_config(config_file())
    out = mfpde_cmd("run", str(config_file()), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no progress bar in a pipe
    res = mfpde.load(tmp_path / "out.h5")
    assert res.status == "complete"
    x0, w = initial_measure(cfg.initial, 3)
    times = snapshot_times(cfg.solver.t_end, cfg.output.save_every)
    context = make_context(cfg.model, x0, w, cfg.wasserstein)
    expected = list(ParticleSolver(cfg.model, cfg.solver).snapshots(x0, w, times))
    np.testing.assert_array_equal(res.times, times)
    np.testing.assert_array_equal(res.weights, w)
    np.testing.assert_array_equal(res.positions, np.stack([x for _, x in expected]))
    for t_index, (_, x) in enumerate(expected):
        for name, value in evaluate(cfg.output.diagnostics, x, w, context).items():
            assert res.diagnostics[name][t_index] == value
    assert res.config == cfg.to_dict()
    # particles carry their masses: total mass 1 to round-off at every snapshot
    np.testing.assert_allclose(res.diagnostics["mass"], 1.0, rtol=0, atol=4 * np.finfo(float).eps)
    np.testing.assert_array_equal(res.limit[0], context.limit_points)


def test_bad_config_is_one_line_exit_2_and_no_file(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[model]\nd = 3\nbeta = -1.0\n")
    out = mfpde_cmd("run", str(cfg), "-o", "x.h5", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "model.beta" in out.stderr and str(cfg) in out.stderr
    assert not (tmp_path / "x.h5").exists()


def test_bad_override_and_unrunnable_method_exit_2(config_file, tmp_path):
    out = mfpde_cmd("run", str(config_file()), "--set", "solver.dt=-1", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("mfpde: error: <command line>: solver.dt")
    out = mfpde_cmd("run", str(config_file()), "--set", "solver.method=pic", "--set", "solver.cells=5", cwd=tmp_path)
    assert out.returncode == 2 and "solver.cells" in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "out.h5").exists()


def test_complete_file_is_not_overwritten_without_force(config_file, tmp_path):
    cfg = config_file(n=50, t_end=0.2)
    assert mfpde_cmd("run", str(cfg), cwd=tmp_path).returncode == 0
    before = (tmp_path / "out.h5").read_bytes()
    out = mfpde_cmd("run", str(cfg), cwd=tmp_path)
    assert out.returncode == 2 and "--force" in out.stderr and out.stderr.count("\n") == 1
    assert (tmp_path / "out.h5").read_bytes() == before
    assert mfpde_cmd("run", str(cfg), "--force", cwd=tmp_path).returncode == 0


def test_info_summarises_the_file(config_file, tmp_path):
    assert mfpde_cmd("run", str(config_file(n=50, t_end=0.3)), cwd=tmp_path).returncode == 0
    out = mfpde_cmd("info", "out.h5", cwd=tmp_path)
    assert out.returncode == 0
    for word in ("status: complete", "beta = 4", "snapshots: 4", "energy", "integrator = rk4"):
        assert word in out.stdout
    out = mfpde_cmd("info", "missing.h5", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1


def wait_for_snapshots(path, at_least, timeout=60.0, poll=0.05):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if os.path.exists(path) and mfpde.load(path).n_snapshots >= at_least:
                return
        except (OSError, ValueError):  # not created yet, or caught mid-write (load retries, then says so)
            pass
        time.sleep(poll)
    raise TimeoutError(f"{path} did not reach {at_least} snapshots")


@pytest.mark.parametrize("sig, status, code", [(signal.SIGINT, "interrupted", 130),
                                               (signal.SIGTERM, "interrupted", 143),
                                               (signal.SIGKILL, None, -9)])
def test_killed_run_keeps_its_snapshots_and_resume_completes_it(config_file, tmp_path, sig, status, code):
    """Kill at a random moment; the file opens, its snapshots equal the uninterrupted run's
    and --resume finishes with the same final state bit for bit."""
    cfg = config_file(n=400, t_end=6.0)
    reference = mfpde.run(cfg, output=tmp_path / "reference.h5")
    rng = np.random.default_rng(int(sig))
    out = tmp_path / "out.h5"
    proc = subprocess.Popen([sys.executable, "-m", "mfpde", "run", str(cfg)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # a random moment: after a random number of snapshots (of 61), at a random phase
        wait_for_snapshots(out, int(rng.integers(2, 30)), poll=0.005)
        time.sleep(rng.uniform(0.0, 0.02))
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    partial = mfpde.load(out)
    T = partial.n_snapshots
    assert 2 <= T < len(reference.times), "the kill came after the run had finished"
    if status is not None:
        assert partial.status == status
        assert "--resume" in stderr
    np.testing.assert_array_equal(partial.times, reference.times[:T])
    np.testing.assert_array_equal(partial.positions, reference.positions[:T])
    for name, series in reference.diagnostics.items():
        np.testing.assert_array_equal(partial.diagnostics[name], series[:T])
    done = mfpde_cmd("run", str(cfg), "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    resumed = mfpde.load(out)
    assert resumed.status == "complete"
    np.testing.assert_array_equal(resumed.times, reference.times)
    np.testing.assert_array_equal(resumed.positions, reference.positions)
    for name, series in reference.diagnostics.items():
        np.testing.assert_array_equal(resumed.diagnostics[name], series)


def test_progress_bar_on_a_terminal(config_file, tmp_path):
    """stderr on a pseudo-terminal gets tqdm's bar over model time; a pipe gets nothing
    (checked in the round-trip test above)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mfpde", "run", str(config_file(n=50, t_end=0.5))],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "t = 0.5/0.5" in text and "100%" in text
