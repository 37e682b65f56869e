"""Receptive-field measurement and indices on synthetic RFs with a known answer: a difference of Gaussians is
centre-surround and untuned, a Gabor oriented; linear and rectified units give back their filters (Stein's
lemma / Bussgang), and the model is left untouched."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import xarray as xr

from bioplastic.analysis.receptive_fields import (
    difference_of_gaussians,
    gabor,
    measure_receptive_fields,
    orientation_tuning,
    receptive_field_indices,
    rotational_symmetry,
    theoretical_rf_size,
)


def test_dog_is_centre_surround_and_untuned_gabor_the_reverse():
    dog = difference_of_gaussians(21, 1.5, 3.0)
    gabors = [gabor(21, 3.0, 0.15, ori, phase) for ori in (0, 30, 75, 135) for phase in (0.0, np.pi / 2)]
    ds = receptive_field_indices(np.stack([dog, *gabors]))
    csi, osi, cv = (ds[v].values for v in ("centre_surround_index", "orientation_selectivity_index", "circular_variance"))
    assert csi[0] > 0.9 and osi[0] < 0.05 and cv[0] > 0.95
    assert np.all(csi[1:] < 0.4) and np.all(osi[1:] > 0.95) and np.all(cv[1:] < 0.35)


def test_gabor_preferred_orientation_and_frequency_are_recovered():
    oris = np.array([0.0, 20.0, 45.0, 100.0, 160.0])
    ds = receptive_field_indices(np.stack([gabor(25, 3.0, 0.2, o) for o in oris]), n_orientations=36)
    err = np.abs((ds.preferred_orientation.values - oris + 90) % 180 - 90)
    assert np.all(err <= 5.0 + 1e-9)  # grid step of 36 orientations
    np.testing.assert_allclose(ds.preferred_frequency.values, 0.2, atol=1 / 100)  # Fourier grid of 100


def test_gabor_circular_variance_matches_its_spectrum_closed_form():
    # |K^| of a Gabor near its preferred frequency f0 is a Gaussian bump of width s = 1 / (2 pi sigma):
    # r(theta) = exp(-|f0 (u(theta) - u(0))|^2 / (2 s^2)) = exp(-f0^2 (1 - cos theta) / s^2) (far lobe negligible)
    sigma, f0, n = 3.0, 0.15, 72
    s = 1 / (2 * np.pi * sigma)
    theta = np.arange(n) * np.pi / n
    r = np.exp(-(f0**2) * (1 - np.cos(theta)) / s**2) + np.exp(-(f0**2) * (1 + np.cos(theta)) / s**2)
    expected = 1 - np.abs((r * np.exp(2j * theta)).sum()) / r.sum()
    out = orientation_tuning(gabor(41, sigma, f0, 90.0), n_orientations=n, n_fft=512)
    assert out["circular_variance"][0] == pytest.approx(expected, abs=0.01)


def test_radially_symmetric_map_has_rotational_symmetry_one():
    # a radial profile linear between integer radii lies in the projection's space: it is its own K_rad
    yy, xx = np.mgrid[0:15, 0:15] - 7.0
    knots = np.arange(12.0)
    k = np.interp(np.hypot(yy, xx), knots, np.cos(knots / 2.0) * np.exp(-knots / 4))
    rho, k_rad, _ = rotational_symmetry(k)
    assert rho[0] == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(k_rad[0], k, atol=1e-12)


def test_indices_invariant_to_contrast_sign_and_position():
    dog = difference_of_gaussians(25, 1.5, 3.0)
    off = -3.0 * dog  # OFF-centre cell, higher gain
    shifted = difference_of_gaussians(25, 1.5, 3.0, centre=(10.0, 14.0))
    ds = receptive_field_indices(np.stack([dog, off, shifted]))
    np.testing.assert_allclose(ds.centre_surround_index.values[1], ds.centre_surround_index.values[0], rtol=1e-10)
    np.testing.assert_allclose(ds.circular_variance.values[1], ds.circular_variance.values[0], rtol=1e-10)
    assert ds.centre_surround_index.values[2] > 0.85


def test_gaussian_blob_has_no_surround():
    ds = receptive_field_indices(difference_of_gaussians(17, 2.0, 4.0, surround_weight=0.0))
    assert ds.surround_antagonism.values[0] == 0.0 and ds.centre_surround_index.values[0] == 0.0
    assert ds.rotational_symmetry.values[0] > 0.99


def test_indices_of_noise_maps_stay_in_their_ranges():
    # white noise has power up to the Nyquist frequency: the tuning circle must stay inside the Fourier grid
    rng = np.random.default_rng(0)
    ds = receptive_field_indices(rng.normal(size=(200, 17, 17)))
    for name in ("orientation_selectivity_index", "circular_variance", "centre_surround_index",
                 "rotational_symmetry", "surround_antagonism"):
        values = ds[name].values
        assert np.all((values >= 0) & (values <= 1 + 1e-12)), name
    assert np.all(ds.orientation_tuning.values >= 0)
    assert np.all(ds.preferred_frequency.values <= 0.5)


def test_zero_map_gives_nan_indices():
    ds = receptive_field_indices(np.zeros((2, 9, 9)))
    assert np.all(np.isnan(ds.centre_surround_index.values)) and np.all(np.isnan(ds.circular_variance.values))
    assert np.all(ds.rf_energy.values == 0)


def test_bad_receptive_fields():
    with pytest.raises(ValueError, match="NaN or Inf"):
        receptive_field_indices(np.full((1, 9, 9), np.nan))
    with pytest.raises(ValueError, match="shape"):
        receptive_field_indices(np.zeros((2, 3, 4, 9, 9)))
    with pytest.raises(ValueError, match="at least 3x3"):
        receptive_field_indices(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="even"):
        orientation_tuning(np.ones((9, 9)), n_orientations=9)


# ------------------------------------------------------------------------------------------ measurement
def _probe_net(kernels: np.ndarray, relu: bool) -> nn.Module:
    conv = nn.Conv2d(1, len(kernels), kernels.shape[-1], bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.as_tensor(kernels, dtype=torch.float32)[:, None])
    return nn.Sequential(conv, nn.ReLU()) if relu else nn.Sequential(conv, nn.Identity())


KERNELS = np.stack([difference_of_gaussians(11, 1.2, 2.5) * 10, gabor(11, 2.0, 0.2, 45.0)])


def test_gradient_of_a_linear_unit_is_its_kernel_exactly():
    net = _probe_net(KERNELS, relu=False)
    rf = measure_receptive_fields(net, "1", (1, 11, 11), method="gradient", n_images=8, batch_size=4)
    np.testing.assert_allclose(rf.receptive_field.values[:, 0], KERNELS, atol=1e-6)
    assert rf.receptive_field.dims == ("neuron", "channel", "y", "x")


def test_reverse_correlation_of_a_rectified_unit_is_half_its_kernel():
    # Bussgang / Stein: E[relu(k.x) x] = sigma^2 k P(k.x > 0) = sigma^2 k / 2 for Gaussian x
    net = _probe_net(KERNELS, relu=True)
    n = 20000
    rf = measure_receptive_fields(net, "1", (1, 11, 11), n_images=n, batch_size=5000, noise_std=0.5, seed=1)
    est = rf.receptive_field.values[:, 0]
    scale = np.linalg.norm(KERNELS.reshape(2, -1), axis=1)[:, None, None]
    # standard error of the mean of relu(k.x) x / sigma^2 is about |k| / sqrt(n) per pixel
    assert np.max(np.abs(est - KERNELS / 2) / scale) < 5 / np.sqrt(n)
    # the indices of the measured RFs are those of the kernels (scale-invariant), up to the estimate's noise;
    # at this noise level (about 0.007 |k| per pixel) the CSI of the Gabor varies with sd ~0.015 (its small
    # radial part makes the antagonism term noisy), OSI and CV far less
    ind, true = receptive_field_indices(rf), receptive_field_indices(KERNELS)
    np.testing.assert_allclose(ind.centre_surround_index.values, true.centre_surround_index.values, atol=0.08)
    for name in ("orientation_selectivity_index", "circular_variance"):
        np.testing.assert_allclose(ind[name].values, true[name].values, atol=0.03)
    assert true.centre_surround_index.values[0] > 0.8 and true.orientation_selectivity_index.values[1] > 0.9


def test_both_methods_agree_on_a_nonlinear_net_steins_lemma():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.Tanh(), nn.Conv2d(4, 3, 5, padding=2), nn.Tanh())
    a = measure_receptive_fields(net, "3", (1, 9, 9), method="reverse_correlation", n_images=40000, batch_size=10000)
    b = measure_receptive_fields(net, "3", (1, 9, 9), method="gradient", n_images=2000, batch_size=1000)
    scale = np.abs(b.receptive_field.values).max()
    assert np.abs(a.receptive_field.values - b.receptive_field.values).max() < 0.1 * scale


def test_measurement_leaves_the_model_untouched_and_is_seeded():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU())
    net.train()
    net(torch.randn(4, 1, 8, 8)).sum().backward()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.grad.clone() for p in net.parameters()]
    a = measure_receptive_fields(net, "2", (1, 8, 8), n_images=64, seed=3)
    b = measure_receptive_fields(net, "2", (1, 8, 8), n_images=64, seed=3, batch_size=7)
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k])
    for p, g in zip(net.parameters(), grads):
        assert torch.equal(p.grad, g)
    xr.testing.assert_allclose(a, b)


def test_crop_window_and_theoretical_size_on_retina_net():
    from bioplastic.architectures import build_model

    model = build_model("retina_vvs", fc_width=8)
    assert theoretical_rf_size(model, "retina.relu1") == 9
    assert theoretical_rf_size(model, "retina.relu2") == 17
    assert theoretical_rf_size(model, "retina") == 17
    rf = measure_receptive_fields(model, "retina.relu1", (1, 17, 17), n_images=16, size=9)
    assert rf.receptive_field.shape == (32, 1, 9, 9)
    assert list(rf.x.values) == list(range(-4, 5))


def test_bad_measurement_input():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
    with pytest.raises(ValueError, match="no layer 'nope'; layers: 0, 1, 2"):
        measure_receptive_fields(net, "nope", (1, 8, 8))
    with pytest.raises(ValueError, match="allowed: 'reverse_correlation', 'gradient'"):
        measure_receptive_fields(net, "1", (1, 8, 8), method="sta")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        measure_receptive_fields(net, "2", (1, 8, 8), n_images=4)
    with pytest.raises(ValueError, match="exceeds the input"):
        measure_receptive_fields(net, "1", (1, 8, 8), size=9)
    with pytest.raises(ValueError, match="input_shape"):
        measure_receptive_fields(net, "1", (8, 8))


def test_gradient_rf_of_a_converted_model_is_the_true_derivative_not_the_feedback():
    """Issue 15 case 3: on an FA-converted model the gradient RF is the derivative of the network function
    (= the unconverted model's RF, autograd oracle; for a linear unit its kernel W), never the feedback B."""
    import bioplastic

    torch.manual_seed(0)
    lin = nn.Sequential(nn.Conv2d(2, 4, 5, padding=2))
    fa = bioplastic.convert(lin, "fa", seed=0)
    kw = dict(method="gradient", n_images=64, batch_size=32, size=5)
    rf = measure_receptive_fields(fa, "0", (2, 11, 11), **kw).receptive_field.values
    w, b = lin[0].weight.detach().double().numpy(), fa[0].B.detach().double().numpy()
    np.testing.assert_allclose(rf, w, rtol=0, atol=1e-6)  # a linear unit's RF is its kernel
    assert np.abs(rf - b).max() > 0.1 * np.abs(w).max()
    assert not fa[0].bus.force_bp  # the true-gradient switch is off again

    # a deeper, rectified model: equal to the unconverted model's gradient RF
    torch.manual_seed(1)
    deep = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(),
                         nn.Flatten(), nn.Linear(4 * 9 * 9, 3))
    for rule in ("fa", "dfa", "sign_symmetry"):
        conv = bioplastic.convert(deep, rule, seed=0, example_input=torch.zeros(1, 1, 9, 9))
        got = measure_receptive_fields(conv, "3", (1, 9, 9), method="gradient", n_images=64, batch_size=64)
        want = measure_receptive_fields(deep, "3", (1, 9, 9), method="gradient", n_images=64, batch_size=64)
        np.testing.assert_allclose(got.receptive_field.values, want.receptive_field.values, rtol=0, atol=1e-6)
        assert np.abs(want.receptive_field.values).max() > 1e-2


