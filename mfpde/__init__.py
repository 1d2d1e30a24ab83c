"""mfpde: mean-field self-attention dynamics on the sphere.

The public API (docs/api.md)::

    model = mfpde.Model(Q=None, K=None, V=V, beta=30.0, d=3)
    v = mfpde.velocity(model, X, Y=None, weights=None)
    res = mfpde.run("cfg.toml");  res = mfpde.load("run.h5")
    Y = mfpde.limit_map(model, X);  pts, w = mfpde.limit_measure(model, X, weights)
    w2 = mfpde.wasserstein(X, a, Y, b, p=2, ground="geodesic", method="auto")
"""

from ._version import __version__

# The public names are imported on first use (PEP 562): ``import mfpde.cli`` stays light,
# so the command installs its signal handlers before numba, h5py and SciPy load.
_LAZY = {
    "Config": ".config", "ConfigError": ".config", "load_config": ".config",
    "Result": ".io", "load": ".io",
    "limit_map": ".limit", "limit_measure": ".limit",
    "Model": ".model",
    "run": ".runner",
    "velocity": ".field",
    "wasserstein": ".distances",
    "equiangular_rate": ".equiangular", "equiangular_inner_product": ".equiangular",
    "equiangular_collapse_time": ".equiangular", "equiangular_positions": ".equiangular",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


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
    "equiangular_rate",
    "equiangular_inner_product",
    "equiangular_collapse_time",
    "equiangular_positions",
]
