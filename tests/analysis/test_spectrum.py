"""cvPCA and power-law fits: closed forms, synthetic spectra with known exponents, no mutation."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from bioplastic.analysis import cv_pca, pca_spectrum, powerlaw_fit


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("weighting", ["log_uniform", "uniform"])
def test_powerlaw_fit_recovers_alpha_from_noisy_synthetic_spectra(alpha, weighting):
    rng = np.random.default_rng(int(alpha * 10))
    n = np.arange(1, 1001)
    spectrum = 3.0 * n**-alpha * np.exp(0.1 * rng.normal(size=n.size))  # 10% multiplicative scatter
    fit = powerlaw_fit(spectrum, rank_range=(5, 500), weighting=weighting)
    assert float(fit["alpha"]) == pytest.approx(alpha, abs=0.05)
    assert fit.attrs["alpha"] == float(fit["alpha"])
    assert fit.attrs["rank_range"] == [5, 500]
    assert fit.attrs["n_points"] == 496
    assert 0.8 < fit.attrs["r_squared"] <= 1.0


def test_powerlaw_fit_exact_on_pure_power_law_and_rank_range_matters():
    n = np.arange(1, 201, dtype=float)
    broken = np.where(n <= 20, n**-0.8, 20**-0.8 * (n / 20) ** -2.0)  # a knee at rank 20
    low = powerlaw_fit(broken, rank_range=(1, 20))
    high = powerlaw_fit(broken, rank_range=(20, 200))
    assert float(low["alpha"]) == pytest.approx(0.8, abs=1e-10)
    assert float(high["alpha"]) == pytest.approx(2.0, abs=1e-10)
    assert low.attrs["r_squared"] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(low["fit"].values[:20], broken[:20], rtol=1e-10)
    assert powerlaw_fit(broken, rank_range=(1, 200)).attrs["r_squared"] < 0.99


def test_powerlaw_fit_uses_the_component_coordinate():
    ranks = np.arange(11, 111)
    spec = xr.DataArray(ranks**-1.2, dims="component", coords={"component": ranks})
    fit = powerlaw_fit(spec, rank_range=(11, 110))
    assert float(fit["alpha"]) == pytest.approx(1.2, abs=1e-10)
    with pytest.raises(ValueError, match="outside the spectrum's ranks 11..110"):
        powerlaw_fit(spec, rank_range=(1, 50))


def test_powerlaw_fit_never_mutates_inputs():
    n = np.arange(1, 101, dtype=float)
    spectrum = n**-1.0
    spectrum[60:] = -1e-3  # a noisy cvPCA tail
    array_copy = spectrum.copy()
    da = xr.DataArray(spectrum.copy(), dims="component", coords={"component": n.astype(int)})
    da_copy = da.copy(deep=True)
    powerlaw_fit(spectrum, rank_range=(1, 100), nonpositive="drop")
    powerlaw_fit(da, rank_range=(1, 100), nonpositive="drop")
    np.testing.assert_array_equal(spectrum, array_copy)
    xr.testing.assert_identical(da, da_copy)


def test_powerlaw_fit_nonpositive_values_raise_or_drop():
    n = np.arange(1, 101, dtype=float)
    spectrum = n**-1.0
    spectrum[[70, 80]] = [-1e-3, 0.0]
    with pytest.raises(ValueError, match=r"values <= 0 at ranks \[71, 81\]"):
        powerlaw_fit(spectrum, rank_range=(1, 100))
    fit = powerlaw_fit(spectrum, rank_range=(1, 100), nonpositive="drop")
    assert fit.attrs["n_dropped"] == 2 and fit.attrs["n_points"] == 98
    assert float(fit["alpha"]) == pytest.approx(1.0, abs=1e-10)
    assert float(powerlaw_fit(spectrum, rank_range=(1, 70))["alpha"]) == pytest.approx(1.0, abs=1e-10)


def test_powerlaw_fit_bad_input():
    spectrum = np.arange(1, 51, dtype=float) ** -1
    with pytest.raises(ValueError, match="lo < hi"):
        powerlaw_fit(spectrum, rank_range=(10, 10))
    with pytest.raises(ValueError, match="at least 3"):
        powerlaw_fit(spectrum, rank_range=(1, 2))
    with pytest.raises(ValueError, match="outside"):
        powerlaw_fit(spectrum, rank_range=(0, 10))
    with pytest.raises(ValueError, match="pair of integers"):
        powerlaw_fit(spectrum, rank_range=5)
    with pytest.raises(ValueError, match="unknown weighting"):
        powerlaw_fit(spectrum, rank_range=(1, 10), weighting="log")
    with pytest.raises(ValueError, match="1-D"):
        powerlaw_fit(np.ones((3, 3)), rank_range=(1, 3))
    bad = spectrum.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        powerlaw_fit(bad, rank_range=(1, 10))


def test_cv_pca_without_noise_equals_covariance_eigenvalues():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 20)) @ rng.normal(size=(20, 20))
    out = cv_pca(np.stack([X, X, X, X]), n_shuffles=2)
    eig = np.sort(np.linalg.eigvalsh(np.cov(X.T)))[::-1]
    np.testing.assert_allclose(out["spectrum"].values, eig, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(pca_spectrum(X).values, eig, rtol=1e-9, atol=1e-10)
    assert list(out["component"].values) == list(range(1, 21))


def test_cv_pca_removes_the_noise_that_inflates_plain_pca():
    rng = np.random.default_rng(1)
    n_stim, n_neur, alpha = 600, 150, 1.0
    lam = np.arange(1, n_neur + 1) ** -alpha
    basis, _ = np.linalg.qr(rng.normal(size=(n_neur, n_neur)))
    signal = (rng.normal(size=(n_stim, n_neur)) * np.sqrt(lam)) @ basis.T
    repeats = xr.DataArray(np.stack([signal + 0.1 * rng.normal(size=signal.shape) for _ in range(2)]),
                           dims=("repeat", "stimulus", "neuron"))
    cv = cv_pca(repeats, n_shuffles=3, seed=0)
    truth = pca_spectrum(signal)
    naive = pca_spectrum(repeats.isel(repeat=0))
    np.testing.assert_allclose(cv["spectrum"].values[:20], truth.values[:20], rtol=0.08)
    tail = slice(100, 149)
    assert (naive.values[tail] / truth.values[tail]).mean() > 1.8  # noise floor inflates plain PCA
    assert (cv["spectrum"].values[tail] / truth.values[tail]).mean() == pytest.approx(1.0, abs=0.15)
    alpha_cv = float(powerlaw_fit(cv, rank_range=(2, 50))["alpha"])
    alpha_truth = float(powerlaw_fit(truth, rank_range=(2, 50))["alpha"])
    alpha_naive = float(powerlaw_fit(naive, rank_range=(2, 50))["alpha"])
    assert alpha_cv == pytest.approx(alpha_truth, abs=0.03)
    assert alpha_cv == pytest.approx(alpha, abs=0.1)  # finite stimuli bias the sample spectrum itself a little
    assert alpha_truth - alpha_naive > 0.05


def test_cv_pca_seeded_and_never_mutates():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3, 30, 10))
    X0 = X.copy()
    a = cv_pca(X, n_shuffles=4, seed=5)
    b = cv_pca(X, n_shuffles=4, seed=5)
    c = cv_pca(X, n_shuffles=4, seed=6)
    xr.testing.assert_identical(a, b)
    assert not np.allclose(a["spectrum_shuffle"].values, c["spectrum_shuffle"].values)
    np.testing.assert_array_equal(X, X0)
    assert a.attrs["n_repeats"] == 3 and a["spectrum_shuffle"].shape == (4, 10)


def test_cv_pca_wide_data_uses_stimulus_gram():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 80))
    out = cv_pca(np.stack([X, X]), n_shuffles=1)
    eig = np.sort(np.linalg.eigvalsh(np.cov(X.T)))[::-1][:19]
    np.testing.assert_allclose(out["spectrum"].values, eig, rtol=1e-8)


def test_cv_pca_bad_input():
    with pytest.raises(ValueError, match="at least 2 repeats"):
        cv_pca(np.ones((1, 10, 5)))
    with pytest.raises(ValueError, match="missing \\['repeat'\\]"):
        cv_pca(xr.DataArray(np.ones((10, 5)), dims=("stimulus", "neuron")))
    with pytest.raises(ValueError, match="exceeds"):
        cv_pca(np.random.default_rng(0).normal(size=(2, 10, 5)), n_components=6)
    with pytest.raises(ValueError, match="n_shuffles"):
        cv_pca(np.ones((2, 10, 5)), n_shuffles=0)
    bad = np.ones((2, 10, 5))
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cv_pca(bad)
