"""The public API is small, explicit and matches DESIGN.md's Python names."""

import inspect

import mfpde

DESIGN_NAMES = {"Model", "velocity", "run", "load", "limit_map", "limit_measure", "wasserstein"}


def test_all_is_explicit_and_complete():
    assert DESIGN_NAMES <= set(mfpde.__all__)
    for name in mfpde.__all__:
        assert hasattr(mfpde, name), name
    public = {n for n in dir(mfpde) if not n.startswith("_") and not inspect.ismodule(getattr(mfpde, n))}
    assert public <= set(mfpde.__all__), public - set(mfpde.__all__)


def test_design_signatures():
    # DESIGN.md's parameters come first, in order; later keyword extensions are allowed
    params = list(inspect.signature(mfpde.velocity).parameters)
    assert params[:6] == ["model", "X", "Y", "weights", "kernel", "tolerance"]
    params = inspect.signature(mfpde.Model).parameters
    for name in ("Q", "K", "V", "beta", "d", "normalization", "zero_temperature"):
        assert name in params
    w = inspect.signature(mfpde.wasserstein).parameters
    assert list(w)[:7] == ["X", "a", "Y", "b", "p", "ground", "method"]
    assert w["p"].default == 2 and w["ground"].default == "geodesic" and w["method"].default == "auto"


def test_model_validation_speaks():
    import pytest

    for kwargs, message in [
        ({"d": 3, "beta": -1.0}, "model.beta must be >= 0"),
        ({"d": 3, "normalization": "soft"}, "model.normalization must be one of softmax, uniform"),
        ({"Q": [[1, 2, 3], [4, 5, 6]]}, "model.Q must be a square matrix"),
        ({"d": 3, "V": [[1, 0], [0, 1]]}, r"model.V must be 3 x 3 \(d = 3\), got 2 x 2"),
        ({}, "model.d is required"),
        ({"d": 3, "beta": "hot"}, "model.beta must be a number >= 0 or \"inf\""),
    ]:
        with pytest.raises(ValueError, match=message):
            mfpde.Model(**kwargs)
    assert mfpde.Model(d=2, beta="inf").is_zero_temperature
