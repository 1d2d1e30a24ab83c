"""The example configs shipped inside the package (``mfpde example``).

They are the files of the repository's ``data/configs/`` (a test keeps the two copies
identical), installed with the wheel as package data in ``mfpde/configs/``.
"""

from __future__ import annotations

from importlib import resources



def _files():
    return resources.files("mfpde").joinpath("configs")


def example_names() -> list[str]:
    """The names of the shipped example configs, sorted (``quickstart``, ``fv_sphere``, ...)."""
    return sorted(p.name[:-5] for p in _files().iterdir() if p.name.endswith(".toml"))


def example_summary(name: str) -> str:
    """The first comment line of an example config (what it runs), without the ``#``."""
    for line in example_text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def example_text(name: str) -> str:
    """The TOML text of the example config ``name``; ValueError naming the valid ones."""
    names = example_names()
    if name not in names:
        raise ValueError(f"no example config {name!r}; the examples are {', '.join(names)}")
    return _files().joinpath(f"{name}.toml").read_text(encoding="utf-8")
