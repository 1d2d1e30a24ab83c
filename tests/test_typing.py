"""Type hints on the public API (the package ships py.typed): every parameter and return
value of the public functions and methods of these modules is annotated."""

import importlib
import inspect

import pytest

import mfpde

#: Modules whose whole public API is annotated.
ANNOTATED = ["mfpde.field", "mfpde.initial", "mfpde.kernels", "mfpde.limit", "mfpde.sphere", "mfpde.model",
             "mfpde.runner", "mfpde.plotting", "mfpde.animation", "mfpde.mesh", "mfpde.solvers",
             "mfpde.distances", "mfpde.study", "mfpde.config", "mfpde.diagnostics", "mfpde.io", "mfpde.equiangular"]
NOT_YET: set[str] = set()


def functions(module_name):
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj):
            yield f"{module_name}.{name}", obj
        elif inspect.isclass(obj):
            for key, member in vars(obj).items():
                if inspect.isfunction(member) and not key.startswith("_"):
                    yield f"{module_name}.{name}.{key}", member


def missing_annotations(fn):
    sig = inspect.signature(fn)
    out = [p.name for p in sig.parameters.values()
           if p.name not in ("self", "cls") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
           and p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        out.append("return")
    return out


@pytest.mark.parametrize("module_name", ANNOTATED)
def test_public_functions_are_annotated(module_name):
    bad = {name: missing for name, fn in functions(module_name) if (missing := missing_annotations(fn))}
    assert not bad, bad


def test_top_level_api_is_annotated():
    bad = {}
    for name in mfpde.__all__:
        obj = getattr(mfpde, name)
        if inspect.isfunction(obj) and f"{obj.__module__}.{name}" not in NOT_YET:
            if missing := missing_annotations(obj):
                bad[name] = missing
    assert not bad, bad
    for method in (mfpde.Result.to_xarray, mfpde.load, mfpde.load_config, mfpde.run):
        assert not missing_annotations(method)


def test_the_package_is_typed():
    from importlib import resources

    assert resources.files("mfpde").joinpath("py.typed").is_file()
