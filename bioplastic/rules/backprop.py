"""Backpropagation: the exact gradient, the reference every other rule is measured against."""
from __future__ import annotations

import dataclasses

from bioplastic.rules.base import Rule

__all__ = ["Backprop"]


@dataclasses.dataclass(frozen=True)
class Backprop(Rule):
    """Backpropagation: ``g_in = delta W`` (weight transport; Rumelhart, Hinton & Williams 1986).

    No feedback parameters; :meth:`feedback_kernel` is ``W`` itself.
    """

    name = "bp"
    display_name = "backprop"
    weight_transport = "yes"
    feedback = "transport"

    def feedback_kernel(self, weight, feedback):
        """``(W, None)``: the error sent below is ``delta W``."""
        return weight, None
