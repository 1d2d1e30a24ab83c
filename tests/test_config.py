"""Robustness tier: config loading, validation and its one-line error messages."""

import copy
import json
import math
import textwrap

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfpde.config import (
    SECTIONS,
    Config,
    ConfigError,
    check_dotted_key,
    config_from_dict,
    load_config,
    parse_override,
    set_dotted,
)

try:
    from mfpde.diagnostics import REGISTRY as _REGISTRY
except Exception:  # the diagnostics module may not exist yet
    _REGISTRY = None


VALID = """\
[model]
d = 3
beta = 30.0
normalization = "softmax"
Q = "identity"
K = { random = "gaussian", seed = 1, scale = 0.5 }
V = [[2, 0, 0], [0, 1, 0], [0, 0, 0.5]]

[initial]
kind = "vmf_mixture"
n = 200
seed = 4
means = [[1, 0, 0], [0, 0, 1]]
kappas = [5, 10]

[solver]
method = "particles"
integrator = "rk4"
dt = 0.05
t_end = 2

[output]
path = "run.h5"
save_every = 0.5
diagnostics = ["mass", "energy"]

[wasserstein]
p = 2
ground = "geodesic"

[study]
sweep = { "model.beta" = [10, 30], "initial.seed" = [0, 1] }
fit = "model.beta"
metric = "mass"
"""


