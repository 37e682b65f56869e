"""Loaders for neural data read from local files (nothing is downloaded): the Kriegeskorte et al. (2008)
92-image set with monkey and human IT RDMs, the Ringach et al. (2002) V1 orientation-tuning database, and
published V1 statistics (``v1_statistics.json``). Each returns an ``xarray.Dataset`` with units and
citations in attrs. The files are research data kept outside the package: pass their path.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bioplastic.data.base import DATA_PAGE

KRIEGESKORTE_FILES = {
    "supplemental": "Kriegeskorte_Neuron2008_supplementalData.mat",
    "brain": "92_brainRDMs.mat",
    "models": "92_modelRDMs.mat",
}
RINGACH_FILE = "ringach_2002_db.mat"
V1_STATISTICS_FILE = "v1_statistics.json"

KRIEGESKORTE_CITATION = (
    "Kriegeskorte N, Mur M, Ruff DA, Kiani R, Bodurka J, Esteky H, Tanaka K, Bandettini PA (2008) Matching "
    "categorical object representations in inferior temporal cortex of man and monkey. Neuron 60:1126-1141")
KIANI_CITATION = ("Kiani R, Esteky H, Mirpour K, Tanaka K (2007) Object category structure in response patterns of "
                  "neuronal population in monkey inferior temporal cortex. J Neurophysiol 97:4296-4309")
RINGACH_CITATION = ("Ringach DL, Shapley RM, Hawken MJ (2002) Orientation selectivity in macaque V1: diversity and "
                    "laminar dependence. J Neurosci 22:5639-5651")

N_STIMULI_92 = 92
ROW, COL = "stimulus_i", "stimulus_j"


# ------------------------------------------------------------------------------------------ helpers
def _resolve(path: str | os.PathLike, filename: str, what: str) -> Path:
    """``path`` itself if it is a file, else ``path / filename``; FileNotFoundError naming both."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / filename
    if not p.is_file():
        raise FileNotFoundError(f"{what}: no file {p} (pass the file or the folder that holds {filename}; "
                                f"where to get it: {DATA_PAGE})")
    return p


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    try:
        return loadmat(path, squeeze_me=False, struct_as_record=True)
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError... for damaged files
        raise ValueError(f"cannot read MATLAB file {path}: {exc}") from exc


def _field(mat: dict[str, Any], key: str, path: Path) -> Any:
    if key not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path} has no variable {key!r} (it has {present}); is it the right file?")
    return mat[key]


def _text(x: Any) -> str:
    """A MATLAB char array (possibly nested in object arrays) as a Python str."""
    arr = np.asarray(x)
    while arr.dtype == object and arr.size == 1:
        arr = np.asarray(arr.ravel()[0])
    if arr.size == 0:
        return ""
    return str(arr.ravel()[0]) if arr.dtype.kind == "U" and arr.size == 1 else "".join(map(str, arr.ravel()))


def _square_rdm(values: Any, path: Path, what: str) -> np.ndarray:
    from scipy.spatial.distance import squareform

    arr = np.asarray(values, dtype=np.float64)
    if arr.shape == (N_STIMULI_92, N_STIMULI_92):
        mat = arr
    elif arr.size == N_STIMULI_92 * (N_STIMULI_92 - 1) // 2:
        mat = squareform(arr.ravel(), checks=False)
    else:
        raise ValueError(f"{path}: {what} has shape {arr.shape}; expected a {N_STIMULI_92}x{N_STIMULI_92} RDM or "
                         f"its condensed vector of length {N_STIMULI_92 * (N_STIMULI_92 - 1) // 2}")
    if not np.all(np.isfinite(mat)):
        raise ValueError(f"{path}: {what} contains NaN or Inf")
    if not np.allclose(mat, mat.T, atol=1e-6):
        raise ValueError(f"{path}: {what} is not symmetric")
    return mat


def _check_shape(arr: np.ndarray, shape: tuple[int, ...], path: Path, what: str) -> None:
    if arr.shape != shape:
        raise ValueError(f"{path}: {what} has shape {arr.shape}, expected {shape}")


