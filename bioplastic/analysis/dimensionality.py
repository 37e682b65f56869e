"""Dimensionality and sparseness of population responses.

Participation ratio (Gao, Trautmann, Yu, Santhanam, Ryu, Shenoy & Ganguli 2017,
bioRxiv 214262, "A theory of multineuronal dimensionality, dynamics and measurement"; Litwin-Kumar et al.
2017 Neuron 93:1153): PR = (sum_i lambda_i)^2 / sum_i lambda_i^2 over the eigenvalues of the response
covariance; it equals D for variance spread evenly over D dimensions and 1 for a single one.

Sparseness (Treves & Rolls 1991 activity ratio, normalised by Vinje & Gallant 2000, Science 287:1273;
terminology of Willmore & Tolhurst 2001, Network 12:255): for non-negative responses r_1..r_n,

    S = (1 - (sum_i r_i / n)^2 / (sum_i r_i^2 / n)) / (1 - 1/n),

0 for a dense (constant) response, 1 for a response to a single item. *Lifetime* sparseness is taken per
neuron across stimuli, *population* sparseness per stimulus across neurons.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from bioplastic.analysis._inputs import STIMULUS, stimulus_by_neuron


def participation_ratio(X: Any) -> float:
    """Participation ratio of responses to a stimulus set (Gao et al. 2017).

    Parameters
    ----------
    X : (stimulus, neuron) DataArray, array or tensor
        Responses; the covariance is taken across stimuli (each neuron centred). Extra dims of a DataArray
        are flattened into neurons.

    Returns
    -------
    float
        (tr C)^2 / tr(C^2) for the neuron x neuron covariance C, between 1 and min(n_stimuli - 1, n_neurons);
        computed from the smaller of the two Gram matrices (no eigendecomposition). NaN if the responses
        do not vary across stimuli.

    Raises
    ------
    ValueError
        NaN/Inf responses; fewer than 2 stimuli; not (stimulus, neuron).
    """
    arr, _ = stimulus_by_neuron(X, "X")
    centred = arr - arr.mean(axis=0, keepdims=True)
    # tr(C) and tr(C^2) are the same for X^T X and X X^T; use whichever is smaller.
    g = centred.T @ centred if centred.shape[1] <= centred.shape[0] else centred @ centred.T
    trace = np.trace(g)
    trace_sq = np.einsum("ij,ij->", g, g)
    if trace_sq <= 0:
        return float("nan")
    return float(trace**2 / trace_sq)


def _sparseness(r: np.ndarray, axis: int) -> np.ndarray:
    n = r.shape[axis]
    if n < 2:
        raise ValueError(f"sparseness needs at least 2 values along the axis it is taken over, got {n}")
    mean = r.mean(axis=axis)
    mean_sq = np.einsum("ij,ij->j" if axis == 0 else "ij,ij->i", r, r) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (1.0 - mean**2 / mean_sq) / (1.0 - 1.0 / n)
    return np.where(mean_sq > 0, np.clip(s, 0.0, 1.0), np.nan)


def _nonnegative(arr: np.ndarray) -> None:
    if np.any(arr < 0):
        raise ValueError("sparseness is defined for non-negative responses (firing rates, rectified "
                         f"activations); X has {int(np.sum(arr < 0))} negative values (min {arr.min():.3g}). "
                         "Rectify or shift the responses first")


def _along(values: np.ndarray, source: xr.DataArray | None, dim: str, name: str, reference: str) -> xr.DataArray:
    """``values`` as a DataArray along ``dim``, with ``source``'s coordinates on that dim (if any)."""
    coords = {} if source is None else {k: c for k, c in source.coords.items() if c.dims == (dim,)}
    return xr.DataArray(values, dims=dim, coords=coords, name=name, attrs={"reference": reference})


def lifetime_sparseness(X: Any) -> xr.DataArray:
    """Lifetime sparseness of each neuron across stimuli (Vinje & Gallant 2000).

    Parameters
    ----------
    X : (stimulus, neuron) DataArray, array or tensor, non-negative

    Returns
    -------
    xarray.DataArray
        One value per neuron in [0, 1] (NaN for a neuron silent to every stimulus), over the neuron dim of
        a 2-D DataArray (its coordinates kept) or ``neuron``.

    Raises
    ------
    ValueError
        Negative responses, NaN/Inf, fewer than 2 stimuli.
    """
    arr, source = stimulus_by_neuron(X, "X")
    _nonnegative(arr)
    values = _sparseness(arr, axis=0)
    if source is not None and source.ndim == 2:
        return _along(values, source, next(d for d in source.dims if d != STIMULUS), "lifetime_sparseness",
                      "Vinje & Gallant (2000) Science 287:1273")
    return _along(values, None, "neuron", "lifetime_sparseness", "Vinje & Gallant (2000) Science 287:1273")


def population_sparseness(X: Any) -> xr.DataArray:
    """Population sparseness of each stimulus's response across neurons (Willmore & Tolhurst 2001).

    Parameters
    ----------
    X : (stimulus, neuron) DataArray, array or tensor, non-negative

    Returns
    -------
    xarray.DataArray
        One value per stimulus in [0, 1] (NaN if no neuron responds), dim ``stimulus`` with the stimulus
        coordinates of ``X``.

    Raises
    ------
    ValueError
        Negative responses, NaN/Inf, fewer than 2 neurons.
    """
    arr, source = stimulus_by_neuron(X, "X", min_stimuli=1)
    _nonnegative(arr)
    return _along(_sparseness(arr, axis=1), source, STIMULUS, "population_sparseness",
                  "Willmore & Tolhurst (2001) Network 12:255; Vinje & Gallant (2000)")