def write(tmp_path, text, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(source, overrides=()):
    with pytest.raises(ConfigError) as info:
        load_config(source, overrides)
    return info.value


# ----------------------------------------------------------------------------- valid configs


def test_valid_config_resolves_every_key(tmp_path):
    cfg = load_config(write(tmp_path, VALID))
    assert cfg.model.d == 3 and cfg.model.beta == 30.0
    np.testing.assert_array_equal(cfg.model.V, np.diag([2.0, 1.0, 0.5]))
    np.testing.assert_array_equal(cfg.model.Q, np.eye(3))
    assert cfg.solver.t_end == 2.0 and isinstance(cfg.solver.t_end, float)
    assert cfg.solver.cells == 2048  # default filled in
    assert cfg.study.fit == "model.beta"
    d = cfg.to_dict()
    assert set(d) == set(SECTIONS)
    for section, keys in SECTIONS.items():
        assert set(d[section]) == set(keys), section
    json.dumps(d, allow_nan=False)  # plain JSON-able data


def test_random_matrix_is_documented_gaussian(tmp_path):
    cfg = load_config(write(tmp_path, VALID))
    expected = np.random.default_rng(1).standard_normal((3, 3)) * (0.5 / math.sqrt(3))
    np.testing.assert_array_equal(cfg.model.K, expected)


def test_roundtrip_to_dict_load(tmp_path):
    cfg = load_config(write(tmp_path, VALID))
    again = load_config(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()
    assert again == cfg
    third = load_config(json.loads(json.dumps(cfg.to_dict())))
    assert third.to_dict() == cfg.to_dict()


def test_yaml_and_toml_give_equal_configs(tmp_path):
    import tomllib

    data = tomllib.loads(VALID)
    toml_cfg = load_config(write(tmp_path, VALID))
    yaml_path = tmp_path / "cfg.yaml"
    yaml_path.write_text(yaml.safe_dump(data))
    yaml_cfg = load_config(yaml_path)
    assert yaml_cfg.to_dict() == toml_cfg.to_dict()
    assert yaml_cfg.source == str(yaml_path)


def test_beta_inf_string_and_yaml_inf(tmp_path):
    cfg = load_config({"model": {"d": 2, "beta": "inf"}})
    assert math.isinf(cfg.model.beta)
    assert cfg.to_dict()["model"]["beta"] == "inf"
    path = tmp_path / "inf.yaml"
    path.write_text("model:\n  d: 2\n  beta: .inf\n  zero_temperature: hardmax\n")
    assert math.isinf(load_config(path).model.beta)


def test_d_inferred_from_matrix_and_scalar_matrix():
    cfg = load_config({"model": {"V": [[1, 0], [0, 2]], "Q": 3}})
    assert cfg.model.d == 2
    np.testing.assert_array_equal(cfg.model.Q, 3 * np.eye(2))


def test_overrides_apply_and_are_typed(tmp_path):
    path = write(tmp_path, VALID)
    cfg = load_config(path, ["model.beta=50", "initial.kind=uniform", 'output.path="x.h5"',
                             "model.V=[[1,0,0],[0,1,0],[0,0,1]]", "solver.dt=1", "output.path=y.h5"])
    assert cfg.model.beta == 50.0
    assert cfg.initial.kind == "uniform"
    assert cfg.output.path == "y.h5"
    np.testing.assert_array_equal(cfg.model.V, np.eye(3))
    assert cfg.solver.dt == 1.0 and isinstance(cfg.solver.dt, float)
    assert math.isinf(load_config(path, ['model.beta="inf"']).model.beta)


def test_parse_override_values():
    assert parse_override("model.beta=50") == ("model.beta", 50)
    assert parse_override("initial.kind=uniform") == ("initial.kind", "uniform")
    assert parse_override("model.V=[[1,0],[0,1]]") == ("model.V", [[1, 0], [0, 1]])
    assert parse_override('output.path="a b.h5"') == ("output.path", "a b.h5")
    assert parse_override("output.path=x.h5") == ("output.path", "x.h5")
    assert parse_override("solver.dt=1e-3") == ("solver.dt", 1e-3)


def test_set_dotted_and_check_dotted_key():
    d = {"model": {"d": 2}}
    assert set_dotted(d, "model.beta", 5) is d
    set_dotted(d, "study.sweep.model.beta", [1, 2])
    set_dotted(d, "model.Q.seed", 3)
    assert d == {"model": {"d": 2, "beta": 5, "Q": {"seed": 3}}, "study": {"sweep": {"model.beta": [1, 2]}}}
    assert check_dotted_key("study.sweep.initial.seed") == ("study", "sweep", "initial.seed")
    with pytest.raises(ConfigError) as info:
        check_dotted_key("solver.tend")
    assert str(info.value) == "<dict>: solver.tend: unknown key; did you mean solver.t_end?"


def test_config_replace_revalidates():
    cfg = load_config({"model": {"d": 3}})
    assert cfg.replace(**{"model.beta": 7}).model.beta == 7.0
    assert cfg.replace(solver=cfg.solver.replace(dt=0.5)).solver.dt == 0.5
    with pytest.raises(ConfigError, match=r"^<dict>: solver.dt: must be a number > 0, got -1$"):
        cfg.replace(**{"solver.dt": -1})


def test_relative_initial_path_resolves_against_config_dir(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "x0.npy", np.eye(3))
    path = write(tmp_path / "sub", '[model]\nd = 3\n[initial]\nkind = "file"\npath = "x0.npy"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path)
    assert cfg.initial.path == str(tmp_path / "sub" / "x0.npy")


def test_study_metric_is_recorded():
    cfg = load_config({"model": {"d": 2}, "study": {"sweep": {"model.beta": [1, 2]}, "metric": "mass"},
                       "output": {"diagnostics": ["energy"]}})
    assert cfg.output.diagnostics == ("energy", "mass")


# ----------------------------------------------------------------------------- malformed files: exact lines

BASE = "[model]\nd = 3\n"

BAD = {
    "unknown_key": (
        BASE + "[solver]\ndtt = 0.1\n",
        "solver.dtt: unknown key; did you mean solver.dt?",
    ),
    "unknown_key_wrong_section": (
        BASE + "[solver]\nbeta = 3\n",
        "solver.beta: unknown key; did you mean model.beta?",
    ),
    "unknown_section": (
        BASE + "[solvers]\ndt = 0.1\n",
        "solvers: unknown section; did you mean [solver]?",
    ),
    "wrong_type_string_for_number": (
        BASE + '[solver]\ndt = "small"\n',
        "solver.dt: must be a number, got 'small'",
    ),
    "bool_where_int": (
        BASE + "[initial]\nn = true\n",
        "initial.n: must be an integer, got true",
    ),
    "float_where_int": (
        BASE + "[initial]\nn = 1e4\n",
        "initial.n: must be an integer, got 10000.0",
    ),
    "non_square_matrix": (
        "[model]\nd = 2\nV = [[1, 0, 0], [0, 1, 0]]\n",
        "model.V: must be a square d x d matrix, got 2 rows of lengths 3, 3",
    ),
    "wrong_size_matrix": (
        BASE + "V = [[1, 0], [0, 1]]\n",
        "model.V: must be 3 x 3 (model.d = 3), got 2 x 2",
    ),
    "matrices_disagree": (
        "[model]\nQ = [[1, 0], [0, 1]]\nV = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]\n",
        "model.V: must be 2 x 2 (the size of model.Q), got 3 x 3",
    ),
    "matrix_bad_entry": (
        BASE + 'Q = [[1, 0, 0], [0, "x", 0], [0, 0, 1]]\n',
        "model.Q: must hold finite numbers, got 'x' in row 2",
    ),
    "random_matrix_typo": (
        BASE + 'K = { random = "gaussian", sed = 1 }\n',
        "model.K.sed: unknown key; did you mean model.K.seed?",
    ),
    "negative_beta": (
        BASE + "beta = -1\n",
        'model.beta: must be >= 0 (or "inf"), got -1',
    ),
    "beta_string": (
        BASE + 'beta = "hot"\n',
        "model.beta: must be a number >= 0 or \"inf\", got 'hot'",
    ),
    "d_missing": (
        "[model]\nbeta = 1.0\n",
        'model.d: is required when Q, K and V are all "identity", numbers or random',
    ),
    "model_missing": (
        "[solver]\ndt = 0.1\n",
        "model: a [model] section is required (it sets d)",
    ),
    "t_end_zero": (
        BASE + "[solver]\nt_end = 0\n",
        "solver.t_end: must be a number > 0, got 0",
    ),
    "dt_negative": (
        BASE + "[solver]\ndt = -0.5\n",
        "solver.dt: must be a number > 0, got -0.5",
    ),
    "bad_choice": (
        BASE + '[solver]\nmethod = "spectral"\n',
        "solver.method: must be one of particles, pic, fv, got 'spectral'",
    ),
    "missing_initial_file": (
        BASE + '[initial]\nkind = "file"\npath = "nowhere.h5"\n',
        "initial.path: must name an existing file, got 'nowhere.h5' (no file {dir}/nowhere.h5)",
    ),
    "perturbed_uniform_d3": (
        BASE + '[initial]\nkind = "perturbed_uniform"\n',
        "initial.kind: 'perturbed_uniform' lives on the circle and needs model.d = 2, got d = 3",
    ),
    "vmf_means_wrong_length": (
        BASE + '[initial]\nkind = "vmf_mixture"\nmeans = [[1, 0]]\nkappas = [3]\n',
        "initial.means: must be points with d = 3 coordinates, got 2 in mean 1",
    ),
    "vmf_kappas_count": (
        BASE + '[initial]\nkind = "vmf_mixture"\nmeans = [[1, 0, 0]]\nkappas = [3, 4]\n',
        "initial.kappas: must have one entry per mean (1), got 2",
    ),
    "fv_in_d4": (
        "[model]\nd = 4\n[solver]\nmethod = \"fv\"\n",
        "solver.method: 'fv' is implemented for d = 2 (the circle) and d = 3 (S^2), got d = 4",
    ),
    "section_not_table": (
        "solver = 3\n" + BASE,
        "solver: must be a table of keys, got 3",
    ),
    "study_fit_not_axis": (
        BASE + '[study]\nsweep = { "model.beta" = [1, 2] }\nfit = "initial.seed"\nmetric = "mass"\n',
        "study.fit: must be one of the sweep axes ['model.beta'], got 'initial.seed'",
    ),
    "study_sweep_bad_key": (
        BASE + '[study]\nsweep = { "model.betta" = [1, 2] }\nmetric = "mass"\n',
        "study.sweep.model.betta: must be a dotted config key: model.betta: unknown key; did you mean model.beta?",
    ),
    "study_sweep_bad_value": (
        BASE + '[study]\nsweep = { "model.beta" = [1, -2] }\nmetric = "mass"\n',
        'study.sweep.model.beta[1]: must be >= 0 (or "inf"), got -2',
    ),
    "toml_syntax_error": (
        BASE + "[solver]\ndt = = 0.1\n",
        "invalid TOML: Invalid value (at line 4, column 6)",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_file_gives_exact_line(tmp_path, name):
    text, expected = BAD[name]
    path = write(tmp_path, text)
    err = error_of(path)
    assert str(err) == f"{path}: " + expected.format(dir=tmp_path)
    assert err.file == str(path)
    assert "\n" not in str(err)


def test_unknown_diagnostic_name(tmp_path):
    if _REGISTRY is None:
        pytest.skip("mfpde.diagnostics is not importable yet")
    path = write(tmp_path, BASE + '[output]\ndiagnostics = ["mass", "enrgy"]\n')
    err = error_of(path)
    valid = ", ".join(sorted(_REGISTRY))
    assert str(err) == f"{path}: output.diagnostics: must be names from {valid}, got 'enrgy' (did you mean 'energy'?)"
    assert err.key == "output.diagnostics"


def test_yaml_syntax_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  d: 3\n  beta: [1, 2\n")
    err = error_of(path)
    assert str(err).startswith(f"{path}: invalid YAML: ")
    assert "(at line " in str(err) and "\n" not in str(err)


def test_yaml_top_level_not_a_table(tmp_path):
    path = tmp_path / "list.yml"
    path.write_text("- 1\n- 2\n")
    assert str(error_of(path)) == f"{path}: must be a table of sections ([model], [solver], ...), got a list"


def test_missing_config_file(tmp_path):
    path = tmp_path / "absent.toml"
    assert str(error_of(path)) == f"{path}: cannot read the file: No such file or directory"


def test_wrong_suffix(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text("{}")
    assert str(error_of(path)) == f"{path}: config file must end in .toml, .yaml or .yml, got '.json'"


def test_dict_errors_name_dict():
    err = error_of({"model": {"d": 3}, "solver": {"dt": 0}})
    assert str(err) == "<dict>: solver.dt: must be a number > 0, got 0"
    assert (err.file, err.key) == ("<dict>", "solver.dt")


def test_bad_override_unknown_key(tmp_path):
    path = write(tmp_path, BASE)
    err = error_of(path, ["model.betta=3"])
    assert str(err) == "<command line>: model.betta: unknown key; did you mean model.beta?"


def test_bad_override_type(tmp_path):
    path = write(tmp_path, BASE)
    err = error_of(path, ["solver.dt=fast"])
    assert str(err) == "<command line>: solver.dt: must be a number, got 'fast'"
    assert err.file == "<command line>" and err.key == "solver.dt"
    assert str(error_of(path, ["initial.n=true"])) == "<command line>: initial.n: must be an integer, got true"


def test_bad_override_syntax(tmp_path):
    path = write(tmp_path, BASE)
    assert str(error_of(path, ["model.beta"])) == "<command line>: --set takes section.key=value, got 'model.beta'"


# ----------------------------------------------------------------------------- property tests

VALID_DICT = {
    "model": {"d": 3, "beta": 10.0, "V": [[1, 0, 0], [0, 1, 0], [0, 0, 0.5]]},
    "initial": {"kind": "uniform", "n": 10, "seed": 0},
    "solver": {"dt": 0.1, "t_end": 1.0},
    "output": {"path": "run.h5", "save_every": 0.5},
    "wasserstein": {"p": 2},
}

junk_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
all_keys = [(s, k) for s, keys in SECTIONS.items() for k in keys if not (s == "model" and k == "d")]
key_choice = st.sampled_from(all_keys) | st.tuples(st.sampled_from(list(SECTIONS)), st.text(max_size=6)) | st.tuples(
    st.text(max_size=6), st.text(max_size=6))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(key_choice, junk_values), min_size=1, max_size=3))
def test_random_injections_raise_only_config_error(changes):
    data = copy.deepcopy(VALID_DICT)
    for (section, key), value in changes:
        if not isinstance(data.get(section), dict):
            data[section] = {}
        data[section][key] = value
    try:
        cfg = load_config(data)
    except ConfigError as err:
        assert "\n" not in str(err)
        assert str(err).startswith("<dict>: ")
        return
    # whatever loads is valid and round-trips
    assert load_config(cfg.to_dict()).to_dict() == cfg.to_dict()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_junk_toml_raises_only_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("junk") / "junk.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_config(path)
    except ConfigError as err:
        assert "\n" not in str(err)
        assert str(err).startswith(f"{path}: ")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=120))
def test_junk_yaml_raises_only_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("junk") / "junk.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_config(path)
    except ConfigError as err:
        assert "\n" not in str(err)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_junk_override_raises_only_config_error(text):
    try:
        cfg = load_config(VALID_DICT, [text])
    except ConfigError as err:
        assert "\n" not in str(err)
        return
    assert isinstance(cfg, Config)


@settings(max_examples=50, deadline=None)
@given(beta=st.floats(min_value=0, max_value=1e6), dt=st.floats(min_value=1e-6, max_value=1.0),
       n=st.integers(min_value=1, max_value=10**6), d=st.integers(min_value=2, max_value=6))
def test_valid_configs_load(beta, dt, n, d):
    cfg = load_config({"model": {"d": d, "beta": beta}, "solver": {"dt": dt}, "initial": {"n": n}})
    assert cfg.model.beta == beta and cfg.solver.dt == dt and cfg.initial.n == n and cfg.model.d == d
    assert config_from_dict(cfg.to_dict()) == cfg


def test_docs_config_examples_run(tmp_path, monkeypatch):
    """Documentation that runs: every python block of docs/config.md."""
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parent.parent / "docs" / "config.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    ns = {}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), ns)
    assert ns["cfg"].model.beta == 50.0


def test_config_error_pickles():
    import pickle

    err = error_of({"model": {"d": 3}, "solver": {"dt": 0}})
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and (again.file, again.key, again.message) == (err.file, err.key, err.message)
