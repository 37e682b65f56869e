"""analyses/feedback_convergence.py: the per-epoch mode measures the Kolen-Pollack identity it documents."""
import numpy as np
import pytest

from bioplastic import io


@pytest.fixture(scope="module")
def script(analysis_script):
    return analysis_script("feedback_convergence")


def test_per_epoch_analysis_measures_the_identity(script, tmp_path):
    """--per-epoch under SGD: the measured gap ||Q - P^T W|| / ||Q_0 - P^T W_0|| equals the closed-form factor
    (bioplastic.training.kolen_pollack_gap) and the update angle is 0 (float32), epoch by epoch, in every layer."""
    assert script.main(["--out", str(tmp_path), "--per-epoch", "t", "--model", "mlp_digits", "--dataset", "digits",
                        "--modes", "q_only", "--seeds", "0", "--epochs", "3", "--max-train", "256", "--optimizer",
                        "sgd", "--lr", "0.05", "--momentum", "0.9", "--weight-decay", "0.3"]) == 0
    ds = io.load(tmp_path / "t.nc").sel(mode="q_only")
    assert ds.sizes["epoch"] == 3 and ds.sizes["layer"] == 3
    assert float(ds.decay_factor.isel(epoch=-1).max()) < 0.9
    np.testing.assert_allclose(ds.gap_ratio.values, ds.decay_factor.values, rtol=1e-4)
    assert float(ds.update_angle.max()) < 0.01
    assert script.main(["--summarize", str(tmp_path), "--layer", "fc2"]) == 0
