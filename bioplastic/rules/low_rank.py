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

import torch
import torch.nn.functional as F

from bioplastic._checks import check_choice, check_positive_int
from bioplastic.rules.base import Rule, check_nonnegative_float

__all__ = ["LDFA", "DirectLDFA", "FEEDBACK_LEARNING", "KOLEN_POLLACK_MODES", "OJA_COVARIANCE", "oja_subspace_gradient", "oja_rows",
           "target_rows"]

#: The five ways the feedback subspace learns (science notes, section 2).
FEEDBACK_LEARNING = ("fixed", "q_only", "normative", "local", "oja")

FeedbackLearning = Literal["fixed", "q_only", "normative", "local", "oja"]

#: Where Oja's rule takes its covariance from (``LDFA.oja_covariance``).
OJA_COVARIANCE = ("auto", "error", "targets")

OjaCovariance = Literal["auto", "error", "targets"]

#: Modes whose ``Q`` learns by Kolen-Pollack, ``grad_Q = (delta P)^T h = P^T grad_W`` (Kolen & Pollack 1994;
#: Akrout et al. 2019). Their default feedback weight decay is the forward weights' own (``None`` in
#: ``_MODE_DEFAULTS``): with the same update and the same decay on both sides, ``Q - P^T W`` shrinks by
#: ``(1 - lr lambda)`` per SGD step, so ``Q`` forgets its random start and converges to ``P^T W``; a decay on
#: ``Q`` alone would instead pull ``Q`` towards 0 while ``W`` keeps its part ``W(0)``. The authors' v1 runs did
#: exactly this: one Adam optimiser with a coupled L2 decay of 5e-4 to 7e-4 on ``W``, ``P`` and ``Q``
#: (``train_cifar_fc_one_cycle.py``, github.com/maherhanut1/LDFA). Measured: docs/rules.md, "Kolen-Pollack decay".
KOLEN_POLLACK_MODES = ("q_only", "oja")

#: Defaults that depend on the feedback-learning mode: (feedback_lr, feedback_weight_decay).
#: ``None`` for the learning rate means "the forward learning rate", ``None`` for the weight decay "the forward
#: weight decay" (see bioplastic.nn.param_groups and the trainer's feedback optimiser).
_MODE_DEFAULTS = {
    "fixed": (None, 0.0),
    "q_only": (None, None),     # None: the forward weight decay (Kolen-Pollack, see KOLEN_POLLACK_MODES)
    "normative": (0.01, 0.0),   # authors: AdamW, lr 0.01-0.015, no weight decay
    "local": (None, 0.1),       # authors: AdamW, weight decay 0.1
    "oja": (None, None),
}

DEFAULT_RANK = 10


def oja_subspace_gradient(cp, ptcp, p, trace):
    """Oja's subspace rule (Oja 1982, 1989) as a descent gradient: ``-(C P - P (P^T C P)) / tr C``.

    The one formula of ``feedback_learning="oja"``, shared by the torch executor (:mod:`bioplastic.nn`) and the
    linear theory (:mod:`bioplastic.theory`); it takes ``C P`` and ``P^T C P`` rather than ``C`` so that a layer
    with thousands of outputs never forms its ``(out, out)`` covariance.

    Parameters
    ----------
    cp : torch.Tensor
        ``C P``, shape ``(..., out, r)`` (a leading group axis is allowed).
    ptcp : torch.Tensor
        ``P^T C P``, shape ``(..., r, r)``.
    p : torch.Tensor
        ``P``, shape ``(..., out, r)``.
    trace : torch.Tensor or float
        Normaliser of ``C`` (``tr C`` for the trace-normalised rule, 1 for the raw covariance); clamped to the
        smallest positive number of the dtype, so an all-zero batch gives a zero gradient.

    Returns
    -------
    torch.Tensor
        Shape of ``p``. Descent on it moves the columns of ``P`` towards an orthonormal basis of the top-r
        eigenvectors of ``C`` (the fixed points are ``P = U_r O``, ``O`` orthogonal).
    """
    if isinstance(trace, torch.Tensor):
        trace = trace.clamp_min(torch.finfo(trace.dtype).tiny)
    return (torch.matmul(p, ptcp) - cp) / trace


def target_rows(targets, n_rows: int, width: int, *, standardize: bool, dtype=None):
    """The rows ``T`` (``n_rows``, ``width``) whose covariance ``T^T T`` drives Oja's rule with targets.

    Parameters
    ----------
    targets : torch.Tensor
        Class indices (integer, shape ``(n_rows,)``; one-hot encoded to ``width`` classes) or target vectors
        (floating point, shape ``(n_rows, width)``: regression targets, soft labels).
    n_rows, width : int
        Rows and width of the layer's error (``N`` rows of the flattened batch, ``d`` outputs).
    standardize : bool
        Standardise each column over the batch, ``(T - mean) / (std + 1e-8)``: the authors' direct variant
        (``rADFA_linear.py`` of github.com/maherhanut1/LDFA). Without it the raw one-hot labels (their
        layer-wise output layer, ``rAFA_linear.py``): ``T^T T / N`` is the label covariance ``Sigma^yy``.
    dtype : torch.dtype, optional

    Raises
    ------
    ValueError
        Targets whose shape does not match the layer's error rows, or class indices outside ``[0, width)``.
    """
    if not targets.is_floating_point():
        if tuple(targets.shape) != (n_rows,):
            raise ValueError(f"oja targets: class indices must have shape ({n_rows},) (one per error row of the "
                             f"output layer), got {tuple(targets.shape)}")
        # checked on CPU only: on an accelerator a host read would sync every step (F.one_hot checks there)
        lo, hi = (int(targets.min()), int(targets.max())) if targets.device.type == "cpu" else (0, 0)
        if lo < 0 or hi >= width:
            raise ValueError(f"oja targets: class indices must lie in [0, {width}), got values in [{lo}, {hi}]")
        t = F.one_hot(targets.long(), width).to(dtype or torch.get_default_dtype())
    else:
        t = targets.reshape(-1, targets.shape[-1]) if targets.dim() > 1 else targets
        if tuple(t.shape) != (n_rows, width):
            raise ValueError(f"oja targets: target vectors must have shape ({n_rows}, {width}) (one per error row "
                             f"of the output layer), got {tuple(targets.shape)}")
        t = t.to(dtype or t.dtype)
    if standardize:
        std = t.std(0) if n_rows > 1 else torch.zeros_like(t[0])
        t = (t - t.mean(0)) / (std + 1e-8)
    return t


