"""Studies under faults (issue #16, "Studies and Dask"): a second study into the same index,
an unreachable scheduler, the privacy of --workers, signals at any moment."""

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mfpde.cli import main
from mfpde.study import load_study, run_study

STUDY = """
[model]
d = 3
beta = 10.0
V = [[1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.2]]
[initial]
n = {n}
[solver]
dt = 0.05
t_end = {t_end}
[output]
path = "study.h5"
save_every = 0.25
diagnostics = ["w_to_limit"]
[study]
sweep = {{ "model.beta" = {betas} }}
fit = "model.beta"
metric = "w_to_limit"
"""


def write(tmp_path, n=24, t_end=0.5, betas="[2, 4]", name="study.toml"):
    path = tmp_path / name
    path.write_text(STUDY.format(n=n, t_end=t_end, betas=betas))
    return path


def mfpde_cmd(*args):
    return [sys.executable, "-m", "mfpde", *args]


def one_line(text):
    return text.count("\n") == 1 and "Traceback" not in text


# ------------------------------------------------------------------ one index, one study at a time

def test_a_second_study_into_the_same_index_is_refused(tmp_path, capsys):
    long_cfg = write(tmp_path, n=800, t_end=60.0, betas="[2, 3]", name="long.toml")  # minutes
    other_cfg = write(tmp_path, betas="[7, 9]", name="other.toml")
    index = tmp_path / "study.h5"
    first = subprocess.Popen(mfpde_cmd("study", str(long_cfg), "-o", str(index), "-q"), cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        start = time.monotonic()
        while not index.exists() and time.monotonic() - start < 60:
            time.sleep(0.05)
        assert index.exists() and first.poll() is None
        assert main(["study", str(other_cfg), "-o", str(index), "-q"]) == 2
        err = capsys.readouterr().err
        assert one_line(err) and "another study is writing this index" in err, err
        assert first.poll() is None
        first.send_signal(signal.SIGTERM)  # the first study stops as it would on its own
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 143 and one_line(err), err
    study = load_study(index)  # the first study's index, untouched by the second
    assert list(study.summary["model.beta"]) == [2, 3] and study.status == "interrupted"
    assert not (tmp_path / "study.runs" / "run_0000.h5").exists() or \
        __import__("mfpde").load(tmp_path / "study.runs" / "run_0000.h5").config["solver"]["t_end"] == 60.0
    assert not Path(str(index) + ".lock").exists()  # released (and removed) at the end
    # the lock is the study's only: now the other study may use the index
    assert main(["study", str(other_cfg), "-o", str(index), "-q"]) == 0
    assert list(load_study(index).summary["model.beta"]) == [7, 9]


# ------------------------------------------------------------------ an unreachable scheduler

def unused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address, says", [("tcp://127.0.0.1:{port}", "cannot reach a Dask scheduler there"),
                                           ("inproc://nothing", "not a Dask scheduler address"),
                                           ("127.0.0.1", "not a Dask scheduler address")])