# ----------------------------------------------------------------------------------- Kriegeskorte 2008
def load_kriegeskorte2008(path: str | os.PathLike) -> xr.Dataset:
    """The 92-image object set of Kriegeskorte et al. (2008) with monkey IT, human IT and model RDMs.

    Parameters
    ----------
    path : path-like
        Folder holding ``Kriegeskorte_Neuron2008_supplementalData.mat``, ``92_brainRDMs.mat`` and
        ``92_modelRDMs.mat`` (as distributed with rsatoolbox; e.g. ``../shared/data/kriegeskorte2008``).

    Returns
    -------
    xarray.Dataset
        Stimulus dims ``stimulus`` (92) and, for RDMs, ``stimulus_i``/``stimulus_j`` (92 x 92, the same
        order). Variables:

        - ``image`` (stimulus, y, x, channel): the 175 x 175 RGB images, uint8 (0-255).
        - ``category_vector`` (stimulus, category_label): the 12 binary category memberships of the paper
          (animate, inanim, human, nonhumani, body, face, natObj, artiObj, rand24, rand48, other48,
          monkeyape).
        - ``monkey_it`` (stimulus_i, stimulus_j): monkey IT RDM, 674 neurons (Kiani et al. 2007), 1 - Pearson r.
        - ``human_it`` (stimulus_i, stimulus_j): human IT RDM, 316 fMRI voxels, mean of the 8 below.
        - ``human_it_subjects`` (subject, session, stimulus_i, stimulus_j): human IT RDMs of 4 subjects x
          2 sessions (for the noise ceiling: average over ``session`` first).
        - ``model_rdms`` (model, stimulus_i, stimulus_j): the 8 model RDMs of the paper (animacy,
          FaceBodyManmadeNatobj, monkeyIT, EVA, HMAX, V1, Silhouette, RADON).

        Coordinates along ``stimulus``: ``category`` (e.g. "human face"), and boolean ``animate``,
        ``human``, ``face`` (from the stimulus struct). attrs: ``citation``, ``n_monkey_neurons`` (674),
        ``n_human_voxels`` (316), ``source_files``.

    Raises
    ------
    FileNotFoundError
        A file is missing (the message names it).
    ValueError
        A file is damaged or has an unexpected structure or shape (the message names the file).
    """
    files = {key: _resolve(path, name, "Kriegeskorte 2008 data") for key, name in KRIEGESKORTE_FILES.items()}

    sup_path = files["supplemental"]
    sup = _loadmat(sup_path)
    stim = _field(sup, "stimuli_92objs", sup_path)
    try:
        stim = stim.ravel()
        images = np.stack([np.asarray(s["image"], dtype=np.uint8) for s in stim])
        category = np.array([_text(s["category"]) for s in stim], dtype=object)
        flags = {f: np.array([bool(np.asarray(s[f]).ravel()[0]) for s in stim]) for f in ("animal", "human", "face")}
    except (ValueError, IndexError, KeyError) as exc:
        raise ValueError(f"{sup_path}: unexpected structure of 'stimuli_92objs': {exc}") from exc
    _check_shape(images, (N_STIMULI_92, 175, 175, 3), sup_path, "stimuli_92objs.image")
    vectors = np.asarray(_field(sup, "categoryVectors", sup_path))
    _check_shape(vectors, (N_STIMULI_92, 12), sup_path, "categoryVectors")
    labels = [_text(x) for x in np.asarray(_field(sup, "categoryLabels", sup_path)).ravel()]
    if len(labels) != vectors.shape[1]:
        raise ValueError(f"{sup_path}: {len(labels)} category labels for {vectors.shape[1]} category columns")
    fig1 = _field(sup, "RDMs_mIT_hIT_fig1", sup_path).ravel()
    if fig1.size != 2:
        raise ValueError(f"{sup_path}: RDMs_mIT_hIT_fig1 holds {fig1.size} RDMs, expected 2 (monkey IT, human IT)")
    names = [_text(r["name"]) for r in fig1]
    monkey = _square_rdm(fig1[0]["RDM"], sup_path, f"RDM {names[0]!r}")
    human = _square_rdm(fig1[1]["RDM"], sup_path, f"RDM {names[1]!r}")
    n_neurons = _count_in_name(names[0], r"(\d+)\s*neurons", sup_path)
    n_voxels = _count_in_name(names[1], r"(\d+)\s*vx", sup_path)
    if n_neurons != 674:
        raise ValueError(f"{sup_path}: monkey IT RDM {names[0]!r} is not the 674-neuron RDM of Kiani et al. 2007")

    brain_path = files["brain"]
    brain = _field(_loadmat(brain_path), "RDMs", brain_path)
    brain = np.asarray(brain)
    if brain.ndim == 3 and brain.shape[0] == 1:
        brain = brain[0]
    _check_shape(brain, (4, 2), brain_path, "RDMs (subjects x sessions)")
    subjects_mat = np.empty((4, 2, N_STIMULI_92, N_STIMULI_92))
    subject_names: list[str] = []
    for i in range(4):
        for j in range(2):
            name = _text(brain[i, j]["name"])
            match = re.search(r"\|\s*(\w+)\s*\|\s*Session:\s*(\d+)", name)
            if match is None or int(match.group(2)) != j + 1:
                raise ValueError(f"{brain_path}: RDM [{i}, {j}] is named {name!r}; expected 'hIT | <subject> | "
                                 f"Session: {j + 1}'")
            if j == 0:
                subject_names.append(match.group(1))
            elif match.group(1) != subject_names[i]:
                raise ValueError(f"{brain_path}: sessions of subject {i} carry different names")
            subjects_mat[i, j] = _square_rdm(brain[i, j]["RDM"], brain_path, f"RDM {name!r}")

    model_path = files["models"]
    models = np.asarray(_field(_loadmat(model_path), "Models", model_path)).ravel()
    if models.size != 8:
        raise ValueError(f"{model_path}: 'Models' holds {models.size} RDMs, expected 8")
    model_names = [_text(m["name"]) for m in models]
    model_mats = np.stack([_square_rdm(m["RDM"], model_path, f"model RDM {n!r}") for m, n in zip(models, model_names)])

    stimuli = np.arange(N_STIMULI_92)
    rdm_attrs = {"distance": "correlation", "units": "1 - Pearson r"}
    ds = xr.Dataset(
        {
            "image": (("stimulus", "y", "x", "channel"), images,
                      {"units": "pixel intensity (0-255)", "long_name": "stimulus image, RGB"}),
            "category_vector": (("stimulus", "category_label"), vectors.astype(bool),
                                {"long_name": "category membership (Kriegeskorte et al. 2008)"}),
            "monkey_it": ((ROW, COL), monkey, {**rdm_attrs, "long_name": f"monkey IT RDM ({n_neurons} neurons)",
                                               "citation": KIANI_CITATION, "source_name": names[0]}),
            "human_it": ((ROW, COL), human, {**rdm_attrs, "long_name": f"human IT RDM ({n_voxels} voxels, mean of "
                                             "4 subjects x 2 sessions)", "source_name": names[1]}),
            "human_it_subjects": (("subject", "session", ROW, COL), subjects_mat,
                                  {**rdm_attrs, "long_name": "human IT RDM per subject and session"}),
            "model_rdms": (("model", ROW, COL), model_mats,
                           {"units": "model-specific dissimilarity", "long_name": "model RDMs of the paper"}),
        },
        coords={
            "stimulus": stimuli, ROW: stimuli, COL: stimuli,
            "category": ("stimulus", category), "animate": ("stimulus", flags["animal"]),
            "human": ("stimulus", flags["human"]), "face": ("stimulus", flags["face"]),
            "category_label": labels, "subject": subject_names, "session": [1, 2], "model": model_names,
        },
        attrs={"citation": KRIEGESKORTE_CITATION, "n_stimuli": N_STIMULI_92, "n_monkey_neurons": int(n_neurons),
               "n_human_voxels": int(n_voxels), "source_files": [str(p) for p in files.values()],
               "note": "RDMs as distributed with rsatoolbox; condensed vectors are in scipy squareform order"},
    )
    return ds


