"""Receptive fields of model units and their shape indices: centre-surround versus orientation selectivity.

Measurement (:func:`measure_receptive_fields`) treats a layer of a torch model like an experimentalist treats
a recorded cell: the unit at the centre of every channel's feature map is probed with white Gaussian noise
images (in the model's input space) and its receptive field (RF) estimated by

* ``"reverse_correlation"``: the response-weighted average of the noise, ``RF = Cov(r, x) / sigma^2`` (the
  spike-triggered average of Chichilnisky 2001, "A simple white noise analysis of neuronal light
  responses", Network 12:199-213, with the response as weight, minus the mean response);
* ``"gradient"``: the mean input gradient of the response over the same noise images, ``E[dr/dx]``.

For Gaussian noise the two estimate the same filter (Stein's lemma: ``E[r x] = sigma^2 E[dr/dx]``); for a
linear unit both equal its weights. Reverse correlation needs only forward passes. ``"gradient"`` uses
autograd inside :func:`bioplastic.nn.true_gradient`, so on a model converted by ``bioplastic.convert`` it
differentiates the network function itself, not the learning rule's feedback (which would give e.g. the
feedback matrix ``B`` of feedback alignment instead of the weights).

Indices (:func:`receptive_field_indices`), per unit, of an RF map K (y, x):

* **rotational symmetry** ``rho = ||K_rad||^2 / ||K||^2`` where ``K_rad`` is the orthogonal (least-squares)
  projection of K onto radially symmetric maps around the RF's energy centroid (radial profiles linear
  between integer radii, so rho varies continuously with the centre): 1 for any isotropic RF (Gaussian,
  difference of Gaussians), small for oriented RFs;
* **surround antagonism** ``a = min(V+, V-) / max(V+, V-)``, with V+ and V- the volumes of the positive and
  negative parts of ``K_rad``: 0 without an opposite-sign surround, 1 for a balanced centre and surround;
* **centre-surround index** ``CSI = rho * a``: high (towards 1) only for a radially symmetric RF with an
  antagonistic surround, the difference-of-Gaussians RF of retinal ganglion cells (Rodieck 1965, Vision Res
  5:583; Enroth-Cugell & Robson 1966, J Physiol 187:517); low for Gaussian blobs and for oriented (Gabor)
  RFs. This quantifies the visual classification of Lindsey et al. (2019, ICLR) and Hanut & Kadmon (2025,
  arXiv:2502.20580), who show RF pictures only;
* **orientation tuning** of the RF as a linear filter: the response amplitude to a sinusoidal grating of
  orientation theta at the preferred spatial frequency f* is ``r(theta) = |K^(f* cos theta, f* sin theta)|``
  (K^ the Fourier transform; the F1 response of a linear-nonlinear cell), sampled at ``n_orientations``
  angles in [0, 180) degrees; f* is the frequency of the largest |K^| away from zero frequency;
* **orientation selectivity index** ``OSI = (r_pref - r_orth) / (r_pref + r_orth)`` (r_orth at 90 degrees
  from the preferred orientation; e.g. Niell & Stryker 2008, J Neurosci 28:7520): 0 for isotropic RFs, near
  1 for Gabor RFs;
* **circular variance** ``CV = 1 - |sum_k r_k exp(2 i theta_k)| / sum_k r_k`` (Ringach, Shapley & Hawken
  2002, J Neurosci 22:5639, eq. 1): 1 for untuned, 0 for perfectly tuned units; directly comparable to the
  Ringach 2002 V1 database (``orivar``).

All computations are vectorised over units (no loop over neurons).
"""
from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import xarray as xr

from bioplastic._checks import check_choice, check_finite, check_positive_int

__all__ = [
    "measure_receptive_fields", "receptive_field_indices", "rotational_symmetry", "orientation_tuning",
    "difference_of_gaussians", "gabor", "METHODS", "theoretical_rf_size",
]

log = logging.getLogger(__name__)

Method = Literal["reverse_correlation", "gradient"]
METHODS = ("reverse_correlation", "gradient")


