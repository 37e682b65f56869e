"""Backpropagation: the reference every other rule is compared with."""
from __future__ import annotations

import dataclasses

from bioplastic.rules.base import Rule

__all__ = ["Backprop"]


@dataclasses.dataclass(frozen=True)
class Backprop(Rule):
    """Error backpropagation, ``g_in = delta W`` (weight transport).

    Converting a model with this rule keeps its gradients exactly those of plain PyTorch autograd; it exists
    so that every rule runs through the same code path and the per-layer diagnostics
    (:func:`bioplastic.nn.alignment`) have their reference (Rumelhart, Hinton & Williams 1986).
    """

    name = "bp"
    feedback = "transport"
