"""mfpde: mean-field self-attention dynamics on the sphere."""

from ._version import __version__
from .model import Model
from .velocity import velocity

__all__ = ["__version__", "Model", "velocity"]
