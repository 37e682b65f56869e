"""Every result type the package writes: names that do not shadow xarray, text that plots after netCDF.

Issue 16 items 5 and 6. ``ds.rank`` is xarray's ``Dataset.rank`` method, so a dim, coordinate or variable
whose name is a ``Dataset`` attribute can only be reached as ``ds["name"]``. The ``rank`` dim (feedback rank)
is the single, documented exception (README, docs/compare.md, docs/conventions.md); every other name must be
reachable as an attribute. Text arrays (``rule``, ``layer``, ``status``, ...) must come back from
``bioplastic.io`` as fixed-width unicode, which xarray plots against, never as object arrays.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import xarray as xr

import bioplastic
from bioplastic import analysis as A
from bioplastic import io, theory
from bioplastic.analysis import receptive_fields as RF
from bioplastic.training import results as R

ALLOWED_COLLISIONS = {"rank"}
"""Names kept although they are ``xarray.Dataset`` attributes (documented: use ``ds["rank"]``)."""


def _fake_run(layers=("net.0", "net.2"), epochs=2):
    class Run:
        status, epochs_completed, config, seconds = "ok", epochs, {"lr": 0.1}, 1.0
        train_loss = test_loss = np.linspace(1.0, 0.5, epochs)
        test_accuracy = np.linspace(0.5, 0.9, epochs)
        alignment = {k: np.full((epochs, len(layers)), 0.5)
                     for k in ("update_cosine", "feedback_angle", "subspace_angle", "feedback_rank")}

    Run.layers = list(layers)
    return Run()


def _results() -> dict[str, xr.Dataset]:
    """One small instance of every result type of the package (Datasets; DataArrays as their Dataset)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = xr.DataArray(np.abs(rng.normal(size=(12, 9))), dims=("stimulus", "neuron"),
                     coords={"stimulus": [f"img{i}" for i in range(12)], "category": ("stimulus", ["a", "b"] * 6)})
    reps = xr.DataArray(rng.normal(size=(2, 12, 9)), dims=("repeat", "stimulus", "neuron"))
    rdms = A.rdm_stack([A.rdm(X + rng.normal(size=X.shape)) for _ in range(3)], "subject", labels=["s1", "s2", "s3"])
    out = {
        "rdm": A.rdm(X, "correlation"), "crossnobis": A.rdm(reps, "crossnobis"), "rdm_stack": rdms,
        "compare_rdms": A.compare_rdms(rdms, A.rdm(X), "kendall_tau_a"),
        "noise_ceiling": A.noise_ceiling(rdms, "spearman"), "cka_matrix": A.cka_matrix({"x": X, "y": X ** 2}),
        "cv_pca": A.cv_pca(reps, n_shuffles=2), "pca_spectrum": A.pca_spectrum(X),
        "powerlaw_fit": A.powerlaw_fit(A.pca_spectrum(X), rank_range=(1, 8)),
        "lifetime_sparseness": A.lifetime_sparseness(X), "population_sparseness": A.population_sparseness(X),
    }
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    out["record_activations"] = A.record_activations(net, torch.randn(5, 1, 6, 6),
                                                     coords={"label": np.arange(5) % 2})
    cnet = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 9 * 9, 3))
    rf = RF.measure_receptive_fields(cnet, "1", (1, 11, 11), method="gradient", n_images=8, batch_size=4)
    out["measure_receptive_fields"] = rf
    out["receptive_field_indices"] = RF.receptive_field_indices(rf)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    out["alignment"] = bioplastic.nn.alignment(bioplastic.convert(mlp, bioplastic.rules.make("ldfa", rank=2)),
                                               torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]), F.cross_entropy)
    teacher = theory.random_teacher(5, 7, [2.0, 1.0, 0.5], seed=0)
    out["theory.simulate"] = theory.simulate(bioplastic.rules.make("ldfa", rank=2), teacher, n_hidden=4, steps=5)
    out["theory.gradient_flow"] = theory.gradient_flow("bp", teacher, n_hidden=4, steps=5, method="RK45")
    out["theory.compare_rules"] = theory.compare_rules(["bp", "fa"], teacher, n_hidden=4, steps=5)
    from bioplastic.rate import RateNetwork, simulate, train_online

    rate = RateNetwork.from_sizes([5, 4, 3], feedback_rank=2, feedback_learning="kolen_pollack", learning_rate=20.0,
                                  dtype=torch.float64)
    x, y, xt, yt = rng.random((6, 5)), rng.integers(0, 3, 6), rng.random((4, 5)), rng.integers(0, 3, 4)
    out["rate.train_online"] = train_online(rate, x, y, xt, yt, epochs=1, presentation=0.01, dt=0.001)
    out["rate.simulate"] = simulate(rate, x, np.eye(3)[y], presentation=0.01, dt=0.001)
    run = R.run_to_dataset(_fake_run(), rule="ldfa", feedback_learning="normative", rank=2, seed=0, epochs=2)
    out["compare run file"] = run
    out["compare results.nc"] = R.merge_runs(
        [run], rules=[("bp", None), ("ldfa", "normative")], ranks=[R.NO_RANK, 2, R.fraction_rank(0.25)],
        seeds=[0], epochs=2, chance=(0.1, 0.12))
    from bioplastic.reproduction import runner
    from bioplastic.reproduction.claims import CLAIMS
    from bioplastic.training.task_dimensionality import minimal_sufficient_rank

    rows = [{"claim": CLAIMS[0], "values": np.array([0.5, 0.7]), "seeds": np.array([0, 1]), "reason": ""},
            {"claim": CLAIMS[1], "values": np.array([]), "seeds": np.array([], dtype=np.int64), "reason": "not run"}]
    out["reproduce claims.nc"] = runner._assemble(rows, "smoke", Path("out"), None, None, "cpu")
    accuracy = xr.DataArray(rng.uniform(0.5, 0.9, (2, 3, 3)), dims=("K", "rank", "seed"),
                            coords={"K": [2, 4], "rank": [1, 2, 4], "seed": [0, 1, 2]})
    reference = xr.DataArray(rng.uniform(0.85, 0.9, (2, 3)), dims=("K", "seed"),
                             coords={"K": [2, 4], "seed": [0, 1, 2]})
    out["minimal_sufficient_rank"] = minimal_sufficient_rank(accuracy, reference, n_bootstrap=20)
    return {k: v if isinstance(v, xr.Dataset) else v.to_dataset(name=v.name or "value") for k, v in out.items()}