def test_an_unreachable_scheduler_is_one_line_within_15_s_and_leaves_no_file(tmp_path, address, says):
    cfg = write(tmp_path)
    address = address.format(port=unused_port())
    start = time.monotonic()
    out = subprocess.run(mfpde_cmd("study", str(cfg), "-o", "s.h5", "--scheduler", address), cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert out.returncode == 2, out.stderr
    assert one_line(out.stderr) and out.stderr.startswith(f"mfpde: error: --scheduler {address}: {says}"), out.stderr
    assert elapsed < 15, elapsed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.toml"]


# ------------------------------------------------------------------ --workers is private

def listening_sockets(process):
    """The sockets on which ``process`` or one of its children listens (TCP, UDP, Unix)."""
    import psutil

    found = []
    for proc in [process] + process.children(recursive=True):
        try:
            conns = proc.net_connections(kind="all")
        except psutil.NoSuchProcess:
            continue
        found += [(proc.pid, c.laddr) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def test_workers_run_in_a_private_pool_without_any_port(tmp_path):
    import psutil

    cfg = write(tmp_path, betas="[2, 3, 4]")
    me = psutil.Process()
    before = listening_sockets(me)
    seen, workers = [], set()

    def on_run_done(row):
        seen.extend(s for s in listening_sockets(me) if s not in before)
        workers.update(p.pid for p in me.children(recursive=True))

    study = run_study(cfg, output=tmp_path / "study.h5", workers=2, on_run_done=on_run_done)
    assert list(study.summary["status"]) == ["complete"] * 3
    assert workers, "the runs did not run in worker processes"
    # nothing a foreign client could connect to: no scheduler, no worker port, no HTTP (8787)
    assert seen == []


# ------------------------------------------------------------------ signals end a study with one line

def stop_after(cmd, cwd, delay, signals, gap=0.005):
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    for k, sig in enumerate(signals):
        if k:
            time.sleep(gap)
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


CASES = [  # (command, delay in s, signals): Ctrl-C during the imports; two SIGTERMs 5 ms apart
    ("study", 0.3, [signal.SIGINT]),
    ("run", 0.3, [signal.SIGINT]),
    ("study", 0.3, [signal.SIGTERM, signal.SIGTERM]),
    ("study", 2.5, [signal.SIGTERM, signal.SIGTERM]),  # while running
    ("run", 2.5, [signal.SIGTERM, signal.SIGTERM]),
]


@pytest.mark.parametrize("command, delay, signals", CASES,
                         ids=[f"{c}-{d}-{'+'.join(signal.Signals(s).name for s in sig)}" for c, d, sig in CASES])
def test_signals_end_a_study_or_a_run_with_one_line(tmp_path, command, delay, signals):
    # while running: 3000 tokens to t = 20 take far longer than 2.5 s (300 could finish first)
    cfg = write(tmp_path, n=300 if delay < 1 else 3000, t_end=20.0, betas="[2, 3]")
    args = ["study", str(cfg), "-q"] if command == "study" else ["run", str(cfg), "-o", "run.h5", "-q"]
    code, err = stop_after(mfpde_cmd(*args), tmp_path, delay, signals)
    assert code == 128 + int(signals[0]), (code, err)
    assert one_line(err), err
    assert err.startswith("mfpde: ")


def test_one_signal_stops_a_study_with_workers_promptly(tmp_path):
    # the runs take about a minute each; one SIGTERM ends the study within seconds, its
    # workers stopped, its index saying "interrupted"
    cfg = write(tmp_path, n=800, t_end=60.0, betas="[2, 3]")
    start = time.monotonic()
    code, err = stop_after(mfpde_cmd("study", str(cfg), "-q", "--workers", "2"), tmp_path, 4.0, [signal.SIGTERM])
    assert code == 143 and one_line(err) and "study interrupted" in err, (code, err)
    assert time.monotonic() - start < 20
    assert load_study(tmp_path / "study.h5").status == "interrupted"
    assert not (tmp_path / "study.h5.lock").exists()


@pytest.mark.slow
def test_doubled_signals_at_random_moments_always_give_one_line(tmp_path):
    rnd = random.Random(16)
    cfg = write(tmp_path, n=3000, t_end=20.0, betas="[2, 3]")  # still running at 4 s on a quiet machine
    for k in range(20):
        command = rnd.choice(["study", "run"])
        sig = rnd.choice([signal.SIGINT, signal.SIGTERM])
        args = ["study", str(cfg), "-q", "-o", f"s{k}.h5"] if command == "study" else ["run", str(cfg), "-o", f"r{k}.h5", "-q"]
        code, err = stop_after(mfpde_cmd(*args), tmp_path, rnd.uniform(0.1, 4.0), [sig, sig], gap=rnd.uniform(0, 0.01))
        assert code == 128 + int(sig) and one_line(err), (k, command, code, err)


@pytest.mark.slow
def test_a_stopped_study_finishes_when_run_again(tmp_path):
    cfg = write(tmp_path, n=6000, t_end=6.0, betas="[2, 3]")  # two runs of ~10 s each: stopped at 3 s
    code, err = stop_after(mfpde_cmd("study", str(cfg), "-q"), tmp_path, 3.0, [signal.SIGTERM])
    assert code == 143 and one_line(err) and "study interrupted" in err, err
    assert not (tmp_path / "study.h5.lock").exists()
    again = subprocess.run(mfpde_cmd("study", str(cfg), "-q"), cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert set(load_study(tmp_path / "study.h5").summary["status"]) <= {"complete", "skipped"}
