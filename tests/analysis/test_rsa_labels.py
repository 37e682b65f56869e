"""Issue 15 cases 1-2: RDM comparisons align by stimulus label; constant/empty inputs refused."""
import numpy as np
import pytest
import xarray as xr

from bioplastic.analysis import compare_rdms, noise_ceiling, rdm, rdm_stack


def _rdm(seed, labels):
    rng = np.random.default_rng(seed)
    X = xr.DataArray(rng.normal(size=(len(labels), 8)), dims=("stimulus", "neuron"), coords={"stimulus": labels})
    return rdm(X)


def test_permuted_labelled_rdm_gives_unpermuted_result():
    labels = [f"s{k}" for k in range(10)]
    a, b = _rdm(0, labels), _rdm(1, labels)
    perm = np.random.default_rng(2).permutation(10)
    bp = b.isel(stimulus_i=perm, stimulus_j=perm)
    assert compare_rdms(a, bp) == compare_rdms(a, b)
    assert compare_rdms(a, a.isel(stimulus_i=perm, stimulus_j=perm)) == pytest.approx(1.0)


def test_disjoint_labels_raise_naming_stimuli():
    a = _rdm(0, [f"s{k}" for k in range(5)])
    b = _rdm(1, [f"s{k}" for k in range(1, 6)])
    with pytest.raises(ValueError, match=r"missing.*'s0'.*extra.*'s5'"):
        compare_rdms(a, b)
    with pytest.raises(ValueError, match="s5"):
        rdm_stack([a, b], "layer")


def test_rdm_stack_aligns_by_label():
    labels = [f"s{k}" for k in range(6)]
    a, b = _rdm(0, labels), _rdm(1, labels)
    perm = [5, 3, 1, 0, 2, 4]
    st = rdm_stack([a, b.isel(stimulus_i=perm, stimulus_j=perm)], "layer")
    np.testing.assert_array_equal(st.isel(layer=1).values, b.values)


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall_tau_a"])
def test_noise_ceiling_refuses_constant_subject(method):
    labels = [f"s{k}" for k in range(6)]
    st = rdm_stack([_rdm(0, labels), _rdm(1, labels), _rdm(2, labels) * 0 + 1 - np.eye(6)], "subject")
    with pytest.raises(ValueError, match="constant RDM"):
        noise_ceiling(st, method)


def test_noise_ceiling_refuses_no_subjects():
    with pytest.raises(ValueError, match="no subjects"):
        noise_ceiling(np.zeros((0, 4, 4)))
