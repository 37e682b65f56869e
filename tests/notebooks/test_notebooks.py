"""Every notebook in notebooks/ is executed top to bottom (small budgets; see each notebook's first cell)."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    from tests.conftest import SHARED_DATA

    monkeypatch.setenv("BIOPLASTIC_NOTEBOOK_BUDGET", "small")
    monkeypatch.setenv("BIOPLASTIC_SHARED_DATA", str(SHARED_DATA))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
