"""Input handling shared by the analysis modules: every function takes numpy arrays, torch tensors or
xarray DataArrays, and turns them into float64 numpy arrays without touching the caller's object."""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from bioplastic._checks import check_finite

STIMULUS = "stimulus"
REPEAT = "repeat"
RDM_ROW, RDM_COL = "stimulus_i", "stimulus_j"


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
        When one side carries the default labels 0..n-1 of unlabelled stimuli, the message says how to label it.
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
    if not parts:
        dup = sorted({v for v in ref_list if ref_list.count(v) > 1} | {v for v in lab_list if lab_list.count(v) > 1},
                     key=str)
        parts.append(f"duplicated labels {dup[:10]}")
    message = f"{ref_name} and {name} hold different stimulus sets: " + "; ".join(parts)
    positional = [n for n, lab in ((ref_name, ref_list), (name, lab_list)) if lab == list(range(len(lab)))]
    if len(positional) == 1:
        message += (f". {positional[0]} carries the default labels 0..n-1 of unlabelled stimuli; label its stimuli "
                    "(record_activations(..., coords={'stimulus': names}) or X.assign_coords(stimulus=names)) "
                    "before comparing")
    raise ValueError(message)


def stimulus_labels(x: Any, name: str = "x") -> np.ndarray | None:
    """The stimulus labels of a DataArray or Dataset: the ``stimulus`` coordinate, or the (equal) row and
    column labels ``stimulus_i`` / ``stimulus_j`` of an RDM; None for arrays, tensors and unlabelled data.

    Raises
    ------
    ValueError
        An RDM whose row and column labels differ (its rows and columns are not the same stimuli in the
        same order), or data with both a ``stimulus`` and RDM stimulus dims whose labels differ.
    """
    if not isinstance(x, (xr.DataArray, xr.Dataset)):
        return None
    labels = None
    if STIMULUS in x.dims and STIMULUS in x.coords:
        labels = np.asarray(x[STIMULUS].values)
    if RDM_ROW in x.coords and RDM_COL in x.coords and RDM_ROW in x.dims:
        rows, cols = np.asarray(x[RDM_ROW].values), np.asarray(x[RDM_COL].values)
        if rows.shape != cols.shape or not np.array_equal(rows, cols):
            raise ValueError(f"{name} has different stimulus labels on {RDM_ROW!r} and {RDM_COL!r}; an RDM's rows "
                             "and columns must be the same stimuli in the same order (reorder it with "
                             f"x.sel({RDM_COL}=x['{RDM_ROW}'].values))")
        if labels is not None and not np.array_equal(labels, rows):
            raise ValueError(f"{name} has different labels on {STIMULUS!r} and on its RDM dims")
        labels = rows
    return labels


def align_stimuli(ref: Any, other: Any, ref_name: str = "ref", other_name: str = "other") -> Any:
    """Reorder ``other``'s stimuli to follow ``ref``'s stimulus labels, or refuse different stimulus sets.

    Every analysis of ``bioplastic.analysis`` that takes two labelled inputs (``compare_rdms``, ``rdm_stack``,
    ``noise_ceiling`` of several RDMs, ``cka``, ``cka_matrix``) aligns them with this function, so that
    responses or RDMs are compared stimulus by stimulus, never by position. Use it directly to put your own
    data (e.g. the output of :func:`bioplastic.analysis.record_activations` and a neural recording) in the
    same stimulus order.

    Parameters
    ----------
    ref, other : xarray.DataArray, xarray.Dataset, numpy.ndarray or torch.Tensor
        Responses with a labelled ``stimulus`` dimension (``record_activations`` output, a recording), or
        RDMs with labelled ``stimulus_i`` and ``stimulus_j`` dimensions (:func:`bioplastic.analysis.rdm`),
        possibly stacked (extra dims such as ``layer`` or ``subject``). ``ref`` and ``other`` may be of
        different kinds (an RDM and responses). Inputs without stimulus labels (arrays, tensors, DataArrays
        without a stimulus coordinate) cannot be aligned: ``other`` is then returned unchanged and the two are
        compared by position.
    ref_name, other_name : str
        Names used in error messages.

    Returns
    -------
    same type as ``other``
        ``other`` with every stimulus dimension (``stimulus``, or ``stimulus_i`` and ``stimulus_j``) in the
        order of ``ref``'s labels (the labels and any stimulus coordinates travel with the data); ``other``
        itself if it is already in that order or either input is unlabelled.

    Raises
    ------
    ValueError
        The two hold different stimulus sets: the message names up to 10 stimuli of ``ref`` missing from
        ``other`` and 10 extra ones (and says how to label data that carry the default labels 0..n-1);
        duplicated labels; an RDM whose row and column labels differ.

    Examples
    --------
    >>> b = align_stimuli(a, b_sorted_by_category)         # doctest: +SKIP
    """
    ref_labels = stimulus_labels(ref, ref_name)
    labels = stimulus_labels(other, other_name)
    if ref_labels is None or labels is None or np.array_equal(ref_labels, labels):
        return other
    check_same_stimuli(ref_labels, labels, ref_name, other_name)
    index = {dim: ref_labels for dim in (STIMULUS, RDM_ROW, RDM_COL) if dim in other.dims}
    return other.sel(index)