def _count_in_name(name: str, pattern: str, path: Path) -> int:
    match = re.search(pattern, name)
    if match is None:
        raise ValueError(f"{path}: cannot read the unit count from RDM name {name!r}")
    return int(match.group(1))


# -------------------------------------------------------------------------------------- Ringach 2002
_RINGACH_FIELDS = {
    # db field: (variable, units, long name)
    "orivar": ("circular_variance", "1", "circular variance of the orientation tuning curve (0 sharp, 1 flat)"),
    "bw": ("bandwidth", "degree", "orientation tuning half-width at half height (180 where undefined)"),
    "po": ("orthogonal_preferred_ratio", "1", "response at orthogonal / preferred orientation"),
    "maxdc": ("f0", "spikes/s", "mean firing rate (F0) at the preferred orientation"),
    "maxfirst": ("f1", "spikes/s", "first-harmonic amplitude (F1) at the preferred orientation"),
    "mindc": ("min_f0", "spikes/s", "minimum mean firing rate (F0) over orientations"),
    "spont": ("spontaneous_rate", "spikes/s", "spontaneous firing rate"),
    "rdepth": ("relative_depth", "1", "relative cortical depth (0 pia, 1 white matter)"),
}


def load_ringach2002(path: str | os.PathLike) -> xr.Dataset:
    """Orientation tuning of 308 macaque V1 neurons (Ringach, Shapley & Hawken 2002).

    Parameters
    ----------
    path : path-like
        ``ringach_2002_db.mat`` or the folder holding it (e.g. ``../shared/data/ringach2002``).

    Returns
    -------
    xarray.Dataset
        Dim ``neuron`` (308). Variables: ``circular_variance``, ``bandwidth`` (degree),
        ``orthogonal_preferred_ratio``, ``f0``, ``f1``, ``min_f0``, ``spontaneous_rate`` (spikes/s),
        ``relative_depth``, and ``modulation_ratio`` = F1/F0 (> 1: simple cell; Skottun et al. 1991);
        each with ``units`` and ``long_name``. Coordinates: ``animal``, ``experiment``, ``unit``,
        ``channel`` (recording identifiers). attrs: ``citation``, ``source_file``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A damaged file, a missing field or a field of the wrong length (the message names the file).
    """
    file = _resolve(path, RINGACH_FILE, "Ringach 2002 database")
    db = np.asarray(_field(_loadmat(file), "db", file))
    if db.size != 1 or db.dtype.names is None:
        raise ValueError(f"{file}: 'db' is not a MATLAB struct")
    db = db.ravel()[0]
    missing = [f for f in (*_RINGACH_FIELDS, "animal", "expt", "unit", "chan") if f not in db.dtype.names]
    if missing:
        raise ValueError(f"{file}: struct 'db' lacks the fields {missing}")
    data: dict[str, Any] = {}
    n = None
    for field, (var, units, long_name) in _RINGACH_FIELDS.items():
        values = np.asarray(db[field], dtype=np.float64).ravel()
        n = values.size if n is None else n
        if values.size != n:
            raise ValueError(f"{file}: field {field!r} has {values.size} values, other fields {n}")
        data[var] = ("neuron", values, {"units": units, "long_name": long_name, "source_field": field})
    if n != 308:
        raise ValueError(f"{file}: {n} neurons, expected the 308 of Ringach et al. (2002)")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = data["f1"][1] / data["f0"][1]
    data["modulation_ratio"] = ("neuron", ratio, {"units": "1", "long_name": "F1/F0 (> 1: simple cell)"})
    animal = np.array([_text(a) for a in np.asarray(db["animal"]).ravel()], dtype=object)
    ids = {name: np.asarray(db[field]).ravel().astype(np.int64) for name, field in
           (("experiment", "expt"), ("unit", "unit"), ("channel", "chan"))}
    for name, values in (("animal", animal), *ids.items()):
        if values.size != n:
            raise ValueError(f"{file}: identifier {name!r} has {values.size} values, expected {n}")
    return xr.Dataset(
        data,
        coords={"neuron": np.arange(n), "animal": ("neuron", animal), **{k: ("neuron", v) for k, v in ids.items()}},
        attrs={"citation": RINGACH_CITATION, "source_file": str(file), "n_neurons": int(n)},
    )


