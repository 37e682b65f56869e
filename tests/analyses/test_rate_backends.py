"""analyses/rate_backends.py: the torch and brian2 backends of the rate network give the same rates and weight
changes, written as netCDF + PNG."""
from __future__ import annotations

import numpy as np

from bioplastic.io import load


def test_rate_backends_analysis_script(analysis_script, tmp_path):
    module = analysis_script("rate_backends")
    assert module.main(["--out", str(tmp_path), "--presentations", "2", "--record-every", "4"]) == 0
    ds = load(tmp_path / "rate_backends.nc")
    assert (tmp_path / "rate_backends.png").stat().st_size > 10_000
    assert list(ds.backend.values) == ["torch", "brian2"]
    assert ds.rate.dims == ("backend", "time", "neuron") and ds.weight_change.dims == ("backend", "time", "synapse")
    np.testing.assert_allclose(ds.rate.sel(backend="torch"), ds.rate.sel(backend="brian2"), atol=1e-10)
    np.testing.assert_allclose(ds.weight_change.sel(backend="torch"), ds.weight_change.sel(backend="brian2"),
                               atol=1e-10)
    assert float(np.abs(ds.weight_change).max()) > 1e-3
    assert ds.attrs["max_abs_rate_difference"] < 1e-10
    assert ds.time.attrs["units"] == "s"
