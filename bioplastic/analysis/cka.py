"""Centered kernel alignment (CKA) between two representations of the same stimuli.

CKA (Kornblith, Norouzi, Lee & Hinton 2019, ICML, "Similarity of neural network representations
revisited") is the normalised Hilbert-Schmidt independence criterion (HSIC; Gretton et al. 2005) between
the stimulus x stimulus kernel (Gram) matrices of two representations:

    CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).

The ``biased`` HSIC is tr(K H L H) / (n - 1)^2 with the centring matrix H = I - 11^T / n; the ``unbiased``
one is the U-statistic of Song, Smola, Gretton, Bedo & Borgwardt (2012, JMLR 13:1393), eq. 5, which
removes the positive bias that makes biased CKA of independent high-dimensional representations far
from 0 when there are few stimuli (Murphy, Zylberberg & Fyshe 2024; Kornblith et al. 2019 footnote).
"""
from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
import xarray as xr

from bioplastic._checks import check_choice
from bioplastic.analysis._inputs import align_stimuli, stimulus_by_neuron

Kernel = Literal["linear", "rbf"]
HSIC = Literal["biased", "unbiased"]
KERNELS: tuple[str, ...] = get_args(Kernel)
HSIC_ESTIMATORS: tuple[str, ...] = get_args(HSIC)


def gram(X: Any, kernel: Kernel = "linear", *, bandwidth: float = 1.0) -> np.ndarray:
    """Stimulus x stimulus kernel matrix of a representation.

    Parameters
    ----------
    X : array-like or DataArray, shape (stimulus, neuron)
    kernel : {"linear", "rbf"}
        ``linear``: K = X X^T. ``rbf``: K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)) with sigma =
        ``bandwidth`` times the median Euclidean distance between stimuli (Kornblith et al. 2019, who
        used ``bandwidth`` 0.2 to 2 of the median; the median heuristic makes RBF CKA invariant to
        isotropic scaling).
    bandwidth : float
        Multiple of the median distance (``rbf`` only), > 0.

    Returns
    -------
    numpy.ndarray, shape (stimulus, stimulus), float64

    Raises
    ------
    ValueError
        Unknown kernel; non-positive bandwidth; NaN/Inf; all stimuli identical (``rbf``).
    """
    check_choice("kernel", kernel, KERNELS)
    arr, _ = stimulus_by_neuron(X, "X")
    return _gram(arr, kernel, bandwidth)


def _gram(arr: np.ndarray, kernel: str, bandwidth: float) -> np.ndarray:
    dots = arr @ arr.T  # (stimulus, stimulus): O(n^2 p)
    if kernel == "linear":
        return dots
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    sq_norms = np.diag(dots)
    sq_dist = np.maximum(sq_norms[:, None] + sq_norms[None, :] - 2.0 * dots, 0.0)
    n = arr.shape[0]
    median_sq = np.median(sq_dist[np.triu_indices(n, 1)])
    if median_sq <= 0:
        raise ValueError("the median distance between stimuli is 0; the RBF bandwidth is undefined")
    return np.exp(-sq_dist / (2.0 * bandwidth**2 * median_sq))


