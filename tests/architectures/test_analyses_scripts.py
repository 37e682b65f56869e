"""The at-scale analysis scripts run end to end on a tiny synthetic CIFAR-10 folder and write netCDF + PNG
(slow: each trains several small networks)."""
from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

from bioplastic import io
from bioplastic.data.cifar10 import CLASSES
from bioplastic.training.results import fraction_rank

REPO = Path(__file__).resolve().parents[2]


def _script(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_cifar(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name, n in [*((f"data_batch_{i}", 24) for i in range(1, 6)), ("test_batch", 40)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        (root / name).write_bytes(pickle.dumps({b"data": data, b"labels": rng.integers(0, 10, n).tolist()}))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))
    return root


@pytest.mark.slow
def test_receptive_fields_script(tiny_cifar, tmp_path):
    out = tmp_path / "rf"
    ds = _script("analyses/receptive_fields.py").main(
        ["--out", str(out), "--data", str(tiny_cifar), "--cache-dir", str(tmp_path / "cache"), "--budget", "small",
         "--ranks", "1,8", "--n-images", "128", "--no-progress", "--device", "cpu"])
    saved = io.load(out / "receptive_fields.nc")
    assert (out / "receptive_fields.png").stat().st_size > 0
    assert list(saved["rule"].values) == ["untrained", "bp", "ldfa_r1", "ldfa_r8"]
    assert list(saved["rank"].values) == [-1, -1, 1, 8]
    assert saved["centre_surround_index"].dims == ("rule", "layer", "neuron")
    assert saved["receptive_field"].shape[-2:] == (17, 17)
    assert set(saved["csi_p_value"].dims) == {"layer"}
    assert np.isfinite(saved["test_accuracy"].sel(rule="bp")).all()
    assert ds.attrs["budget"] == "small"


@pytest.mark.slow
def test_cnn_cifar_script_and_flops_to_target(tiny_cifar, tmp_path):
    out = tmp_path / "cnn"
    args = ["--out", str(out), "--data", str(tiny_cifar), "--cache-dir", str(tmp_path / "cache"), "--budget",
            "small", "--epochs", "2", "--no-progress", "--device", "cpu"]
    first = _script("analyses/cnn_cifar.py").main(args)
    assert (out / "cnn_cifar.png").stat().st_size > 0
    assert list(first["rule"].values) == ["bp", "ldfa_normative", "fa"]
    again = _script("analyses/cnn_cifar.py").main(args)  # resumes: every run is reused
    np.testing.assert_array_equal(first["test_accuracy"].values, again["test_accuracy"].values)
    cs = _script("analyses/compute_savings.py")
    savings = cs.flops_to_target(io.load(out / "results.nc"), target="own")
    # BP at rank -1, LDFA at the relative rank width/4 (compare's rank_fractions=[0.25])
    quarter = fraction_rank(0.25)
    assert list(first["rank"].values) == [-1, quarter] and float(first["rank_fraction"].sel(rank=quarter)) == 0.25
    per_step = savings["flops_per_step"]
    assert per_step.sel(rule="ldfa_normative", rank=quarter) < per_step.sel(rule="bp", rank=-1)
