"""Every notebook in notebooks/ is executed top to bottom (small budgets; see each notebook's first cell).

A notebook that reads ``../shared/data`` says so in its metadata (``{"bioplastic": {"needs_shared_data":
true}}``) and is skipped with a reason where that folder is absent."""
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
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: one thread per xdist worker
    nb = nbformat.read(path, as_version=4)
    if nb.metadata.get("bioplastic", {}).get("needs_shared_data") and not SHARED_DATA.is_dir():
        pytest.skip(f"{path.name} reads the real data in {SHARED_DATA}, which is absent")
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
