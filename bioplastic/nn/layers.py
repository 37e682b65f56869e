"""Converted weight layers: ``nn.Linear`` / ``nn.Conv2d`` with a rule's backward and feedback parameters.

:func:`bioplastic.convert` turns the layers of a deep copy of the user's model into these classes in place
(their ``weight``, ``bias``, hooks and attributes stay the same objects), then attaches the feedback
parameters the rule needs (their shapes are the rule's ``feedback_shapes``):

========================= ======================== =============================================
rule                      Linear                   Conv2d
========================= ======================== =============================================
fa, kolen_pollack         ``B`` (out, in)          ``B`` (C_out, C_in/g, k, k)
dfa                       ``D`` (d, in)            ``D`` (d, C_in, H, W)
ldfa                      ``P`` (out, r),          ``P`` (C_out, r/g, 1, 1),
                          ``Q`` (r, in)            ``Q`` (r, C_in/g, k, k)
direct_ldfa               ``P`` (d, r), ``Q`` (r, in)   ``P`` (d, r), ``Q`` (r, C_in, H, W)
========================= ======================== =============================================
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from bioplastic.nn.error_bus import ErrorBus
from bioplastic.nn.functions import Conv2dFunction, LinearFunction
from bioplastic.rules import Rule
from bioplastic.rules.low_rank import svd_factors, truncated_svd

__all__ = ["FeedbackLinear", "FeedbackConv2d", "FeedbackLayer", "truncated_svd"]


class FeedbackLayer:
    """Mixin of the converted layers: the rule, the layer's role and its feedback parameters.

    Attributes
    ----------
    rule : bioplastic.rules.Rule
    layer_name : str
        The module name in the converted model.
    output_name : str
        Name of the model's output layer (the source of ``e``).
    is_output : bool
        Whether this is the output layer (it receives its exact error ``e``).
    rank : int or None
        Number of feedback units (low-rank rules).
    feedback_names : tuple of str
        Names of the feedback parameters (``("B",)``, ``("D",)``, ``("P", "Q")`` or ``()``).
    bus : ErrorBus
        Shared by all layers of the model.
    steps : int
        Optimiser steps counted by :func:`bioplastic.nn.feedback_step` (saved in ``state_dict`` as the
        buffer ``feedback_steps``).
    """

    rule: Rule
    layer_name: str
    output_name: str
    is_output: bool
    rank: int | None
    feedback_names: tuple[str, ...]
    bus: ErrorBus
    steps: int
    svd_seed: int

    def _setup(self, rule: Rule, *, name: str, output_name: str, bus: ErrorBus, rank: int | None,
               svd_seed: int) -> None:
        self.rule = rule
        self.layer_name = name
        self.output_name = output_name
        self.is_output = name == output_name
        self.bus = bus
        self.rank = rank
        self.feedback_names = ()
        self.steps = 0
        self.svd_seed = svd_seed
        self.register_buffer("feedback_steps", torch.zeros((), dtype=torch.long, device=self.weight.device))

    def feedback_parameters(self) -> list[nn.Parameter]:
        """The feedback parameters (frozen ones included), in ``feedback_names`` order."""
        return [getattr(self, n) for n in self.feedback_names]

    def _add_feedback(self, name: str, value: torch.Tensor, trainable: bool) -> None:
        w = self.weight
        param = nn.Parameter(value.to(device=w.device, dtype=w.dtype), requires_grad=trainable)
        self.register_parameter(name, param)
        self.feedback_names = self.feedback_names + (name,)

    def _count_step(self) -> None:
        """One optimiser step: a Python counter for the logic, a buffer (async add) for ``state_dict``."""
        self.steps += 1
        self.feedback_steps.add_(1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
        self.steps = int(self.feedback_steps)  # one host read at load time, never in a training step

    # --- maths shared by diagnostics and feedback_step -------------------------------------------------
    @property
    def groups_(self) -> int:
        return getattr(self, "groups", 1)

    def weight_matrix(self) -> torch.Tensor:
        """``W`` as a matrix: (out, in) for Linear, ``W.view(C_out, -1)`` for Conv2d."""
        return self.weight.reshape(self.weight.shape[0], -1)

    def effective_feedback(self) -> torch.Tensor | None:
        """The matrix ``M`` with ``g_in = delta M`` in the layout of :meth:`weight_matrix`; None if undefined.

        BP: ``W``; FA / Kolen-Pollack: ``B``; sign symmetry: ``s sign(W)``; LDFA: ``P Q`` (block diagonal per
        group); the direct rules: ``D`` or ``P Q`` for the output layer only (a hidden layer's direct feedback
        maps ``e``, not its own ``delta``). The rule's :meth:`~bioplastic.rules.Rule.feedback_matrix`.
        """
        if self.rule.direct and not self.is_output:
            return None
        w = self.weight_matrix().detach()
        fb = [f.detach() for f in self.feedback_parameters()]
        if self.rule.direct:
            fb = [f.reshape(f.shape[0], -1) for f in fb]
        m = self.rule.feedback_matrix(w, fb, groups=self.groups_)
        return None if m is None else m.reshape(w.shape)

    @torch.no_grad()
    def reinit_feedback_svd(self) -> None:
        """``P = U sqrt(S)``, ``Q = sqrt(S) V^T`` from the rank-r truncated SVD of ``W`` (per group).

        Hanut & Kadmon (2025), arXiv:2502.20580, normative rule. Deterministic: the randomised SVD (large
        layers) draws from a generator seeded by the layer's seed and step count.
        """
        w = self.weight_matrix().detach()
        gen = torch.Generator().manual_seed(self.svd_seed + self.steps)
        p, q = svd_factors(w.double() if w.device.type == "cpu" else w, self.rank, groups=self.groups_,
                           generator=gen)
        self.P.copy_(p.reshape(self.P.shape))
        self.Q.copy_(q.reshape(self.Q.shape))

    def extra_repr(self) -> str:  # type: ignore[override]
        base = super().extra_repr()  # type: ignore[misc]
        extra = f"rule={self.rule.name}"
        if self.rank is not None:
            extra += f", rank={self.rank}"
        if self.is_output:
            extra += ", output"
        return f"{base}, {extra}"


class FeedbackLinear(FeedbackLayer, nn.Linear):
    """``nn.Linear`` (any leading dims: batch, tokens, ...) whose backward follows a learning rule.

    Same forward maths and parameters as ``nn.Linear``, plus the rule's feedback parameters (see the module
    docstring). Built by :func:`bioplastic.convert`; not meant to be constructed directly. Under
    ``torch.no_grad()`` the forward is plain ``F.linear``; with gradients on, the backward is the rule's in
    train and in eval mode alike (use :func:`bioplastic.nn.true_gradient` for the true derivative).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the output layer ends a forward pass: the next pass gets a fresh slot
        slot = self.bus.begin_pass() if self.is_output else self.bus.current
        if not torch.is_grad_enabled():
            return F.linear(x, self.weight, self.bias)
        return LinearFunction.apply(x, self.weight, self.bias, self, slot, *self.feedback_parameters())


