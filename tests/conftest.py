import numpy as np
import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run the slow studies too")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long studies, run with --runslow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow study: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    """A seeded generator: every test is reproducible."""
    return np.random.default_rng(20261122)


def unit_rows(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def _method_registry():
    """Whatever a test registers (a toy method, a docs example's) is gone after it."""
    from mfpde.methods import base

    base.method_names()  # the built-ins registered before the snapshot
    saved = dict(base._REGISTRY)
    yield
    base._REGISTRY.clear()
    base._REGISTRY.update(saved)
