"""The autograd Functions that execute every rule: one per weight-layer type (Linear, Conv2d).

Forward: the layer's ordinary maths (``F.linear`` / ``F.conv2d``). Backward, given ``delta = dL/dy``:

- ``grad_W = delta^T h`` and ``grad_b = sum(delta)``, exact for every rule (``conv2d_weight`` for Conv2d);
- the error sent below, ``g_in``, by the rule's feedback operator (science notes, section 2);
- the gradients of the feedback parameters (``B``, ``D``, ``P``, ``Q``), *returned through autograd* as the
  gradients of inputs of the Function, so that any optimiser, gradient accumulation and
  DistributedDataParallel treat them like any other parameter.

The Functions read the rule and the layer's role from the layer module (``ctx.layer``) and the output error of
the direct rules from the model's error bus (:class:`ErrorBus`). Everything here is sync-free: no ``.item()``,
no host transfers, no device-specific branches.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.grad import conv2d_input, conv2d_weight

from bioplastic.rules.low_rank import oja_rows, oja_subspace_gradient, target_rows

if TYPE_CHECKING:  # pragma: no cover
    from bioplastic.nn.layers import FeedbackConv2d, FeedbackLinear

__all__ = ["ErrorBus", "LinearFunction", "Conv2dFunction"]


class _Slot:
    """Holds the output error ``e`` of one forward pass (filled by the output layer's backward) and the targets
    of that pass (given by :func:`bioplastic.nn.set_targets`, read by Oja's rule)."""

    __slots__ = ("e", "lead", "targets")

    def __init__(self) -> None:
        self.e: torch.Tensor | None = None  # (N_e, d), rows = leading dims of the output flattened
        self.lead: tuple[int, ...] = ()
        self.targets: torch.Tensor | None = None  # (N_e,) class indices or (N_e, d) target vectors


class ErrorBus:
    """Delivers the output error ``e`` of each forward pass to every layer of a model (DFA, direct LDFA).

    Every converted layer picks up ``current`` in its forward pass; the output layer's forward, the last of a
    pass, then opens a fresh slot for the next pass, so several forward passes before one backward each keep
    their own error. The output layer's backward fills the slot before any hidden layer's backward runs
    (autograd's topological order: every hidden layer feeds the output layer). One bus per converted model, no
    global state; it also carries the flags of :func:`bioplastic.nn.alignment` (``force_bp``, ``capture``).
    """

    def __init__(self) -> None:
        self.current = _Slot()
        self.last: _Slot | None = None  # the slot of the latest completed forward pass (for set_targets)
        self.force_bp = False  # diagnostics: run the backprop path in every layer
        self.capture: dict[int, torch.Tensor] | None = None  # diagnostics: id(layer) -> delta (N, out)

    def __deepcopy__(self, memo):  # a copied model gets its own, empty bus
        return ErrorBus()

    def __getstate__(self):  # pickled models get a fresh bus
        return {"bus": 1}

    def __setstate__(self, state):
        self.__init__()


def _autocast(x: torch.Tensor, *tensors):
    """Under ``torch.autocast``, cast the Function's inputs to the autocast dtype (as autocast does for
    ``F.linear`` / ``F.conv2d``) so that forward and backward compute in the same dtype; autograd casts the
    returned gradients back to each parameter's dtype."""
    dev = x.device.type
    if not torch.is_autocast_enabled(dev):
        return (x, *tensors)
    dt = torch.get_autocast_dtype(dev)
    return tuple(t if t is None or not t.is_floating_point() else t.to(dt) for t in (x, *tensors))


def _broadcast_direct(g: torch.Tensor, lead_e: tuple[int, ...], x_shape: torch.Size, name: str) -> torch.Tensor:
    """Broadcast a direct error ``g`` (rows = ``lead_e``) over extra leading dims of the layer input."""
    lead_x = tuple(x_shape[:-1])
    if lead_x == lead_e:
        return g.reshape(x_shape)
    if lead_x[: len(lead_e)] == lead_e:  # e.g. e (batch, d), tokens (batch, T, in): same error for every token
        view = lead_e + (1,) * (len(lead_x) - len(lead_e)) + tuple(x_shape[len(lead_x):])
        return g.reshape(view).expand(x_shape)
    raise RuntimeError(
        f"layer {name!r}: the output error has leading shape {lead_e}, which does not match or prefix the "
        f"layer input's leading shape {lead_x}; a direct rule cannot broadcast it"
    )


def _direct_rows(h: torch.Tensor, lead_e: tuple[int, ...]) -> torch.Tensor:
    """Rows of ``h`` (leading dims flattened) summed over the dims that ``e`` is broadcast across."""
    n_e = 1
    for s in lead_e:
        n_e *= s
    return h.reshape(n_e, -1, h.shape[-1]).sum(1) if h.shape[0] != n_e else h


def _oja_source(layer, slot: _Slot, rows: torch.Tensor, *, direct: bool) -> torch.Tensor | None:
    """Target rows ``T`` for Oja's covariance of this layer (``rule.oja_covariance``), None for the error.

    Targets stand in for the error at the output layer of layer-wise LDFA and at every layer of direct LDFA
    (whose ``P`` lives in the output space), standardised per class for the direct variant (the authors'
    ``rADFA_linear.py``). ``rows``: the error rows (N, d) of the layer.
    """
    cov = layer.rule.oja_covariance
    if cov == "error" or not (direct or layer.is_output):
        return None
    targets = slot.targets
    if targets is None:
        if cov == "auto":
            return None
        raise RuntimeError(
            f"layer {layer.layer_name!r} ({layer.rule.name}, feedback_learning='oja', oja_covariance='targets') "
            "needs the targets of this batch: call bioplastic.nn.set_targets(model, targets) after the forward "
            "pass and before backward (bioplastic's trainer does), or use oja_covariance='error'")
    return target_rows(targets.to(rows.device), rows.shape[0], rows.shape[1], standardize=direct,
                       dtype=rows.dtype)


def _oja_grad_p(layer, delta: torch.Tensor, z: torch.Tensor, p: torch.Tensor,
                source: torch.Tensor | None) -> torch.Tensor:
    """Oja's ``grad_P`` of a Linear-layout layer from rows ``S`` (``source``, or the error ``delta``).

    ``delta``: (N, out); ``z = delta P``: (N, r); ``p``: (out, r). The formula is
    :func:`bioplastic.rules.low_rank.oja_subspace_gradient` (Oja 1982, 1989).
    """
    rows = delta if source is None else source
    if layer.rule.oja_centre:
        rows = oja_rows(rows, centre=True)
    zs = z if rows is delta else rows.mm(p)
    return oja_subspace_gradient(rows.t().mm(zs), zs.t().mm(zs), p, rows.square().sum())


def _normative_grads(p: torch.Tensor, q: torch.Tensor, w: torch.Tensor, groups: int):
    """``grad_P = (PQ - W) Q^T``, ``grad_Q = P^T (PQ - W)`` per group, without materialising ``PQ``.

    ``p``: (out, r/g), ``q``: (r, K/…) flattened to (r, K), ``w``: (out, K). Returns tensors shaped like
    ``p`` and ``q``.
    """
    out = w.shape[0]
    if groups == 1:  # two skinny products over W (memory-bound on CPU: each reads W once)
        qt = q.t()
        grad_p = torch.addmm(p.mm(q.mm(qt)), w, qt, beta=1, alpha=-1)
        pt = p.t()
        grad_q = torch.addmm(pt.mm(p).mm(q), pt, w, beta=1, alpha=-1)
        return grad_p, grad_q
    p3 = p.reshape(groups, out // groups, -1)
    q3 = q.reshape(groups, q.shape[0] // groups, -1)
    w3 = w.reshape(groups, out // groups, -1)
    qt = q3.transpose(1, 2)
    grad_p = torch.baddbmm(p3.bmm(q3.bmm(qt)), w3, qt, beta=1, alpha=-1)
    pt = p3.transpose(1, 2)
    grad_q = torch.baddbmm(pt.bmm(p3).bmm(q3), pt, w3, beta=1, alpha=-1)
    return grad_p.reshape(p.shape), grad_q.reshape(q.shape)


class LinearFunction(torch.autograd.Function):
    """``y = x W^T + b`` with the rule's backward. ``x``: (..., in); ``W``: (out, in); tokens are batch rows.

    Inputs: ``x, weight, bias (or None), layer, slot, *feedback`` where ``feedback`` is the layer's feedback
    parameters in the order of ``layer.feedback_names``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, layer, slot, *feedback):
        ctx.layer = layer
        ctx.slot = slot
        x, weight, bias, *feedback = _autocast(x, weight, bias, *feedback)
        ctx.save_for_backward(x, weight, *feedback)
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        layer: FeedbackLinear = ctx.layer
        x, weight, *fb = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_fb = ctx.needs_input_grad[5:]
        out_f, in_f = weight.shape
        delta = grad_out.reshape(-1, out_f).to(weight.dtype)
        h = x.reshape(-1, in_f)
        bus = layer.bus
        kind = layer.rule.feedback
        force_bp = bus.force_bp

        if bus.capture is not None:
            bus.capture[id(layer)] = delta.detach().clone()
        if layer.is_output:
            ctx.slot.e = delta
            ctx.slot.lead = tuple(grad_out.shape[:-1])

        grad_w = delta.t().mm(h) if (need_w or (kind == "matrix" and any(need_fb))) else None
        grad_b = delta.sum(0) if need_b else None
        grad_x = None
        fb_grads: list[torch.Tensor | None] = [None] * len(fb)

        if force_bp or kind == "transport":
            if need_x:
                grad_x = delta.mm(weight).reshape(x.shape)
        elif kind == "matrix":  # fa, kolen_pollack
            (b_mat,) = fb
            if need_x:
                grad_x = delta.mm(b_mat).reshape(x.shape)
            if need_fb[0]:
                fb_grads[0] = grad_w  # Kolen-Pollack: B gets exactly W's update
        elif kind == "sign":
            sign_w = torch.sign(weight)
            if need_x:
                grad_x = delta.mm(sign_w)
                if layer.rule.scale == "mean_abs":
                    grad_x = grad_x * weight.abs().mean()
                grad_x = grad_x.reshape(x.shape)
        elif kind == "low_rank":
            p, q = fb
            # (N, r): activity of the feedback units, only when the input gradient or P/Q learning reads it
            z = delta.mm(p) if _needs_z(layer, need_x, need_fb) else None
            if need_x:
                grad_x = _clamp(z.mm(q), layer).reshape(x.shape)
            source = (_oja_source(layer, ctx.slot, delta, direct=False)
                      if need_fb[0] and layer.rule.feedback_learning == "oja" else None)
            fb_grads = _low_rank_grads(layer, delta, z, h, p, q, weight, need_fb, groups=1, oja_source=source)
        else:  # direct, direct_low_rank
            slot = ctx.slot
            if slot.e is None:
                raise RuntimeError(_no_error_message(layer))
            e = slot.e.to(weight.dtype)
            if kind == "direct":
                (d_mat,) = fb
                if need_x:
                    grad_x = _broadcast_direct(e.mm(d_mat), slot.lead, x.shape, layer.layer_name)
            else:
                p, q = fb
                z = e.mm(p) if _needs_z(layer, need_x, need_fb) else None
                if need_x:
                    grad_x = _clamp(_broadcast_direct(z.mm(q), slot.lead, x.shape, layer.layer_name), layer)
                if _learns_feedback(layer, need_fb):
                    h_rows = _direct_rows(h, slot.lead)
                    source = (_oja_source(layer, slot, e, direct=True)
                              if need_fb[0] and layer.rule.feedback_learning == "oja" else None)
                    fb_grads = _low_rank_grads(layer, e, z, h_rows, p, q, None, need_fb, groups=1,
                                               oja_source=source)
        if not need_w:
            grad_w = None
        return (grad_x, grad_w, grad_b, None, None, *fb_grads)


def _clamp(g: torch.Tensor, layer) -> torch.Tensor:
    c = getattr(layer.rule, "error_clamp", None)
    return g if c is None else g.clamp(-c, c)


def _no_error_message(layer) -> str:
    return (
        f"layer {layer.layer_name!r} ({layer.rule.name}) needs the output error e, but the output layer's "
        "backward has not run for this forward pass: the loss must depend on the output layer "
        f"({layer.output_name!r}). If {layer.output_name!r} is not the layer that produces the logits (the "
        "default is the last Linear / Conv2d in module registration order), convert again naming it: "
        "bioplastic.convert(model, rule, output_layer='<name of the logits layer>')"
    )


def _learns_feedback(layer, need_fb) -> bool:
    """Whether any of ``P``/``Q`` gets a gradient (``fixed`` feedback never does)."""
    return any(need_fb) and layer.rule.feedback_learning != "fixed"


def _needs_z(layer, need_x, need_fb) -> bool:
    """Whether the backward reads the feedback-unit activity ``z = delta P``: the input gradient ``z Q``,
    ``grad_Q = z^T h`` (local, oja) or Oja's ``grad_P``. ``fixed`` and ``normative`` P/Q learning do not.
    """
    if need_x:
        return True
    if not _learns_feedback(layer, need_fb):
        return False
    mode = layer.rule.feedback_learning
    return mode != "normative" and (bool(need_fb[1]) or (bool(need_fb[0]) and mode == "oja"))


def _low_rank_grads(layer, delta, z, h, p, q, weight, need_fb, groups, oja_source=None):
    """Gradients of ``P`` and ``Q`` for the five feedback-learning modes (Linear layout, 2-D tensors).

    ``delta``: (N, out) error rows (``e`` for direct LDFA); ``z = delta P``: (N, r), None where no mode
    reads it (see :func:`_needs_z`); ``h``: (N, in);
    ``p``: (out, r); ``q``: (r, in); ``weight``: (out, in) or None; ``oja_source``: the rows of Oja's
    covariance when they are not ``delta`` (targets, :func:`_oja_source`).
    """
    mode = layer.rule.feedback_learning
    grad_p = grad_q = None
    if mode == "fixed" or not any(need_fb):
        return [None, None]
    if mode == "normative":
        grad_p, grad_q = _normative_grads(p, q, weight, groups)
    else:
        if need_fb[1]:
            grad_q = z.t().mm(h)  # (delta P)^T h: feedback-unit activity x presynaptic activity
        if need_fb[0]:
            if mode == "local":
                grad_p = delta.t().mm(h.mm(q.t()))  # delta^T (h Q^T)
            elif mode == "oja":
                grad_p = _oja_grad_p(layer, delta, z, p, oja_source)
    return [grad_p if need_fb[0] else None, grad_q if need_fb[1] else None]


class Conv2dFunction(torch.autograd.Function):
    """``y = conv2d(x, W, b)`` with the rule's backward. ``x``: (B, C_in, H, W); ``W``: (C_out, C_in/g, k, k).

    Inputs: ``x, weight, bias (or None), layer, slot, stride, padding, dilation, groups, *feedback``; the
    padding is numeric (string and non-zero padding modes are resolved by the layer before the call).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, layer, slot, stride, padding, dilation, groups, *feedback):
        ctx.layer = layer
        ctx.slot = slot
        ctx.conf = (stride, padding, dilation, groups)
        x, weight, bias, *feedback = _autocast(x, weight, bias, *feedback)
        ctx.save_for_backward(x, weight, *feedback)
        with torch.autocast(x.device.type, enabled=False):
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        layer: FeedbackConv2d = ctx.layer
        x, weight, *fb = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_fb = ctx.needs_input_grad[9:]
        bus = layer.bus
        kind = layer.rule.feedback
        force_bp = bus.force_bp
        delta = grad_out.to(weight.dtype)
        n_b, c_out = delta.shape[:2]

        if bus.capture is not None:
            bus.capture[id(layer)] = delta.detach().transpose(0, 1).reshape(c_out, -1).t().clone()
        if layer.is_output:
            ctx.slot.e = delta.reshape(n_b, -1)
            ctx.slot.lead = (n_b,)

        grad_w = grad_b = grad_x = None
        fb_grads: list[torch.Tensor | None] = [None] * len(fb)
        want_w = need_w or (kind == "matrix" and any(need_fb))

        if force_bp or kind in ("transport", "matrix", "sign"):
            # one fused call, as autograd's own conv backward: the input gradient through the feedback
            # kernel (W, B or sign(W)), the exact weight gradient (it depends on the kernel's shape only)
            # and the bias gradient
            if force_bp or kind == "transport":
                kernel = weight
            elif kind == "matrix":
                kernel = fb[0]
            else:
                kernel = torch.sign(weight)
            grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
                delta, x, kernel, [c_out] if need_b else None, list(stride), list(padding), list(dilation),
                False, [0, 0], groups, [need_x, want_w, need_b])
            if kind == "sign" and not force_bp and need_x and layer.rule.scale == "mean_abs":
                grad_x = grad_x * weight.abs().mean()
            if kind == "matrix" and not force_bp and need_fb[0]:
                fb_grads[0] = grad_w  # Kolen-Pollack: B gets exactly W's update
            if not need_w:
                grad_w = None
            return (grad_x, grad_w, grad_b, None, None, None, None, None, None, *fb_grads)

        if want_w:
            grad_w = conv2d_weight(x, weight.shape, delta, stride, padding, dilation, groups)
        grad_b = delta.sum((0, 2, 3)) if need_b else None

        if kind == "low_rank":
            p, q = fb
            # (B, r, H', W'): 1x1 compression C_out -> r, only when the input gradient or P/Q learning reads it
            z = F.conv_transpose2d(delta, p, groups=groups) if _needs_z(layer, need_x, need_fb) else None
            if need_x:
                grad_x = _clamp(conv2d_input(x.shape, q, z, stride, padding, dilation, groups), layer)
            fb_grads = _conv_low_rank_grads(layer, x, delta, z, p, q, weight, need_fb, ctx.conf)
        else:  # direct rules: e (B, d) -> (B, C_in, H, W)
            slot = ctx.slot
            if slot.e is None:
                raise RuntimeError(_no_error_message(layer))
            e = slot.e.to(weight.dtype)
            if slot.lead != (n_b,):
                raise RuntimeError(
                    f"layer {layer.layer_name!r}: output error rows {slot.lead} do not match the batch {n_b}")
            if kind == "direct":
                (d_mat,) = fb
                if need_x:
                    grad_x = e.mm(d_mat.reshape(d_mat.shape[0], -1)).reshape(x.shape)
            else:
                p, q = fb
                z = e.mm(p) if _needs_z(layer, need_x, need_fb) else None
                q2 = q.reshape(q.shape[0], -1)
                h_rows = x.reshape(n_b, -1)
                if need_x:
                    grad_x = _clamp(z.mm(q2).reshape(x.shape), layer)
                if _learns_feedback(layer, need_fb):
                    source = (_oja_source(layer, slot, e, direct=True)
                              if need_fb[0] and layer.rule.feedback_learning == "oja" else None)
                    gp, gq = _low_rank_grads(layer, e, z, h_rows, p, q2, None, need_fb, groups=1,
                                             oja_source=source)
                    fb_grads = [gp, None if gq is None else gq.reshape(q.shape)]
        if not need_w:
            grad_w = None
        return (grad_x, grad_w, grad_b, None, None, None, None, None, None, *fb_grads)


def _conv_low_rank_grads(layer, x, delta, z, p, q, weight, need_fb, conf):
    """Gradients of the conv ``P`` (C_out, r/g, 1, 1) and ``Q`` (r, C_in/g, k, k) for each mode."""
    stride, padding, dilation, groups = conf
    mode = layer.rule.feedback_learning
    if mode == "fixed" or not any(need_fb):
        return [None, None]
    if mode == "normative":  # acts on the flattened kernel W.view(C_out, -1)
        c_out = weight.shape[0]
        gp, gq = _normative_grads(p.reshape(c_out, -1), q.reshape(q.shape[0], -1), weight.reshape(c_out, -1), groups)
        return [gp.reshape(p.shape) if need_fb[0] else None, gq.reshape(q.shape) if need_fb[1] else None]
    grad_p = grad_q = None
    if need_fb[1]:  # (delta P)^T h as a convolution's weight gradient
        grad_q = conv2d_weight(x, q.shape, z, stride, padding, dilation, groups)
    if need_fb[0]:
        n_b, c_out = delta.shape[:2]
        r = z.shape[1]
        d4 = delta.reshape(n_b, groups, c_out // groups, -1)
        if mode == "local":  # delta^T (h Q^T): feedforward drive of the feedback units
            u = F.conv2d(x, q, None, stride, padding, dilation, groups)
            u4 = u.reshape(n_b, groups, r // groups, -1)
            grad_p = torch.einsum("bgoh,bgrh->gor", d4, u4).reshape(p.shape)
        elif mode == "oja":
            if layer.is_output and layer.rule.oja_covariance == "targets":
                raise RuntimeError(f"layer {layer.layer_name!r}: oja_covariance='targets' is not defined for a "
                                   "Conv2d output layer (per-position errors have no per-position targets); use "
                                   "oja_covariance='error'")
            p3 = p.reshape(groups, c_out // groups, r // groups)
            if layer.rule.oja_centre:  # per-position error rows centred over batch and positions (authors' v1)
                d4 = d4 - d4.mean((0, 3), keepdim=True)
                z4 = torch.einsum("bgoh,gor->bgrh", d4, p3)
            else:
                z4 = z.reshape(n_b, groups, r // groups, -1)
            cp = torch.einsum("bgoh,bgrh->gor", d4, z4)
            ptcp = torch.einsum("bgrh,bgsh->grs", z4, z4)
            grad_p = oja_subspace_gradient(cp, ptcp, p3, d4.square().sum()).reshape(p.shape)
    return [grad_p, grad_q]
