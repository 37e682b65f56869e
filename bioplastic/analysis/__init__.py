"""Analyses that put network representations next to neural recordings (xarray in, xarray out).

RSA (``rsa``)
    :func:`rdm`, :func:`compare_rdms`, :func:`noise_ceiling`, :func:`rdm_stack`, adapters to and from
    rsatoolbox (:func:`to_rsatoolbox_dataset`, :func:`to_rsatoolbox_rdms`, :func:`from_rsatoolbox_rdms`).
CKA (``cka``)
    :func:`cka` (linear / RBF kernel, biased / unbiased HSIC), :func:`cka_matrix`, :func:`gram`,
    :func:`hsic_estimate`.
Spectra (``spectrum``)
    :func:`cv_pca` (Stringer et al. 2019), :func:`pca_spectrum`, :func:`powerlaw_fit`.
Dimensionality (``dimensionality``)
    :func:`participation_ratio`, :func:`lifetime_sparseness`, :func:`population_sparseness`.
Activations (``activations``)
    :func:`record_activations`: named layers of a torch model -> Dataset, one variable per layer;
    :func:`representation_layers` picks the usual ones (nonlinearities, global pooling, readout).
Stimulus alignment
    :func:`align_stimuli`: reorder one input's stimuli to another's labels (or refuse different stimulus
    sets, naming the stimuli); every function above that takes two labelled inputs uses it.
Receptive fields (``receptive_fields``, imported on first use).

See ``docs/analysis.md`` for a tour.
"""
from __future__ import annotations

import importlib

from bioplastic.analysis._inputs import align_stimuli
from bioplastic.analysis.activations import (
    leaf_layers,
    neuron_dim,
    record_activations,
    representation_layers,
)
from bioplastic.analysis.cka import cka, cka_matrix, gram, hsic_estimate
from bioplastic.analysis.dimensionality import lifetime_sparseness, participation_ratio, population_sparseness
from bioplastic.analysis.rsa import (
    compare_rdms,
    from_rsatoolbox_rdms,
    noise_ceiling,
    rdm,
    rdm_stack,
    to_rsatoolbox_dataset,
    to_rsatoolbox_rdms,
)
from bioplastic.analysis.spectrum import cv_pca, pca_spectrum, powerlaw_fit

__all__ = [
    "align_stimuli", "cka", "cka_matrix", "compare_rdms", "cv_pca", "from_rsatoolbox_rdms", "gram", "hsic_estimate",
    "leaf_layers", "lifetime_sparseness", "neuron_dim", "noise_ceiling", "participation_ratio", "pca_spectrum",
    "population_sparseness", "powerlaw_fit", "rdm", "rdm_stack", "record_activations", "representation_layers", "to_rsatoolbox_dataset",
    "to_rsatoolbox_rdms",
]

_LAZY_SUBMODULES = {"receptive_fields"}


def __getattr__(name: str):
    # receptive_fields is imported only when used (it is written separately and may pull in more).
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"bioplastic.analysis.{name}")
    raise AttributeError(f"module 'bioplastic.analysis' has no attribute {name!r}")
