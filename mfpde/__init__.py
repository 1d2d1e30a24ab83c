"""mfpde: mean-field self-attention dynamics on the sphere.

The public API (docs/api.md)::

    model = mfpde.Model(Q=None, K=None, V=V, beta=30.0, d=3)
    v = mfpde.velocity(model, X, Y=None, weights=None)
    res = mfpde.run("cfg.toml");  res = mfpde.load("run.h5")
    Y = mfpde.limit_map(model, X);  pts, w = mfpde.limit_measure(model, X, weights)
    w2 = mfpde.wasserstein(X, a, Y, b, p=2, ground="geodesic", method="auto")
"""

from ._version import __version__
from .config import Config, ConfigError, load_config
from .io import Result, load
from .limit import limit_map, limit_measure
from .model import Model
from .runner import run
from .field import velocity
from .distances import wasserstein

__all__ = [
    "__version__",
    "Model",
    "velocity",
    "run",
    "load",
    "Result",
    "Config",
    "ConfigError",
    "load_config",
    "limit_map",
    "limit_measure",
    "wasserstein",
]
