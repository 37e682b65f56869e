"""Eigenspectra of population responses: cross-validated PCA and power-law fits (Stringer et al. 2019).

Stringer, Pachitariu, Steinmetz, Carandini & Harris (2019) "High-dimensional geometry of population
responses in visual cortex", Nature 571:361-365. Cross-validated PCA (cvPCA) estimates the stimulus-related
(signal) variance along each principal component without the bias of trial-to-trial noise: principal
axes are found on one half of the repeats and the covariance of both halves' projections on them is the
variance that replicates. The n-th eigenvalue of mouse V1 responses to natural images decays as n^-alpha
with alpha close to 1; smoothness of the code requires alpha > 1 + 2/d for d-dimensional stimuli.

Spectra are DataArrays over the dim ``component`` with the 1-based PC rank as coordinate (named
``component``, not ``rank``, which in bioplastic is the feedback rank of LDFA).
"""
from __future__ import annotations

import logging
from typing import Any, Literal, get_args

import numpy as np
import xarray as xr

from bioplastic._checks import check_choice, check_positive_int
from bioplastic.analysis._inputs import REPEAT, STIMULUS, stimulus_by_neuron, to_numpy

logger = logging.getLogger(__name__)

COMPONENT = "component"
Weighting = Literal["log_uniform", "uniform"]
Nonpositive = Literal["raise", "drop"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
NONPOSITIVE: tuple[str, ...] = get_args(Nonpositive)

_STRINGER = "Stringer et al. (2019) Nature 571:361-365"


def cv_pca(responses: Any, *, n_shuffles: int = 10, seed: int = 0, n_components: int | None = None) -> xr.Dataset:
    """Cross-validated PCA eigenspectrum of repeated responses (Stringer et al. 2019).

    For each shuffle the repeats of every stimulus are split at random into two halves (with two
    repeats: which one is "train" is drawn per stimulus, as in the authors' ``shuff_cvPCA``); each half is
    averaged over its repeats and centred over stimuli. The principal axes v_k (neuron space) of the
    training half are found by SVD and the cross-validated variance of component k is

        lambda_k = sum_s (x_train[s] . v_k) (x_test[s] . v_k) / (n_stimuli - 1),

    an unbiased estimate of the signal variance along v_k (noise independent between halves averages
    out). With noise-free repeats it equals the eigenvalues of the response covariance. Tail values
    can be negative (no replicable variance).

    Parameters
    ----------
    responses : xarray.DataArray or numpy.ndarray or torch.Tensor
        Dims (``repeat``, ``stimulus``, ``neuron``) (a DataArray may order them freely; extra dims are
        flattened into neurons), or an array of shape (repeat, stimulus, neuron). At least 2 repeats and
        3 stimuli.
    n_shuffles : int
        Number of random half splits averaged (authors: 5 to 10).
    seed : int
        Seed of the splits (``numpy.random.default_rng``); the same seed gives the same result.
    n_components : int, optional
        Number of components kept, at most min(n_stimuli - 1, n_neurons) (the default).

    Returns
    -------
    xarray.Dataset
        ``spectrum`` (component): mean over shuffles; ``spectrum_shuffle`` (shuffle, component);
        coordinate ``component`` = 1, 2, ...; attrs ``n_repeats``, ``n_stimuli``, ``n_neurons``,
        ``n_shuffles``, ``seed``, ``units`` (squared response units), ``reference``.

    Raises
    ------
    ValueError
        Missing dims, fewer than 2 repeats or 3 stimuli, NaN/Inf, bad ``n_shuffles``/``n_components``.
    """
    check_positive_int("n_shuffles", n_shuffles)
    arr = _repeat_stimulus_neuron(responses)
    n_rep, n_stim, n_neur = arr.shape
    k_max = min(n_stim - 1, n_neur)
    k = k_max if n_components is None else check_positive_int("n_components", n_components)
    if k > k_max:
        raise ValueError(f"n_components={k} exceeds min(n_stimuli - 1, n_neurons) = {k_max}")
    rng = np.random.default_rng(seed)
    half = n_rep // 2
    stim_idx = np.arange(n_stim)[None, :]
    spectra = np.empty((n_shuffles, k))
    for i in range(n_shuffles):  # a handful of shuffles; each one is vectorised over stimuli and neurons
        order = rng.permuted(np.tile(np.arange(n_rep), (n_stim, 1)), axis=1).T  # (repeat, stimulus)
        shuffled = arr[order, stim_idx]  # (repeat, stimulus, neuron): repeats reassigned per stimulus
        train = shuffled[:half].mean(axis=0)
        test = shuffled[half:].mean(axis=0)
        train = train - train.mean(axis=0, keepdims=True)
        test = test - test.mean(axis=0, keepdims=True)
        axes = _principal_axes(train, k)  # (neuron, k)
        spectra[i] = np.einsum("sk,sk->k", train @ axes, test @ axes) / (n_stim - 1)
    components = np.arange(1, k + 1)
    ds = xr.Dataset(
        {
            "spectrum": (COMPONENT, spectra.mean(axis=0)),
            "spectrum_shuffle": (("shuffle", COMPONENT), spectra),
        },
        coords={COMPONENT: components, "shuffle": np.arange(n_shuffles)},
        attrs={"method": "cvPCA", "n_repeats": int(n_rep), "n_stimuli": int(n_stim), "n_neurons": int(n_neur),
               "n_shuffles": int(n_shuffles), "seed": int(seed), "units": "response units squared",
               "reference": _STRINGER},
    )
    ds["spectrum"].attrs.update(long_name="cross-validated variance per principal component",
                                units="response units squared")
    ds[COMPONENT].attrs["long_name"] = "principal component rank (1 = largest)"
    return ds


def _principal_axes(centred: np.ndarray, k: int) -> np.ndarray:
    """Top-k right singular vectors (neuron, k) of a (stimulus, neuron) matrix, from the smaller Gram matrix.

    An eigendecomposition of the (neuron x neuron) or (stimulus x stimulus) Gram matrix costs far less than
    a full SVD of the data; in float64 the accuracy is ample for the leading k <= rank components.
    """
    n_stim, n_neur = centred.shape
    if n_neur <= n_stim:
        evals, evecs = np.linalg.eigh(centred.T @ centred)
        return evecs[:, ::-1][:, :k]
    evals, evecs = np.linalg.eigh(centred @ centred.T)
    evals, evecs = evals[::-1][:k], evecs[:, ::-1][:, :k]
    axes = centred.T @ evecs
    norms = np.linalg.norm(axes, axis=0)
    return axes / np.where(norms > 0, norms, 1.0)


def _repeat_stimulus_neuron(responses: Any) -> np.ndarray:
    if isinstance(responses, xr.DataArray):
        missing = [d for d in (REPEAT, STIMULUS) if d not in responses.dims]
        if missing:
            raise ValueError(f"responses must have dims ('repeat', 'stimulus', 'neuron'); missing {missing} "
                             f"(dims {tuple(responses.dims)})")
        other = [d for d in responses.dims if d not in (REPEAT, STIMULUS)]
        if not other:
            raise ValueError("responses has no neuron dimension")
        arr = to_numpy(responses.transpose(REPEAT, STIMULUS, *other), "responses")
    else:
        arr = to_numpy(responses, "responses")
        if arr.ndim < 3:
            raise ValueError(f"responses must have shape (repeat, stimulus, neuron), got {arr.shape}")
    arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
    if arr.shape[0] < 2:
        raise ValueError(f"cvPCA needs at least 2 repeats, got {arr.shape[0]}")
    if arr.shape[1] < 3:
        raise ValueError(f"cvPCA needs at least 3 stimuli, got {arr.shape[1]}")
    return arr


def pca_spectrum(X: Any, *, n_components: int | None = None) -> xr.DataArray:
    """Eigenvalues of the response covariance across stimuli (plain PCA, no cross-validation).

    For deterministic responses (a network's activations) where there is no trial-to-trial noise to
    cross-validate against.

    Parameters
    ----------
    X : (stimulus, neuron) DataArray, array or tensor
    n_components : int, optional
        At most min(n_stimuli - 1, n_neurons) (the default).

    Returns
    -------
    xarray.DataArray
        Dims ``component`` (1, 2, ...), descending eigenvalues of the covariance (divisor n - 1), named
        ``"spectrum"``.
    """
    arr, _ = stimulus_by_neuron(X, "X", min_stimuli=3)
    k_max = min(arr.shape[0] - 1, arr.shape[1])
    k = k_max if n_components is None else check_positive_int("n_components", n_components)
    if k > k_max:
        raise ValueError(f"n_components={k} exceeds min(n_stimuli - 1, n_neurons) = {k_max}")
    centred = arr - arr.mean(axis=0, keepdims=True)
    small = centred.T @ centred if centred.shape[1] <= centred.shape[0] else centred @ centred.T
    eig = np.clip(np.linalg.eigvalsh(small)[::-1][:k], 0.0, None)  # same nonzero eigenvalues either way
    return xr.DataArray(eig / (arr.shape[0] - 1), dims=COMPONENT, coords={COMPONENT: np.arange(1, k + 1)},
                        name="spectrum", attrs={"method": "PCA", "units": "response units squared",
                                                "n_stimuli": int(arr.shape[0]), "n_neurons": int(arr.shape[1])})


def powerlaw_fit(spectrum: Any, rank_range: tuple[int, int], *, weighting: Weighting = "log_uniform",
                 nonpositive: Nonpositive = "raise") -> xr.Dataset:
    """Fit lambda_n = c n^-alpha to an eigenspectrum over an explicit range of ranks.

    A weighted least-squares line through (log n, log lambda_n) for ranks n in [lo, hi] (inclusive), as
    in Stringer et al. (2019) (their ``get_powerlaw``: weights 1/n, so every octave of ranks counts the
    same; they fitted ranks 11 to 500).

    Parameters
    ----------
    spectrum : xarray.DataArray, xarray.Dataset or array-like
        Variance per component, 1-D. A DataArray over ``component`` uses its coordinate as the ranks;
        other 1-D input has ranks 1, 2, ...; a Dataset (from :func:`cv_pca`) uses its ``spectrum``.
        Never modified.
    rank_range : (int, int)
        First and last rank fitted (1-based, inclusive); at least 3 ranks.
    weighting : {"log_uniform", "uniform"}
        ``log_uniform``: weights 1/n (Stringer et al.); ``uniform``: ordinary least squares in log-log.
    nonpositive : {"raise", "drop"}
        What to do with values <= 0 in the range (cvPCA tails can be negative): raise, or leave them out
        of the fit (their number goes to attrs ``n_dropped``).

    Returns
    -------
    xarray.Dataset
        ``spectrum`` (component), ``fit`` (component: c n^-alpha over all ranks), scalars ``alpha`` and
        ``log_intercept`` (ln c). attrs: ``alpha``, ``rank_range`` [lo, hi], ``r_squared`` (weighted
        coefficient of determination in log-log space, the goodness of fit), ``weighting``, ``n_points``,
        ``n_dropped``, ``reference``.

    Raises
    ------
    ValueError
        Bad ``rank_range`` (out of the spectrum's ranks, lo >= hi, fewer than 3 points); non-positive
        values in range with ``nonpositive="raise"``; NaN/Inf; unknown options; not 1-D.
    """
    check_choice("weighting", weighting, WEIGHTINGS)
    check_choice("nonpositive", nonpositive, NONPOSITIVE)
    if isinstance(spectrum, xr.Dataset):
        if "spectrum" not in spectrum:
            raise ValueError("a Dataset passed to powerlaw_fit must hold a 'spectrum' variable")
        spectrum = spectrum["spectrum"]
    values = to_numpy(spectrum, "spectrum").copy()
    if values.ndim != 1:
        raise ValueError(f"spectrum must be 1-D (one value per component), got shape {values.shape}")
    if isinstance(spectrum, xr.DataArray) and spectrum.dims[0] in spectrum.coords and np.issubdtype(
            spectrum[spectrum.dims[0]].dtype, np.number):
        ranks = np.asarray(spectrum[spectrum.dims[0]].values, dtype=np.float64)
    else:
        ranks = np.arange(1, values.size + 1, dtype=np.float64)
    if np.any(ranks <= 0):
        raise ValueError("spectrum ranks (its coordinate) must be positive (1 = first component)")
    try:
        lo, hi = (int(r) for r in rank_range)
    except (TypeError, ValueError):
        raise ValueError(f"rank_range must be a pair of integers (lo, hi), got {rank_range!r}") from None
    if not (lo < hi):
        raise ValueError(f"rank_range must have lo < hi, got ({lo}, {hi})")
    if lo < ranks.min() or hi > ranks.max():
        raise ValueError(f"rank_range ({lo}, {hi}) lies outside the spectrum's ranks "
                         f"{int(ranks.min())}..{int(ranks.max())}")
    in_range = (ranks >= lo) & (ranks <= hi)
    bad = in_range & (values <= 0)
    if bad.any() and nonpositive == "raise":
        raise ValueError(f"spectrum has values <= 0 at ranks {ranks[bad][:10].astype(int).tolist()} inside "
                         f"rank_range ({lo}, {hi}); narrow the range or pass nonpositive='drop'")
    use = in_range & (values > 0)
    n_points = int(use.sum())
    if n_points < 3:
        raise ValueError(f"rank_range ({lo}, {hi}) holds {n_points} usable points; the fit needs at least 3")
    x = np.log(ranks[use])
    y = np.log(values[use])
    w = 1.0 / ranks[use] if weighting == "log_uniform" else np.ones(n_points)
    design = np.stack([-x, np.ones_like(x)], axis=1)
    sw = np.sqrt(w)
    (alpha, log_c), *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
    resid = y - design @ np.array([alpha, log_c])
    y_mean = np.sum(w * y) / np.sum(w)
    ss_tot = float(np.sum(w * (y - y_mean) ** 2))
    r_squared = 1.0 - float(np.sum(w * resid**2)) / ss_tot if ss_tot > 0 else float("nan")
    dim = spectrum.dims[0] if isinstance(spectrum, xr.DataArray) else COMPONENT
    ds = xr.Dataset(
        {
            "spectrum": (dim, values),
            "fit": (dim, np.exp(log_c) * ranks ** (-alpha)),
            "alpha": ((), float(alpha)),
            "log_intercept": ((), float(log_c)),
        },
        coords={dim: ranks.astype(np.int64) if np.all(ranks == np.round(ranks)) else ranks},
        attrs={"alpha": float(alpha), "rank_range": [lo, hi], "r_squared": float(r_squared),
               "weighting": weighting, "n_points": n_points, "n_dropped": int(bad.sum()),
               "reference": _STRINGER},
    )
    ds["fit"].attrs["long_name"] = "power law c * n^-alpha fitted over rank_range"
    logger.debug("power-law fit over ranks %d..%d: alpha=%.3f, R^2=%.3f", lo, hi, alpha, r_squared)
    return ds
