"""Converted weight layers: ``nn.Linear`` / ``nn.Conv2d`` with a rule's backward and feedback parameters.

:func:`bioplastic.convert` turns the layers of a deep copy of the user's model into these classes in place
(their ``weight``, ``bias``, hooks and attributes stay the same objects), then attaches the feedback
parameters the rule needs:

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

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from bioplastic.nn.functions import Conv2dFunction, ErrorBus, LinearFunction, _Slot
from bioplastic.rules import Rule

__all__ = ["FeedbackLinear", "FeedbackConv2d", "FeedbackLayer", "truncated_svd"]

# Exact SVD below this size, randomised (Halko, Martinsson & Tropp 2011) above: exact SVD of a 4096 x 4096
# matrix takes minutes on two CPU cores.
_EXACT_SVD_MAX = 1024


def truncated_svd(w: torch.Tensor, rank: int, *, generator: torch.Generator | None = None,
                  n_iter: int = 4, oversample: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank-``rank`` truncated SVD ``w ~ U diag(S) Vh`` (Eckart-Young best approximation).

    Parameters
    ----------
    w : torch.Tensor
        Matrix of shape (m, n).
    rank : int
        Number of singular triplets, ``1 <= rank <= min(m, n)``.
    generator : torch.Generator, optional
        CPU generator for the randomised algorithm (used when ``min(m, n) > 1024``); same generator state,
        same result.
    n_iter, oversample : int
        Power iterations and oversampling of the randomised range finder (Halko, Martinsson & Tropp 2011,
        SIAM Review 53:217).

    Returns
    -------
    U : (m, rank), S : (rank,), Vh : (rank, n)
    """
    m, n = w.shape
    if min(m, n) <= _EXACT_SVD_MAX:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        return u[:, :rank], s[:rank], vh[:rank]
    k = min(rank + oversample, m, n)
    omega = torch.randn(n, k, generator=generator, dtype=torch.float32).to(device=w.device, dtype=w.dtype)
    y, _ = torch.linalg.qr(w @ omega)
    for _ in range(n_iter):
        z, _ = torch.linalg.qr(w.t() @ y)
        y, _ = torch.linalg.qr(w @ z)
    u_b, s, vh = torch.linalg.svd(y.t() @ w, full_matrices=False)
    return (y @ u_b)[:, :rank], s[:rank], vh[:rank]


def _orthonormal(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, cols) with orthonormal columns (cols <= rows), Haar-distributed."""
    g = torch.randn(rows, cols, generator=generator)
    q, r = torch.linalg.qr(g)
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


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
        maps ``e``, not its own ``delta``).
        """
        w = self.weight_matrix().detach()
        kind = self.rule.feedback
        if kind == "transport":
            return w
        if kind == "matrix":
            return self.B.detach().reshape(w.shape)
        if kind == "sign":
            s = w.abs().mean() if self.rule.scale == "mean_abs" else 1.0
            return torch.sign(w) * s
        if kind == "low_rank":
            g = self.groups_
            p3 = self.P.detach().reshape(g, w.shape[0] // g, -1)
            q3 = self.Q.detach().reshape(g, self.Q.shape[0] // g, -1)
            return p3.bmm(q3).reshape(w.shape)
        if not self.is_output:
            return None
        if kind == "direct":
            return self.D.detach().reshape(w.shape)
        return (self.P.detach() @ self.Q.detach().reshape(self.Q.shape[0], -1)).reshape(w.shape)

    @torch.no_grad()
    def reinit_feedback_svd(self) -> None:
        """``P = U sqrt(S)``, ``Q = sqrt(S) V^T`` from the rank-r truncated SVD of ``W`` (per group).

        Hanut & Kadmon (2025), arXiv:2502.20580, normative rule. Deterministic: the randomised SVD (large
        layers) draws from a generator seeded by the layer's seed and step count.
        """
        w = self.weight_matrix().detach()
        g = self.groups_
        r_g = self.rank // g
        gen = torch.Generator().manual_seed(self.svd_seed + self.steps)
        ps, qs = [], []
        for blk in w.reshape(g, w.shape[0] // g, -1):
            u, s, vh = truncated_svd(blk.double() if blk.device.type == "cpu" else blk, r_g, generator=gen)
            root = s.sqrt()
            ps.append(u * root)
            qs.append(root.unsqueeze(1) * vh)
        self.P.copy_(torch.cat(ps).reshape(self.P.shape))
        self.Q.copy_(torch.cat(qs).reshape(self.Q.shape))

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
        slot = self.bus.current
        if self.is_output:  # the output layer ends a forward pass: the next pass gets a fresh slot
            self.bus.last = slot
            self.bus.current = _Slot()
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
        slot = self.bus.current
        if self.is_output:
            self.bus.last = slot
            self.bus.current = _Slot()
        x, padding = self._numeric_padding(x)
        if not torch.is_grad_enabled():
            return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)
        return Conv2dFunction.apply(x, self.weight, self.bias, self, slot, tuple(self.stride), padding,
                                    tuple(self.dilation), self.groups, *self.feedback_parameters())


def init_feedback(layer: FeedbackLayer, *, d: int | None, input_shape: tuple[int, ...] | None,
                  generator: torch.Generator) -> None:
    """Create the feedback parameters of ``layer`` for its rule (called by :func:`bioplastic.convert`).

    Initial values: ``B`` uniform with the variance of ``W``; ``D`` uniform in ``[-1/sqrt(d), 1/sqrt(d)]``;
    ``P`` with orthonormal columns and ``Q`` Gaussian scaled so that ``delta P Q`` has the expected size of
    ``delta B`` (LDFA) / ``e D`` (direct LDFA); ``normative``: truncated SVD of ``W``.
    """
    rule = layer.rule
    kind = rule.feedback
    w = layer.weight.detach()
    w_std = float(w.float().std()) if w.numel() > 1 else 0.0
    fan_in = w[0].numel()
    if w_std == 0.0 or not math.isfinite(w_std):
        w_std = 1.0 / math.sqrt(3 * fan_in)
    if kind == "matrix":
        bound = math.sqrt(3.0) * w_std
        b = (torch.rand(w.shape, generator=generator) * 2 - 1) * bound
        layer._add_feedback("B", b, trainable=rule.learns_feedback)
    elif kind == "direct":
        shape = (d, *input_shape)
        bound = 1.0 / math.sqrt(d)
        layer._add_feedback("D", (torch.rand(shape, generator=generator) * 2 - 1) * bound, trainable=False)
    elif kind == "low_rank":
        g = layer.groups_
        r = layer.rank
        out = w.shape[0]
        p = torch.cat([_orthonormal(out // g, r // g, generator) for _ in range(g)])
        if isinstance(layer, nn.Conv2d):
            p = p.reshape(out, r // g, 1, 1)
            q_shape = (r, *w.shape[1:])
        else:
            q_shape = (r, w.shape[1])
        q = torch.randn(q_shape, generator=generator) * (w_std * math.sqrt(out / r))
        layer._add_feedback("P", p, trainable=rule.learns_p)
        layer._add_feedback("Q", q, trainable=rule.learns_q)
        if rule.feedback_learning == "normative":
            layer.reinit_feedback_svd()
    elif kind == "direct_low_rank":
        r = layer.rank
        p = _orthonormal(d, r, generator)
        q = torch.randn((r, *input_shape), generator=generator) / math.sqrt(3 * r)
        layer._add_feedback("P", p, trainable=rule.learns_p)
        layer._add_feedback("Q", q, trainable=rule.learns_q)