def hsic_estimate(K: np.ndarray, L: np.ndarray, estimator: HSIC = "unbiased") -> float:
    """Hilbert-Schmidt independence criterion between two kernel matrices.

    Parameters
    ----------
    K, L : numpy.ndarray, shape (n, n)
        Symmetric kernel matrices over the same n stimuli.
    estimator : {"biased", "unbiased"}
        ``biased``: tr(K H L H) / (n - 1)^2 (Gretton et al. 2005). ``unbiased``: Song et al. (2012) eq. 5,
        with the diagonals of K and L set to 0:
        [tr(K L) + 1^T K 1 1^T L 1 / ((n-1)(n-2)) - 2 1^T K L 1 / (n-2)] / (n (n-3)); needs n >= 4.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Unknown estimator; shapes that differ or are not square; n < 4 for ``unbiased`` (n < 2 biased).
    """
    check_choice("estimator", estimator, HSIC_ESTIMATORS)
    K = np.asarray(K, dtype=np.float64)
    L = np.asarray(L, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1] or K.shape != L.shape:
        raise ValueError(f"K and L must be square kernel matrices of the same shape, got {K.shape} and {L.shape}")
    n = K.shape[0]
    if estimator == "biased":
        if n < 2:
            raise ValueError(f"the biased HSIC needs n >= 2 stimuli, got {n}")
        Kc = _centre(K)
        Lc = _centre(L)
        return float(np.einsum("ij,ij->", Kc, Lc) / (n - 1) ** 2)
    if n < 4:
        raise ValueError(f"the unbiased HSIC needs n >= 4 stimuli, got {n}")
    Kt = K.copy()
    Lt = L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    k_row = Kt.sum(axis=1)
    l_row = Lt.sum(axis=1)
    trace_kl = np.einsum("ij,ij->", Kt, Lt)  # tr(K L) for symmetric K, L
    term2 = k_row.sum() * l_row.sum() / ((n - 1) * (n - 2))
    term3 = 2.0 * (k_row @ l_row) / (n - 2)  # 1^T K L 1
    return float((trace_kl + term2 - term3) / (n * (n - 3)))


def _centre(K: np.ndarray) -> np.ndarray:
    """H K H without forming H (double centring)."""
    return K - K.mean(axis=0, keepdims=True) - K.mean(axis=1, keepdims=True) + K.mean()


