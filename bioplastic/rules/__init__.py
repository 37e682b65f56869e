"""Learning rules as small declarative objects.

>>> import bioplastic
>>> rule = bioplastic.rules.make("ldfa", rank=10, feedback_learning="local")
>>> rule.to_dict()["feedback_learning"]
'local'

Every rule updates each weight layer with the exact ``grad_W = delta^T h``; the rules differ in the error sent
to the layer below and in how their feedback weights learn (``docs/rules.md``):

============== ==================== ===================================================================
name           error sent below     feedback weights
============== ==================== ===================================================================
bp             ``delta W``          none (weight transport)
fa             ``delta B``          ``B`` fixed random (Lillicrap et al. 2016)
dfa            ``e D_l``            ``D_l`` fixed random (Nøkland 2016)
sign_symmetry  ``delta s sign(W)``  recomputed from ``W`` (Liao, Leibo & Poggio 2016)
kolen_pollack  ``delta B``          ``grad_B = grad_W`` + weight decay (Kolen & Pollack 1994; Akrout 2019)
ldfa           ``(delta P) Q``      five feedback-learning modes (Hanut & Kadmon 2025, arXiv:2502.20580)
direct_ldfa    ``(e P_l) Q_l``      idem, from the output error
drtp           ``y* D_l``           ``D_l`` fixed random, from the one-hot target (Frenkel et al. 2021)
============== ==================== ===================================================================

Each rule class owns its maths in matrix form (feedback operator, feedback parameters' shapes and initial
values, which of them learn, their gradients); the torch executor (:func:`bioplastic.convert`) and the linear
theory (:mod:`bioplastic.theory`) call it. How to add a rule: docs/rules.md, "How to add a rule".
"""
from __future__ import annotations

import dataclasses
from typing import Any

from bioplastic._checks import check_choice
from bioplastic.rules.alignment import (DirectFeedbackAlignment, DirectRandomTargetProjection, FeedbackAlignment,
                                       KolenPollack, SignSymmetry)
from bioplastic.rules.backprop import Backprop
from bioplastic.rules.base import Rule
from bioplastic.rules.low_rank import FEEDBACK_LEARNING, LDFA, DirectLDFA

__all__ = [
    "Rule", "make", "from_dict", "rule_class", "options", "RULE_NAMES", "FEEDBACK_LEARNING", "Backprop", "FeedbackAlignment",
    "DirectFeedbackAlignment", "SignSymmetry", "KolenPollack", "LDFA", "DirectLDFA", "DirectRandomTargetProjection",
]

_REGISTRY: dict[str, type[Rule]] = {
    cls.name: cls
    for cls in (Backprop, FeedbackAlignment, DirectFeedbackAlignment, SignSymmetry, KolenPollack, LDFA, DirectLDFA,
                DirectRandomTargetProjection)
}

#: Every rule name, in registry order.
RULE_NAMES = tuple(_REGISTRY)


def rule_class(name: str) -> type[Rule]:
    """The class registered under ``name`` (raises ``ValueError`` listing the rules for an unknown name)."""
    check_choice("rule", name, RULE_NAMES)
    return _REGISTRY[name]


def options(name: str) -> tuple[str, ...]:
    """Names of the hyper-parameters rule ``name`` accepts (raises ``ValueError`` for an unknown rule)."""
    check_choice("rule", name, RULE_NAMES)
    return tuple(f.name for f in dataclasses.fields(_REGISTRY[name]))


def make(name: str | Rule, **options_: Any) -> Rule:
    """Create a learning rule by name.

    Parameters
    ----------
    name : str or Rule
        One of :data:`RULE_NAMES`. A :class:`Rule` is returned unchanged when no options are given (so
        functions can accept either); with options, a copy with those options replaced (``rank`` and
        ``rank_fraction`` replace each other; a new ``feedback_learning`` resets ``feedback_lr``,
        ``feedback_weight_decay`` and ``reinit_every`` to that mode's defaults unless given).
    **options_
        The rule's hyper-parameters, e.g. ``rank``, ``rank_fraction``, ``feedback_learning``, ``feedback_lr``,
        ``feedback_weight_decay``, ``reinit_every``, ``error_clamp`` for ``ldfa`` / ``direct_ldfa``;
        ``scale`` for ``sign_symmetry``. See each class for its formulas and sources.

    Returns
    -------
    Rule
        A frozen dataclass with ``.name`` and ``.to_dict()``.

    Raises
    ------
    ValueError
        Unknown rule name or option (the message lists the allowed ones) or an invalid value.

    Examples
    --------
    >>> make("ldfa", rank_fraction=0.25, feedback_learning="oja").rank_fraction
    0.25
    """
    if isinstance(name, Rule):
        if not options_:
            return name
        base = {k: v for k, v in name.to_dict().items() if k != "name"}
        # an override of one of a mutually exclusive / mode-dependent option resets its partners
        if "rank_fraction" in options_:
            base.pop("rank", None)
        if "rank" in options_:
            base.pop("rank_fraction", None)
        if "feedback_learning" in options_:
            base.pop("feedback_lr", None)
            base.pop("feedback_weight_decay", None)
            base.pop("reinit_every", None)
        return make(name.name, **{**base, **options_})
    check_choice("rule", name, RULE_NAMES)
    cls = _REGISTRY[name]
    allowed = options(name)
    for key in options_:
        if key not in allowed:
            listed = ", ".join(repr(a) for a in allowed) if allowed else "(none)"
            raise ValueError(f"unknown option {key!r} for rule {name!r}; allowed: {listed}")
    return cls(**options_)


def from_dict(config: dict[str, Any]) -> Rule:
    """Inverse of :meth:`Rule.to_dict`: ``from_dict(rule.to_dict()) == rule``.

    Raises
    ------
    ValueError
        If ``config`` has no ``"name"`` or holds unknown names / options.
    """
    if "name" not in config:
        raise ValueError("rule config has no 'name' key")
    rest = {k: v for k, v in config.items() if k != "name"}
    return make(config["name"], **rest)
