"""The :class:`Rule` base class and validation helpers shared by every rule family.

A rule is a small frozen dataclass: its ``name``, its hyper-parameters and nothing else. How a rule acts on a
torch model lives in :mod:`bioplastic.nn` (one autograd Function per weight-layer type); the rate networks of
:mod:`bioplastic.rate` read the same objects. Rules are declarative so that they travel in run configurations
(:meth:`Rule.to_dict`) and compare by value.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

__all__ = ["Rule"]


@dataclasses.dataclass(frozen=True)
class Rule:
    """Base class of every learning rule.

    Every rule updates each weight layer with the exact ``grad_W = delta^T h`` (summed over the batch and
    token axes) and ``grad_b = sum(delta)``; rules differ only in the error ``g_in`` a layer sends to the layer
    below and in how their feedback weights learn (science notes, section 2).

    Attributes
    ----------
    name : str
        Registry name (class attribute), one of :data:`bioplastic.rules.RULE_NAMES`.
    feedback : str
        Class attribute naming the feedback operator: ``"transport"`` (uses ``W``), ``"sign"``,
        ``"matrix"`` (``B``), ``"direct"`` (``D``), ``"low_rank"`` (``P``, ``Q``) or ``"direct_low_rank"``.
    """

    name: ClassVar[str] = "rule"
    feedback: ClassVar[str] = "transport"
    #: True for rules that send the *output* error ``e`` straight to every layer (need the output size).
    direct: ClassVar[bool] = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary ``{"name": ..., **hyper_parameters}``; :func:`bioplastic.rules.make` inverts it."""
        return {"name": self.name, **dataclasses.asdict(self)}

    @property
    def learns_feedback(self) -> bool:
        """Whether this rule has feedback parameters that receive a ``.grad``."""
        return False


def check_nonnegative_float(rule: str, option: str, value: Any, *, allow_none: bool = False,
                            strictly_positive: bool = False) -> float | None:
    """Validate a float option (finite, >= 0 or > 0); returns it as float."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{rule}: option {option} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{rule}: option {option} must be finite, got {value}")
    if value < 0 or (strictly_positive and value == 0):
        bound = "> 0" if strictly_positive else ">= 0"
        raise ValueError(f"{rule}: option {option} must be {bound}, got {value}")
    return value
