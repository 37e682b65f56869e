"""Input handling shared by the analysis modules: every function takes numpy arrays, torch tensors or
xarray DataArrays, and turns them into float64 numpy arrays without touching the caller's object."""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from bioplastic._checks import check_finite

STIMULUS = "stimulus"
REPEAT = "repeat"


def to_numpy(x: Any, name: str) -> np.ndarray:
    """A float64 copy-or-view of ``x`` (numpy, torch, DataArray); never the caller's buffer to write to."""
    if isinstance(x, xr.Dataset):
        raise TypeError(f"{name} must be an array or DataArray, not a Dataset; pick one variable, e.g. ds['layer']")
    if isinstance(x, xr.DataArray):
        x = x.values
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch.float64).numpy()
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    check_finite(name, arr)
    return arr


def stimulus_by_neuron(x: Any, name: str = "X", *, min_stimuli: int = 2) -> tuple[np.ndarray, xr.DataArray | None]:
    """Return ``x`` as a (stimulus, neuron) float64 array and the DataArray it came from (or None).

    A DataArray must have a ``stimulus`` dimension; every other dimension (``neuron``, or ``channel``,
    ``y``, ``x`` of a conv map) is flattened into neurons in C order. A ``repeat`` dimension is refused:
    average over it first, or use a cross-validated estimator. Arrays and tensors are read as
    (stimulus, ...) with the trailing axes flattened into neurons.
    """
    if isinstance(x, xr.DataArray):
        if STIMULUS not in x.dims:
            raise ValueError(f"{name} must have a {STIMULUS!r} dimension; it has dims {tuple(x.dims)}")
        if REPEAT in x.dims:
            raise ValueError(
                f"{name} has a {REPEAT!r} dimension; average over it first (X.mean('repeat')) or use a "
                "cross-validated estimator (distance='crossnobis', cv_pca)")
        other = [d for d in x.dims if d != STIMULUS]
        arr = to_numpy(x.transpose(STIMULUS, *other), name)
        arr = arr.reshape(arr.shape[0], -1)
        source = x
    else:
        arr = to_numpy(x, name)
        if arr.ndim < 2:
            raise ValueError(f"{name} must be stimulus x neuron (2-D or more), got shape {arr.shape}")
        arr = arr.reshape(arr.shape[0], -1)
        source = None
    if arr.shape[0] < min_stimuli:
        raise ValueError(f"{name} needs at least {min_stimuli} stimuli, got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no neurons (shape {arr.shape})")
    return arr, source


def stimulus_coords(source: xr.DataArray | None, n: int) -> dict[str, Any]:
    """Coordinates along ``stimulus`` of ``source`` (the index and any 1-D coordinates on it)."""
    if source is None:
        return {STIMULUS: np.arange(n)}
    coords: dict[str, Any] = {}
    if STIMULUS in source.coords:
        coords[STIMULUS] = source[STIMULUS].values
    else:
        coords[STIMULUS] = np.arange(n)
    for cname, c in source.coords.items():
        if cname != STIMULUS and c.dims == (STIMULUS,):
            coords[cname] = c.values
    return coords


def check_same_stimuli(ref: np.ndarray, labels: np.ndarray, ref_name: str, name: str) -> None:
    """Raise unless ``labels`` and ``ref`` are the same set of unique stimulus labels (in any order).

    Raises
    ------
    ValueError
        Naming up to 10 stimuli of ``ref`` missing from ``labels`` and 10 extra ones, or the duplicated labels.
    """
    ref_list, lab_list = ref.tolist(), labels.tolist()
    set_ref, set_lab = set(ref_list), set(lab_list)
    if set_ref == set_lab and len(set_ref) == len(ref_list) and len(set_lab) == len(lab_list):
        return
    missing = [v for v in ref_list if v not in set_lab]
    extra = [v for v in lab_list if v not in set_ref]
    parts = []
    if missing:
        parts.append(f"{len(missing)} stimuli of {ref_name} missing from {name}: {missing[:10]}")
    if extra:
        parts.append(f"{len(extra)} extra stimuli in {name} not in {ref_name}: {extra[:10]}")
    raise ValueError(f"{ref_name} and {name} hold different stimulus sets: " + ("; ".join(parts) or "duplicated labels"))
