"""Issue 15 cases 1 and 5: every analysis that takes two labelled stimulus sets aligns them by label (the
result equals the unpermuted one exactly) or refuses different sets naming the stimuli; compare_rdms' output
is named for what it is (a similarity)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from scipy.stats import spearmanr

from bioplastic import analysis as A

LABELS = [f"img{k:02d}" for k in range(12)]


def _responses(seed, labels=LABELS, n=9):
    rng = np.random.default_rng(seed)
    return xr.DataArray(rng.normal(size=(len(labels), n)), dims=("stimulus", "neuron"), coords={"stimulus": labels})


def _perm(n=12, seed=7):
    return np.random.default_rng(seed).permutation(n)


# ------------------------------------------------------------------------------------------------- CKA
@pytest.mark.parametrize("kernel, hsic", [("linear", "unbiased"), ("linear", "biased"), ("rbf", "unbiased")])
def test_cka_of_permuted_labelled_responses_is_exactly_the_unpermuted_value(kernel, hsic):
    X, Y = _responses(0), _responses(1, n=5)
    perm = _perm()
    assert A.cka(X, Y.isel(stimulus=perm), kernel, hsic) == A.cka(X, Y, kernel, hsic)
    # both in the permuted order (Y aligned to X): the same value up to summation order
    assert A.cka(X.isel(stimulus=perm), Y, kernel, hsic) == pytest.approx(A.cka(X, Y, kernel, hsic), abs=1e-12)
    # the same permutation applied by position (labels dropped) is a different, wrong, value
    unlabelled = Y.isel(stimulus=perm).drop_vars("stimulus")
    assert A.cka(X, unlabelled, kernel, hsic) != pytest.approx(A.cka(X, Y, kernel, hsic), abs=1e-3)


def test_cka_of_disjoint_labels_raises_naming_the_stimuli():
    X = _responses(0)
    Y = _responses(1, labels=LABELS[2:] + ["new0", "new1"])
    with pytest.raises(ValueError, match=r"2 stimuli of X missing from Y: \['img00', 'img01'\].*"
                                         r"2 extra stimuli in Y not in X: \['new0', 'new1'\]"):
        A.cka(X, Y)


# ---------------------------------------------------------------------------------------- noise ceiling
def _subject_rdms(n_subjects=4):
    rng = np.random.default_rng(3)
    base = rng.normal(size=(12, 9))
    return {f"S{k}": A.rdm(_responses(10 + k) * 0.7 + base) for k in range(n_subjects)}


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall_tau_a"])
def test_noise_ceiling_aligns_subjects_stored_in_different_orders(method):
    rdms = _subject_rdms()
    reference = A.noise_ceiling(A.rdm_stack(rdms, "subject"), method)
    perm = _perm()
    shuffled = {k: (v.isel(stimulus_i=perm, stimulus_j=perm) if k in ("S1", "S3") else v) for k, v in rdms.items()}
    got = A.noise_ceiling(shuffled, method)
    xr.testing.assert_identical(got, reference)
    assert 0 < float(got["lower_bound"]) < float(got["upper_bound"]) < 1
    # a list works as a dict with positional subject labels
    np.testing.assert_array_equal(A.noise_ceiling(list(shuffled.values()), method)["lower"].values,
                                  reference["lower"].values)


def test_noise_ceiling_refuses_subjects_with_different_stimuli():
    rdms = _subject_rdms(3)
    rdms["S2"] = A.rdm(_responses(5, labels=LABELS[:-1] + ["other"]))
    with pytest.raises(ValueError, match=r"missing from RDM 'S2': \['img11'\].*extra.*\['other'\]"):
        A.noise_ceiling(rdms)


def test_rdm_stack_of_different_sized_labelled_sets_names_the_stimuli():
    with pytest.raises(ValueError, match=r"missing from RDM 1: \['img11'\]"):
        A.rdm_stack([A.rdm(_responses(0)), A.rdm(_responses(1, labels=LABELS[:-1]))], "layer")


def test_an_rdm_whose_rows_and_columns_differ_is_refused():
    a = A.rdm(_responses(0))
    perm = _perm()
    rows_only = a.isel(stimulus_i=perm)
    with pytest.raises(ValueError, match="different stimulus labels on 'stimulus_i' and 'stimulus_j'"):
        A.compare_rdms(a, rows_only)
    with pytest.raises(ValueError, match="different stimulus labels on 'stimulus_i' and 'stimulus_j'"):
        A.noise_ceiling(A.rdm_stack([a, a], "subject").isel(stimulus_i=perm))


# --------------------------------------------------------------------------------- record_activations
def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.Tanh(), torch.nn.Linear(10, 4)).double()


def _stimuli():
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return xr.DataArray(x.numpy(), dims=("stimulus", "pixel"),
                        coords={"stimulus": LABELS, "category": ("stimulus", np.arange(12) % 3)})


def test_record_activations_carries_the_labels_of_a_dataarray_of_stimuli():
    stim = _stimuli()
    acts = A.record_activations(_net(), stim, ["1", "2"])
    np.testing.assert_array_equal(acts["stimulus"].values, LABELS)
    np.testing.assert_array_equal(acts["category"].values, np.arange(12) % 3)
    # the same numbers as the unlabelled tensor
    plain = A.record_activations(_net(), torch.as_tensor(stim.values), ["1", "2"])
    np.testing.assert_array_equal(acts["1"].values, plain["1"].values)
    # stimulus need not be the first dim
    np.testing.assert_array_equal(A.record_activations(_net(), stim.transpose(), ["1"])["1"].values,
                                  acts["1"].values)
    with pytest.raises(ValueError, match="without a 'stimulus' dim"):
        A.record_activations(_net(), stim.rename(stimulus="image"), ["1"])


def test_rdms_and_cka_of_recordings_of_permuted_stimuli_equal_the_unpermuted_values():
    """A network shown the stimuli in another order (labels carried by record_activations): every analysis
    against a reference recording gives exactly the value of the same order."""
    net, stim, perm = _net(), _stimuli(), _perm()
    ref = A.record_activations(net, stim, ["1", "2"])
    shuffled = A.record_activations(net, stim.isel(stimulus=perm), ["1", "2"])
    brain = A.rdm(_responses(4))  # a "recording" of the same 12 labelled stimuli
    for layer in ("1", "2"):
        expected = A.compare_rdms(A.rdm(ref[layer]), brain)
        assert A.compare_rdms(A.rdm(shuffled[layer]), brain) == expected
        assert A.compare_rdms(brain, A.rdm(shuffled[layer])) == A.compare_rdms(brain, A.rdm(ref[layer]))
        assert A.cka(ref[layer], shuffled[layer]) == pytest.approx(1.0, abs=1e-12)
    xr.testing.assert_equal(A.cka_matrix(ref, shuffled), A.cka_matrix(ref, ref))
    stack = A.rdm_stack({k: A.rdm(shuffled[k]) for k in ("1", "2")}, "layer")
    xr.testing.assert_equal(A.compare_rdms(stack, brain),
                            A.compare_rdms(A.rdm_stack({k: A.rdm(ref[k]) for k in ("1", "2")}, "layer"), brain))


def test_unlabelled_recording_against_labelled_data_is_refused_with_the_fix():
    """Without labels a recording carries positions 0..n-1: compared with named stimuli it is refused, and the
    message says how to label it."""
    acts = A.record_activations(_net(), torch.as_tensor(_stimuli().values), ["2"])
    with pytest.raises(ValueError, match=r"default labels 0\.\.n-1.*coords=\{'stimulus': names\}"):
        A.compare_rdms(A.rdm(_responses(4)), A.rdm(acts["2"]))


# ------------------------------------------------------------------------------------- align_stimuli
def test_align_stimuli_is_public_and_reorders_datasets_rdms_and_responses():
    assert "align_stimuli" in A.__all__ and A.align_stimuli.__doc__
    perm = _perm()
    X = _responses(0)
    ds = xr.Dataset({"a": X, "b": X * 2}).isel(stimulus=perm)
    out = A.align_stimuli(X, ds)
    np.testing.assert_array_equal(out["stimulus"].values, LABELS)
    np.testing.assert_array_equal(out["b"].values, 2 * X.values)
    r = A.rdm(X)
    # an RDM aligned to responses (mixed kinds) and responses aligned to an RDM
    xr.testing.assert_identical(A.align_stimuli(X, r.isel(stimulus_i=perm, stimulus_j=perm)), r)
    xr.testing.assert_identical(A.align_stimuli(r, X.isel(stimulus=perm)), X)
    # unlabelled: returned unchanged (positional)
    arr = np.ones((12, 3))
    assert A.align_stimuli(X, arr) is arr
    dup = X.assign_coords(stimulus=["img00"] + LABELS[:-1])
    with pytest.raises(ValueError, match=r"duplicated labels \['img00'\]"):
        A.align_stimuli(dup, dup.isel(stimulus=perm))


# --------------------------------------------------------------------------------------------- case 5
def test_compare_rdms_output_is_named_a_similarity():
    layers = A.rdm_stack({"l1": A.rdm(_responses(0)), "l2": A.rdm(_responses(1))}, "layer")
    out = A.compare_rdms(layers, A.rdm(_responses(2)), "spearman")
    assert out.name == "rdm_similarity"
    assert out.attrs["kind"] == "similarity" and out.attrs["method"] == "spearman"
    assert out.attrs["long_name"] == "similarity between RDMs (Spearman rank correlation)"
    assert not out.name.startswith("rdm_spearman")


@pytest.mark.needs_shared_data
def test_real_it_rdm_resorted_by_category_gives_the_same_similarity(shared_data):
    """The issue's case: Spearman(animacy model RDM, human IT) is 0.588 as given and was 0.001 after sorting
    the human RDM by category (labels carried). Now both equal scipy's value on the given order."""
    from bioplastic.data import load_kriegeskorte2008

    neural = load_kriegeskorte2008(shared_data / "kriegeskorte2008")
    animacy = neural["model_rdms"].sel(model="animacy")
    human = neural["human_it"]
    order = np.argsort(neural["category"].values, kind="stable")
    assert not np.array_equal(order, np.arange(92))
    resorted = human.isel(stimulus_i=order, stimulus_j=order)
    iu = np.triu_indices(92, 1)
    expected = spearmanr(animacy.values[iu], human.values[iu]).statistic
    assert A.compare_rdms(animacy, human) == pytest.approx(expected, abs=1e-12)
    assert A.compare_rdms(animacy, resorted) == A.compare_rdms(animacy, human)
    assert expected == pytest.approx(0.588, abs=5e-4)  # the number for the unsorted RDMs
