"""The package stands alone: shipped example configs (``mfpde example``), LICENSE, py.typed,
and (slow) a non-editable install run from an empty directory outside the repository."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mfpde._examples import example_names, example_text
from mfpde.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_configs_are_the_repository_configs():
    """data/configs/ (the docs' paths) is a link to mfpde/configs/ (package data): one copy,
    so the two can never drift; every shipped config is an example."""
    link = ROOT / "data" / "configs"
    assert link.is_symlink() and link.resolve() == (ROOT / "mfpde" / "configs").resolve()
    names = sorted(p.name[:-5] for p in (ROOT / "mfpde" / "configs").glob("*.toml"))
    assert names and sorted(example_names()) == names


def test_license_typed_marker_and_changelog():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "mfpde" / "py.typed").exists()
    setup = (ROOT / "setup.cfg").read_text()
    assert "license = MIT" in setup and "py.typed" in setup and "configs/*.toml" in setup
    assert "## " in (ROOT / "CHANGELOG.md").read_text()


def test_example_lists_writes_and_refuses(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["example"]) == 0
    listing = capsys.readouterr().out
    assert "quickstart" in listing and len(listing.splitlines()) == len(example_names())
    assert main(["example", "quickstart", "-o", "q.toml"]) == 0
    assert (tmp_path / "q.toml").read_text() == example_text("quickstart")
    assert main(["example", "fv_sphere"]) == 0 and (tmp_path / "fv_sphere.toml").exists()
    capsys.readouterr()
    assert main(["example", "quickstart", "-o", "-"]) == 0
    assert capsys.readouterr().out == example_text("quickstart")
    # bad input: one line, exit 2, nothing created or changed
    before = sorted(os.listdir(tmp_path))
    assert main(["example", "quickstart", "-o", "q.toml"]) == 2            # exists
    assert main(["example", "no_such_example", "-o", "x.toml"]) == 2
    assert main(["example", "quickstart", "-o", "missing_dir/x.toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and "quickstart" in err.splitlines()[1]
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.slow
def test_wheel_runs_the_quickstart_outside_the_repository(tmp_path):
    """`pip install .` (not editable; --no-deps into a venv that sees this one's packages),
    then from an empty directory: example -> run -> animate (one GIF frame per snapshot)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    build = tmp_path / "src"
    # the tracked (and not ignored) files only, as a clone has them: no build or run artefacts
    build.mkdir()
    subprocess.run(f"git ls-files -z --cached --others --exclude-standard | xargs -0 cp -P --parents -t {build}",
                   shell=True, check=True, cwd=ROOT, executable="/bin/bash")
    proc = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(build)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    mfpde = str(venv / "bin" / "mfpde")
    where = subprocess.run([str(py), "-c", "import mfpde; print(mfpde.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert str(venv) in where, where  # the installed copy, not the repository
    steps = [[mfpde, "example", "quickstart", "-o", "q.toml"],
             [mfpde, "run", "q.toml", "--set", "initial.n=200"],
             [mfpde, "animate", "quickstart.h5", "-o", "q.gif"]]
    for cmd in steps:
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, (cmd, done.stderr[-2000:])
    from PIL import Image

    import mfpde as pkg

    n = pkg.load(work / "quickstart.h5").n_snapshots
    with Image.open(work / "q.gif") as gif:
        assert gif.n_frames == n == 21
