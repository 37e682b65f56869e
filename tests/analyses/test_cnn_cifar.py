"""analyses/cnn_cifar.py end to end on a tiny synthetic CIFAR-10 folder (resumes on a second call), and
analyses/compute_savings.py's FLOPs to a target accuracy on its result (slow: it trains small networks)."""
from __future__ import annotations

import numpy as np
import pytest

from bioplastic import io
from bioplastic.training.results import fraction_rank


@pytest.mark.slow
def test_cnn_cifar_script_and_flops_to_target(analysis_script, tiny_cifar, tmp_path):
    out = tmp_path / "cnn"
    args = ["--out", str(out), "--data", str(tiny_cifar), "--cache-dir", str(tmp_path / "cache"), "--budget",
            "small", "--epochs", "2", "--no-progress", "--device", "cpu"]
    first = analysis_script("cnn_cifar").main(args)
    assert (out / "cnn_cifar.png").stat().st_size > 0
    assert list(first["rule"].values) == ["bp", "ldfa_normative", "fa"]
    again = analysis_script("cnn_cifar").main(args)  # resumes: every run is reused
    np.testing.assert_array_equal(first["test_accuracy"].values, again["test_accuracy"].values)
    cs = analysis_script("compute_savings")
    savings = cs.flops_to_target(io.load(out / "results.nc"), target="own")
    # BP at rank -1, LDFA at the relative rank width/4 (compare's rank_fractions=[0.25])
    quarter = fraction_rank(0.25)
    assert list(first["rank"].values) == [-1, quarter] and float(first["rank_fraction"].sel(rank=quarter)) == 0.25
    per_step = savings["flops_per_step"]
    assert per_step.sel(rule="ldfa_normative", rank=quarter) < per_step.sel(rule="bp", rank=-1)
