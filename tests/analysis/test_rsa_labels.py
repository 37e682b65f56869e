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


def test_cka_matrix_aligns_layers_by_stimulus_label():
    """Issue 15 case 1: a layer x layer CKA map of A against A with its stimuli permuted (labels carried) is
    exactly the map of A against itself; disjoint labels raise naming the stimuli."""
    import xarray as xr

    from bioplastic.analysis.cka import cka_matrix

    rng = np.random.default_rng(0)
    labels = [f"s{i}" for i in range(12)]
    A = xr.Dataset({name: xr.DataArray(rng.normal(size=(12, n)), dims=("stimulus", f"neuron_{name}"),
                                       coords={"stimulus": labels}) for name, n in (("l1", 5), ("l2", 7))})
    perm = rng.permutation(12)
    B = A.isel(stimulus=perm)
    ref = cka_matrix(A, A)
    got = cka_matrix(A, B)
    np.testing.assert_allclose(got.values, ref.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diag(got.values), 1.0, atol=1e-12)
    C = A.assign_coords(stimulus=[f"t{i}" for i in range(12)])
    with pytest.raises(ValueError, match="different stimulus sets.*'s0'.*'t0'"):
        cka_matrix(A, C)


def test_cka_matrix_refuses_a_list_with_a_type_error():
    """Issue 15 case 7: a plain list is refused naming its type; a dict of the same layers works."""
    from bioplastic.analysis.cka import cka_matrix

    rng = np.random.default_rng(1)
    layers = [rng.normal(size=(10, 4)), rng.normal(size=(10, 6))]
    with pytest.raises(TypeError, match="got list"):
        cka_matrix(layers)
    m = cka_matrix(dict(enumerate(layers)))
    np.testing.assert_allclose(np.diag(m.values), 1.0, atol=1e-12)
