"""Rate-based networks with an explicit low-dimensional feedback population (torch and brian2 backends).

Continuous-time rate neurons ``tau dr/dt = -r + f(I)`` learn with local three-factor plasticity gated by
an apical compartment that receives the output error through a population of ``r`` feedback units: the
low-dimensional feedback alignment (LDFA) of Hanut & Kadmon (2025, arXiv:2502.20580) in continuous time.
The feedback population takes a rule of :mod:`bioplastic.rules` (``rules.make("direct_ldfa", rank=10,
feedback_learning="oja")``). One network object, two backends (``net.run(..., backend="torch" | "brian2")``).
See ``docs/rate.md``.

Layout (like brian2's devices; no import circle): :mod:`~bioplastic.rate.populations` (the parts of the
description) and :mod:`~bioplastic.rate.plasticity` (one rate form per feedback-learning mode) are leaves;
:mod:`~bioplastic.rate.protocol` (the presentation schedule), :mod:`~bioplastic.rate.torch_backend`,
:mod:`~bioplastic.rate.brian2_backend` and :mod:`~bioplastic.rate.recording` build on them;
:mod:`~bioplastic.rate.dispatch` (:func:`simulate`, :func:`predict`) on those; :mod:`~bioplastic.rate.network`
(:class:`RateNetwork`) on the dispatcher; :mod:`~bioplastic.rate.training` (online learning) and
:mod:`~bioplastic.rate.twin` (the autograd twin) on the network.
"""
from bioplastic.rate.activations import ACTIVATIONS, OUTPUT_ACTIVATIONS
from bioplastic.rate.dispatch import BACKENDS, CODEGEN_TARGETS, predict, simulate
from bioplastic.rate.network import LEARNING_RATE_SCALINGS, RateNetwork
from bioplastic.rate.populations import (
    FEEDBACK_LEARNING,
    FEEDBACK_RULES,
    RATE_RULES,
    WIRINGS,
    FeedbackGroup,
    FeedbackPopulation,
    Population,
    Projection,
)
from bioplastic.rate.protocol import METHODS
from bioplastic.rate.training import evaluate, train_online
from bioplastic.rate.twin import autograd_twin, compare_with_twin

__all__ = [
    "ACTIVATIONS", "OUTPUT_ACTIVATIONS", "BACKENDS", "FEEDBACK_LEARNING", "FEEDBACK_RULES", "RATE_RULES", "WIRINGS",
    "LEARNING_RATE_SCALINGS", "METHODS", "CODEGEN_TARGETS", "Population", "FeedbackPopulation", "Projection",
    "FeedbackGroup", "RateNetwork", "simulate", "predict", "evaluate", "train_online", "autograd_twin",
    "compare_with_twin",
]
