"""bioplastic: learning without backpropagation.

Local plasticity rules (feedback alignment family and LDFA, the low-dimensional feedback alignment of
Hanut & Kadmon 2025, arXiv:2502.20580) on any torch model, rate-based networks with an explicit
low-dimensional feedback population (torch and brian2 backends), the linear teacher-student theory,
and analyses comparing learned representations with neural data.

Subpackages
-----------
rules          learning rules as declarative objects (``bioplastic.rules.make("ldfa", rank=10)``)
nn             the torch executor: ``convert(model, rule)``, feedback parameters, diagnostics
architectures  torch model code (MLP, VGG-like CNN, ViT, retina-VVS) built from ``models/*.toml`` specs
training       training loops and ``compare`` (rules side by side, xarray results)
rate           continuous-time rate networks with a feedback population (torch / brian2)
theory         linear teacher-student learning dynamics (simulation and reduced ODE)
analysis       RSA, CKA, spectra, dimensionality, receptive fields
data           dataset and neural-data loaders
io             xarray conventions, atomic netCDF save/load
reproduction   ``bioplastic.reproduce(budget=..., out=...)``: the paper's claims with verdicts and a report
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "rules", "nn", "architectures", "training", "rate", "theory", "analysis", "data", "io", "specs",
    "testing", "reproduction",
}
_ATTRIBUTES = {
    "convert": ("bioplastic.nn", "convert"),
    "compare": ("bioplastic.training", "compare"),
    "reproduce": ("bioplastic.reproduction.runner", "reproduce"),
}

__all__ = sorted(_SUBMODULES | set(_ATTRIBUTES) | {"__version__"})


def __getattr__(name: str):
    # Lazy imports keep ``import bioplastic`` fast and let brian2 / rsatoolbox load only when used.
    if name in _SUBMODULES:
        return importlib.import_module(f"bioplastic.{name}")
    if name in _ATTRIBUTES:
        module, attr = _ATTRIBUTES[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'bioplastic' has no attribute {name!r}")


def __dir__():
    return __all__
