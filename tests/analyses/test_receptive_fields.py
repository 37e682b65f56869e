"""analyses/receptive_fields.py end to end on a tiny synthetic CIFAR-10 folder: netCDF + PNG (slow: it trains
several small networks)."""
from __future__ import annotations

import numpy as np
import pytest

from bioplastic import io


@pytest.mark.slow
def test_receptive_fields_script(analysis_script, tiny_cifar, tmp_path):
    out = tmp_path / "rf"
    ds = analysis_script("receptive_fields").main(
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
