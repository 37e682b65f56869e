"""Low-dimensional feedback alignment (LDFA) and its direct variant.

Hanut & Kadmon (2025), "Training Large Neural Networks With Low-Dimensional Error Feedback",
arXiv:2502.20580 (v4: "Efficiently Training Large Neural Networks With Low-Dimensional Error Feedback").
The error a layer sends below passes through ``r`` feedback units: ``z = delta P`` (shape ``(batch, r)``) and
``g_in = z Q``. With ``r`` of the order of the number of classes and an *adaptive* feedback subspace, networks
learn as well as with backprop while the backward input-gradient matmul is replaced by two thin ones.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

from bioplastic._checks import check_choice, check_positive_int
from bioplastic.rules.base import Rule, check_nonnegative_float

__all__ = ["LDFA", "DirectLDFA", "FEEDBACK_LEARNING"]

#: The five ways the feedback subspace learns (science notes, section 2).
FEEDBACK_LEARNING = ("fixed", "q_only", "normative", "local", "oja")

FeedbackLearning = Literal["fixed", "q_only", "normative", "local", "oja"]

#: Defaults that depend on the feedback-learning mode: (feedback_lr, feedback_weight_decay).
#: ``None`` for the learning rate means "the forward learning rate" (see bioplastic.nn.param_groups).
_MODE_DEFAULTS = {
    "fixed": (None, 0.0),
    "q_only": (None, 0.0),
    "normative": (0.01, 0.0),   # authors: AdamW, lr 0.01-0.015, no weight decay
    "local": (None, 0.1),       # authors: AdamW, weight decay 0.1
    "oja": (None, 0.0),
}

DEFAULT_RANK = 10


@dataclasses.dataclass(frozen=True)
class LDFA(Rule):
    """Low-dimensional feedback alignment: ``g_in = (delta P) Q`` through ``r`` feedback units.

    ``P`` has shape ``(out, r)`` and ``Q`` shape ``(r, in)`` (Conv2d: ``P`` is a 1x1 convolution
    ``(C_out, r, 1, 1)`` and ``Q`` a ``(r, C_in/groups, k, k)`` kernel applied as the transposed convolution
    with the layer's stride, padding, dilation and groups). Hanut & Kadmon (2025), arXiv:2502.20580.

    Parameters
    ----------
    rank : int, optional
        Number of feedback units ``r`` per layer (absolute). Give ``rank`` or ``rank_fraction``, not both;
        with neither, ``rank = 10`` (the number of classes of CIFAR-10, the paper's ``r ~ d``). The effective
        rank of a layer is at most ``min(out, in)`` (``min(C_out, C_in k^2)`` per group for a convolution):
        :func:`bioplastic.convert` **clips** larger ranks to that bound and warns (``UserWarning``) naming
        the clipped layers. Grouped convolutions round ``r`` up to a multiple of ``groups``.
    rank_fraction : float, optional
        ``r = max(1, ceil(rank_fraction * out))`` for each layer of output width ``out`` (``C_out`` for a
        convolution); the paper's "width/4" is ``rank_fraction=0.25``. In ``(0, 1]``.
    feedback_learning : {"fixed", "q_only", "normative", "local", "oja"}
        How ``P`` and ``Q`` learn (each is given as ``.grad`` during ``loss.backward()``, plus the optimiser's
        weight decay; ``N`` = rows of the flattened batch):

        - ``"fixed"``: ``P`` and ``Q`` random and frozen; fails for ``r < d`` (spurious solutions).
        - ``"q_only"``: ``P`` frozen; ``grad_Q = (delta P)^T h``. Also fails for ``r < d``.
        - ``"normative"`` (default): ``grad_P = (P Q - W) Q^T``, ``grad_Q = P^T (P Q - W)``, descent on
          ``0.5 ||P Q - W||_F^2`` with ``W`` detached; ``P, Q`` start (and with ``reinit_every`` restart) at
          the rank-r truncated SVD of ``W`` (``P = U sqrt(S)``, ``Q = sqrt(S) V^T``), so ``P Q`` tracks the best
          rank-r approximation of ``W`` (Eckart-Young). Not weight-transport free: the normative reference.
        - ``"local"``: ``grad_P = delta^T (h Q^T)``, ``grad_Q = (delta P)^T h``; synapse-local (v4).
        - ``"oja"``: ``grad_P = -(C P - P (P^T C P))`` with ``C = delta^T delta / tr(delta^T delta)`` the
          trace-normalised error covariance of the batch (Oja's subspace rule, Oja 1982, 1989; the columns of
          ``P`` converge to an orthonormal basis of the top-r principal subspace of the error), and
          ``grad_Q = (delta P)^T h`` (v1 rule).
    feedback_lr : float, optional
        Learning rate of the feedback optimiser, used by :func:`bioplastic.nn.param_groups`; ``None`` means the
        forward learning rate. Default per mode: 0.01 for ``"normative"`` (authors: AdamW, 0.01-0.015),
        ``None`` otherwise.
    feedback_weight_decay : float, optional
        Decoupled weight decay of the feedback optimiser (:func:`bioplastic.nn.param_groups`). Default per
        mode: 0.1 for ``"local"`` (authors: AdamW, 0.1), 0 otherwise.
    reinit_every : int, optional
        ``"normative"`` only: re-initialise ``P, Q`` from the truncated SVD of ``W`` every this many optimiser
        steps, counted by :func:`bioplastic.nn.feedback_step` (the authors: every half epoch). ``None``: never.
    error_clamp : float, optional
        Clamp the propagated error ``g_in`` elementwise to ``[-error_clamp, error_clamp]`` (the authors of the
        v1 rule used 1.0). ``None``: no clamp.

    Raises
    ------
    ValueError
        Unknown ``feedback_learning`` (listing the allowed values), ``rank < 1``, both ``rank`` and
        ``rank_fraction``, ``rank_fraction`` outside ``(0, 1]``, negative or non-finite rates,
        ``reinit_every`` with a mode other than ``"normative"``.
    """

    name = "ldfa"
    feedback = "low_rank"
    rank: int | None = None
    rank_fraction: float | None = None
    feedback_learning: FeedbackLearning = "normative"
    feedback_lr: float | None = dataclasses.field(default=None)
    feedback_weight_decay: float | None = dataclasses.field(default=None)
    reinit_every: int | None = None
    error_clamp: float | None = None

    def __post_init__(self) -> None:
        rule = self.name
        check_choice(f"{rule} feedback_learning", self.feedback_learning, self._allowed_modes())
        if self.rank is not None and self.rank_fraction is not None:
            raise ValueError(f"{rule}: give rank or rank_fraction, not both (got rank={self.rank}, "
                             f"rank_fraction={self.rank_fraction})")
        if self.rank is None and self.rank_fraction is None:
            object.__setattr__(self, "rank", DEFAULT_RANK)
        if self.rank is not None:
            object.__setattr__(self, "rank", check_positive_int(f"{rule} rank", self.rank))
        if self.rank_fraction is not None:
            frac = check_nonnegative_float(rule, "rank_fraction", self.rank_fraction, strictly_positive=True)
            if frac > 1:
                raise ValueError(f"{rule}: option rank_fraction must be in (0, 1], got {frac}")
            object.__setattr__(self, "rank_fraction", frac)
        lr_default, wd_default = _MODE_DEFAULTS[self.feedback_learning]
        lr = lr_default if self.feedback_lr is None else self.feedback_lr
        wd = wd_default if self.feedback_weight_decay is None else self.feedback_weight_decay
        object.__setattr__(self, "feedback_lr",
                           check_nonnegative_float(rule, "feedback_lr", lr, allow_none=True, strictly_positive=True))
        object.__setattr__(self, "feedback_weight_decay", check_nonnegative_float(rule, "feedback_weight_decay", wd))
        if self.reinit_every is not None:
            if self.feedback_learning != "normative":
                raise ValueError(f"{rule}: reinit_every applies only to feedback_learning='normative', "
                                 f"not {self.feedback_learning!r}")
            object.__setattr__(self, "reinit_every", check_positive_int(f"{rule} reinit_every", self.reinit_every))
        if self.error_clamp is not None:
            object.__setattr__(self, "error_clamp",
                               check_nonnegative_float(rule, "error_clamp", self.error_clamp, strictly_positive=True))

    @staticmethod
    def _allowed_modes() -> tuple[str, ...]:
        return FEEDBACK_LEARNING

    @property
    def learns_p(self) -> bool:
        """Whether ``P`` receives a gradient."""
        return self.feedback_learning in ("normative", "local", "oja")

    @property
    def learns_q(self) -> bool:
        """Whether ``Q`` receives a gradient."""
        return self.feedback_learning != "fixed"

    @property
    def learns_feedback(self) -> bool:
        return self.learns_q

    def rank_for(self, width: int) -> int:
        """Requested rank for a layer of output width ``width`` (before clipping to the layer's maximum)."""
        if self.rank is not None:
            return self.rank
        return max(1, math.ceil(self.rank_fraction * width))


@dataclasses.dataclass(frozen=True)
class DirectLDFA(LDFA):
    """Direct LDFA: every layer ``l`` sends ``g_in_l = (e P_l) Q_l`` below, straight from the output error.

    ``e`` (shape ``(batch, d)``) is the output layer's exact error, delivered by the error bus of
    :func:`bioplastic.convert`; ``P_l`` has shape ``(d, r)``, ``Q_l`` shape ``(r, in_l)`` (``(r, C_in, H, W)``
    for a Conv2d layer). Hanut & Kadmon (2025), arXiv:2502.20580. Parameters as :class:`LDFA`, except:

    - the maximal rank of a layer is ``min(d, in_l)``; ``rank_fraction`` is a fraction of ``d``;
    - ``feedback_learning`` is one of ``"fixed"``, ``"q_only"``, ``"local"`` (default), ``"oja"``, with ``e``
      in place of ``delta`` in the formulas of :class:`LDFA`. ``"normative"`` raises ``ValueError``: the
      direct pathway has no forward matrix for ``P Q`` to approximate.
    """

    name = "direct_ldfa"
    feedback = "direct_low_rank"
    direct = True
    feedback_learning: FeedbackLearning = "local"

    def __post_init__(self) -> None:
        if self.feedback_learning == "normative":
            allowed = ", ".join(repr(m) for m in self._allowed_modes())
            raise ValueError("direct_ldfa: feedback_learning 'normative' is not defined (the direct pathway has "
                             f"no forward matrix for P Q to approximate); allowed: {allowed}")
        super().__post_init__()

    @staticmethod
    def _allowed_modes() -> tuple[str, ...]:
        return tuple(m for m in FEEDBACK_LEARNING if m != "normative")
