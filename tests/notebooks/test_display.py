"""Figures and progress bars as a notebook user sees them (issue 16 items 2 and 3).

A figure returned by a plotting function of the package is a picture when it is a cell's last value, before
and after pyplot is imported (shown once, not twice); ``bioplastic.compare`` shows one progress bar, a widget,
and nothing warns ``TqdmWarning: IProgress not found``."""
from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

SETTINGS = dict(dataset="digits", rules=["bp", "ldfa"], ranks=[2], feedback_learning=["normative"], epochs=2,
                max_train=200, seeds=[0], figure=False)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results():
    import bioplastic

    return bioplastic.compare(progress=False, **SETTINGS)


def test_figure_has_a_png_repr_without_pyplot(results):
    from IPython.core.formatters import DisplayFormatter
    from PIL import Image
    import io

    from bioplastic._figures import REPR_DPI, NotebookFigure
    from bioplastic.training import plot_comparison

    fig = plot_comparison(results)
    assert isinstance(fig, NotebookFigure)
    png = fig._repr_png_()
    assert png.startswith(PNG_SIGNATURE)
    width, height = Image.open(io.BytesIO(png)).size
    # rendered at REPR_DPI; bbox_inches="tight" only trims or pads the margins (pad 0.1 inch)
    full_w, full_h = fig.get_size_inches() * REPR_DPI
    assert abs(width / full_w - 1) < 0.1 and abs(height / full_h - 1) < 0.1, (width, height, full_w, full_h)
    # IPython's own display machinery (what Jupyter calls for a cell's value) picks the PNG
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"] == png


def test_notebook_shows_one_bar_and_each_figure_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cells = [
        "import sys\nimport bioplastic\nfrom bioplastic.training import plot_comparison\n"
        f"ds = bioplastic.compare(progress=True, **{SETTINGS!r})",
        "assert 'matplotlib.pyplot' not in sys.modules  # no pyplot call ran first\n"
        "fig = plot_comparison(ds)\nfig",
        "import matplotlib.pyplot as plt  # the inline backend's formatter takes over\nfig",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    compare_cell, figure_cell, pyplot_cell = (c["outputs"] for c in nb.cells)

    text = "".join(o.get("text", "") for o in compare_cell if o["output_type"] == "stream")
    assert "IProgress" not in text and "TqdmWarning" not in text
    widgets = [o for o in compare_cell if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1, compare_cell  # one bar for the whole comparison, not one per run
    # the bar's final state (saved with the notebook): 2 runs x 2 epochs, all done
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] in ("FloatProgressModel", "IntProgressModel")]
    assert [(b["value"], b["max"]) for b in bars] == [(4, 4)]

    for outputs in (figure_cell, pyplot_cell):
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, outputs
