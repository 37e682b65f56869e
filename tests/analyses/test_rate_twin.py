"""analyses/rate_twin.py: the rate network against its autograd twin, on a few digits; per-seed results resume."""
from __future__ import annotations

import numpy as np

from bioplastic.io import load


def test_rate_twin_script_and_resume(analysis_script, tmp_path):
    module = analysis_script("rate_twin")
    argv = ["--out", str(tmp_path), "--seeds", "1", "--epochs", "1", "--n-train", "30", "--n-test", "20",
            "--bp-step-scales", "1,4"]
    assert module.main(argv) == 0
    ds = load(tmp_path / "rate_twin.nc")
    assert list(ds.model.values) == ["rate", "twin", "bp_twin", "bp_twin_x4"] and list(ds.seed.values) == [1]
    final = ds.test_accuracy.isel(step=-1)
    np.testing.assert_allclose(ds.gap, 100 * (final.sel(model="twin") - final.sel(model="rate")))
    assert (tmp_path / "rate_twin.png").stat().st_size > 10_000
    stamp = (tmp_path / "seed1.nc").stat().st_mtime_ns
    assert module.main(argv) == 0  # a rerun reuses the saved seed
    assert (tmp_path / "seed1.nc").stat().st_mtime_ns == stamp