class _StopForward(Exception):
    """Raised by the recording hook once the probed layer has produced its output."""


def _module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n]
        raise ValueError(f"model has no layer {layer!r}; layers: {', '.join(names)}")
    return modules[layer]


def _layer_output(model: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output of ``module`` when ``model`` runs on ``x``; the rest of the forward pass is skipped."""
    captured: list[torch.Tensor] = []

    def hook(_mod, _inp, out):
        captured.append(out)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError("the probed layer was not called in the model's forward pass")
    out = captured[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise ValueError(f"the probed layer must output feature maps (N, C, H, W), got {getattr(out, 'shape', type(out))}")
    return out


def theoretical_rf_size(model: nn.Module, layer: str) -> int:
    """Side in pixels of the receptive field of a unit of ``layer`` in a chain of stride-1 convolutions:
    ``1 + sum (k - 1) * dilation`` over the Conv2d modules up to and including ``layer`` (module order).

    Raises
    ------
    ValueError
        Unknown layer, or a strided convolution before it (the formula would not hold).
    """
    _module(model, layer)
    size = 1
    seen_layer = False
    for name, m in model.named_modules():
        if seen_layer and not name.startswith(layer + "."):
            break  # past the layer and its submodules
        seen_layer = seen_layer or name == layer
        is_conv = isinstance(m, nn.Conv2d) or (
            hasattr(m, "kernel_size") and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 4)
        if is_conv:
            if tuple(np.atleast_1d(m.stride)) not in ((1,), (1, 1)):
                raise ValueError(f"layer {name!r} has stride {m.stride}; theoretical_rf_size needs stride 1")
            size += (int(np.atleast_1d(m.kernel_size)[0]) - 1) * int(np.atleast_1d(m.dilation)[0])
    return size


def measure_receptive_fields(
    model: nn.Module,
    layer: str,
    input_shape: tuple[int, int, int],
    *,
    method: Method = "reverse_correlation",
    n_images: int = 8192,
    noise_std: float = 1.0,
    batch_size: int = 1024,
    size: int | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Receptive fields of the central unit of every channel of ``layer``, by white-noise probing.

    Parameters
    ----------
    model : torch.nn.Module
        The network (its parameters, buffers, ``.grad`` and train/eval mode are left as they were; it is
        run in eval mode). Its device is the device of its first parameter.
    layer : str
        Module name (``dict(model.named_modules())``) whose output (N, C, h, w) holds the probed units,
        e.g. ``"retina.relu2"`` of :class:`bioplastic.architectures.retina.RetinaVVS`.
    input_shape : (channels, height, width)
        Shape of one model input.
    method : {"reverse_correlation", "gradient"}
        See the module docstring. ``"gradient"`` is the true derivative of the response also for a model
        converted to a learning rule (computed under :func:`bioplastic.nn.true_gradient`).
    n_images : int
        Noise images (the estimate's noise falls as 1 / sqrt(n_images)).
    noise_std : float
        Standard deviation sigma of the i.i.d. Gaussian pixels (model input units).
    batch_size : int
        Images per forward pass.
    size : int, optional
        Crop the RF maps to a ``size`` x ``size`` window centred on the input pixel (H // 2, W // 2)
        (e.g. :func:`theoretical_rf_size`); default: the whole input.
    seed : int
        Seed of the noise (a CPU ``torch.Generator``), so the same seed gives the same RFs on any device.

    Returns
    -------
    xarray.Dataset
        ``receptive_field`` (neuron, channel, y, x): response per unit input, float64; ``neuron`` = channel
        index of the probed layer; ``channel`` = input channel; ``y``, ``x`` = pixel offsets from the
        window centre (attrs units "pixel"). ``mean_response`` (neuron): mean response to the noise (0 for
        units the noise never drives; their RF is 0). attrs: layer, method, n_images, noise_std, seed,
        unit position.

    Raises
    ------
    ValueError
        Unknown layer or method, a layer without 4-D output, non-positive sizes, a crop larger than the
        input, non-finite responses.
    """
    check_choice("method", method, METHODS)
    module = _module(model, layer)
    check_positive_int("n_images", n_images)
    check_positive_int("batch_size", batch_size)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape!r}")
    c_in, h_in, w_in = (check_positive_int("input_shape[]", int(v)) for v in input_shape)
    if not noise_std > 0:
        raise ValueError(f"noise_std must be positive, got {noise_std!r}")
    if size is not None:
        check_positive_int("size", size)
        if size > min(h_in, w_in):
            raise ValueError(f"size {size} exceeds the input ({h_in}x{w_in})")
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)

    from bioplastic.nn.diagnostics import true_gradient

    was_training = model.training
    model.eval()
    sum_rx = sum_r = sum_x = None
    unit = None
    try:
        for start in range(0, n_images, batch_size):
            n = min(batch_size, n_images - start)
            x = (torch.randn(n, c_in, h_in, w_in, generator=gen, dtype=torch.float32) * noise_std).to(device)
            if method == "gradient":
                x.requires_grad_(True)
                # the derivative of the network function, not a learning rule's feedback (issue 15 case 3)
                with torch.enable_grad(), true_gradient(model):
                    out = _layer_output(model, module, x)
                    unit = unit or (out.shape[2] // 2, out.shape[3] // 2)
                    r = out[:, :, unit[0], unit[1]]  # (n, C)
                    eye = torch.eye(r.shape[1], device=device, dtype=r.dtype)[:, None, :].expand(-1, n, -1)
                    (g,) = torch.autograd.grad(r, x, grad_outputs=eye, is_grads_batched=True)  # (C, n, c, H, W)
                g = g.detach().double().sum(dim=1)
                sum_rx = g if sum_rx is None else sum_rx + g
                r_sum = r.detach().double().sum(dim=0)
                sum_r = r_sum if sum_r is None else sum_r + r_sum
            else:
                with torch.no_grad():
                    out = _layer_output(model, module, x)
                    unit = unit or (out.shape[2] // 2, out.shape[3] // 2)
                    r = out[:, :, unit[0], unit[1]].double()  # (n, C)
                    xd = x.double()
                    rx = torch.einsum("nc,nkhw->ckhw", r, xd)
                    sum_rx = rx if sum_rx is None else sum_rx + rx
                    sum_r = r.sum(0) if sum_r is None else sum_r + r.sum(0)
                    sum_x = xd.sum(0) if sum_x is None else sum_x + xd.sum(0)
    finally:
        model.train(was_training)
    check_finite(f"responses of layer {layer!r}", sum_r)
    mean_r = sum_r / n_images
    if method == "gradient":
        rf = sum_rx / n_images
    else:  # Cov(r, x) / sigma^2
        rf = (sum_rx / n_images - mean_r[:, None, None, None] * (sum_x / n_images)[None]) / noise_std**2
    rf = rf.cpu().numpy()
    if size is not None:
        top, left = h_in // 2 - size // 2, w_in // 2 - size // 2
        rf = rf[:, :, top:top + size, left:left + size]
    hh, ww = rf.shape[-2:]
    coords = {
        "neuron": np.arange(rf.shape[0]),
        "channel": np.arange(c_in),
        "y": ("y", np.arange(hh) - hh // 2, {"units": "pixel"}),
        "x": ("x", np.arange(ww) - ww // 2, {"units": "pixel"}),
    }
    return xr.Dataset(
        {
            "receptive_field": (("neuron", "channel", "y", "x"), rf,
                                {"long_name": "receptive field (response per unit input)"}),
            "mean_response": (("neuron",), mean_r.cpu().numpy(), {"long_name": "mean response to the noise"}),
        },
        coords=coords,
        attrs={"layer": layer, "method": method, "n_images": int(n_images), "noise_std": float(noise_std),
               "seed": int(seed), "unit_row": int(unit[0]), "unit_col": int(unit[1]),
               "source": "white-noise probing; reverse correlation after Chichilnisky (2001) Network 12:199"},
    )


# --------------------------------------------------------------------------------------------------- indices
def _as_maps(rf: Any) -> tuple[np.ndarray, dict]:
    """(neuron, y, x) float64 maps from an array or a Dataset/DataArray (channels summed)."""
    coords: dict = {}
    if isinstance(rf, xr.Dataset):
        rf = rf["receptive_field"]
    if isinstance(rf, xr.DataArray):
        if "channel" in rf.dims:
            rf = rf.sum("channel")
        if "neuron" in rf.dims:
            coords = {"neuron": rf["neuron"].values}
            rf = rf.transpose("neuron", ...)
        rf = rf.values
    arr = np.asarray(rf.detach().cpu().numpy() if isinstance(rf, torch.Tensor) else rf, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4:  # (neuron, channel, y, x): luminance RF
        arr = arr.sum(axis=1)
    if arr.ndim != 3:
        raise ValueError(f"receptive fields must have shape (neuron, y, x) or (neuron, channel, y, x), got {arr.shape}")
    if min(arr.shape[1:]) < 3:
        raise ValueError(f"receptive-field maps must be at least 3x3 pixels, got {arr.shape[1:]}")
    check_finite("receptive fields", arr)
    return arr, coords


def rotational_symmetry(rf: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotationally symmetric part of RF maps and its share of the energy.

    Parameters
    ----------
    rf : array (neuron, y, x) or (y, x)

    Returns
    -------
    rho : numpy.ndarray (neuron,)
        ``||K_rad||^2 / ||K||^2`` in [0, 1] (NaN for an all-zero map).
    k_rad : numpy.ndarray (neuron, y, x)
        Least-squares projection of K onto radially symmetric maps around the energy centroid of K^2
        (radial profiles linear between integer radii).
    antagonism : numpy.ndarray (neuron,)
        ``min(V+, V-) / max(V+, V-)`` of ``k_rad`` (NaN for an all-zero map).
    """
    k, _ = _as_maps(rf)
    n, h, w = k.shape
    energy = k**2
    total = energy.sum(axis=(1, 2))
    safe = np.where(total > 0, total, 1.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy = (energy * yy).sum(axis=(1, 2)) / safe
    cx = (energy * xx).sum(axis=(1, 2)) / safe
    dist = np.sqrt((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2).reshape(n, -1)
    # Radially symmetric maps: profiles piecewise linear between integer radii (continuous in the centre,
    # unlike hard rings). K_rad is the least-squares projection of K onto them: A c, c = (A^T A)^-1 A^T K,
    # A (pixels, radii) the linear-interpolation weights of each pixel's distance.
    n_rings = int(np.floor(dist.max())) + 2
    lower = np.floor(dist).astype(np.int64)
    frac = dist - lower
    a = np.zeros((n, h * w, n_rings))
    rows = np.arange(n)[:, None]
    pix = np.arange(h * w)[None, :]
    a[rows, pix, lower] = 1.0 - frac
    a[rows, pix, lower + 1] += frac
    gram = np.einsum("npr,nps->nrs", a, a)
    coef = np.linalg.pinv(gram, hermitian=True) @ np.einsum("npr,np->nr", a, k.reshape(n, -1))[..., None]
    k_rad = np.einsum("npr,nr->np", a, coef[..., 0]).reshape(n, h, w)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(total > 0, (k_rad**2).sum(axis=(1, 2)) / safe, np.nan)
        v_pos = np.clip(k_rad, 0, None).sum(axis=(1, 2))
        v_neg = np.clip(-k_rad, 0, None).sum(axis=(1, 2))
        big = np.maximum(v_pos, v_neg)
        antagonism = np.where(big > 0, np.minimum(v_pos, v_neg) / np.where(big > 0, big, 1.0), np.nan)
    return rho, k_rad, antagonism


def orientation_tuning(rf: Any, *, n_orientations: int = 36, n_fft: int | None = None) -> dict[str, np.ndarray]:
    """Orientation tuning of RF maps as linear filters: grating-response amplitude at the preferred frequency.

    Parameters
    ----------
    rf : array (neuron, y, x) or (y, x)
    n_orientations : int
        Even number of grating orientations in [0, 180) degrees.
    n_fft : int, optional
        Side of the zero-padded Fourier grid (default: 4 x the larger map side, at least 64).

    Returns
    -------
    dict
        ``tuning`` (neuron, orientation): amplitudes r(theta); ``orientation`` (orientation,): the gratings'
        bar orientations in degrees (wave-vector angle + 90); ``preferred_orientation`` (neuron,) degrees;
        ``preferred_frequency`` (neuron,) cycles per pixel; ``osi`` and ``circular_variance`` (neuron,),
        NaN for an all-zero map.

    Raises
    ------
    ValueError
        Odd or non-positive ``n_orientations``, bad RF shape, non-finite values.
    """
    k, _ = _as_maps(rf)
    check_positive_int("n_orientations", n_orientations, minimum=2)
    if n_orientations % 2:
        raise ValueError(f"n_orientations must be even (orthogonal orientations sampled), got {n_orientations}")
    n, h, w = k.shape
    size = n_fft or max(64, 4 * max(h, w))
    amp = np.abs(np.fft.fftshift(np.fft.fft2(k - 0.0, s=(size, size)), axes=(1, 2)))  # (n, size, size)
    freqs = np.fft.fftshift(np.fft.fftfreq(size))  # cycles / pixel, index size // 2 is 0
    fy, fx = np.meshgrid(freqs, freqs, indexing="ij")
    radius = np.hypot(fy, fx)
    f_min = 1.0 / max(h, w)  # lowest frequency with a full cycle across the map
    # highest frequency whose whole circle lies inside the grid (index size - 1 is 0.5 - 1 / size), so the
    # interpolation below never extrapolates
    f_max = 0.5 - 1.0 / size
    masked = np.where((radius[None] >= f_min) & (radius[None] <= f_max), amp, -np.inf).reshape(n, -1)
    best = masked.argmax(axis=1)
    f_pref = radius.ravel()[best]
    theta = np.arange(n_orientations) * np.pi / n_orientations  # wave-vector angles
    # bilinear interpolation of |K^| on the circle of radius f_pref (vectorised over neurons and angles)
    step = 1.0 / size
    py = size // 2 + (f_pref[:, None] * np.sin(theta)[None]) / step
    px = size // 2 + (f_pref[:, None] * np.cos(theta)[None]) / step
    y0 = np.clip(np.floor(py).astype(np.int64), 0, size - 2)
    x0 = np.clip(np.floor(px).astype(np.int64), 0, size - 2)
    ty, tx = py - y0, px - x0
    rows = np.arange(n)[:, None]
    tuning = ((1 - ty) * (1 - tx) * amp[rows, y0, x0] + (1 - ty) * tx * amp[rows, y0, x0 + 1]
              + ty * (1 - tx) * amp[rows, y0 + 1, x0] + ty * tx * amp[rows, y0 + 1, x0 + 1])
    total = tuning.sum(axis=1)
    zero = total <= 0
    k_pref = tuning.argmax(axis=1)
    r_pref = tuning[np.arange(n), k_pref]
    r_orth = tuning[np.arange(n), (k_pref + n_orientations // 2) % n_orientations]
    with np.errstate(invalid="ignore", divide="ignore"):
        osi = np.where(zero, np.nan, (r_pref - r_orth) / (r_pref + r_orth))
        cv = np.where(zero, np.nan, 1 - np.abs((tuning * np.exp(2j * theta)[None]).sum(axis=1)) / total)
    bar_deg = (np.degrees(theta) + 90.0) % 180.0
    return {
        "tuning": tuning,
        "orientation": bar_deg,
        "preferred_orientation": np.where(zero, np.nan, bar_deg[k_pref]),
        "preferred_frequency": np.where(zero, np.nan, f_pref),
        "osi": osi,
        "circular_variance": cv,
    }


def receptive_field_indices(rf: Any, *, n_orientations: int = 36) -> xr.Dataset:
    """Centre-surround and orientation indices of each unit's RF (definitions in the module docstring).

    Parameters
    ----------
    rf : xarray.Dataset, xarray.DataArray, numpy.ndarray or torch.Tensor
        RF maps (neuron, y, x), or (neuron, channel, y, x) whose channels are summed (luminance RF), e.g.
        the output of :func:`measure_receptive_fields`.
    n_orientations : int
        Even number of grating orientations sampled in [0, 180) degrees.

    Returns
    -------
    xarray.Dataset
        Over ``neuron``: ``centre_surround_index``, ``rotational_symmetry``, ``surround_antagonism``,
        ``orientation_selectivity_index``, ``circular_variance``, ``preferred_orientation`` (degrees),
        ``preferred_frequency`` (cycles / pixel), ``rf_energy`` (sum of squares; NaN indices where it is 0);
        ``orientation_tuning`` (neuron, orientation) with ``orientation`` in degrees.

    Raises
    ------
    ValueError
        Bad shape (not (neuron, [channel,] y, x), maps smaller than 3x3), NaN/Inf values, odd
        ``n_orientations``.
    """
    k, coords = _as_maps(rf)
    rho, _, antagonism = rotational_symmetry(k)
    tun = orientation_tuning(k, n_orientations=n_orientations)
    neuron = coords.get("neuron", np.arange(k.shape[0]))
    dims = ("neuron",)
    return xr.Dataset(
        {
            "centre_surround_index": (dims, rho * antagonism, {"long_name": "rotational symmetry x surround antagonism"}),
            "rotational_symmetry": (dims, rho),
            "surround_antagonism": (dims, antagonism),
            "orientation_selectivity_index": (dims, tun["osi"], {"long_name": "(r_pref - r_orth) / (r_pref + r_orth)"}),
            "circular_variance": (dims, tun["circular_variance"], {"source": "Ringach et al. (2002) J Neurosci 22:5639"}),
            "preferred_orientation": (dims, tun["preferred_orientation"], {"units": "degree"}),
            "preferred_frequency": (dims, tun["preferred_frequency"], {"units": "cycles/pixel"}),
            "rf_energy": (dims, (k**2).sum(axis=(1, 2))),
            "orientation_tuning": (("neuron", "orientation"), tun["tuning"]),
        },
        coords={"neuron": neuron, "orientation": ("orientation", tun["orientation"], {"units": "degree"})},
        attrs={"n_orientations": int(n_orientations),
               "definitions": "see bioplastic.analysis.receptive_fields module docstring"},
    )


# ------------------------------------------------------------------------------------------ synthetic RFs
def difference_of_gaussians(size: int, sigma_centre: float, sigma_surround: float, surround_weight: float = 1.0,
                            *, centre: tuple[float, float] | None = None) -> np.ndarray:
    """Difference-of-Gaussians RF map (Rodieck 1965): unit-volume centre Gaussian minus ``surround_weight``
    times a unit-volume surround Gaussian; (size, size) float64, centred unless ``centre`` (row, col) is given."""
    c = ((size - 1) / 2,) * 2 if centre is None else centre
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    d2 = (yy - c[0]) ** 2 + (xx - c[1]) ** 2
    g = lambda s: np.exp(-d2 / (2 * s**2)) / (2 * np.pi * s**2)  # noqa: E731
    return g(sigma_centre) - surround_weight * g(sigma_surround)


def gabor(size: int, sigma: float, frequency: float, orientation_deg: float, phase: float = 0.0) -> np.ndarray:
    """Gabor RF map: Gaussian envelope (``sigma`` pixels) times a cosine of ``frequency`` cycles / pixel whose
    bars have orientation ``orientation_deg`` (wave vector at +90 degrees); (size, size) float64, centred."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - c
    wave = np.radians(orientation_deg - 90.0)
    carrier = np.cos(2 * np.pi * frequency * (xx * np.cos(wave) + yy * np.sin(wave)) + phase)
    return np.exp(-(xx**2 + yy**2) / (2 * sigma**2)) * carrier
