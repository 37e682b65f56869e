"""The receptive-field, compute-to-target and rate-twin claims of ``bioplastic reproduce`` on planted numbers."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.stats import mannwhitneyu

from bioplastic.reproduction import experiments as E
from bioplastic.reproduction.claims import CLAIMS
from bioplastic.reproduction.experiments import analysis_module, rf_statistics

CLAIM = {c.id: c for c in CLAIMS}


def _rank_biserial_by_pairs(a, b):
    """The rank-biserial correlation from its definition: P(a > b) - P(a < b) over all pairs."""
    d = np.subtract.outer(np.asarray(a, float), np.asarray(b, float))
    return float(np.mean(np.sign(d)))


def test_compare_distributions_is_scipys_test_and_the_pairwise_rank_biserial():
    compare = analysis_module("receptive_fields.py").compare_distributions
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.3, 1, 17), np.r_[rng.normal(0, 1, 11), np.nan]
    diff, p, rb = compare(a, b)
    assert diff == pytest.approx(np.median(a) - np.nanmedian(b))
    assert p == pytest.approx(mannwhitneyu(a, b[:-1], alternative="two-sided").pvalue)
    assert rb == pytest.approx(_rank_biserial_by_pairs(a, b[:-1]))
    # ties count half: identical samples give 0; complete separation gives +-1
    assert compare(np.r_[1.0, 1, 2], np.r_[1.0, 1, 2])[2] == pytest.approx(0.0)
    assert compare(np.r_[5.0, 6, 7], np.r_[1.0, 2])[2] == pytest.approx(1.0)
    assert compare(np.r_[1.0, 2], np.r_[5.0, 6, 7])[2] == pytest.approx(-1.0)
    assert all(np.isnan(compare(np.r_[1.0], np.r_[1.0, 2])))


def _planted_rf(csi):
    """A receptive-field result with the planted CSI (condition -> (seed, neuron) array) in retina.relu2."""
    labels = list(csi)
    n_seed, n_neuron = next(iter(csi.values())).shape
    arr = np.full((n_seed, len(labels), 2, n_neuron), np.nan)
    for i, label in enumerate(labels):
        arr[:, i, 1] = csi[label]
    rng = np.random.default_rng(1)
    osi = rng.uniform(0, 1, arr.shape)
    osi[np.isnan(arr)] = np.nan
    return xr.Dataset(
        {"centre_surround_index": (("seed", "rule", "layer", "neuron"), arr),
         "orientation_selectivity_index": (("seed", "rule", "layer", "neuron"), osi),
         "circular_variance": (("seed", "rule", "layer", "neuron"), 1 - osi),
         "test_accuracy": (("seed", "rule", "epoch"), np.full((n_seed, len(labels), 1), 0.5))},
        coords={"seed": np.arange(n_seed), "rule": labels, "layer": ["retina.relu1", "retina.relu2"],
                "neuron": np.arange(n_neuron), "epoch": [1]})


def test_rf_claims_are_per_seed_median_differences_over_driven_units():
    rng = np.random.default_rng(2)
    bp = rng.uniform(0, 0.2, (3, 6))
    ldfa = rng.uniform(0, 0.2, (3, 6))
    bottleneck = np.full((3, 6), np.nan)
    bottleneck[:, :2] = rng.uniform(0.5, 0.9, (3, 2))  # 2 retina-output channels, the rest padding
    bottleneck[1, 1] = np.nan  # an undriven unit is left out
    ds = _planted_rf({"bp": bp, "ldfa_r1": ldfa, "ldfa_r16": ldfa + 1, "bp_bottleneck2": bottleneck})
    low = CLAIM["rf_low_rank_centre_surround"].measure(ds, None)
    np.testing.assert_allclose(low.values, np.median(ldfa, axis=1) - np.median(bp, axis=1))  # the lowest rank
    ctl = CLAIM["rf_bottleneck_centre_surround"].measure(ds, None)
    np.testing.assert_allclose(ctl.values, np.nanmedian(bottleneck, axis=1) - np.median(bp, axis=1))
    assert CLAIM["rf_bottleneck_centre_surround"].criterion.threshold == 0.1


def test_rf_statistics_pool_units_over_seeds_against_bp():
    rng = np.random.default_rng(3)
    bp, ldfa = rng.uniform(0, 0.3, (3, 5)), rng.uniform(0.2, 0.8, (3, 5))
    ds = _planted_rf({"bp": bp, "ldfa_r1": ldfa})
    ds["v1_circular_variance"] = (("v1_neuron",), rng.uniform(0, 1, 40))
    ds["v1_orientation_selectivity_index"] = (("v1_neuron",), rng.uniform(0, 1, 40))
    rows = {r["condition"]: r for r in rf_statistics(ds)}
    row = rows["ldfa_r1 retina.relu2"]
    assert row["units"] == 15
    assert row["median CSI"] == pytest.approx(np.median(ldfa))
    assert row["CSI p vs bp"] == pytest.approx(mannwhitneyu(ldfa.ravel(), bp.ravel()).pvalue)
    assert row["CSI effect vs bp"] == pytest.approx(_rank_biserial_by_pairs(ldfa.ravel(), bp.ravel()))
    cv = ds["circular_variance"].sel(rule="ldfa_r1", layer="retina.relu2").values.ravel()
    assert row["CV p vs V1"] == pytest.approx(mannwhitneyu(cv, ds["v1_circular_variance"].values).pvalue)
    assert np.isnan(rows["bp retina.relu2"]["CSI p vs bp"])  # the reference against itself: no test
    v1 = rows["V1 (Ringach 2002)"]
    assert v1["units"] == 40 and np.isnan(v1["median CSI"])
    assert v1["median CV"] == pytest.approx(np.median(ds["v1_circular_variance"].values))


def test_flops_to_target_claims_pair_ldfa_with_bp_by_seed():
    f = np.array([[[1.0, 2.0, 4.0], [0.5, 3.0, 3.0]], [[10.0, 10.0, 10.0], [8.0, 12.0, np.nan]]])
    ds = xr.Dataset({"flops_to_target": (("model", "rule", "seed"), f)},
                    coords={"model": ["mlp_mnist", "cnn_small"], "rule": ["bp", "ldfa"], "seed": [0, 1, 2]})
    np.testing.assert_allclose(CLAIM["compute_flops_to_90_mnist"].measure(ds, None).values, [0.5, -0.5, 0.25])
    cnn = CLAIM["compute_flops_to_90_cnn"].measure(ds, None).values
    np.testing.assert_allclose(cnn[:2], [0.2, -0.2])
    assert np.isnan(cnn[2])  # LDFA never reached the target: no saving to report (judged not reproduced)


def test_rate_claim_reads_the_twin_gap_and_is_not_run_without_the_twin(monkeypatch, tmp_path):
    gap = xr.Dataset({"gap": (("seed",), [0.5, 1.5, -0.2])}, coords={"seed": [0, 1, 2]})
    np.testing.assert_allclose(CLAIM["rate_matches_autograd_twin"].measure(gap, None).values, [0.5, 1.5, -0.2])
    monkeypatch.setattr(E, "_twin_function", lambda: None)
    ctx = E.Context(out=tmp_path, budget="smoke")
    assert "autograd twin" in E.EXPERIMENTS["rate_network"].missing(ctx)
    # the reason survives a report that runs nothing
    import bioplastic

    ds = bioplastic.reproduce(budget="smoke", out=tmp_path, claims="rate_matches_autograd_twin", run=False)
    assert "autograd twin" in str(ds["reason"].values[0])
