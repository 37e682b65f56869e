"""Representational similarity analysis (RSA) on xarray, through thin adapters to rsatoolbox.

A representational dissimilarity matrix (RDM) holds, for every pair of stimuli, how differently a
population (neurons, voxels, units of a layer) responds to them (Kriegeskorte, Mur & Bandettini 2008,
Front Syst Neurosci 2:4). Here an RDM is a square ``xarray.DataArray`` with dims
``("stimulus_i", "stimulus_j")``; stacks of RDMs carry extra leading dims (``layer``, ``rule``,
``subject`` ...). Comparisons and noise ceilings follow Nili et al. (2014) PLoS Comput Biol 10:e1003553 and
use rsatoolbox (Schütt et al. 2023, eLife 12:e82566) for the computations it already does (crossnobis
RDMs, Kendall tau-a, RDM pooling for the ceiling).
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Literal, get_args

import numpy as np
import xarray as xr
from scipy.spatial.distance import pdist, squareform

from bioplastic._checks import check_choice
from bioplastic.analysis._inputs import (
    REPEAT,
    STIMULUS,
    align_stimuli,
    stimulus_by_neuron,
    stimulus_coords,
    stimulus_labels,
    to_numpy,
)

logger = logging.getLogger(__name__)

Distance = Literal["correlation", "euclidean", "sqeuclidean", "cosine", "crossnobis"]
CompareMethod = Literal["spearman", "pearson", "kendall_tau_a", "cosine", "rho_a"]

DISTANCES: tuple[str, ...] = get_args(Distance)
COMPARE_METHODS: tuple[str, ...] = get_args(CompareMethod)

ROW, COL = "stimulus_i", "stimulus_j"

# our method name -> rsatoolbox's
_RSATOOLBOX_METHOD = {
    "spearman": "spearman",
    "pearson": "corr",
    "kendall_tau_a": "tau-a",
    "cosine": "cosine",
    "rho_a": "rho-a",
}
_METHOD_NAMES = {
    "spearman": "Spearman rank correlation",
    "pearson": "Pearson correlation",
    "kendall_tau_a": "Kendall tau-a",
    "cosine": "cosine similarity",
    "rho_a": "Spearman rho-a",
}
_DISTANCE_UNITS = {
    "correlation": "1 - Pearson r",
    "euclidean": "response units",
    "sqeuclidean": "response units squared",
    "cosine": "1 - cosine similarity",
    "crossnobis": "response units squared (unbiased estimate of the squared Euclidean distance)",
}


# ----------------------------------------------------------------------------------------------- RDMs
def rdm(X: Any, distance: Distance = "correlation", *, noise: np.ndarray | None = None) -> xr.DataArray:
    """Representational dissimilarity matrix of a population's responses to a stimulus set.

    Parameters
    ----------
    X : xarray.DataArray, numpy.ndarray or torch.Tensor
        Responses, shape (stimulus, neuron). A DataArray must have a ``stimulus`` dim; every other dim
        (``neuron``, or ``channel``/``y``/``x`` of a conv map) is flattened into neurons. For
        ``distance="crossnobis"`` X must have dims (``repeat``, ``stimulus``, neuron dims...) (an array:
        shape (repeat, stimulus, neuron)), the repeats being independent measurements (runs, trials,
        sessions) used as cross-validation folds.
    distance : {"correlation", "euclidean", "sqeuclidean", "cosine", "crossnobis"}
        ``correlation``: 1 - Pearson r between response patterns (Kriegeskorte et al. 2008);
        ``euclidean``: Euclidean distance; ``sqeuclidean``: its square; ``cosine``: 1 - cosine similarity
        (all as ``scipy.spatial.distance.pdist``); ``crossnobis``: the cross-validated squared Mahalanobis
        distance (Walther et al. 2016, NeuroImage 137:188; leave-one-repeat-out, computed by
        ``rsatoolbox.rdm.calc_rdm``), scaled by the number of neurons so that with ``noise=None`` it is an
        unbiased estimate of the ``sqeuclidean`` distance between the mean patterns (rsatoolbox reports it
        per neuron: divide by ``attrs["n_neurons"]`` to get rsatoolbox's value). It can be negative.
    noise : numpy.ndarray, optional
        Noise precision matrix, shape (neuron, neuron), for ``crossnobis`` only (e.g. from
        ``rsatoolbox.data.noise.prec_from_residuals``); identity if omitted.

    Returns
    -------
    xarray.DataArray
        Shape (stimulus, stimulus), dims ``("stimulus_i", "stimulus_j")``, symmetric with zero diagonal,
        named ``"rdm"``. Stimulus labels and 1-D stimulus coordinates of ``X`` are copied with suffixes
        ``_i`` and ``_j``. attrs: ``distance``, ``units``, ``n_neurons``.

    Raises
    ------
    ValueError
        Unknown ``distance`` (the message lists the allowed ones); NaN/Inf responses; fewer than 2
        stimuli; a ``repeat`` dim with a non-cross-validated distance; ``crossnobis`` without >= 2 repeats;
        a zero-variance pattern with ``correlation`` (or an all-zero pattern with ``cosine``), for which
        the distance is undefined; ``noise`` of the wrong shape.
    """
    check_choice("distance", distance, DISTANCES)
    if distance == "crossnobis":
        return _crossnobis(X, noise)
    if noise is not None:
        raise ValueError(f"noise applies to distance='crossnobis' only, not {distance!r}")
    arr, source = stimulus_by_neuron(X, "X")
    if distance == "correlation":
        centred = arr - arr.mean(axis=1, keepdims=True)
        _refuse_zero_rows(np.einsum("ij,ij->i", centred, centred), "zero variance across neurons",
                          "correlation")
    elif distance == "cosine":
        _refuse_zero_rows(np.einsum("ij,ij->i", arr, arr), "all-zero response", "cosine")
    vec = pdist(arr, metric=distance)
    return _square(vec, arr.shape[0], distance, arr.shape[1], stimulus_coords(source, arr.shape[0]))


def _refuse_zero_rows(norms: np.ndarray, what: str, distance: str) -> None:
    bad = np.flatnonzero(norms <= 0)
    if bad.size:
        raise ValueError(f"stimuli {bad[:10].tolist()} have {what}: the {distance} distance is undefined for "
                         "them (drop them or use distance='euclidean')")


def _crossnobis(X: Any, noise: np.ndarray | None) -> xr.DataArray:
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm

    if isinstance(X, xr.DataArray):
        if REPEAT not in X.dims or STIMULUS not in X.dims:
            raise ValueError(f"distance='crossnobis' needs dims ('repeat', 'stimulus', ...); X has {tuple(X.dims)}")
        other = [d for d in X.dims if d not in (REPEAT, STIMULUS)]
        arr = to_numpy(X.transpose(REPEAT, STIMULUS, *other), "X")
        source = X.isel({REPEAT: 0}, drop=True)
    else:
        arr = to_numpy(X, "X")
        if arr.ndim < 3:
            raise ValueError("distance='crossnobis' needs an array of shape (repeat, stimulus, neuron), got "
                             f"shape {arr.shape}")
        source = None
    arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
    n_rep, n_stim, n_neur = arr.shape
    if n_rep < 2:
        raise ValueError(f"distance='crossnobis' needs at least 2 repeats, got {n_rep}")
    if n_stim < 2:
        raise ValueError(f"X needs at least 2 stimuli, got {n_stim}")
    if noise is not None:
        noise = to_numpy(noise, "noise")
        if noise.shape != (n_neur, n_neur):
            raise ValueError(f"noise must be a ({n_neur}, {n_neur}) precision matrix, got shape {noise.shape}")
    data = Dataset(
        arr.reshape(n_rep * n_stim, n_neur),
        obs_descriptors={
            # float labels: rsatoolbox fills a NaN-initialised copy of the descriptor with them
            "stimulus": np.tile(np.arange(n_stim, dtype=np.float64), n_rep),
            "repeat": np.repeat(np.arange(n_rep, dtype=np.float64), n_stim),
        },
    )
    result = calc_rdm(data, method="crossnobis", descriptor="stimulus", cv_descriptor="repeat", noise=noise)
    order = np.asarray(result.pattern_descriptors["stimulus"]).astype(int)
    square = result.get_matrices()[0]
    # rsatoolbox sorts patterns by the descriptor; put them back in stimulus order.
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    square = square[np.ix_(inverse, inverse)] * n_neur
    return _square(squareform(square, checks=False), n_stim, "crossnobis", n_neur,
                   stimulus_coords(source, n_stim), extra_attrs={"n_repeats": n_rep})


def _square(vec: np.ndarray, n: int, distance: str, n_neurons: int, coords: dict[str, Any],
            extra_attrs: dict[str, Any] | None = None) -> xr.DataArray:
    mat = squareform(vec, checks=False)
    out_coords: dict[str, Any] = {}
    for cname, values in coords.items():
        if cname == STIMULUS:
            out_coords[ROW] = values
            out_coords[COL] = values
        else:
            out_coords[f"{cname}_i"] = (ROW, values)
            out_coords[f"{cname}_j"] = (COL, values)
    attrs = {"distance": distance, "units": _DISTANCE_UNITS[distance], "n_neurons": int(n_neurons)}
    attrs.update(extra_attrs or {})
    return xr.DataArray(mat, dims=(ROW, COL), coords=out_coords, name="rdm", attrs=attrs)


def rdm_stack(rdms: dict[str, xr.DataArray] | list[xr.DataArray], dim: str, labels: list[Any] | None = None
              ) -> xr.DataArray:
    """Stack square RDMs of the same stimuli along a new dimension (e.g. ``layer``, ``rule``).

    Parameters
    ----------
    rdms : dict of label -> DataArray, or list of DataArray
        RDMs from :func:`rdm` (dims ``stimulus_i``, ``stimulus_j``).
    dim : str
        Name of the new dimension.
    labels : list, optional
        Labels for a list input (default 0, 1, ...).

    Returns
    -------
    xarray.DataArray
        Dims (``dim``, ``stimulus_i``, ``stimulus_j``), in the stimulus order of the first RDM: every other
        labelled RDM is aligned to it by stimulus label (:func:`bioplastic.analysis.align_stimuli`).

    Raises
    ------
    ValueError
        No RDMs; as many labels as RDMs not given; RDMs of different sizes or of different stimulus sets
        (the message names the missing and extra stimuli).
    """
    if isinstance(rdms, dict):
        labels, items = list(rdms), list(rdms.values())
    else:
        items = list(rdms)
        labels = list(range(len(items))) if labels is None else list(labels)
    if not items:
        raise ValueError("no RDMs to stack")
    if len(labels) != len(items):
        raise ValueError(f"{len(labels)} labels for {len(items)} RDMs")
    # align every RDM to the first one's stimulus labels (or refuse a mismatch naming the stimuli)
    items = [items[0]] + [align_stimuli(items[0], it, f"RDM {labels[0]!r}", f"RDM {lab!r}")
                          for lab, it in zip(labels[1:], items[1:])]
    sizes = {it.sizes.get(ROW) for it in items}
    if len(sizes) != 1:
        raise ValueError(f"RDMs differ in their number of stimuli: {sorted(map(str, sizes))}")
    return xr.concat(items, dim=dim, coords="minimal", compat="override", combine_attrs="drop_conflicts"
                     ).assign_coords({dim: labels})


# -------------------------------------------------------------------------------------- comparisons
def _as_vectors(a: Any, name: str) -> tuple[np.ndarray, int, list[str], dict[str, Any], tuple[int, ...]]:
    """RDM input -> (vectors (k, n_pairs), n_stimuli, stack dims, stack coords, stack shape)."""
    if isinstance(a, xr.DataArray):
        if ROW not in a.dims or COL not in a.dims:
            raise ValueError(f"{name} must be a square RDM with dims ({ROW!r}, {COL!r}) (as returned by rdm()); "
                             f"got dims {tuple(a.dims)}")
        stimulus_labels(a, name)  # rows and columns must be the same stimuli in the same order
        stack_dims = [d for d in a.dims if d not in (ROW, COL)]
        a = a.transpose(*stack_dims, ROW, COL)
        coords = {d: a[d].values for d in stack_dims if d in a.coords}
        mat = to_numpy(a, name)
    else:
        mat = to_numpy(a, name)
        stack_dims, coords = [f"{name}_index_{k}" for k in range(max(mat.ndim - 2, 0))], {}
        if mat.ndim == 1:  # a condensed vector in scipy squareform order
            n = _n_from_pairs(mat.size, name)
            mat = squareform(mat, checks=False)
    if mat.ndim < 2 or mat.shape[-1] != mat.shape[-2]:
        raise ValueError(f"{name} must be a square RDM (..., n, n) or a condensed vector, got shape {mat.shape}")
    n = mat.shape[-1]
    if n < 3:
        raise ValueError(f"{name} has {n} stimuli; comparing RDMs needs at least 3 (so at least 3 pairs)")
    if not np.allclose(mat, np.swapaxes(mat, -1, -2), rtol=1e-6, atol=1e-9):
        raise ValueError(f"{name} is not symmetric; an RDM must be")
    stack_shape = mat.shape[:-2]
    iu = np.triu_indices(n, 1)  # row-major upper triangle = scipy squareform order
    vectors = mat[..., iu[0], iu[1]].reshape(-1, iu[0].size)
    return vectors, n, stack_dims, coords, stack_shape


def _n_from_pairs(n_pairs: int, name: str) -> int:
    n = int(round((1 + np.sqrt(1 + 8 * n_pairs)) / 2))
    if n * (n - 1) // 2 != n_pairs:
        raise ValueError(f"{name} has length {n_pairs}, which is not n(n-1)/2 for any n: not a condensed RDM")
    return n


def compare_rdms(a: Any, b: Any, method: CompareMethod = "spearman") -> float | xr.DataArray:
    """Similarity between RDMs (rank or linear correlation, or cosine, of their upper triangles).

    Parameters
    ----------
    a, b : xarray.DataArray or numpy.ndarray
        RDMs of the same stimuli: square (n, n), with optional leading stack dims (a DataArray with dims
        ``stimulus_i``, ``stimulus_j`` and e.g. ``layer``), or condensed vectors in
        ``scipy.spatial.distance.squareform`` order. Only the off-diagonal upper triangle is used. When
        both are labelled DataArrays, ``b`` is aligned to ``a``'s stimulus labels
        (:func:`bioplastic.analysis.align_stimuli`), so the result does not depend on the order in which
        either stores its stimuli; arrays are compared by position.
    method : {"spearman", "pearson", "kendall_tau_a", "cosine", "rho_a"}
        ``spearman``: Spearman rank correlation (Kriegeskorte et al. 2008); ``pearson``: Pearson
        correlation; ``kendall_tau_a``: Kendall's tau-a, recommended when a model RDM predicts ties
        (Nili et al. 2014); ``cosine``: cosine similarity (Diedrichsen et al. 2021); ``rho_a``: Spearman's
        rho-a (Schütt et al. 2023). Computed by ``rsatoolbox.rdm.compare``.

    Returns
    -------
    float or xarray.DataArray
        The similarity (higher = more alike). A float when both
        inputs are single RDMs; otherwise a DataArray named ``"rdm_similarity"`` over the stack dims of ``a``
        followed by those of ``b`` (every RDM of ``a`` against every RDM of ``b``), attrs ``method``,
        ``long_name`` (e.g. "similarity between RDMs (Spearman rank correlation)"), ``units`` ("1") and
        ``kind`` ("similarity").

    Raises
    ------
    ValueError
        Unknown method (lists the allowed ones); shapes that are not RDMs; RDMs of different sizes or
        different stimulus labels (the message names the missing and extra stimuli); an RDM whose row and
        column labels differ; asymmetric matrices; NaN/Inf; a constant RDM with a correlation method; stack
        dims with the same name in ``a`` and ``b``.
    """
    check_choice("method", method, COMPARE_METHODS)
    from rsatoolbox.rdm import RDMs, compare

    b = align_stimuli(a, b, "a", "b")
    va, na, dims_a, coords_a, shape_a = _as_vectors(a, "a")
    vb, nb, dims_b, coords_b, shape_b = _as_vectors(b, "b")
    if na != nb:
        raise ValueError(f"a and b are RDMs of different stimulus sets: {na} vs {nb} stimuli")
    clash = set(dims_a) & set(dims_b)
    if clash:
        raise ValueError(f"a and b share the stack dims {sorted(clash)}; rename one (e.g. b.rename(layer='layer_b'))")
    for v, name in ((va, "a"), (vb, "b")):
        if np.any(np.ptp(v, axis=1) == 0) and method in ("spearman", "pearson", "rho_a", "kendall_tau_a"):
            raise ValueError(f"{name} holds a constant RDM; its {method} correlation is undefined")
    sim = compare(RDMs(va), RDMs(vb), method=_RSATOOLBOX_METHOD[method])
    sim = np.asarray(sim, dtype=float).reshape(shape_a + shape_b)
    if not shape_a and not shape_b:
        return float(sim)
    coords = {**coords_a, **coords_b}
    return xr.DataArray(sim, dims=[*dims_a, *dims_b], coords=coords, name="rdm_similarity",
                        attrs={"method": method, "long_name": f"similarity between RDMs ({_METHOD_NAMES[method]})",
                               "units": "1", "kind": "similarity"})


# ------------------------------------------------------------------------------------ noise ceiling
def noise_ceiling(rdms: Any, method: CompareMethod = "spearman", *, subject_dim: str = "subject") -> xr.Dataset:
    """Noise ceiling of RDM comparisons from several subjects (Nili et al. 2014).

    The upper bound compares each subject's RDM with the average of all subjects' RDMs (which includes
    it); the lower bound compares it with the average of the *other* subjects (leave one subject out),
    so the held-out subject never enters its own reference. Averages are taken in the space that the
    method optimises (ranks for rank correlations, z-scores for Pearson, unit-RMS for cosine;
    ``rsatoolbox.util.inference_util.pool_rdm``). A model whose mean similarity to the subjects reaches
    the lower bound explains the data as well as the subjects explain each other.

    Parameters
    ----------
    rdms : xarray.DataArray, dict of subject -> RDM, list of RDMs, or numpy.ndarray
        Subjects' RDMs: a DataArray with dims (``subject_dim``, ``stimulus_i``, ``stimulus_j``); a dict or
        list of single RDMs (DataArrays from :func:`rdm`), stacked with :func:`rdm_stack`, which aligns every
        subject's RDM to the first one's stimulus labels (the subjects may store their stimuli in different
        orders) and refuses different stimulus sets; or an array of shape (subject, n, n), taken by
        position. Average other dims (e.g. ``session``) first.
    method : {"spearman", "pearson", "kendall_tau_a", "cosine", "rho_a"}
        Comparison method, as in :func:`compare_rdms`; use the one used to compare the models.
    subject_dim : str
        Name of the subject dimension of a DataArray input.

    Returns
    -------
    xarray.Dataset
        ``lower`` and ``upper`` (dim ``subject_dim``: each subject's leave-one-out and all-subject
        similarity) and the scalar bounds ``lower_bound``, ``upper_bound`` (their means). attrs:
        ``method``, ``n_subjects``. With a single subject the lower bound is NaN (there is nobody to
        leave out) and a ``RuntimeWarning`` says so; the upper bound is then trivially 1 for correlations.

    Raises
    ------
    ValueError
        Unknown method; missing ``subject_dim``; extra dims; not RDMs; no subjects; subjects' RDMs of
        different stimulus sets (the message names the missing and extra stimuli); an RDM whose row and
        column labels differ; a constant subject RDM with a correlation method (the message names the subject).
    """
    check_choice("method", method, COMPARE_METHODS)
    from rsatoolbox.rdm import RDMs, compare
    from rsatoolbox.util.inference_util import pool_rdm

    if isinstance(rdms, (dict, list, tuple)):
        if not len(rdms):
            raise ValueError("rdms holds no subjects; a noise ceiling needs at least one")
        if not all(isinstance(r, xr.DataArray) for r in (rdms.values() if isinstance(rdms, dict) else rdms)):
            rdms = np.stack([to_numpy(r, "rdms[]") for r in (rdms.values() if isinstance(rdms, dict) else rdms)])
        else:
            rdms = rdm_stack(dict(rdms) if isinstance(rdms, dict) else list(rdms), subject_dim)
    if isinstance(rdms, xr.DataArray):
        if subject_dim not in rdms.dims:
            raise ValueError(f"rdms has no {subject_dim!r} dimension (dims {tuple(rdms.dims)}); pass subject_dim=")
        extra = [d for d in rdms.dims if d not in (subject_dim, ROW, COL)]
        if extra:
            raise ValueError(f"rdms has extra dims {extra}; average or select them first (e.g. rdms.mean('session'))")
        labels = rdms[subject_dim].values if subject_dim in rdms.coords else np.arange(rdms.sizes[subject_dim])
        rdms = rdms.transpose(subject_dim, ROW, COL)
    else:
        arr = np.asarray(rdms)
        if arr.ndim != 3:
            raise ValueError(f"rdms must have shape (subject, n, n), got {arr.shape}")
        labels = np.arange(arr.shape[0])
    vectors, _, _, _, shape = _as_vectors(rdms, "rdms")
    n_sub = vectors.shape[0]
    if n_sub == 0:
        raise ValueError(f"rdms holds no subjects (the {subject_dim!r} dim is empty); a noise ceiling needs at "
                         "least one")
    constant = np.flatnonzero(np.ptp(vectors, axis=1) == 0)
    if constant.size and method in ("spearman", "pearson", "rho_a", "kendall_tau_a"):
        raise ValueError(f"rdms holds a constant RDM for {subject_dim} {[labels[k] for k in constant][:10]}; its "
                         f"{method} correlation is undefined (drop that subject)")
    rmethod = _RSATOOLBOX_METHOD[method]
    with warnings.catch_warnings():
        # rsatoolbox warns that tau ceilings pool averaged ranks; that is the documented procedure here.
        warnings.filterwarnings("ignore", message="Noise ceiling for tau based on averaged ranks")
        pooled_all = pool_rdm(RDMs(vectors), method=rmethod)
        upper = np.array([compare(pooled_all, RDMs(vectors[k:k + 1]), method=rmethod)[0, 0] for k in range(n_sub)])
        if n_sub < 2:
            warnings.warn("noise ceiling from a single subject: the lower bound (leave one subject out) is "
                          "undefined and set to NaN", RuntimeWarning, stacklevel=2)
            lower = np.full(n_sub, np.nan)
        else:
            lower = np.array([
                compare(pool_rdm(RDMs(np.delete(vectors, k, axis=0)), method=rmethod), RDMs(vectors[k:k + 1]),
                        method=rmethod)[0, 0]
                for k in range(n_sub)  # one leave-one-out per subject: a handful, not a hot path
            ])
    ds = xr.Dataset(
        {
            "lower": (subject_dim, lower),
            "upper": (subject_dim, upper),
            "lower_bound": ((), float(np.mean(lower))),
            "upper_bound": ((), float(np.mean(upper))),
        },
        coords={subject_dim: labels},
        attrs={"method": method, "n_subjects": int(n_sub),
               "reference": "Nili et al. (2014) PLoS Comput Biol 10:e1003553"},
    )
    ds["lower"].attrs["long_name"] = "similarity to the mean of the other subjects (leave one out)"
    ds["upper"].attrs["long_name"] = "similarity to the mean of all subjects"
    return ds


# ------------------------------------------------------------------------------ rsatoolbox adapters
def to_rsatoolbox_dataset(X: Any):
    """An ``rsatoolbox.data.Dataset`` from (stimulus, neuron) responses (or (repeat, stimulus, neuron)).

    Observation descriptors: ``stimulus`` (index) and, for repeats, ``repeat``; 1-D stimulus coordinates
    of a DataArray become observation descriptors too.
    """
    from rsatoolbox.data import Dataset

    if isinstance(X, xr.DataArray) and REPEAT in X.dims:
        other = [d for d in X.dims if d not in (REPEAT, STIMULUS)]
        arr = to_numpy(X.transpose(REPEAT, STIMULUS, *other), "X")
        n_rep, n_stim = arr.shape[:2]
        coords = stimulus_coords(X.isel({REPEAT: 0}, drop=True), n_stim)
        obs = {k: np.tile(np.asarray(v), n_rep) for k, v in coords.items()}
        obs["repeat"] = np.repeat(np.arange(n_rep), n_stim)
        return Dataset(arr.reshape(n_rep * n_stim, -1), obs_descriptors=obs)
    arr, source = stimulus_by_neuron(X, "X")
    coords = stimulus_coords(source, arr.shape[0])
    return Dataset(arr, obs_descriptors={k: np.asarray(v) for k, v in coords.items()})


def to_rsatoolbox_rdms(rdms: Any, *, dissimilarity_measure: str | None = None):
    """An ``rsatoolbox.rdm.RDMs`` from a square RDM DataArray (optionally stacked) or array.

    Stack-dim labels become rdm descriptors (one per stack dim); stimulus labels the pattern descriptor
    ``stimulus``.
    """
    from rsatoolbox.rdm import RDMs

    vectors, n, dims, coords, shape = _as_vectors(rdms, "rdms")
    rdm_desc: dict[str, list] = {}
    if dims and shape:
        grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
        for d, g in zip(dims, grids):
            labels = coords.get(d, np.arange(shape[dims.index(d)]))
            rdm_desc[d] = [labels[i] for i in g.ravel()]
    pattern = {}
    if isinstance(rdms, xr.DataArray) and ROW in rdms.coords:
        pattern["stimulus"] = list(rdms[ROW].values)
    measure = dissimilarity_measure or (rdms.attrs.get("distance") if isinstance(rdms, xr.DataArray) else None)
    return RDMs(vectors, dissimilarity_measure=measure, rdm_descriptors=rdm_desc or None,
                pattern_descriptors=pattern or None)


def from_rsatoolbox_rdms(rdms, dim: str = "rdm") -> xr.DataArray:
    """Square RDM DataArray(s) from an ``rsatoolbox.rdm.RDMs``.

    Returns dims (``stimulus_i``, ``stimulus_j``) for a single RDM, else (``dim``, ``stimulus_i``,
    ``stimulus_j``); the rdm descriptors become coordinates along ``dim``.
    """
    mats = np.asarray(rdms.get_matrices(), dtype=float)
    n = mats.shape[-1]
    stim = rdms.pattern_descriptors.get("stimulus", rdms.pattern_descriptors.get("index", list(range(n))))
    coords: dict[str, Any] = {ROW: np.asarray(stim), COL: np.asarray(stim)}
    attrs = {"distance": str(rdms.dissimilarity_measure)} if rdms.dissimilarity_measure else {}
    if mats.shape[0] == 1:
        return xr.DataArray(mats[0], dims=(ROW, COL), coords=coords, name="rdm", attrs=attrs)
    for key, values in rdms.rdm_descriptors.items():
        if key != "index":
            coords[f"{dim}_{key}" if key != dim else dim] = (dim, np.asarray(values))
    return xr.DataArray(mats, dims=(dim, ROW, COL), coords=coords, name="rdm", attrs=attrs)