def oja_rows(rows, *, centre: bool):
    """The error (or target) rows of Oja's covariance, centred over the batch when ``centre`` is true.

    ``rows``: (N, out). Centring (``rows - mean``) is the authors' v1 convolution rule (``rAFA_conv.py``,
    github.com/maherhanut1/LDFA: per-pixel errors centred and divided by the largest column s.d.; the scalar
    division is absorbed by the trace normalisation of :func:`oja_subspace_gradient`).
    """
    return rows - rows.mean(0, keepdim=True) if centre else rows


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
        - ``"oja"``: ``grad_P = -(C P - P (P^T C P))`` with ``C = S^T S / tr(S^T S)`` the trace-normalised
          covariance of the batch rows ``S`` named by ``oja_covariance`` (Oja's subspace rule, Oja 1982, 1989;
          the columns of ``P`` converge to an orthonormal basis of the top-r principal subspace of ``S``), and
          ``grad_Q = (delta P)^T h`` (v1 rule, Kolen-Pollack-like).
    feedback_lr : float, optional
        Learning rate of the feedback optimiser, used by :func:`bioplastic.nn.param_groups`; ``None`` means the
        forward learning rate. Default per mode: 0.01 for ``"normative"`` (authors: AdamW, 0.01-0.015),
        ``None`` otherwise.
    feedback_weight_decay : float, optional
        Weight decay of the feedback optimiser (:func:`bioplastic.nn.param_groups`; decoupled with AdamW).
        Default per mode: 0.1 for ``"local"`` (authors: AdamW, 0.1); ``None`` for ``"q_only"`` and ``"oja"``,
        meaning *the forward weights' decay*: their ``Q`` learns by Kolen-Pollack, which converges to
        ``P^T W`` only when ``W`` and ``Q`` get the same update and the same decay (Akrout et al. 2019; the
        authors' one optimiser with coupled L2 5e-4 on ``W``, ``P``, ``Q``); without any decay ``Q`` never
        forgets its random start (docs/rules.md, "Kolen-Pollack decay"); 0 for ``"fixed"`` and
        ``"normative"``.
    oja_covariance : {"auto", "error", "targets"}
        ``"oja"`` only: the rows ``S`` whose covariance drives ``P``.

        - ``"error"``: the layer's error ``delta`` (every layer);
        - ``"targets"``: at the **output layer** the targets of the batch (class indices one-hot encoded, or
          target vectors), so ``C`` is the label covariance ``Sigma^yy`` of the paper's theory (ICLR 2025 Eq. 8)
          and of the authors' v1 code (``rAFA_linear.py``: one-hot labels at the output layer); hidden layers
          keep their error (the targets do not live in their space). :class:`DirectLDFA`: every layer's ``P``
          lives in the output space, so every layer uses the targets, standardised per class over the batch
          (the authors' ``rADFA_linear.py``). Needs the targets of each batch:
          :func:`bioplastic.nn.set_targets` (bioplastic's trainer calls it); without them ``backward`` raises.
        - ``"auto"`` (default): ``"targets"`` when targets were given for the batch, ``"error"`` otherwise.
          bioplastic's trainer always gives them, so its runs follow the paper; a custom loop that does not
          call :func:`bioplastic.nn.set_targets` gets the error covariance (the package's earlier rule).
    oja_centre : bool
        ``"oja"`` only: subtract the batch mean from the rows ``S`` before forming ``C`` (for a convolution the
        rows are the per-position errors). The authors' v1 convolution rule centres them (``rAFA_conv.py``;
        their division by the largest column s.d. is a scalar that the trace normalisation removes). Default
        False.
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
    oja_covariance: OjaCovariance = "auto"
    oja_centre: bool = False

    def __post_init__(self) -> None:
        rule = self.name
        check_choice(f"{rule} feedback_learning", self.feedback_learning, self._allowed_modes())
        check_choice(f"{rule} oja_covariance", self.oja_covariance, OJA_COVARIANCE)
        if not isinstance(self.oja_centre, bool):
            raise ValueError(f"{rule}: option oja_centre must be True or False, got {self.oja_centre!r}")
        if self.feedback_learning != "oja" and (self.oja_covariance != "auto" or self.oja_centre):
            raise ValueError(f"{rule}: oja_covariance and oja_centre apply only to feedback_learning='oja', "
                             f"not {self.feedback_learning!r}")
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
        object.__setattr__(self, "feedback_weight_decay",
                           check_nonnegative_float(rule, "feedback_weight_decay", wd, allow_none=True))
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
      in place of ``delta`` in the formulas of :class:`LDFA`; Oja's targets are standardised per class
      (``oja_covariance``). ``"normative"`` raises ``ValueError``: the
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