class FeedbackConv2d(FeedbackLayer, nn.Conv2d):
    """``nn.Conv2d`` (stride, padding incl. ``"same"`` and padding modes, dilation, groups, bias on/off) whose
    backward follows a learning rule, in train and eval mode alike (:func:`bioplastic.nn.true_gradient` gives
    the true derivative). Built by :func:`bioplastic.convert`.
    """

    def _numeric_padding(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.padding_mode != "zeros":
            return F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode), (0, 0)
        if isinstance(self.padding, str):
            if self.padding == "valid":
                return x, (0, 0)
            left, right, top, bottom = self._reversed_padding_repeated_twice
            if left == right and top == bottom:
                return x, (top, left)
            return F.pad(x, self._reversed_padding_repeated_twice), (0, 0)
        return x, tuple(self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slot = self.bus.begin_pass() if self.is_output else self.bus.current
        x, padding = self._numeric_padding(x)
        if not torch.is_grad_enabled():
            return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return Conv2dFunction.apply(x, self.weight, self.bias, self, slot, tuple(self.stride), padding,
                                    tuple(self.dilation), self.groups, *self.feedback_parameters())


def init_feedback(layer: FeedbackLayer, *, d: int | None, input_shape: tuple[int, ...] | None,
                  generator: torch.Generator) -> None:
    """Create the feedback parameters of ``layer`` for its rule (called by :func:`bioplastic.convert`).

    Shapes and initial values are the rule's (:meth:`~bioplastic.rules.Rule.init_feedback`), trainability too
    (:meth:`~bioplastic.rules.Rule.learns`); a rule that starts at the truncated SVD of ``W`` (``normative``
    LDFA, ``starts_at_svd``) is moved there with the layer's SVD seed.
    """
    rule = layer.rule
    values = rule.init_feedback(layer.weight.detach(), rank=layer.rank, groups=layer.groups_, d=d,
                                input_shape=input_shape, generator=generator)
    for name in rule.feedback_names:
        layer._add_feedback(name, values[name], trainable=rule.learns(name))
    if rule.starts_at_svd:
        layer.reinit_feedback_svd()
