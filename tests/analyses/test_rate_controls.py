"""analyses/rate_controls.py: the rate network's adaptivity controls (issue 11, case 6), on a few digits."""
from __future__ import annotations

import numpy as np

from bioplastic.io import load


def test_rate_controls_script(analysis_script, tmp_path):
    module = analysis_script("rate_controls")
    argv = ["--out", str(tmp_path), "--rules", "q_only", "--ranks", "2", "--seeds", "0", "--n-test", "20",
            "--n-train", "20"]
    assert module.main(argv) == 0
    ds = load(tmp_path / "rate_controls.nc")
    assert ds.test_accuracy.dims == ("feedback_learning", "rank", "seed")
    assert list(ds.feedback_learning.values) == ["q_only"] and list(ds["rank"].values) == [2]
    assert np.isfinite(ds.test_accuracy).all() and ((ds.test_accuracy >= 0) & (ds.test_accuracy <= 1)).all()
