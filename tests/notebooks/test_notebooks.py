"""Every notebook in notebooks/ is executed top to bottom (small budgets; see each notebook's first cell).

A notebook that reads ``../shared/data`` says so in its metadata (``{"bioplastic": {"needs_shared_data":
true}}``) and is skipped with a reason where that folder is absent. The kernel gets its own temporary folder
(``TMPDIR``): a notebook leaves none of its ``bioplastic-*`` folders behind."""
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def _client(nb, cwd: Path, **kwargs):
    return nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
                                   **kwargs)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    from tests.conftest import SHARED_DATA

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("BIOPLASTIC_NOTEBOOK_BUDGET", "small")
    monkeypatch.setenv("BIOPLASTIC_SHARED_DATA", str(SHARED_DATA))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel inherits it: one thread per xdist worker
    monkeypatch.setenv("TMPDIR", str(scratch))  # the kernel's tempfile.gettempdir()
    nb = nbformat.read(path, as_version=4)
    if nb.metadata.get("bioplastic", {}).get("needs_shared_data") and not SHARED_DATA.is_dir():
        pytest.skip(f"{path.name} reads the real data in {SHARED_DATA}, which is absent")
    _client(nb, tmp_path).execute()
    # The notebooks' own folders are named bioplastic-*; torch keeps its compile cache (torchinductor_<user>)
    # in the temporary folder by design, for every later process.
    left = sorted(p.name for p in scratch.iterdir() if p.name.startswith("bioplastic"))
    assert left == [], f"{path.name} left {left} in its temporary folder"


def test_notebook_02_checks_the_data_before_training(tmp_path, monkeypatch):
    """Without the real data, notebook 02 stops at its settings cell, naming the missing files and the data
    page, before the training cell runs."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("BIOPLASTIC_NOTEBOOK_BUDGET", "small")
    monkeypatch.setenv("BIOPLASTIC_SHARED_DATA", str(empty))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("02_rsa_neural_data.ipynb")], as_version=4)
    for cell in nb.cells:  # the notebook ships executed: clear its saved outputs, so what is left ran here
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    training = next(i for i, c in enumerate(nb.cells) if "bioplastic.compare(" in c.source)
    with pytest.raises(nbclient.exceptions.CellExecutionError) as raised:
        _client(nb, tmp_path).execute()
    error = raised.value
    assert error.ename == "FileNotFoundError"
    assert "Kriegeskorte_Neuron2008_supplementalData.mat" in error.evalue and "docs/data.md" in error.evalue
    failed = [i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed and failed[0] < training
    assert not nb.cells[training].get("outputs") and nb.cells[training].get("execution_count") is None
