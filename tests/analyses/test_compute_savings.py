"""analyses/compute_savings.py: FLOPs from the package's counter (bioplastic.training.flops) plus measured step
times, written as netCDF + PNG."""
from __future__ import annotations

import numpy as np

from bioplastic import io
from bioplastic.training.flops import step_flops


def test_script_writes_flops_equal_to_the_package_counter_and_step_times(analysis_script, tmp_path):
    ds = analysis_script("compute_savings").main(
        ["--out", str(tmp_path), "--models", "cnn_small", "--ranks", "1,4", "--feedback-learning", "fixed",
         "--batch-size", "2", "--repeats", "2"])
    saved = io.load(tmp_path / "compute_savings.nc")
    assert (tmp_path / "compute_savings.png").stat().st_size > 0
    reference = step_flops(["cnn_small"], [1, 4], ["fixed"], batch_size=2)
    for name in ("bp_flops", "ldfa_flops", "weight_flop_ratio", "flop_ratio_limit"):
        np.testing.assert_array_equal(saved[name].values, reference[name].values)
    assert np.isfinite(saved["time_ratio"]).all() and (saved["ldfa_step_seconds"] > 0).all()
    assert ds["time_ratio"].dims == ("model", "feedback_learning", "rank")
