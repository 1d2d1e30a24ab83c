from mfpde._provenance import canonical_json, config_digest, differing_keys


def test_digest_ignores_key_order_and_output_path():
    a = {"model": {"beta": 5.0, "d": 3}, "output": {"path": "a.h5", "save_every": 0.5}}
    b = {"output": {"save_every": 0.5, "path": "b.h5"}, "model": {"d": 3, "beta": 5.0}}
    assert canonical_json(a) == canonical_json(b)
    assert config_digest(a) == config_digest(b)
    assert differing_keys(a, b) == []


def test_digest_sees_every_value_change():
    a = {"model": {"beta": 5.0, "V": [[1.0, 0.0], [0.0, 1.0]]}, "initial": {"n": 100}}
    b = {"model": {"beta": 5.0, "V": [[1.0, 0.0], [0.0, 0.5]]}, "initial": {"n": 100}}
    c = {"model": {"beta": 5.0, "V": [[1.0, 0.0], [0.0, 1.0]]}, "initial": {"n": 101}}
    assert len({config_digest(a), config_digest(b), config_digest(c)}) == 3
    assert differing_keys(a, b) == ["model.V"]
    assert differing_keys(a, c) == ["initial.n"]
    assert differing_keys(a, {"model": a["model"]}) == ["initial"]


def test_a_later_key_at_its_default_keeps_older_digests_and_another_backend_differs():
    from mfpde._provenance import config_digest, differing_keys
    from mfpde.config import load_config

    new = load_config({"model": {"d": 3}}).to_dict()
    assert new["solver"]["backend"] == "cpu"
    old = {**new, "solver": {k: v for k, v in new["solver"].items() if k != "backend"}}  # a file from before the key
    assert config_digest(old) == config_digest(new) and differing_keys(old, new) == []
    gpu = {**new, "solver": {**new["solver"], "backend": "cuda"}}
    assert config_digest(gpu) != config_digest(new)
    assert differing_keys(gpu, new) == ["solver.backend"] and differing_keys(gpu, old) == ["solver.backend"]
