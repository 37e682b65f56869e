"""The :class:`Rule` base class and validation helpers shared by every rule family.

A rule is a small frozen dataclass: its ``name``, its hyper-parameters, and its maths in matrix form (the
error it sends below, its feedback parameters' shapes, initial values and gradients, and which of them
learn). The executors do not restate the maths: the autograd Functions of :mod:`bioplastic.nn` supply the
layer's signals through a layout object (:class:`bioplastic.rules.ops.DenseOps` for rows, a convolution
layout for Conv2d) and call the rule's methods; the linear theory (:mod:`bioplastic.theory`) calls the same
methods with the population moments (docs/rules.md, "How the rules are written"). Rules travel in run
configurations (:meth:`Rule.to_dict`) and compare by value.
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
    below and in how their feedback weights learn (docs/rules.md). Shapes use PyTorch's convention: a layer
    computes ``y = h W^T + b`` with ``W`` of shape ``(out, in)``; ``delta`` (N, out) is its error, ``e``
    (N, d) the output error.

    Class attributes
    ----------------
    name : str
        Registry name, one of :data:`bioplastic.rules.RULE_NAMES`.
    feedback : str
        A descriptive label of the feedback operator (``"transport"``, ``"sign"``, ``"matrix"``, ``"direct"``,
        ``"low_rank"``, ``"direct_low_rank"``, ``"target"``); informative only, no executor switches on it.
    feedback_names : tuple of str
        Names of the feedback parameters the rule owns, in the order the executors pass them
        (``()``, ``("B",)``, ``("D",)``, ``("P", "Q")``).
    direct : bool
        The rule sends a signal of the *output* space straight to every layer (``e`` for DFA / direct LDFA,
        the targets for DRTP): the executor needs the output size ``d`` and gives the rule the output error
        rows ``e`` instead of the layer's own ``delta``.
    low_rank : bool
        The rule has ``r`` feedback units per layer (options ``rank`` / ``rank_fraction``).
    needs_targets : bool
        The error sent below is computed from the batch targets (given by :func:`bioplastic.nn.set_targets`).
    mirrors_weight_gradient : bool
        A feedback parameter receives the layer's exact weight gradient ``grad_W`` (Kolen-Pollack), so the
        executor computes ``grad_W`` whenever that parameter learns.
    rotation_covariant : bool
        ``feedback_matrix(U W, U F) = U feedback_matrix(W, F)`` for an orthogonal ``U``; False for sign
        symmetry (the sign is taken synapse by synapse), which the linear theory then evaluates in the
        neurons' basis.

    Methods an executor calls (each rule overrides those that apply; see docs/rules.md for the contract):
    :meth:`learns`, :meth:`feedback_shapes`, :meth:`init_feedback`, :meth:`feedback_kernel`,
    :meth:`send_error`, :meth:`feedback_gradients`, :meth:`backward`, :meth:`feedback_matrix`,
    :meth:`feedback_hyper`.
    """

    name: ClassVar[str] = "rule"
    feedback: ClassVar[str] = "transport"
    feedback_names: ClassVar[tuple[str, ...]] = ()
    direct: ClassVar[bool] = False
    low_rank: ClassVar[bool] = False
    needs_targets: ClassVar[bool] = False
    mirrors_weight_gradient: ClassVar[bool] = False
    rotation_covariant: ClassVar[bool] = True
    #: The rule's name in words, for tables and figure legends (``"backprop"``, ``"FA"``, ``"LDFA"`` ...).
    display_name: ClassVar[str] = "rule"
    #: Whether the feedback reads the forward weights ``W`` (weight transport): ``"yes"``, ``"sign"`` (only
    #: ``sign(W)``) or ``"no"``; for rules with feedback-learning modes, see :meth:`transport_of`.
    weight_transport: ClassVar[str] = "no"

    @classmethod
    def transport_of(cls, feedback_learning: str | None = None) -> str:
        """:attr:`weight_transport` of this rule (with feedback-learning mode ``feedback_learning``, where the
        rule has modes): ``"yes"``, ``"sign"`` or ``"no"``."""
        return cls.weight_transport

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary ``{"name": ..., **hyper_parameters}``; :func:`bioplastic.rules.make` inverts it."""
        return {"name": self.name, **dataclasses.asdict(self)}

    # --- which feedback parameters learn: decided here, nowhere else ------------------------------------------
    def learns(self, name: str) -> bool:
        """Whether the feedback parameter ``name`` (one of :attr:`feedback_names`) receives a gradient.

        Raises
        ------
        ValueError
            ``name`` is not a feedback parameter of this rule.
        """
        self._check_feedback_name(name)
        return False

    @property
    def learns_feedback(self) -> bool:
        """Whether any feedback parameter of this rule receives a ``.grad``."""
        return any(self.learns(n) for n in self.feedback_names)

    @property
    def feedback_decay_follows_forward(self) -> bool:
        """Whether the feedback weight decay defaults to the forward weights' own (Kolen-Pollack type rules,
        whose feedback converges to the forward weights only under the same update and the same decay;
        Akrout et al. 2019, docs/rules.md "Kolen-Pollack decay")."""
        return False

    @property
    def reads_targets(self) -> bool:
        """Whether ``backward`` reads the batch targets (when given): :attr:`needs_targets`, or Oja's rule on
        the label covariance. bioplastic's trainer then calls :func:`bioplastic.nn.set_targets`."""
        return self.needs_targets

    @property
    def starts_at_svd(self) -> bool:
        """Whether the feedback parameters start (and restart) at the truncated SVD of ``W`` (normative LDFA)."""
        return False

    @property
    def gradients_scale_with_loss(self) -> bool:
        """Whether every gradient the rule gives scales linearly with the loss (False: float16 loss scaling,
        which divides every gradient by the scale afterwards, would distort them)."""
        return True

    def feedback_hyper(self, lr: float, weight_decay: float) -> tuple[float, float]:
        """``(learning rate, weight decay)`` of the feedback parameters given the forward ones.

        The rule's own ``feedback_lr`` / ``feedback_weight_decay`` where it has them and they are set;
        otherwise the forward learning rate, and the forward weight decay for the rules whose feedback decays
        like ``W`` (:attr:`feedback_decay_follows_forward`), 0 for the others.
        """
        f_lr = getattr(self, "feedback_lr", None)
        f_wd = getattr(self, "feedback_weight_decay", None)
        if f_wd is None:
            f_wd = weight_decay if self.feedback_decay_follows_forward else 0.0
        return (lr if f_lr is None else f_lr), f_wd

    def _check_feedback_name(self, name: str) -> None:
        if name not in self.feedback_names:
            allowed = ", ".join(repr(n) for n in self.feedback_names) or "(none)"
            raise ValueError(f"{self.name}: no feedback parameter {name!r}; this rule has: {allowed}")

    # --- shapes and initial values ------------------------------------------------------------------------------
    def feedback_shapes(self, weight_shape: tuple[int, ...], *, rank: int | None = None, groups: int = 1,
                        d: int | None = None, input_shape: tuple[int, ...] | None = None
                        ) -> dict[str, tuple[int, ...]]:
        """Shapes of the feedback parameters of a layer with weight of shape ``weight_shape``.

        Parameters
        ----------
        weight_shape : tuple of int
            ``(out, in)`` for Linear, ``(C_out, C_in/g, k, k)`` for Conv2d.
        rank : int, optional
            Number of feedback units (low-rank rules).
        groups : int
            Groups of a grouped convolution.
        d : int, optional
            Output size of the model (direct rules).
        input_shape : tuple of int, optional
            Shape of one input of the layer without the batch axis (direct rules: ``(in,)`` or ``(C, H, W)``).

        Returns
        -------
        dict of str to tuple of int
            In :attr:`feedback_names` order; empty for rules without feedback parameters.
        """
        return {}

    def init_feedback(self, weight, *, rank: int | None = None, groups: int = 1, d: int | None = None,
                      input_shape: tuple[int, ...] | None = None, generator=None) -> dict[str, Any]:
        """Initial values of the feedback parameters (CPU float32 tensors), drawn from ``generator``.

        Arguments as :meth:`feedback_shapes`; ``weight`` is the layer's weight (its standard deviation sets the
        feedback's scale). Returns ``{}`` for rules without feedback parameters.
        """
        return {}

    # --- the error sent below and the feedback gradients --------------------------------------------------------
    def feedback_kernel(self, weight, feedback):
        """``(M, scale)`` with ``g_in = scale * (delta M)``, ``M`` of the shape of ``weight``, for rules whose
        feedback is one matrix (kernel) of ``W``'s shape, or ``None``. ``scale`` is a scalar tensor or None.

        The executor applies ``M`` itself (for a convolution: one fused call that also gives ``grad_W``)."""
        return None

    @property
    def has_feedback_kernel(self) -> bool:
        """Whether the rule defines :meth:`feedback_kernel` (its error sent below is ``scale * delta M``)."""
        return type(self).feedback_kernel is not Rule.feedback_kernel

    def send_error(self, ops, weight, feedback, z=None):
        """The error ``g_in`` sent to the layer below, for rules without a :meth:`feedback_kernel`.

        Parameters
        ----------
        ops : bioplastic.rules.ops.DenseOps or a layout with the same methods
            The layer's signals (``ops.error``: ``delta``, or ``e`` for direct rules; ``ops.h``) and products.
        weight : torch.Tensor
            ``W``.
        feedback : sequence of torch.Tensor
            The feedback parameters in :attr:`feedback_names` order (flattened to matrices for direct rules).
        z : torch.Tensor, optional
            The feedback-unit activity when already computed (low-rank rules).

        Returns
        -------
        torch.Tensor
            ``g_in`` in the layout of ``ops`` (rows (N, in) for :class:`~bioplastic.rules.ops.DenseOps`).
        """
        raise NotImplementedError(f"{self.name} has a feedback kernel; the executor applies it")

    def feedback_gradients(self, ops, weight, feedback, need, *, grad_w=None, z=None) -> list:
        """Gradients of the feedback parameters from the layer's signals (``None`` for those not learned).

        Parameters
        ----------
        ops, weight, feedback, z
            As :meth:`send_error`.
        need : sequence of bool
            Which feedback parameters the caller needs a gradient for (``ctx.needs_input_grad``).
        grad_w : torch.Tensor, optional
            The exact weight gradient ``delta^T h`` when the executor computed it (:attr:`mirrors_weight_gradient`).

        Returns
        -------
        list
            One entry per feedback parameter, shaped like it, or ``None``.
        """
        return [None] * len(feedback)

    def backward(self, ops, weight, feedback, need_x: bool, need, *, grad_w=None):
        """``(g_in or None, feedback gradients)`` of one layer: :meth:`send_error` (when ``need_x``) and
        :meth:`feedback_gradients`, sharing intermediate products. What an executor calls for rules without a
        :meth:`feedback_kernel`."""
        g_in = self.send_error(ops, weight, feedback) if need_x else None
        return g_in, self.feedback_gradients(ops, weight, feedback, need, grad_w=grad_w)

    def feedback_matrix(self, weight, feedback, *, groups: int = 1):
        """The matrix ``M`` with ``g_in = delta M`` (the layout of ``W.reshape(out, -1)``), or ``None`` where the
        error sent below does not map the layer's own ``delta`` (direct rules: it maps ``e`` or the targets).

        ``weight`` and ``feedback`` as matrices (``W.reshape(out, -1)``). Used by the diagnostics
        (``feedback_angle``) and by the linear theory (its feedback operator ``F``)."""
        kernel = self.feedback_kernel(weight, feedback)
        if kernel is None:
            return None
        m, scale = kernel
        return m if scale is None else m * scale


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
