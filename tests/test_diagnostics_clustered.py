"""The clustered_fraction diagnostic: mass-weighted fraction of ordered pairs i != j with
<x_i, x_j> >= 1 - delta, per system and vectorized over an ensemble."""

import numpy as np
import pytest

from mfpde import diagnostics as D
from mfpde.config import ConfigError, load_config
from mfpde.diagnostics import REGISTRY, clustered_fraction, clustered_fractions, evaluate, make_context
from mfpde.model import Model
from mfpde.sphere import sample_uniform


def _brute(X, w, delta):
    num = den = 0.0
    for i in range(len(X)):
        for j in range(len(X)):
            if i != j:
                den += w[i] * w[j]
                if float(np.dot(X[i], X[j])) >= 1 - delta:
                    num += w[i] * w[j]
    return num / den


def _clumps(rng, n, d, k, spread):
    """n points in k tight clumps of angular size ~ spread (random sizes)."""
    centers = sample_uniform(k, d, rng)
    labels = rng.integers(0, k, n)
    X = centers[labels] + spread * rng.standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _ctx(delta=1e-3, d=3):
    X = sample_uniform(4, d, np.random.default_rng(0))
    return make_context(Model(d=d), X, None, cluster_delta=delta)


def test_registered_with_unit_one():
    assert REGISTRY["clustered_fraction"].unit == "1" and not REGISTRY["clustered_fraction"].vector


@pytest.mark.parametrize("delta", [1e-3, 0.05, 1.5])
def test_against_a_double_loop(delta):
    rng = np.random.default_rng(1)
    X = _clumps(rng, 40, 3, 4, 0.02)
    w = rng.random(40)
    value = clustered_fraction(X, w, _ctx(delta))
    assert isinstance(value, float) and 0 <= value <= 1
    assert value == pytest.approx(_brute(X, w, delta), rel=1e-13, abs=1e-15)


def test_equal_masses_count_ordered_pairs():
    # clumps of sizes 3, 2, 1, 1 of identical points, far apart: 3*2 + 2*1 = 8 ordered pairs of 7*6
    e = np.eye(4)
    X = np.concatenate([np.repeat(e[:1], 3, 0), np.repeat(e[1:2], 2, 0), e[2:3], e[3:4]])
    n = len(X)
    value = clustered_fraction(X, np.full(n, 1 / n), _ctx(1e-3, d=4))
    assert value == pytest.approx(8 / (n * (n - 1)), rel=1e-14)
    assert clustered_fraction(np.repeat(e[:1], 5, 0), np.full(5, 0.2), _ctx(1e-3, d=4)) == 1.0
    assert clustered_fraction(e, np.full(4, 0.25), _ctx(1e-3, d=4)) == 0.0


def test_weights_matter():
    e = np.eye(3)
    X = np.array([e[0], e[0], e[1]])
    w = np.array([0.1, 0.1, 0.8])  # the close pair (0, 1) carries 2 * 0.01 of 2 * (0.01 + 0.08 + 0.08)
    assert clustered_fraction(X, w, _ctx()) == pytest.approx(0.02 / 0.34, rel=1e-14)
    w0 = np.array([0.5, 0.5, 0.0])  # an atom of zero mass is no pair
    assert clustered_fraction(X, w0, _ctx()) == 1.0


def test_no_pairs_is_one():
    X = np.array([[1.0, 0.0, 0.0]])
    assert clustered_fraction(X, np.array([1.0]), _ctx()) == 1.0
    assert clustered_fractions(X[None], np.ones((1, 1)), 1e-3).tolist() == [1.0]


def test_delta_boundary():
    # <x_0, x_1> = cos(theta) exactly representable: 1 - 2^-10
    c = 1.0 - 2.0**-10
    X = np.array([[1.0, 0.0], [c, np.sqrt(1 - c * c)]])
    assert float(X[0] @ X[1]) == c
    w = np.array([0.5, 0.5])
    assert clustered_fractions(X[None], w[None], 2.0**-10)[0] == 1.0      # >= 1 - delta: included
    assert clustered_fractions(X[None], w[None], 2.0**-10 * 0.999)[0] == 0.0


def test_vectorized_equals_per_system_exactly(monkeypatch):
    rng = np.random.default_rng(2)
    S, n, d = 7, 30, 5
    X = np.stack([_clumps(rng, n, d, 3, 0.01 * (s + 1)) for s in range(S)])
    w = rng.random((S, n))
    ctx = _ctx(0.01, d=d)
    batch = clustered_fractions(X, w, 0.01)
    single = np.array([clustered_fraction(X[s], w[s], ctx) for s in range(S)])
    np.testing.assert_array_equal(batch, single)
    np.testing.assert_array_equal(clustered_fraction(X, w, ctx), batch)  # the registered form takes (S, n, d)
    assert 0 < batch.min() and batch.max() < 1
    monkeypatch.setattr(D, "GRAM_CHUNK", 2 * n * n)  # two systems per chunk: same values
    np.testing.assert_array_equal(clustered_fractions(X, w, 0.01), batch)


def test_evaluate_and_context():
    X = np.repeat(np.eye(3)[:1], 4, 0)
    ctx = _ctx(0.5)
    assert ctx.cluster_delta == 0.5
    assert evaluate(["clustered_fraction"], X, np.full(4, 0.25), ctx) == {"clustered_fraction": 1.0}
    assert make_context(Model(d=3), X).cluster_delta == 1e-3


@pytest.mark.parametrize("bad", [0.0, 2.0, -1e-3, "x", True])
def test_delta_is_validated(bad):
    with pytest.raises(ValueError, match=r"cluster_delta must be a number in \(0, 2\)"):
        make_context(Model(d=3), np.eye(3), None, cluster_delta=bad)
    with pytest.raises(ValueError, match=r"cluster_delta must be a number in \(0, 2\)"):
        clustered_fractions(np.eye(3)[None], np.ones((1, 3)), bad)
    with pytest.raises(ConfigError, match=r"output.cluster_delta: must be a number"):
        load_config({"model": {"d": 2}, "output": {"cluster_delta": bad}})


def test_config_key_default_and_digest():
    from mfpde._provenance import config_digest

    base = load_config({"model": {"d": 2}})
    assert base.output.cluster_delta == 1e-3
    d = base.to_dict()
    legacy = {**d, "output": {k: v for k, v in d["output"].items() if k != "cluster_delta"}}
    assert config_digest(d) == config_digest(legacy)  # older files (no key) keep their digests
    other = load_config({"model": {"d": 2}, "output": {"cluster_delta": 0.01}}).to_dict()
    assert config_digest(other) != config_digest(d)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"expected points \(S, n, d\) and weights \(S, n\)"):
        clustered_fractions(np.eye(3), np.ones(3), 1e-3)
