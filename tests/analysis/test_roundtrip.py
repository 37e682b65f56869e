"""Every analysis result survives a netCDF round trip through bioplastic.io unchanged."""
from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from torch import nn

from bioplastic import analysis as A
from bioplastic.io import load, save


def _round_trip(obj, path):
    ds = obj if isinstance(obj, xr.Dataset) else obj.to_dataset(name=obj.name or "value")
    back = load(save(ds, path))
    xr.testing.assert_identical(back, ds)
    return back


def test_every_result_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = xr.DataArray(np.abs(rng.normal(size=(12, 9))), dims=("stimulus", "neuron"),
                     coords={"stimulus": [f"img{i}" for i in range(12)], "category": ("stimulus", ["a", "b"] * 6)})
    reps = xr.DataArray(rng.normal(size=(2, 12, 9)), dims=("repeat", "stimulus", "neuron"))
    rdms = A.rdm_stack([A.rdm(X + rng.normal(size=X.shape)) for _ in range(3)], "subject", labels=["s1", "s2", "s3"])
    results = {
        "rdm": A.rdm(X, "correlation"),
        "crossnobis": A.rdm(reps, "crossnobis"),
        "compare": A.compare_rdms(rdms, A.rdm(X), "kendall_tau_a"),
        "ceiling": A.noise_ceiling(rdms, "spearman"),
        "cka": A.cka_matrix({"x": X, "y": X**2}),
        "cv_pca": A.cv_pca(reps, n_shuffles=2),
        "pca": A.pca_spectrum(X),
        "powerlaw": A.powerlaw_fit(A.pca_spectrum(X), rank_range=(1, 8)),
        "lifetime": A.lifetime_sparseness(X),
        "population": A.population_sparseness(X),
    }
    for name, result in results.items():
        _round_trip(result, tmp_path / f"{name}.nc")
    back = load(tmp_path / "powerlaw.nc")
    assert list(back.attrs["rank_range"]) == [1, 8]


def test_activations_round_trip(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    acts = A.record_activations(net, torch.randn(5, 1, 6, 6), coords={"label": np.arange(5) % 2})
    back = _round_trip(acts, tmp_path / "acts.nc")
    assert back["3"].attrs["shape"] == "(3,)" and list(back.data_vars) == ["0", "1", "2", "3"]
    one = A.record_activations(net, torch.randn(5, 1, 6, 6), ["3"])  # one layer: no one-element list attrs
    _round_trip(one, tmp_path / "one.nc")
