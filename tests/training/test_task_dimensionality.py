"""The task-dimensionality experiment (issue 12): the r* estimate and bad input (the script: tests/analyses)."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioplastic.training import task_dimensionality as td


def table(means_by_rank, bp, noise=None, ranks=(1, 2, 4, 8)):
    """accuracy (rank, seed) with the given per-rank seed values; bp (seed)."""
    seeds = list(range(len(bp)))
    a = np.asarray(means_by_rank, dtype=float)
    if a.ndim == 1:
        a = np.repeat(a[:, None], len(seeds), axis=1)
    acc = xr.DataArray(a, dims=("rank", "seed"), coords={"rank": list(ranks), "seed": seeds})
    ref = xr.DataArray(np.asarray(bp, dtype=float), dims=("seed",), coords={"seed": seeds})
    return acc, ref


def test_r_star_one_point_tolerance_when_bp_seeds_agree():
    # BP sd = 0: threshold 0.90 - 0.01 = 0.89; seed means 0.5, 0.88, 0.895, 0.90 -> r* = 4
    acc, ref = table([0.5, 0.88, 0.895, 0.90], [0.9, 0.9, 0.9])
    rs = td.minimal_sufficient_rank(acc, ref, n_bootstrap=200)
    assert float(rs.threshold) == pytest.approx(0.89)
    assert float(rs.r_star) == 4
    # identical seeds: every bootstrap resample gives the same r*, every seed alone too
    assert float(rs.r_star_low) == float(rs.r_star_high) == 4
    assert list(rs.r_star_per_seed.values) == [4, 4, 4]
    assert float(rs.r_star_not_reached) == 0


def test_r_star_uses_bp_seed_sd_when_larger_than_one_point():
    # BP 0.8, 0.9, 1.0: mean 0.9, sd (ddof=1) 0.1 > 0.01 -> threshold 0.8; 0.85 at r = 2 passes
    acc, ref = table([0.5, 0.85, 0.88, 0.9], [0.8, 0.9, 1.0])
    rs = td.minimal_sufficient_rank(acc, ref, n_bootstrap=0)
    assert float(rs.threshold) == pytest.approx(0.8)
    assert float(rs.r_star) == 2
    assert np.isnan(float(rs.r_star_low))  # no bootstrap asked
    # without the sd widening: threshold 0.89 -> r* = 8
    rs = td.minimal_sufficient_rank(acc, ref, n_bootstrap=0, use_reference_sd=False)
    assert float(rs.r_star) == 8


def test_r_star_not_reached_is_inf_and_nan_ranks_are_skipped():
    acc, ref = table([0.5, 0.6, 0.7, 0.8], [0.9, 0.9, 0.9])
    rs = td.minimal_sufficient_rank(acc, ref, n_bootstrap=50)
    assert np.isinf(float(rs.r_star)) and float(rs.r_star_not_reached) == 1
    acc, ref = table([np.nan, 0.95, 0.95, np.nan], [0.9, 0.9, 0.9])  # r = 1 not run
    assert float(td.minimal_sufficient_rank(acc, ref, n_bootstrap=0).r_star) == 2


def test_r_star_per_seed_and_bootstrap_spread_follow_the_seeds():
    # seed 0 reaches the threshold 0.89 at r = 1, seed 1 at r = 4, seed 2 at r = 8; means: 0.63, 0.75, 0.9, 0.95
    per_seed = [[0.95, 0.5, 0.45], [0.95, 0.7, 0.6], [0.95, 0.95, 0.8], [0.95, 0.95, 0.95]]
    acc, ref = table(per_seed, [0.9, 0.9, 0.9])
    rs = td.minimal_sufficient_rank(acc, ref, n_bootstrap=2000)
    assert list(rs.r_star_per_seed.values) == [1, 4, 8]
    assert float(rs.r_star) == 4  # seed means 0.633, 0.75, 0.9, 0.95
    # bootstrap (threshold fixed: BP's seeds agree): r* <= 4 unless seed 2 is drawn at least twice
    # (rank-4 mean 0.95 - 0.05 n2 >= 0.89 <=> n2 <= 1), P = 8/27 + 12/27 = 20/27 = 0.74; r* = 1 or 2 only when
    # seed 0 is drawn three times (1/27); otherwise 8. So the 16th percentile is 4 and the 84th is 8.
    assert float(rs.r_star_low) == 4 and float(rs.r_star_high) == 8
    assert float(rs.r_star_not_reached) == 0


def test_r_star_keeps_other_dims_and_broadcasts_the_reference():
    acc, ref = table([0.5, 0.88, 0.895, 0.90], [0.9, 0.9, 0.9])
    both = xr.concat([acc, acc + 0.1], dim=xr.DataArray(["a", "b"], dims="rule", name="rule"))
    rs = td.minimal_sufficient_rank(both, ref, n_bootstrap=0)
    assert rs.r_star.dims == ("rule",) and list(rs.r_star.values) == [4, 2]  # b: 0.6, 0.98 -> r* = 2


def test_r_star_bad_input():
    acc, ref = table([0.5, 0.9, 0.9, 0.9], [0.9, 0.9, 0.9])
    with pytest.raises(ValueError, match="seeds"):
        td.minimal_sufficient_rank(acc, ref.assign_coords(seed=[5, 6, 7]))
    with pytest.raises(ValueError, match="tolerance"):
        td.minimal_sufficient_rank(acc, ref, tolerance=-0.1)
    with pytest.raises(ValueError, match="dims"):
        td.minimal_sufficient_rank(acc.rename(rank="r"), ref)


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": "huge"}, r"budget.*smoke.*cpu.*paper"),
    ({"dataset": "cifar100"}, r"dataset.*teacher.*mnist.*cifar10"),
    ({"seeds": []}, r"seeds"),
    ({"threads": 0}, r"threads must be an integer >= 1, got 0"),
])
def test_run_task_dimensionality_bad_input_writes_nothing(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        td.run_task_dimensionality(tmp_path / "o", **{"budget": "smoke", **kwargs})
    assert not (tmp_path / "o").exists()
