"""Record the activations of named layers of a torch model for a stimulus set, as an xarray Dataset."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from bioplastic._checks import check_finite, check_positive_int
from bioplastic.analysis._inputs import STIMULUS, stimulus_coords

logger = logging.getLogger(__name__)


def neuron_dim(layer: str) -> str:
    """Name of the neuron dimension of ``layer`` in :func:`record_activations` output (``neuron_<layer>``)."""
    return f"neuron_{layer}"


def leaf_layers(model: torch.nn.Module) -> list[str]:
    """Names of the modules of ``model`` that have no children (the layers a forward pass goes through)."""
    return [name for name, m in model.named_modules() if name and not any(True for _ in m.children())]


_NONLINEARITIES = (torch.nn.ReLU, torch.nn.GELU, torch.nn.Tanh, torch.nn.Sigmoid, torch.nn.LeakyReLU, torch.nn.ELU,
                   torch.nn.SiLU, torch.nn.Softplus, torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveAvgPool1d)


def representation_layers(model: torch.nn.Module, *, include_output: bool = True) -> list[str]:
    """Layers whose outputs are a network's representations, in forward order of registration.

    The outputs of nonlinearities and global pooling (a conv stage's rectified responses, the pooled
    feature vector) and, with ``include_output``, the last module with parameters (the readout: logits).
    This is the usual choice of "layers" when comparing a network with neural data (e.g. Yamins et al.
    2014; Khaligh-Razavi & Kriegeskorte 2014).

    Returns
    -------
    list of str
        Module names as in ``model.named_modules()``.
    """
    leaves = [(name, m) for name, m in model.named_modules() if name and not any(True for _ in m.children())]
    names = [name for name, m in leaves if isinstance(m, _NONLINEARITIES)]
    if include_output:
        with_params = [name for name, m in leaves if any(True for _ in m.parameters(recurse=False))]
        if with_params and with_params[-1] not in names:
            names.append(with_params[-1])
    return names


def record_activations(model: torch.nn.Module, stimuli: Any, layers: Sequence[str] | None = None, *,
                       batch_size: int = 256, device: str | torch.device | None = None,
                       coords: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Run ``stimuli`` through ``model`` and record the outputs of named layers.

    The model runs in evaluation mode under ``torch.no_grad()`` (batch-norm uses its running statistics,
    dropout is off); every module's training flag is restored afterwards, and no parameter or buffer
    changes. Forward hooks are removed even if the forward pass fails.

    Parameters
    ----------
    model : torch.nn.Module
        Any model; layers are named as in ``model.named_modules()`` (e.g. ``"features.3"``).
    stimuli : torch.Tensor, numpy.ndarray or xarray.DataArray
        Model inputs, shape (stimulus, ...) (images (stimulus, channel, height, width)), floating point,
        already scaled as the model expects (e.g. ``dataset.transform(x)``). A DataArray must have a
        ``stimulus`` dim (moved first; the other dims keep their order and are the model's input dims); its
        ``stimulus`` labels and other coordinates along ``stimulus`` are carried to the output, so that
        RDMs and CKA of the recording are aligned by label with other labelled data.
    layers : sequence of str, optional
        Module names to record; default every leaf module (``leaf_layers(model)``).
    batch_size : int
        Stimuli per forward pass.
    device : str or torch.device, optional
        Where to run; default the device of the model's first parameter (CPU if it has none).
    coords : mapping, optional
        Extra coordinates along ``stimulus`` (e.g. ``{"stimulus": names, "category": labels}``), each of
        length n_stimuli; they replace coordinates of the same name carried by a DataArray ``stimuli``.
        Without labels (``stimulus`` coordinate from neither), stimuli are labelled by position 0..n-1:
        label them to compare the recording with data that store the stimuli in another order.

    Returns
    -------
    xarray.Dataset
        One float32 variable per layer, named by the layer, dims (``stimulus``, ``neuron_<layer>``): the
        layer's output flattened per stimulus in C order. Conv maps (stimulus, channel, y, x) get
        coordinates ``channel_<layer>``, ``y_<layer>``, ``x_<layer>`` along the neuron dim; token
        sequences (stimulus, token, feature) get ``token_<layer>``, ``feature_<layer>``. Variable attrs:
        ``module`` (class name), ``shape`` (per-stimulus output shape as a string, e.g. ``"(32, 16, 16)"``).
        The variables come in the order of ``layers``. The analyses in
        ``bioplastic.analysis`` accept each variable directly.

    Raises
    ------
    ValueError
        Unknown layer names (the message lists the available ones); empty or non-floating stimuli;
        NaN/Inf inputs; a layer whose output is not a tensor; a layer that is never called.
    """
    check_positive_int("batch_size", batch_size)
    names = leaf_layers(model) if layers is None else list(layers)
    available = dict(model.named_modules())
    unknown = [n for n in names if n not in available or n == ""]
    if unknown:
        listed = ", ".join(repr(n) for n in available if n)
        raise ValueError(f"unknown layers {unknown}; model has: {listed}")
    if not names:
        raise ValueError("no layers to record")
    if len(set(names)) != len(names):
        raise ValueError(f"layers listed more than once: {names}")
    carried: dict[str, Any] = {}
    if isinstance(stimuli, xr.DataArray):
        if STIMULUS not in stimuli.dims:
            raise ValueError(f"stimuli is a DataArray without a {STIMULUS!r} dim (dims {tuple(stimuli.dims)})")
        stimuli = stimuli.transpose(STIMULUS, ...)
        carried = stimulus_coords(stimuli, stimuli.sizes[STIMULUS])
        stimuli = stimuli.values
    x = torch.as_tensor(stimuli) if not isinstance(stimuli, torch.Tensor) else stimuli
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"stimuli must be a non-empty batch (stimulus, ...), got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ValueError(f"stimuli have dtype {x.dtype}; convert them to the model's floating-point input scaling "
                         "first (e.g. dataset.transform(x))")
    check_finite("stimuli", x)
    n = x.shape[0]
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    param = next(iter(model.parameters()), None)
    if param is not None and param.device != device:
        raise ValueError(f"model lives on {param.device} but device={device}; move the model first")

    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in names}

    def hook_for(name: str):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"layer {name!r} ({type(module).__name__}) returns {type(output).__name__}, "
                                 "not a tensor; record one of its submodules instead")
            chunks[name].append(output.detach().to("cpu", torch.float32))
        return hook

    modes = {m: m.training for m in model.modules()}
    handles = [available[name].register_forward_hook(hook_for(name)) for name in names]
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, n, batch_size):  # batches, not samples
                model(x[start:start + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode

    variables: dict[str, Any] = {}
    extra_coords: dict[str, Any] = {}
    for name in names:
        if not chunks[name]:
            raise ValueError(f"layer {name!r} was not called in the forward pass")
        out = torch.cat(chunks[name])
        if out.shape[0] != n:
            raise ValueError(f"layer {name!r} produced {out.shape[0]} outputs for {n} stimuli (called more than "
                             "once per forward pass?); record a module that runs once")
        shape = tuple(out.shape[1:])
        dim = neuron_dim(name)
        variables[name] = xr.Variable((STIMULUS, dim), out.reshape(n, -1).numpy(),
                                      attrs={"module": type(available[name]).__name__,
                                             # a string: a one-element list comes back from netCDF as a scalar
                                             "shape": str(shape)})
        extra_coords.update(_neuron_coords(name, dim, shape))
    coord_map: dict[str, Any] = {STIMULUS: np.arange(n)}
    for cname, values in carried.items():
        coord_map[cname] = (STIMULUS, np.asarray(values)) if cname != STIMULUS else np.asarray(values)
    for cname, values in (coords or {}).items():
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"coordinate {cname!r} has shape {values.shape}; expected ({n},)")
        coord_map[cname] = (STIMULUS, values) if cname != STIMULUS else values
    coord_map.update(extra_coords)
    ds = xr.Dataset(variables, coords=coord_map, attrs={"model": type(model).__name__})
    logger.info("recorded %d layers for %d stimuli", len(names), n)
    return ds


def _neuron_coords(name: str, dim: str, shape: tuple[int, ...]) -> dict[str, Any]:
    if len(shape) == 3:  # conv map (channel, y, x)
        c, h, w = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
        return {f"channel_{name}": (dim, c.ravel()), f"y_{name}": (dim, h.ravel()), f"x_{name}": (dim, w.ravel())}
    if len(shape) == 2:  # token sequence (token, feature)
        t, f = np.meshgrid(*(np.arange(s) for s in shape), indexing="ij")
        return {f"token_{name}": (dim, t.ravel()), f"feature_{name}": (dim, f.ravel())}
    return {}


