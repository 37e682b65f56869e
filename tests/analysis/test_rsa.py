"""RDMs, RDM comparisons and noise ceilings against scipy, numpy and rsatoolbox."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import torch
import xarray as xr
from scipy.spatial.distance import pdist, squareform

from bioplastic.analysis import compare_rdms, noise_ceiling, rdm, rdm_stack
from bioplastic.analysis.rsa import (
    COMPARE_METHODS,
    DISTANCES,
    from_rsatoolbox_rdms,
    to_rsatoolbox_dataset,
    to_rsatoolbox_rdms,
)


@pytest.fixture
def responses():
    rng = np.random.default_rng(0)
    return rng.normal(size=(12, 30)) + rng.normal(size=(12, 1))


@pytest.mark.parametrize("distance", ["correlation", "euclidean", "sqeuclidean", "cosine"])
def test_rdm_equals_scipy_pdist(responses, distance):
    out = rdm(responses, distance=distance)
    assert out.dims == ("stimulus_i", "stimulus_j")
    np.testing.assert_allclose(squareform(out.values, checks=False), pdist(responses, metric=distance),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.diag(out.values), 0.0)
    assert out.attrs["distance"] == distance


def test_plain_and_squared_euclidean_are_distinct(responses):
    plain = rdm(responses, distance="euclidean").values
    squared = rdm(responses, distance="sqeuclidean").values
    np.testing.assert_allclose(plain**2, squared, rtol=1e-12)
    assert not np.allclose(plain, squared)


def test_correlation_distance_is_one_minus_corrcoef(responses):
    np.testing.assert_allclose(rdm(responses, "correlation").values, 1 - np.corrcoef(responses), atol=1e-12)


def test_rdm_accepts_dataarray_tensor_and_conv_maps(responses):
    da = xr.DataArray(responses.reshape(12, 5, 6), dims=("stimulus", "channel", "y"),
                      coords={"stimulus": [f"s{i}" for i in range(12)], "category": ("stimulus", list("ab") * 6)})
    out = rdm(da, "euclidean")
    np.testing.assert_allclose(out.values, rdm(responses, "euclidean").values)
    assert list(out["stimulus_i"].values) == [f"s{i}" for i in range(12)]
    assert list(out["category_j"].values) == list("ab") * 6
    np.testing.assert_allclose(rdm(torch.tensor(responses), "cosine").values, rdm(responses, "cosine").values)


def test_rdm_agrees_with_rsatoolbox(responses):
    from rsatoolbox.rdm import calc_rdm

    data = to_rsatoolbox_dataset(responses)
    ref_corr = calc_rdm(data, method="correlation").get_matrices()[0]
    np.testing.assert_allclose(rdm(responses, "correlation").values, ref_corr, atol=1e-10)
    # rsatoolbox's "euclidean" is the squared Euclidean distance per channel
    ref_sq = calc_rdm(data, method="euclidean").get_matrices()[0]
    np.testing.assert_allclose(rdm(responses, "sqeuclidean").values / responses.shape[1], ref_sq, atol=1e-10)


def test_crossnobis_without_noise_equals_sqeuclidean(responses):
    repeated = np.stack([responses] * 3)
    out = rdm(repeated, "crossnobis")
    np.testing.assert_allclose(squareform(out.values, checks=False), pdist(responses, "sqeuclidean"), rtol=1e-10)
    assert out.attrs["n_repeats"] == 3


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # inside rsatoolbox
def test_crossnobis_agrees_with_rsatoolbox_and_is_unbiased():
    from rsatoolbox.rdm import calc_rdm

    rng = np.random.default_rng(3)
    n_stim, n_neur, n_rep = 11, 40, 4  # 11 stimuli: checks that label sorting is numeric, not alphabetical
    patterns = rng.normal(size=(n_stim, n_neur))
    noisy = patterns[None] + 2.0 * rng.normal(size=(n_rep, n_stim, n_neur))
    da = xr.DataArray(noisy, dims=("repeat", "stimulus", "neuron"))
    ours = rdm(da, "crossnobis")
    data = to_rsatoolbox_dataset(da)
    ref = calc_rdm(data, method="crossnobis", descriptor="stimulus", cv_descriptor="repeat").get_matrices()[0]
    np.testing.assert_allclose(ours.values / n_neur, ref, rtol=1e-10, atol=1e-12)
    # noise inflates the plain distance of the averaged patterns by 2 sigma^2 n / n_rep; crossnobis is unbiased
    true = pdist(patterns, "sqeuclidean")
    naive = pdist(noisy.mean(0), "sqeuclidean")
    cross = squareform(ours.values, checks=False)
    bias_naive = np.mean(naive - true)
    assert bias_naive == pytest.approx(2 * 4.0 * n_neur / n_rep, rel=0.25)
    assert abs(np.mean(cross - true)) < 0.2 * bias_naive


def test_crossnobis_noise_precision_is_used():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 6, 5))
    prec = np.diag(np.arange(1.0, 6.0))
    identical = np.stack([x[0], x[0]])
    out = rdm(identical, "crossnobis", noise=prec).values
    diff = x[0][0] - x[0][1]
    assert out[0, 1] == pytest.approx(diff @ prec @ diff)


@pytest.mark.parametrize("method,reference", [
    ("pearson", lambda a, b: scipy.stats.pearsonr(a, b)[0]),
    ("spearman", lambda a, b: scipy.stats.spearmanr(a, b)[0]),
    ("cosine", lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)),
])
def test_compare_rdms_matches_scipy(responses, method, reference):
    rng = np.random.default_rng(1)
    a = rdm(responses)
    b = rdm(responses + rng.normal(size=responses.shape))
    va, vb = squareform(a.values, checks=False), squareform(b.values, checks=False)
    assert compare_rdms(a, b, method=method) == pytest.approx(reference(va, vb), abs=1e-12)


def test_kendall_tau_a_with_ties_matches_direct_count():
    rng = np.random.default_rng(2)
    va = rng.integers(0, 4, size=45).astype(float)  # a categorical model RDM: many ties
    vb = rng.normal(size=45)
    i, j = np.triu_indices(45, 1)
    concordance = np.sign(va[i] - va[j]) * np.sign(vb[i] - vb[j])
    tau_a = concordance.sum() / (45 * 44 / 2)  # ties count as 0 in the numerator, all pairs in the denominator
    assert compare_rdms(va, vb, method="kendall_tau_a") == pytest.approx(tau_a, abs=1e-12)
    assert abs(tau_a) < abs(scipy.stats.kendalltau(va, vb)[0])  # tau-b's tie correction inflates it


def test_compare_rdms_agrees_with_rsatoolbox(responses):
    from rsatoolbox.rdm import compare

    rng = np.random.default_rng(5)
    a, b = rdm(responses), rdm(responses + rng.normal(size=responses.shape), "euclidean")
    ra, rb = to_rsatoolbox_rdms(a), to_rsatoolbox_rdms(b)
    for ours, theirs in [("spearman", "spearman"), ("pearson", "corr"), ("kendall_tau_a", "tau-a"),
                         ("cosine", "cosine"), ("rho_a", "rho-a")]:
        assert compare_rdms(a, b, method=ours) == pytest.approx(compare(ra, rb, method=theirs)[0, 0], abs=1e-12)


def test_compare_rdms_stacks_give_all_pairs(responses):
    rng = np.random.default_rng(6)
    layers = rdm_stack({f"l{k}": rdm(responses + k * rng.normal(size=responses.shape)) for k in range(3)}, "layer")
    brains = rdm_stack([rdm(responses + rng.normal(size=responses.shape)) for _ in range(2)], "subject")
    out = compare_rdms(layers, brains, method="spearman")
    assert out.dims == ("layer", "subject") and out.shape == (3, 2)
    assert list(out["layer"].values) == ["l0", "l1", "l2"]
    assert out.sel(layer="l1", subject=1) == pytest.approx(
        compare_rdms(layers.sel(layer="l1"), brains.sel(subject=1)), abs=1e-12)
    with pytest.raises(ValueError, match="share the stack dims"):
        compare_rdms(layers, layers)


def test_compare_rdms_bad_input(responses):
    a = rdm(responses)
    with pytest.raises(ValueError, match="unknown method 'kendall'.*'spearman'"):
        compare_rdms(a, a, method="kendall")
    with pytest.raises(ValueError, match="different stimulus sets"):
        compare_rdms(a, rdm(responses[:10]))
    asym = a.values.copy()
    asym[0, 1] += 1
    with pytest.raises(ValueError, match="not symmetric"):
        compare_rdms(asym, a)
    bad = a.values.copy()
    bad[0, 1] = bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compare_rdms(bad, a)
    with pytest.raises(ValueError, match="not n\\(n-1\\)/2"):
        compare_rdms(np.ones(7), a)
    with pytest.raises(ValueError, match="constant RDM"):
        compare_rdms(np.ones(66), a)


def test_rdm_bad_input(responses):
    with pytest.raises(ValueError, match="unknown distance 'manhattan'.*'correlation'"):
        rdm(responses, distance="manhattan")
    bad = responses.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rdm(bad)
    with pytest.raises(ValueError, match="stimulus"):
        rdm(xr.DataArray(responses, dims=("image", "neuron")))
    with pytest.raises(ValueError, match="repeat"):
        rdm(xr.DataArray(np.stack([responses] * 2), dims=("repeat", "stimulus", "neuron")))
    with pytest.raises(ValueError, match="at least 2 repeats"):
        rdm(responses[None], "crossnobis")
    flat = responses.copy()
    flat[4] = 1.0
    with pytest.raises(ValueError, match=r"stimuli \[4\].*correlation"):
        rdm(flat, "correlation")
    with pytest.raises(ValueError, match="noise applies"):
        rdm(responses, "euclidean", noise=np.eye(30))
    assert set(DISTANCES) == {"correlation", "euclidean", "sqeuclidean", "cosine", "crossnobis"}


def test_rdm_does_not_mutate_input(responses):
    copy = responses.copy()
    for distance in ("correlation", "cosine"):
        rdm(responses, distance)
    rdm(np.stack([responses, responses]), "crossnobis")
    np.testing.assert_array_equal(responses, copy)


# ------------------------------------------------------------------------------------ noise ceiling
@pytest.fixture
def subject_rdms():
    rng = np.random.default_rng(7)
    base = rng.normal(size=(15, 20))
    mats = [rdm(base + 1.5 * rng.normal(size=base.shape)) for _ in range(5)]
    return rdm_stack(mats, "subject", labels=list("ABCDE"))


@pytest.mark.parametrize("method", COMPARE_METHODS)
def test_noise_ceiling_lower_bound_is_leave_one_subject_out(subject_rdms, method):
    nc = noise_ceiling(subject_rdms, method=method)
    from rsatoolbox.rdm import RDMs
    from rsatoolbox.util.inference_util import pool_rdm

    rsa_method = {"pearson": "corr", "kendall_tau_a": "tau-a", "rho_a": "rho-a"}.get(method, method)
    for k, subject in enumerate("ABCDE"):
        others = subject_rdms.drop_sel(subject=subject)
        vectors = np.stack([squareform(m, checks=False) for m in others.values])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pooled = squareform(pool_rdm(RDMs(vectors), method=rsa_method).get_vectors()[0])
        expected = compare_rdms(pooled, subject_rdms.sel(subject=subject), method=method)
        assert nc["lower"].sel(subject=subject) == pytest.approx(expected, abs=1e-12)
    assert np.all(nc["lower"].values < nc["upper"].values)
    assert float(nc["lower_bound"]) == pytest.approx(nc["lower"].mean().item())


def test_noise_ceiling_lower_bound_never_sees_the_held_out_subject(subject_rdms):
    # Replacing subject A by anything changes no other subject's reference except through A itself:
    # A's own lower-bound value depends on A only as the compared RDM, never inside the reference mean.
    nc = noise_ceiling(subject_rdms, method="pearson")
    changed = subject_rdms.copy()
    rng = np.random.default_rng(8)
    noise = squareform(rng.uniform(size=105))
    changed.loc[{"subject": "A"}] = noise
    nc2 = noise_ceiling(changed, method="pearson")
    reference = rdm_stack([subject_rdms.sel(subject=s) for s in "BCDE"], "subject").values
    z = [(squareform(m, checks=False) - squareform(m, checks=False).mean()) / squareform(m, checks=False).std()
         for m in reference]
    expected = scipy.stats.pearsonr(np.mean(z, axis=0), squareform(noise, checks=False))[0]
    assert nc2["lower"].sel(subject="A") == pytest.approx(expected, abs=1e-12)
    # a held-out subject equal to the mean of the others reaches a lower bound of exactly 1
    mean_others = squareform(np.mean(z, axis=0) - np.min(np.mean(z, axis=0)))
    changed.loc[{"subject": "A"}] = mean_others
    assert noise_ceiling(changed, "pearson")["lower"].sel(subject="A") == pytest.approx(1.0, abs=1e-12)
    assert nc["upper_bound"] > nc["lower_bound"]


def test_noise_ceiling_matches_rsatoolbox_boot_noise_ceiling(subject_rdms):
    from rsatoolbox.inference import boot_noise_ceiling

    for ours, theirs in [("spearman", "spearman"), ("pearson", "corr"), ("cosine", "cosine")]:
        lower, upper = boot_noise_ceiling(to_rsatoolbox_rdms(subject_rdms), method=theirs)
        nc = noise_ceiling(subject_rdms, method=ours)
        assert float(nc["lower_bound"]) == pytest.approx(lower, abs=1e-12)
        assert float(nc["upper_bound"]) == pytest.approx(upper, abs=1e-12)


def test_noise_ceiling_one_subject_gives_nan_with_warning(subject_rdms):
    with pytest.warns(RuntimeWarning, match="single subject"):
        nc = noise_ceiling(subject_rdms.isel(subject=[0]), method="spearman")
    assert np.isnan(float(nc["lower_bound"]))
    assert float(nc["upper_bound"]) == pytest.approx(1.0)


def test_noise_ceiling_bad_input(subject_rdms):
    with pytest.raises(ValueError, match="no 'participant' dimension"):
        noise_ceiling(subject_rdms, subject_dim="participant")
    with pytest.raises(ValueError, match="extra dims \\['session'\\]"):
        noise_ceiling(subject_rdms.expand_dims(session=[1, 2]))
    with pytest.raises(ValueError, match="unknown method"):
        noise_ceiling(subject_rdms, method="tau")


def test_rsatoolbox_rdms_round_trip(subject_rdms):
    back = from_rsatoolbox_rdms(to_rsatoolbox_rdms(subject_rdms), dim="subject")
    np.testing.assert_allclose(back.values, subject_rdms.values, atol=1e-12)
    assert list(back["subject"].values) == list("ABCDE")
