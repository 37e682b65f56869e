"""Comparison results: the rank of a relative-rank run is readable from coordinates (no decoding of the rank
key), the netCDF round trip is exact, and results of an older format load converted while a newer format is
refused with an error naming the file and the versions."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioplastic import io
from bioplastic.training import results as R


def _run(rule, fl, rank, epochs=2):
    class Run:
        status, epochs_completed, config, seconds = "ok", epochs, {"lr": 0.1}, 1.0
        train_loss = test_loss = np.linspace(1.0, 0.5, epochs)
        test_accuracy = np.linspace(0.5, 0.9, epochs)
        alignment = {"update_cosine": np.full((epochs, 2), 0.5)}
        layers = ["net.0", "net.2"]

    return R.run_to_dataset(Run(), rule=rule, feedback_learning=fl, rank=rank, seed=0, epochs=epochs)


@pytest.fixture
def grid():
    quarter = R.fraction_rank(0.25)
    runs = [_run("bp", None, R.NO_RANK), _run("ldfa", "normative", 10), _run("ldfa", "normative", quarter)]
    return R.merge_runs(runs, rules=[("bp", None), ("ldfa", "normative")], ranks=[R.NO_RANK, 10, quarter],
                        seeds=[0], epochs=2)


def test_rank_is_readable_from_its_coordinates(grid):
    assert list(grid["rank_label"].values) == ["-", "10", "0.25w"]
    np.testing.assert_array_equal(grid["rank_fraction"].values, [np.nan, np.nan, 0.25])
    by_label = grid.swap_dims(rank="rank_label")
    assert float(by_label["test_accuracy"].sel(rule="ldfa_normative", rank_label="0.25w", seed=0)[-1]) == 0.9
    assert grid.attrs["results_format"] == R.RESULTS_FORMAT


def test_netcdf_round_trip_is_exact(grid, tmp_path):
    io.save(grid, tmp_path / "results.nc")
    back = R.load_results(tmp_path)
    xr.testing.assert_identical(back, grid)


def test_older_results_load_converted(grid, tmp_path):
    old = grid.drop_vars("rank_label")
    del old.attrs["results_format"]  # format 1: written before the attribute existed
    io.save(old, tmp_path / "results.nc")
    back = R.load_results(tmp_path)
    assert list(back["rank_label"].values) == ["-", "10", "0.25w"]
    assert back.attrs["results_format"] == R.RESULTS_FORMAT
    xr.testing.assert_identical(back, grid)


def test_newer_results_are_refused_naming_file_and_versions(grid, tmp_path):
    newer = grid.copy()
    newer.attrs["results_format"] = R.RESULTS_FORMAT + 1
    newer.attrs["bioplastic_version"] = "9.9.9"
    path = tmp_path / "results.nc"
    io.save(newer, path)
    with pytest.raises(ValueError, match=rf"results.nc.*format {R.RESULTS_FORMAT + 1}.*9\.9\.9"):
        R.load_results(path)


def test_a_file_that_is_not_a_comparison_is_named(tmp_path):
    path = tmp_path / "other.nc"
    io.save(xr.Dataset({"x": ("t", [1.0, 2.0])}), path)
    with pytest.raises(ValueError, match="other.nc.*not the results of bioplastic.compare"):
        R.load_results(path)