@pytest.fixture(scope="module")
def results():
    return _results()


def test_no_name_shadows_a_dataset_attribute_except_the_documented_rank(results):
    taken = set(dir(xr.Dataset))
    offending = {}
    for kind, ds in results.items():
        names = set(ds.dims) | set(ds.coords) | set(ds.data_vars)
        clash = sorted((names & taken) - ALLOWED_COLLISIONS)
        if clash:
            offending[kind] = clash
    assert not offending, f"names that xarray.Dataset attributes shadow (use other names): {offending}"
    # the exception is real and documented: ds.rank is the method, ds["rank"] the dimension
    ds = results["compare results.nc"]
    assert callable(ds.rank) and list(ds["rank"].values) == [R.NO_RANK, 2, R.fraction_rank(0.25)]
    assert ALLOWED_COLLISIONS <= taken  # a stale exception would hide nothing


@pytest.mark.parametrize("page", ["README.md", "docs/compare.md", "docs/conventions.md"])
def test_the_rank_exception_is_documented(page):
    text = (Path(__file__).resolve().parents[1] / page).read_text()
    assert 'ds["rank"]' in text and "ds.rank" in text


def test_every_result_round_trips_with_unicode_text(results, tmp_path):
    for kind, ds in results.items():
        back = io.load(io.save(ds, tmp_path / f"{kind}.nc"))
        xr.testing.assert_identical(back, ds)
        objects = sorted(name for name, var in back.variables.items() if var.dtype == object)
        assert not objects, f"{kind}: object-dtype text after io.load: {objects}"
        for name, var in ds.variables.items():
            if var.dtype.kind in "UO" and var.size and all(isinstance(v, str) for v in var.values.ravel()):
                assert back[name].dtype.kind == "U", (kind, name, back[name].dtype)
