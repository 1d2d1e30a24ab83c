"""The method seam: a method defined here, outside mfpde/, runs through everything.

``Frozen`` (tokens that do not move) is registered by this file alone; ``mfpde.run``,
``mfpde.load``, ``--resume``-style continuation and a study take it without a change to
the package.  Then the contract every registered method meets is in test_method_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import mfpde
from mfpde.config import ConfigError, load_config
from mfpde.initial import initial_measure
from mfpde.methods import POSITIONS, Method, get_method, method_names, register_method, unregister_method
from mfpde.study import run_study


class Frozen(Method):
    """Tokens that do not move: every snapshot is the initial state."""

    name = "frozen"
    state = POSITIONS
    integrators = None
    integrator_name = "none"

    @classmethod
    def unused(cls, section, key, config):
        if section == "solver" and key in ("dt", "cfl", "cells", "kernel", "tolerance"):
            return "frozen tokens are never stepped"
        return super().unused(section, key, config)

    @classmethod
    def check(cls, config):
        if config.initial.n > 10_000:
            raise ConfigError(config.source, "initial.n", f"must be <= 10000 for frozen, got {config.initial.n}")

    def initial_state(self):
        positions, self.weights = initial_measure(self.config.initial, self.config.model.d)
        return positions

    def restore(self, result):
        self.weights = result.weights
        return result.positions[0]

    def write_static(self, writer):
        writer.write_weights(self.weights)

    def measure(self, positions):
        return positions, self.weights

    def snapshots(self, positions, times, t0=0.0, on_step=None):
        for t in times:
            if on_step is not None:
                on_step(float(t))
            yield float(t), np.array(positions)


@pytest.fixture
def frozen():
    register_method(Frozen)
    yield Frozen
    unregister_method("frozen")


def _config(tmp_path, **solver):
    return {"model": {"d": 3, "beta": 4.0}, "initial": {"n": 64, "seed": 3},
            "solver": {"method": "frozen", "t_end": 1.0, **solver},
            "output": {"path": str(tmp_path / "frozen.h5"), "save_every": 0.25, "diagnostics": ["mass", "w_to_limit"]}}


def test_a_method_defined_outside_the_package_runs_loads_and_is_recorded(frozen, tmp_path):
    assert "frozen" in method_names() and get_method("frozen") is Frozen
    res = mfpde.run(_config(tmp_path))
    assert res.complete and res.positions.shape == (5, 64, 3)
    np.testing.assert_array_equal(res.positions, np.broadcast_to(res.positions[0], res.positions.shape))
    np.testing.assert_allclose(res.diagnostics["mass"], 1.0, rtol=1e-15)
    assert np.ptp(res.diagnostics["w_to_limit"]) == 0 and res.diagnostics["w_to_limit"][0] > 0
    import h5py

    with h5py.File(res.path) as f:
        assert f.attrs["method"] == "frozen" and f.attrs["integrator"] == "none"
    again = mfpde.load(res.path)
    np.testing.assert_array_equal(again.positions, res.positions)


def test_its_rules_and_unused_keys_are_the_config_loaders(frozen, tmp_path):
    with pytest.raises(ConfigError, match=r"initial\.n: must be <= 10000 for frozen, got 20000"):
        load_config({**_config(tmp_path), "initial": {"n": 20000}})
    with pytest.raises(ConfigError, match=r"solver\.dt: is not used by solver.method = 'frozen': frozen tokens"):
        load_config(_config(tmp_path, dt=0.5))
    with pytest.raises(ConfigError, match="is not used by solver.method = 'frozen'"):
        load_config(_config(tmp_path, integrator="euler"))


def test_it_resumes_bit_for_bit(frozen, tmp_path):
    reference = mfpde.run(_config(tmp_path), output=tmp_path / "ref.h5")

    def stop(t):
        if t > 0.4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mfpde.run(_config(tmp_path), on_step=stop)
    partial = mfpde.load(tmp_path / "frozen.h5")
    assert partial.status == "interrupted" and partial.n_snapshots == 2
    done = mfpde.run(_config(tmp_path), resume=True)
    np.testing.assert_array_equal(done.times, reference.times)
    np.testing.assert_array_equal(done.positions, reference.positions)


def test_a_study_sweeps_it(frozen, tmp_path):
    cfg = _config(tmp_path)
    cfg["study"] = {"sweep": {"initial.seed": [1, 2]}, "metric": "w_to_limit"}
    cfg["output"]["path"] = str(tmp_path / "study.h5")
    study = run_study(cfg)
    assert list(study.summary["status"]) == ["complete", "complete"]
    runs = [mfpde.load(p) for p in study.run_paths]
    assert [r.config["initial"]["seed"] for r in runs] == [1, 2]
    assert not np.array_equal(runs[0].positions[0], runs[1].positions[0])
    np.testing.assert_array_equal(study.summary["metric_final"], [r.diagnostics["w_to_limit"][-1] for r in runs])


def test_a_method_refuses_the_integrators_it_cannot_use(tmp_path):
    class EulerOnly(Frozen):
        name = "euler_only"
        integrators = ("euler",)

    register_method(EulerOnly)
    cfg = _config(tmp_path)
    cfg["solver"]["method"] = "euler_only"
    with pytest.raises(ConfigError, match=r"solver\.integrator: must be one of euler for solver.method = "
                                          r"'euler_only', got 'rk4'"):
        load_config(cfg)
    cfg["solver"]["integrator"] = "euler"
    assert load_config(cfg).solver.integrator == "euler"


def test_unregistered_it_is_an_unknown_method(tmp_path):
    assert "frozen" not in method_names()
    with pytest.raises(ConfigError, match=r"solver\.method: must be one of particles, pic, fv, got 'frozen'"):
        load_config(_config(tmp_path))


def test_register_method_refuses_what_is_not_a_method():
    with pytest.raises(TypeError, match="Method subclass"):
        register_method(object)

    class Nameless(Method):
        name = "no name"

    with pytest.raises(ValueError, match="identifier"):
        register_method(Nameless)


def _docs_example(heading):
    """The first python block under ``heading`` in docs/methods.md."""
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "methods.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_worked_example_of_the_docs_runs_and_decays_at_the_spectral_gap(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    try:
        exec(compile(_docs_example("## Adding a method"), "docs/methods.md", "exec"), namespace)
    finally:
        unregister_method("linear_flow")
    res = namespace["result"]
    assert res.complete and res.config["solver"]["method"] == "linear_flow"
    assert np.all(np.diff(res.diagnostics["w_to_limit"]) < 0)
    assert "linear_flow" not in method_names()
    cfg = {**res.config, "solver": {"method": "particles", "integrator": "rk4", "dt": 0.01, "t_end": 10.0},
           "output": {**res.config["output"], "path": str(tmp_path / "particles.h5")}}
    particles = mfpde.run(cfg)
    np.testing.assert_allclose(particles.positions, res.positions, rtol=0, atol=1e-9)  # rk4 error ~ 1e-10 here
