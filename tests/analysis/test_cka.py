"""CKA: identities, invariances, the unbiased estimator's null behaviour, direct formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from bioplastic.analysis import cka, cka_matrix, gram, hsic_estimate


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 25))
    Y = np.tanh(X @ rng.normal(size=(25, 40))) + 0.3 * rng.normal(size=(60, 40))
    return X, Y


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("hsic", ["biased", "unbiased"])
def test_cka_of_a_representation_with_itself_is_one(data, kernel, hsic):
    X, Y = data
    assert cka(X, X, kernel=kernel, hsic=hsic) == pytest.approx(1.0, abs=1e-12)
    assert cka(Y, Y, kernel=kernel, hsic=hsic) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("hsic", ["biased", "unbiased"])
def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(data, kernel, hsic):
    X, Y = data
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    ref = cka(X, Y, kernel=kernel, hsic=hsic)
    assert cka(X, Y @ Q, kernel=kernel, hsic=hsic) == pytest.approx(ref, abs=1e-10)
    assert cka(7.5 * X, 0.01 * Y, kernel=kernel, hsic=hsic) == pytest.approx(ref, abs=1e-10)
    assert cka(Y, X, kernel=kernel, hsic=hsic) == pytest.approx(ref, abs=1e-12)  # symmetric


def test_linear_cka_is_not_invariant_to_anisotropic_scaling(data):
    X, Y = data
    D = np.diag(np.linspace(0.1, 10, 40))
    assert abs(cka(X, Y @ D, hsic="biased") - cka(X, Y, hsic="biased")) > 1e-3


def test_biased_linear_cka_equals_feature_space_formula(data):
    # Kornblith et al. (2019) eq. 4: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on centred columns
    X, Y = data
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    direct = np.linalg.norm(Yc.T @ Xc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))
    assert cka(X, Y, kernel="linear", hsic="biased") == pytest.approx(direct, abs=1e-12)


def test_biased_hsic_equals_centring_matrix_formula(data):
    X, Y = data
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = gram(X), gram(Y, "rbf")
    assert hsic_estimate(K, L, "biased") == pytest.approx(np.trace(K @ H @ L @ H) / (n - 1) ** 2, rel=1e-12)


def test_unbiased_hsic_equals_explicit_u_statistic():
    # Song et al. (2012): HSIC_1 is an unbiased U-statistic over distinct index quadruples; for small n
    # compare with the definition h(i,j,q,r) averaged over all ordered 4-tuples of distinct indices.
    rng = np.random.default_rng(2)
    n = 7
    K = gram(rng.normal(size=(n, 3)))
    L = gram(rng.normal(size=(n, 2)), "rbf")
    from itertools import permutations

    total = 0.0
    count = 0
    for i, j, q, r in permutations(range(n), 4):
        total += K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q]
        count += 1
    assert hsic_estimate(K, L, "unbiased") == pytest.approx(total / count, rel=1e-10)


@pytest.mark.parametrize("n", [20, 50, 200])
def test_unbiased_cka_near_zero_for_independent_data_biased_is_not(n):
    rng = np.random.default_rng(n)
    unbiased, biased = [], []
    for _ in range(8):
        X, Y = rng.normal(size=(n, 300)), rng.normal(size=(n, 200))
        unbiased.append(cka(X, Y, hsic="unbiased"))
        biased.append(cka(X, Y, hsic="biased"))
    # sd of a single unbiased value is about 1/n for independent data: the mean of 8 is within +-0.06 at n=20
    assert abs(np.mean(unbiased)) < 0.06
    assert np.mean(biased) > 0.5  # features outnumber stimuli: biased CKA of noise looks like similarity


def test_cka_accepts_dataarrays_and_tensors(data):
    X, Y = data
    dx = xr.DataArray(X.reshape(60, 5, 5), dims=("stimulus", "channel", "x"))
    dy = xr.DataArray(Y, dims=("stimulus", "neuron_fc"))
    assert cka(dx, dy) == pytest.approx(cka(X, Y), abs=1e-12)
    assert cka(torch.tensor(X, dtype=torch.float32), Y) == pytest.approx(cka(X, Y), abs=1e-5)


def test_cka_bad_input(data):
    X, Y = data
    with pytest.raises(ValueError, match="unknown kernel 'poly'.*'linear', 'rbf'"):
        cka(X, Y, kernel="poly")
    with pytest.raises(ValueError, match="unknown hsic 'debiased'.*'biased', 'unbiased'"):
        cka(X, Y, hsic="debiased")
    with pytest.raises(ValueError, match="same stimuli"):
        cka(X, Y[:50])
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        cka(bad, Y)
    with pytest.raises(ValueError, match="n >= 4"):
        cka(X[:3], Y[:3])
    # issue 15 case 1: labels in another order are aligned (tests/analysis/test_alignment.py); a different
    # stimulus set is refused, naming the stimuli
    with pytest.raises(ValueError, match=r"different stimulus sets.*missing.*\[0\].*extra.*\[60\]"):
        cka(xr.DataArray(X, dims=("stimulus", "n"), coords={"stimulus": np.arange(60)}),
            xr.DataArray(Y, dims=("stimulus", "n"), coords={"stimulus": np.arange(1, 61)}))
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        cka(X, Y, kernel="rbf", bandwidth=0.0)


def test_cka_does_not_mutate_inputs(data):
    X, Y = data
    x0, y0 = X.copy(), Y.copy()
    cka(X, Y, "rbf", "unbiased")
    np.testing.assert_array_equal(X, x0)
    np.testing.assert_array_equal(Y, y0)


def test_cka_matrix_layers(data):
    X, Y = data
    acts = xr.Dataset({"a": (("stimulus", "neuron_a"), X), "b": (("stimulus", "neuron_b"), Y)})
    m = cka_matrix(acts)
    assert m.dims == ("layer_x", "layer_y")
    np.testing.assert_allclose(np.diag(m.values), 1.0, atol=1e-12)
    assert m.sel(layer_x="a", layer_y="b") == pytest.approx(cka(X, Y), abs=1e-12)
    np.testing.assert_allclose(m.values, m.values.T, atol=1e-12)
