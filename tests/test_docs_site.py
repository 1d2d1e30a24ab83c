"""The documentation site: `python -m sphinx -W --keep-going -b html docs docs/_build/html`
builds with zero warnings, and its API reference documents every public name (each
module's ``__all__``)."""

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import mfpde

ROOT = Path(__file__).resolve().parents[1]


def public_names():
    """(module, name) for every name of every public module's ``__all__`` (``mfpde`` included)."""
    modules = ["mfpde"] + [f"mfpde.{m.name}" for m in pkgutil.iter_modules(mfpde.__path__)
                           if not m.name.startswith("_") and m.name not in ("cli",)]
    out = []
    for name in modules:
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), f"{name} has no __all__"
        out += [(name, n) for n in module.__all__]
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html",
                           str(ROOT / "docs"), str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr[-3000:]
    return out


def inventory(out):
    """Every object name in the site's objects.inv (kind -> {name: entry})."""
    from sphinx.util.inventory import InventoryFile

    with open(out / "objects.inv", "rb") as f:
        inv = InventoryFile.load(f, "", lambda base, uri: uri)
    return {name for entries in dict(inv).values() for name in entries}


def test_every_public_name_is_in_the_reference(built):
    names = inventory(built)
    missing = []
    for module, name in public_names():
        obj = getattr(importlib.import_module(module), name)
        home = getattr(obj, "__module__", None) if callable(obj) else None
        if f"{module}.{name}" not in names and (home is None or f"{home}.{name}" not in names):
            missing.append(f"{module}.{name}")
    assert not missing, f"not in the API reference: {missing}"
    assert len(public_names()) > 100
    for method in ("mfpde.io.Result.to_xarray", "mfpde.study.StudyResult.to_dataframe", "mfpde.config.Config.replace"):
        assert method in names, method


def test_pages_render_maths_and_have_search(built):
    theory = (built / "theory.html").read_text()
    assert "mathjax" in theory.lower() and r"\Pi_\#\rho_0" in theory
    assert "Pi#rho_0" not in theory  # no ASCII maths left on the theory page
    assert (built / "search.html").exists() and (built / "searchindex.js").exists()
    for page in ("index", "gallery", "reference", "api", "cli", "changelog"):
        assert (built / f"{page}.html").exists(), page
    assert "run_study" in (built / "reference.html").read_text()
