"""Rate-based networks with an explicit low-dimensional feedback population (torch and brian2 backends).

Continuous-time rate neurons ``tau dr/dt = -r + f(I)`` learn with local three-factor plasticity gated by
an apical compartment that receives the output error through a population of ``r`` feedback units: the
low-dimensional feedback alignment (LDFA) of Hanut & Kadmon (2025, arXiv:2502.20580) in continuous time.
One network object, two backends (``net.run(..., backend="torch" | "brian2")``). See ``docs/rate.md``.
"""
from bioplastic.rate.activations import ACTIVATIONS, OUTPUT_ACTIVATIONS
from bioplastic.rate.model import (
    BACKENDS,
    FEEDBACK_RULES,
    LEARNING_RATE_SCALINGS,
    WIRINGS,
    FeedbackGroup,
    FeedbackPopulation,
    Population,
    Projection,
    RateNetwork,
)
from bioplastic.rate.simulate import CODEGEN_TARGETS, METHODS, predict, simulate
from bioplastic.rate.training import evaluate, train_online

__all__ = [
    "ACTIVATIONS", "OUTPUT_ACTIVATIONS", "BACKENDS", "FEEDBACK_RULES", "WIRINGS", "LEARNING_RATE_SCALINGS", "METHODS", "CODEGEN_TARGETS",
    "Population", "FeedbackPopulation", "Projection", "FeedbackGroup", "RateNetwork", "simulate", "predict",
    "evaluate", "train_online",
]