@pytest.mark.parametrize("sigma_c, sigma_s", [(1.5, 3.0), (2.0, 4.0), (1.0, 3.0)])
@pytest.mark.parametrize("w", [1.0, 0.8, 0.5, 0.2])
def test_surround_antagonism_of_a_dog_matches_its_closed_form(sigma_c, sigma_s, w):
    # DoG(r) = g_c(r) - w g_s(r), unit-volume Gaussians: it changes sign at r0^2 = 2 ln(s_s^2 / (w s_c^2)) /
    # (1/s_c^2 - 1/s_s^2); the centre's volume is V+ = (1 - exp(-r0^2 / 2 s_c^2)) - w (1 - exp(-r0^2 / 2 s_s^2))
    # and the surround's V- = V+ - (1 - w) (the whole DoG has volume 1 - w), so the antagonism is V- / V+ and,
    # the map being isotropic (rho = 1), the centre-surround index equals it.
    r0_sq = 2 * np.log(sigma_s**2 / (w * sigma_c**2)) / (1 / sigma_c**2 - 1 / sigma_s**2)
    v_pos = (1 - np.exp(-r0_sq / (2 * sigma_c**2))) - w * (1 - np.exp(-r0_sq / (2 * sigma_s**2)))
    expected = (v_pos - (1 - w)) / v_pos
    ds = receptive_field_indices(difference_of_gaussians(41, sigma_c, sigma_s, w))
    assert float(ds.surround_antagonism[0]) == pytest.approx(expected, abs=0.006)  # pixel sampling
    assert float(ds.rotational_symmetry[0]) > 0.997
    assert float(ds.centre_surround_index[0]) == pytest.approx(expected, abs=0.008)
    assert float(ds.orientation_selectivity_index[0]) < 1e-6
