"""Sphinx configuration of the mfpde documentation site.

Build it (warnings are errors) with::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import mfpde  # noqa: E402

project = "mfpde"
author = "The mfpde authors"
copyright = "2026, The mfpde authors"
release = version = mfpde.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "make_gallery.py", "images/**/README*"]

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

html_theme = "alabaster"
html_title = f"mfpde {release}"
html_static_path = []
html_theme_options = {"description": "Mean-field self-attention dynamics on the sphere",
                      "fixed_sidebar": True}
napoleon_use_ivar = True

# Docstrings write norms the plain-text way (|x|, |mu_k|); in reStructuredText a bar opens a
# substitution reference, so bars outside literals and roles are escaped before parsing.
import re  # noqa: E402

_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def _escape_bars(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        parts = _LITERAL.split(line)
        parts[::2] = [re.sub(r"(?<!\\)\|", r"\\|", p) for p in parts[::2]]
        lines[i] = "".join(parts)


# Ambiguous short type names in docstrings ("path", "M") resolve to several attributes of
# the same name; they are plain text, not references.
suppress_warnings = ["ref.python"]


def _keep_public_data(app, what, name, obj, skip, options):
    """A module's constants listed in its ``__all__`` are public API: document them even
    without a doc comment (autodoc skips undocumented data)."""
    if what == "module" and skip and not callable(obj):
        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("mfpde") and name in getattr(module, "__all__", ()):
                if getattr(module, name, None) is obj:
                    return False
    return None


def setup(app):
    app.connect("autodoc-process-docstring", _escape_bars)
    app.connect("autodoc-skip-member", _keep_public_data)