# ----------------------------------------------------------------------------------- V1 statistics
def load_v1_statistics(path: str | os.PathLike) -> xr.Dataset:
    """Published V1 statistics transcribed from the papers (``v1_statistics.json``).

    Parameters
    ----------
    path : path-like
        ``v1_statistics.json`` or the folder holding it (e.g. ``../shared/data``).

    Returns
    -------
    xarray.Dataset
        - ``simple_cell_shape_counts`` (nx_bin, ny_bin): Ringach (2002) J Neurophysiol 88:455 joint
          histogram of Gabor shape parameters nx = sigma_x f, ny = sigma_y f, with coordinates
          ``nx_lower``, ``nx_upper``, ``ny_lower``, ``ny_upper`` (bin edges).
        - ``orientation_preference_counts`` (orientation): De Valois, Yund & Hepler (1982), bins centred at
          ``orientation`` (degree).
        - ``peak_spatial_frequency_counts`` (spatial_frequency_bin): De Valois, Albrecht & Thorell (1982),
          edges ``spatial_frequency_lower``/``_upper`` (cycles/degree).
        - ``eigenspectrum_alpha`` (scalar): Stringer et al. (2019) power-law exponent for natural images.

        Each variable has ``citation`` and ``units`` attrs.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not valid JSON, or an entry is missing or malformed (the message names the file and entry).
    """
    file = _resolve(path, V1_STATISTICS_FILE, "V1 statistics")
    try:
        stats = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read JSON file {file}: {exc}") from exc

    def entry(key: str) -> dict[str, Any]:
        if not isinstance(stats, dict) or key not in stats:
            raise ValueError(f"{file}: no entry {key!r}")
        return stats[key]

    try:
        shape = entry("ringach2002_simple_cell_shape")
        nx_edges = np.asarray(shape["nx_bin_edges"], dtype=float)
        ny_edges = np.asarray(shape["ny_bin_edges"], dtype=float)
        counts = np.asarray(shape["counts"], dtype=np.int64)
        _check_shape(counts, (nx_edges.size - 1, ny_edges.size - 1), file, "simple-cell shape counts")
        ori = entry("devalois1982_orientation_preference")
        ori_centres = np.asarray(ori["bin_centres_deg"], dtype=float)
        ori_counts = np.asarray(ori["counts"], dtype=np.int64)
        _check_shape(ori_counts, ori_centres.shape, file, "orientation counts")
        sf = entry("devalois1982_peak_spatial_frequency")
        sf_edges = np.asarray(sf["bin_edges_cpd"], dtype=float)
        sf_counts = np.asarray(sf["counts"], dtype=np.int64)
        _check_shape(sf_counts, (sf_edges.size - 1,), file, "spatial-frequency counts")
        stringer = entry("stringer2019_eigenspectrum")
        alpha = float(stringer["alpha_natural_images"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{file}: malformed entry ({exc!r} missing or of the wrong type)") from exc

    return xr.Dataset(
        {
            "simple_cell_shape_counts": (("nx_bin", "ny_bin"), counts,
                                         {"units": "cells", "citation": shape.get("source", ""),
                                          "long_name": "simple cells per (nx, ny) bin", "n_cells": int(counts.sum())}),
            "orientation_preference_counts": ("orientation", ori_counts,
                                              {"units": "cells", "citation": ori.get("source", ""),
                                               "long_name": "cells per preferred-orientation bin"}),
            "peak_spatial_frequency_counts": ("spatial_frequency_bin", sf_counts,
                                              {"units": "cells", "citation": sf.get("source", ""),
                                               "long_name": "cells per peak spatial-frequency bin"}),
            "eigenspectrum_alpha": ((), alpha, {"units": "1", "citation": stringer.get("source", ""),
                                                "long_name": "power-law exponent of the V1 eigenspectrum, "
                                                             "natural images"}),
        },
        coords={
            "nx_lower": ("nx_bin", nx_edges[:-1]), "nx_upper": ("nx_bin", nx_edges[1:]),
            "ny_lower": ("ny_bin", ny_edges[:-1]), "ny_upper": ("ny_bin", ny_edges[1:]),
            "orientation": ("orientation", ori_centres, {"units": "degree"}),
            "spatial_frequency_lower": ("spatial_frequency_bin", sf_edges[:-1], {"units": "cycles/degree"}),
            "spatial_frequency_upper": ("spatial_frequency_bin", sf_edges[1:], {"units": "cycles/degree"}),
        },
        attrs={"source_file": str(file),
               "citation": "; ".join(e.get("source", "") for e in (shape, ori, sf, stringer) if e.get("source"))},
    )


def resize_images(images: Any, size: int | tuple[int, int], *, channels: int = 3):
    """Stimulus images as a network input batch: (stimulus, channel, height, width) uint8 tensor.

    Parameters
    ----------
    images : xarray.DataArray, numpy.ndarray or torch.Tensor
        uint8 images of shape (stimulus, y, x, channel) (e.g. ``load_kriegeskorte2008(path)["image"]``).
    size : int or (int, int)
        Output height and width in pixels (e.g. 32 for a CIFAR-10 network). Downsampling is antialiased
        (bilinear with ``antialias=True``) so fine texture does not alias.
    channels : {1, 3}
        3 keeps RGB; 1 converts to luminance (ITU-R BT.601 weights 0.299, 0.587, 0.114).

    Returns
    -------
    torch.Tensor
        uint8, shape (stimulus, channels, height, width), ready for a dataset's ``transform``.

    Raises
    ------
    ValueError
        Images that are not (stimulus, y, x, 3) uint8; a non-positive size; channels not 1 or 3.
    """
    import torch
    import torch.nn.functional as F

    arr = np.asarray(images.values if isinstance(images, xr.DataArray) else images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8 of shape (stimulus, y, x, 3), got {arr.dtype} {arr.shape}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    hw = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(hw) != 2 or any(int(s) < 1 for s in hw):
        raise ValueError(f"size must be a positive int or a pair of them, got {size!r}")
    x = torch.from_numpy(arr.copy()).permute(0, 3, 1, 2).to(torch.float32)
    if channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    x = F.interpolate(x, size=tuple(int(s) for s in hw), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)
