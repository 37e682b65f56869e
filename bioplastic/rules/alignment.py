"""The feedback-alignment family: FA, DFA, sign symmetry and Kolen-Pollack.

Each rule keeps the exact weight update ``grad_W = delta^T h`` and replaces the transported ``W`` in the error
sent below (``g_in = delta W`` under backprop) by another matrix (science notes, section 2).
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from bioplastic._checks import check_choice
from bioplastic.rules.base import Rule

__all__ = ["FeedbackAlignment", "DirectFeedbackAlignment", "SignSymmetry", "KolenPollack"]

SIGN_SCALES = ("mean_abs", "unit")


@dataclasses.dataclass(frozen=True)
class FeedbackAlignment(Rule):
    """Feedback alignment: ``g_in = delta B`` with a fixed random ``B`` of the shape of ``W``.

    ``B`` is drawn once at conversion, from a uniform distribution with the variance of the layer's weights
    (Lillicrap, Cownden, Tweed & Akerman 2016, Nat Commun 7:13276), and never learns; the forward weights come
    to align with it.
    """

    name = "fa"
    feedback = "matrix"


@dataclasses.dataclass(frozen=True)
class DirectFeedbackAlignment(Rule):
    """Direct feedback alignment: every layer ``l`` sends ``g_in_l = e D_l`` below.

    ``e = dL/d(logits)`` (shape ``(batch, d)``) is the output layer's exact error, delivered to every layer by
    the error bus of :func:`bioplastic.convert` without changing the model's forward signature; ``D_l`` is a
    fixed random ``(d, in_l)`` matrix (``(d, C_in, H, W)`` for a Conv2d layer), uniform in
    ``[-1/sqrt(d), 1/sqrt(d)]`` (Nøkland 2016, NeurIPS). The output size ``d`` is read from the output layer
    (``out_features``); conversion raises ``ValueError`` when no output layer can be found.
    """

    name = "dfa"
    feedback = "direct"
    direct = True


@dataclasses.dataclass(frozen=True)
class SignSymmetry(Rule):
    """Sign symmetry: ``g_in = delta (s * sign(W))``, recomputed from ``W`` at every step.

    Parameters
    ----------
    scale : {"mean_abs", "unit"}
        ``s``: ``"mean_abs"`` (default) uses the layer's mean ``|W|`` (so the feedback has the magnitude of
        ``W``, the least-squares scale of ``sign(W)``); ``"unit"`` uses ``s = 1``, the uniform sign-concordant
        feedback (uSF) of Liao, Leibo & Poggio (2016, AAAI), whose error grows with the layer width.

    Raises
    ------
    ValueError
        Unknown ``scale`` (the message lists the allowed values).
    """

    name = "sign_symmetry"
    feedback = "sign"
    scale: Literal["mean_abs", "unit"] = "mean_abs"

    def __post_init__(self) -> None:
        check_choice("sign_symmetry scale", self.scale, SIGN_SCALES)


@dataclasses.dataclass(frozen=True)
class KolenPollack(Rule):
    """Kolen-Pollack (weight mirror): ``g_in = delta B`` with ``grad_B = grad_W = delta^T h``.

    ``B`` receives exactly the forward weight's update; with the same optimiser and the same weight decay on
    both sides, ``B - W`` shrinks by ``(1 - lr * weight_decay)`` per step, so ``B -> W`` and the rule becomes
    backprop (Kolen & Pollack 1994; Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019, NeurIPS).
    The weight decay is the optimiser's: :func:`bioplastic.nn.param_groups` gives ``B`` the forward learning
    rate and weight decay. Without weight decay ``B - W`` never shrinks.
    """

    name = "kolen_pollack"
    feedback = "matrix"

    @property
    def learns_feedback(self) -> bool:
        return True
