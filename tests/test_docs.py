"""Documentation that runs: every ```python block and every shell command of README.md and
docs/*.md executes."""

import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path):
    text = path.read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


CASES = [(p, i, code) for p in DOCS for i, code in enumerate(python_blocks(p))]


def test_the_readme_has_python_examples():
    assert python_blocks(ROOT / "README.md")


@pytest.mark.parametrize("path, index, code", CASES, ids=[f"{p.name}-{i}" for p, i, _ in CASES])
def test_doc_example_runs(path, index, code, tmp_path, monkeypatch):
    """Blocks of one file run in order in one namespace (later blocks use earlier names),
    in a scratch directory that sees the repository's data/."""
    monkeypatch.chdir(tmp_path)
    os.symlink(ROOT / "data", tmp_path / "data")
    namespace = {"__name__": "__doc_example__"}
    for earlier in python_blocks(path)[:index]:
        exec(compile(earlier, f"{path.name}[earlier]", "exec"), namespace)
    exec(compile(code, f"{path.name}[{index}]", "exec"), namespace)


# --------------------------------------------------------------------- shell commands

PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9_]{2,}\b|\[|\.\.\.")  # synopsis lines: CONFIG, [-o OUT.h5], ...
NOT_RUN_HERE = ("python -m pytest", "pip install", "python benchmarks/",  # the suite itself, CI's install, timings
                "python -m sphinx")  # the docs build: tests/test_docs_site.py builds it


def shell_commands(path):
    """Every command a page shows: lines of ```sh blocks and indented `mfpde` / `python` lines,
    less synopsis lines (placeholders) and comments."""
    text = path.read_text()
    lines = [ln for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S) for ln in block.splitlines()]
    lines += re.findall(r"^    ((?:mfpde|python) .*)$", text, flags=re.M)
    out = []
    for ln in lines:
        ln = ln.split("  #")[0].strip()
        if ln and not ln.startswith("#") and not PLACEHOLDER.search(ln) and not ln.startswith(NOT_RUN_HERE):
            out.append(shlex.split(ln))
    return out


def small(cmd):
    """Size overrides that keep a documented run/study to seconds: fewer tokens, cells or
    systems and t_end <= 2.  Everything else in the command (config, -o, --set) runs as written."""
    from mfpde.config import load_config

    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    if any(s.startswith("initial.path=") for s in sets):
        sets = [s for s in sets if not s.startswith(("initial.path=", "initial.kind="))]
    path = Path(cmd[2])  # a config an earlier command wrote here (mfpde example), else the repository's
    cfg = load_config(path if path.exists() else ROOT / path, sets)
    size = ("solver.cells=64" if cfg.model.d == 2 else "solver.cells=162") if cfg.solver.method == "fv" else "initial.n=150"
    if cfg.initial.systems > 1:  # an ensemble: four of its systems, each as written
        size = "initial.systems=4"
    t_end = min(cfg.solver.t_end, 2.0)
    every = min(cfg.output.save_every or t_end, t_end / 2)
    return ["--set", size, "--set", f"solver.t_end={t_end!r}", "--set", f"output.save_every={every!r}"]


COMMAND_PAGES = [p for p in DOCS if shell_commands(p)]


@pytest.mark.parametrize("path", COMMAND_PAGES, ids=[p.name for p in COMMAND_PAGES])
def test_doc_commands_run(path, tmp_path, monkeypatch, capsys):
    """A page's commands run in order through the real CLI in a scratch directory (later
    commands read the files earlier ones wrote); `mfpde run` / `mfpde study` get only size
    overrides appended (particles: 150 tokens; finite volumes: 64 or 162 cells; t_end <= 2).
    `python docs/make_gallery.py` is run (at --quick size) by the slow test below."""
    from mfpde.cli import main

    monkeypatch.chdir(tmp_path)
    os.symlink(ROOT / "data", tmp_path / "data")
    ran = 0
    for cmd in shell_commands(path):
        if cmd[:2] == ["python", "docs/make_gallery.py"]:
            continue
        assert cmd[0] == "mfpde", f"{path.name}: unexpected command {shlex.join(cmd)}"
        argv = cmd[1:] + (small(cmd) if cmd[1] in ("run", "study") else [])
        if cmd[1] in ("run", "study") and "-q" not in argv:
            argv.append("-q")
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse's --version / --help
            code = stop.code
        assert code in (0, None), f"{path.name}: {shlex.join(cmd)} exited {code}"
        ran += 1
    assert ran or path.name == "gallery.md"
    capsys.readouterr()


@pytest.mark.slow
def test_gallery_script_runs_at_quick_size(tmp_path):
    """`python docs/make_gallery.py` end to end (--quick: every experiment at a small size),
    into a scratch directory so the committed figures stay as they are."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "make_gallery.py"), "--quick", "--force",
                           "--workdir", str(tmp_path / "runs"), "--images", str(tmp_path / "images")],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "images").glob("*.png"))) == len(list((ROOT / "docs/images/gallery").glob("*.png")))


def test_users_read_only_what_ships():
    """The package, the docs and the benchmarks cite the user-facing pages (docs/theory.md,
    docs/config.md, ...), never the project's internal notes."""
    internal = re.compile(r"THEORY\.md|DESIGN\.md|STYLE\.md|STYLE habit|\.\./shared")
    offenders = []
    for folder in ("mfpde", "docs", "benchmarks"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".toml", ".txt", ".json") and "_build" not in path.parts:
                for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if internal.search(line):
                        offenders.append(f"{path.relative_to(ROOT)}:{k}")
    for name in ("README.md", "CHANGELOG.md"):
        if internal.search((ROOT / name).read_text(encoding="utf-8")):
            offenders.append(name)
    assert offenders == []