def cka(X: Any, Y: Any, kernel: Kernel = "linear", hsic: HSIC = "unbiased", *, bandwidth: float = 1.0) -> float:
    """Centered kernel alignment between two representations of the same stimuli.

    Parameters
    ----------
    X, Y : xarray.DataArray, numpy.ndarray or torch.Tensor
        Responses to the same stimuli, shapes (stimulus, neuron_x) and (stimulus, neuron_y); neuron counts
        may differ. DataArrays need a ``stimulus`` dim (other dims are flattened into neurons). If both carry
        stimulus labels, ``Y`` is aligned to ``X``'s labels (:func:`bioplastic.analysis.align_stimuli`), so
        the value does not depend on the order in which either stores its stimuli; arrays and tensors are
        taken in the order given.
    kernel : {"linear", "rbf"}
        See :func:`gram`. Linear CKA equals ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F) for
        column-centred X_c, Y_c (Kornblith et al. 2019, eq. 4) with the biased estimator.
    hsic : {"biased", "unbiased"}
        HSIC estimator (see :func:`hsic_estimate`). ``unbiased`` is the default: it is
        near 0 for independent representations at any number of stimuli, while ``biased`` CKA of
        independent data grows towards 1 as neurons outnumber stimuli. The unbiased value can be
        slightly negative.
    bandwidth : float
        RBF width as a multiple of the median distance (``rbf`` only).

    Returns
    -------
    float
        CKA in [0, 1] for ``biased`` (up to rounding); 1 for X = Y. NaN if a representation is constant
        across stimuli (its self-HSIC is 0).

    Raises
    ------
    ValueError
        Unknown kernel or estimator (lists the allowed values); different numbers of stimuli; different
        stimulus sets (the message names the missing and extra stimuli); NaN/Inf; too few stimuli (biased: 2,
        unbiased: 4).
    """
    check_choice("kernel", kernel, KERNELS)
    check_choice("hsic", hsic, HSIC_ESTIMATORS)
    x, _ = stimulus_by_neuron(X, "X")
    y, _ = stimulus_by_neuron(align_stimuli(X, Y, "X", "Y"), "Y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"X and Y must hold the same stimuli: {x.shape[0]} vs {y.shape[0]} stimuli")
    K = _gram(x, kernel, bandwidth)
    L = _gram(y, kernel, bandwidth)
    return _cka_from_grams(K, L, hsic)


def _cka_from_grams(K: np.ndarray, L: np.ndarray, estimator: str) -> float:
    kl = hsic_estimate(K, L, estimator)
    kk = hsic_estimate(K, K, estimator)
    ll = hsic_estimate(L, L, estimator)
    denom = kk * ll
    if denom <= 0:
        return float("nan")
    return float(kl / np.sqrt(denom))


def cka_matrix(A: xr.Dataset | dict[str, Any], B: xr.Dataset | dict[str, Any] | None = None,
               kernel: Kernel = "linear", hsic: HSIC = "unbiased", *, bandwidth: float = 1.0) -> xr.DataArray:
    """CKA between every layer of one network and every layer of another (or of itself).

    Parameters
    ----------
    A, B : xarray.Dataset or dict of name -> (stimulus, neuron) responses
        E.g. the output of :func:`bioplastic.analysis.record_activations` (one variable per layer).
        ``B`` defaults to ``A`` (a layer x layer similarity map; Kornblith et al. 2019, Fig. 3).
    kernel, hsic, bandwidth
        As in :func:`cka`.

    Returns
    -------
    xarray.DataArray
        Dims (``layer_x``, ``layer_y``), named ``"cka"``, attrs ``kernel``, ``hsic``.

    Raises
    ------
    TypeError
        ``A`` or ``B`` is not an ``xarray.Dataset`` or a dict (the message names the type given).
    ValueError
        No layers; layers whose ``stimulus`` labels are not the same set (the message names the missing and
        extra stimuli). Layers whose labels are the same set in another order are aligned by label to the
        first layer of ``A``; unlabelled arrays are taken in the order given.
    """
    check_choice("kernel", kernel, KERNELS)
    check_choice("hsic", hsic, HSIC_ESTIMATORS)
    same = B is None
    B = A if B is None else B
    names_a, names_b = _layer_names(A, "A"), _layer_names(B, "B")
    if not names_a or not names_b:
        raise ValueError("no layers to compare")
    ref = A[names_a[0]]
    layers_a = {k: align_stimuli(ref, A[k], f"A[{names_a[0]!r}]", f"A[{k!r}]") for k in names_a}
    layers_b = layers_a if same else {
        k: align_stimuli(ref, B[k], f"A[{names_a[0]!r}]", f"B[{k!r}]") for k in names_b}
    grams_a = {k: _gram(stimulus_by_neuron(v, f"layer {k!r}")[0], kernel, bandwidth) for k, v in layers_a.items()}
    grams_b = grams_a if same else {
        k: _gram(stimulus_by_neuron(v, f"layer {k!r}")[0], kernel, bandwidth) for k, v in layers_b.items()}
    n_a = {g.shape[0] for g in grams_a.values()} | {g.shape[0] for g in grams_b.values()}
    if len(n_a) != 1:
        raise ValueError(f"layers hold different numbers of stimuli: {sorted(n_a)}")
    out = np.array([[_cka_from_grams(grams_a[i], grams_b[j], hsic) for j in names_b] for i in names_a])
    return xr.DataArray(out, dims=("layer_x", "layer_y"), coords={"layer_x": names_a, "layer_y": names_b},
                        name="cka", attrs={"kernel": kernel, "hsic": hsic,
                                           "reference": "Kornblith et al. (2019) ICML"})


def _layer_names(x: Any, name: str) -> list[str]:
    """The layer names of a Dataset or dict of responses; anything else is a TypeError naming its type."""
    if isinstance(x, xr.Dataset):
        return list(x.data_vars)
    if isinstance(x, dict):
        return list(x.keys())
    raise TypeError(f"cka_matrix: {name} must be an xarray.Dataset or a dict of layer name -> (stimulus, neuron) "
                    f"responses, got {type(x).__name__}; for a list of layers use dict(enumerate(layers)) or "
                    "name them")
