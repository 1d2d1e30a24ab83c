"""mfpde in a Jupyter kernel (nbclient): a run with a progress bar, a plot, then the user's own
plt.plot still renders inline (no backend switch); short reprs; to_xarray's dims and units."""

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

CELLS = [
    """import mfpde
res = mfpde.run({"model": {"d": 3, "beta": 5.0, "V": [[1, 0, 0], [0, 0.5, 0], [0, 0, 0.2]]},
                 "initial": {"n": 120}, "solver": {"t_end": 1.0, "dt": 0.1},
                 "output": {"path": "nb.h5", "save_every": 0.25,
                            "diagnostics": ["mass", "energy", "w_to_limit"]}},
                force=True, progress=True)""",
    """from mfpde.plotting import plot_density
fig = plot_density(res)""",
    """import matplotlib.pyplot as plt
plt.plot([0, 1, 2], [2, 0, 1]);""",
    "res",
    """ds = res.to_xarray()
print(sorted(ds.sizes.items()), ds["w_to_limit"].attrs["units"], ds["positions"].attrs["units"], ds["time"].attrs["units"])""",
    "mfpde.load_config({'model': {'d': 2}})",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
    client.execute()
    return nb


def outputs(nb, i):
    return nb.cells[i].outputs


def has_png(outs):
    return any("image/png" in o.get("data", {}) for o in outs if o.output_type in ("display_data", "execute_result"))


def test_run_shows_progress(executed):
    outs = outputs(executed, 0)
    text = "".join(o.get("text", "") for o in outs if o.output_type == "stream")
    widget = any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outs
                 if o.output_type == "display_data")
    assert widget or ("t = 1/1" in text and "100%" in text), outs


def test_library_plot_and_user_plot_render_inline(executed):
    assert has_png(outputs(executed, 1)), "the library's figure is not shown inline"
    assert has_png(outputs(executed, 2)), "the user's own plt.plot is not shown inline after a library plot"


def test_reprs_are_short(executed):
    (out,) = [o for o in outputs(executed, 3) if o.output_type == "execute_result"]
    text = out["data"]["text/plain"]
    assert text.startswith("<Result 'nb.h5': particles on S^2") and len(text) < 400
    assert "text/html" in out["data"]
    (cfg,) = [o for o in outputs(executed, 5) if o.output_type == "execute_result"]
    assert cfg["data"]["text/plain"].startswith("Config(") and len(cfg["data"]["text/plain"]) < 300
    assert "<table>" in cfg["data"]["text/html"]


def test_to_xarray_dims_and_units(executed):
    text = "".join(o.get("text", "") for o in outputs(executed, 4) if o.output_type == "stream")
    assert "('component', 3)" in text and "('particle', 120)" in text and "('time', 5)" in text
    assert text.split("]")[1].split() == ["rad", "1", "1"]
