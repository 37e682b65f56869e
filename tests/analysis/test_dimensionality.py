"""Participation ratio and sparseness: closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioplastic.analysis import lifetime_sparseness, participation_ratio, population_sparseness


def _isotropic(n, d, seed=0):
    """n points whose covariance is exactly proportional to the identity in d dimensions."""
    rng = np.random.default_rng(seed)
    centred = rng.normal(size=(n, d))
    centred -= centred.mean(0)
    q, _ = np.linalg.qr(centred)  # orthonormal columns, still zero-mean (they span the centred columns)
    return 5.0 + 3.0 * q


@pytest.mark.parametrize("d", [1, 3, 10, 40])
def test_participation_ratio_of_isotropic_data_is_the_dimension(d):
    assert participation_ratio(_isotropic(100, d)) == pytest.approx(d, rel=1e-10)


def test_participation_ratio_of_isotropic_subspace_embedded_in_more_neurons():
    rng = np.random.default_rng(1)
    embed, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    X = _isotropic(150, 7) @ embed[:7]  # 7-dimensional isotropic cloud in 200 neurons (wide: Gram path)
    assert participation_ratio(X) == pytest.approx(7.0, rel=1e-10)


def test_participation_ratio_equals_eigenvalue_formula():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 12)) * np.linspace(0.2, 3, 12)
    lam = np.linalg.eigvalsh(np.cov(X.T))
    assert participation_ratio(X) == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-12)
    # finite-sample isotropic Gaussian: PR falls below d (Marchenko-Pastur), a reason to report n
    assert participation_ratio(rng.normal(size=(50, 50))) < 30


def test_participation_ratio_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        participation_ratio(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="at least 2 stimuli"):
        participation_ratio(np.ones((1, 5)))
    assert np.isnan(participation_ratio(np.ones((4, 3))))


def test_sparseness_closed_forms():
    one_hot = np.eye(5)  # each neuron answers one stimulus; each stimulus drives one neuron
    np.testing.assert_allclose(lifetime_sparseness(one_hot).values, 1.0)
    np.testing.assert_allclose(population_sparseness(one_hot).values, 1.0)
    dense = np.full((6, 4), 2.5)
    np.testing.assert_allclose(lifetime_sparseness(dense).values, 0.0, atol=1e-12)
    np.testing.assert_allclose(population_sparseness(dense).values, 0.0, atol=1e-12)
    # Vinje & Gallant: r = (1, 0, 0, 1) -> (1 - (1/2)^2 / (1/2)) / (1 - 1/4) = 2/3
    r = np.array([[1.0], [0.0], [0.0], [1.0]])
    assert float(lifetime_sparseness(r)[0]) == pytest.approx(2 / 3)


def test_sparseness_matches_treves_rolls_per_neuron():
    rng = np.random.default_rng(3)
    X = np.maximum(rng.normal(size=(30, 8)), 0)
    n = X.shape[0]
    expected = [(1 - (x.mean() ** 2) / np.mean(x**2)) / (1 - 1 / n) for x in X.T]
    np.testing.assert_allclose(lifetime_sparseness(X).values, expected, rtol=1e-12)


def test_sparseness_keeps_coordinates_and_marks_silent_units():
    X = xr.DataArray(np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 0.0]]), dims=("stimulus", "neuron_fc1"),
                     coords={"stimulus": ["a", "b", "c"], "neuron_fc1": [10, 11]})
    life = lifetime_sparseness(X)
    assert life.dims == ("neuron_fc1",) and list(life["neuron_fc1"].values) == [10, 11]
    assert np.isnan(life.values[0])
    pop = population_sparseness(X)
    assert list(pop["stimulus"].values) == ["a", "b", "c"] and np.isnan(pop.values[2])


def test_sparseness_refuses_negative_responses():
    with pytest.raises(ValueError, match="non-negative"):
        lifetime_sparseness(np.array([[1.0, -0.5], [0.2, 0.3]]))
    with pytest.raises(ValueError, match="non-negative"):
        population_sparseness(np.array([[1.0, -0.5], [0.2, 0.3]]))
