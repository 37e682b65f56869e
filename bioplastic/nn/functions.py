"""The autograd Functions that execute every rule: one per weight-layer type (Linear, Conv2d).

Forward: the layer's ordinary maths (``F.linear`` / ``F.conv2d``). Backward, given ``delta = dL/dy``:

- ``grad_W = delta^T h`` and ``grad_b = sum(delta)``, exact for every rule (``conv2d_weight`` for Conv2d);
- the error sent below, ``g_in``, and the gradients of the feedback parameters, both computed by the rule
  (:mod:`bioplastic.rules`): rules with one feedback matrix of ``W``'s shape give it through
  :meth:`~bioplastic.rules.Rule.feedback_kernel` (applied here, fused with ``grad_W`` for a convolution); the
  others through :meth:`~bioplastic.rules.Rule.backward`, which reads the layer's signals and products from a
  layout object: :class:`bioplastic.rules.ops.DenseOps` (rows) or :class:`ConvOps` (convolutions, no unfolding);
- the feedback gradients are *returned through autograd* as the gradients of inputs of the Function, so that
  any optimiser, gradient accumulation and DistributedDataParallel treat them like any other parameter.

This module is plumbing only: saved tensors, the conv layout, the error bus (:class:`ErrorBus`), autocast. It
names no rule. Everything here is sync-free: no ``.item()``, no host transfers, no device-specific branches.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.nn.grad import conv2d_input, conv2d_weight

from bioplastic.nn.error_bus import ErrorBus, _Slot
from bioplastic.rules.ops import DenseOps

if TYPE_CHECKING:  # pragma: no cover
    from bioplastic.rules import Rule

__all__ = ["ErrorBus", "LinearFunction", "Conv2dFunction", "ConvOps"]


def _autocast(x: torch.Tensor, *tensors):
    """Under ``torch.autocast``, cast the Function's inputs to the autocast dtype (as autocast does for
    ``F.linear`` / ``F.conv2d``) so that forward and backward compute in the same dtype; autograd casts the
    returned gradients back to each parameter's dtype."""
    dev = x.device.type
    if not torch.is_autocast_enabled(dev):
        return (x, *tensors)
    dt = torch.get_autocast_dtype(dev)
    return tuple(t if t is None or not t.is_floating_point() else t.to(dt) for t in (x, *tensors))


def _save(ctx, layer, slot, x, weight, bias, feedback):
    """Forward: keep the layer and its bus slot, save the (autocast) tensors the backward reads; returns the
    inputs in the dtype to compute in."""
    ctx.layer = layer
    ctx.slot = slot
    x, weight, bias, *feedback = _autocast(x, weight, bias, *feedback)
    ctx.save_for_backward(x, weight, *feedback)
    return x, weight, bias


def _saved(ctx, n_inputs: int):
    """``(layer, slot, x, weight, feedback, (need_x, need_w, need_b), need_feedback)`` of a Function whose
    feedback parameters follow ``n_inputs`` other inputs. ``need_feedback`` is all False on the steps a rule
    with ``feedback_every = k > 1`` skips (the layer's step count, :func:`bioplastic.nn.feedback_step`, not a
    multiple of ``k``)."""
    x, weight, *fb = ctx.saved_tensors
    need = ctx.needs_input_grad
    layer = ctx.layer
    need_fb = need[n_inputs:]
    every = getattr(layer.rule, "feedback_every", 1)
    if every != 1 and layer.steps % every:
        need_fb = (False,) * len(need_fb)
    return layer, ctx.slot, x, weight, fb, need[:3], need_fb


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


def _output_error(layer, slot: _Slot, dtype: torch.dtype) -> torch.Tensor:
    """The output error ``e`` of the layer's forward pass (direct rules)."""
    if slot.e is None:
        raise RuntimeError(
            f"layer {layer.layer_name!r} ({layer.rule.name}) needs the output error e, but the output layer's "
            "backward has not run for this forward pass: the loss must depend on the output layer "
            f"({layer.output_name!r}). If {layer.output_name!r} is not the layer that produces the logits (the "
            "default is the last Linear / Conv2d in module registration order), convert again naming it: "
            "bioplastic.convert(model, rule, output_layer='<name of the logits layer>')"
        )
    return slot.e.to(dtype)


class ConvOps:
    """The products of :class:`bioplastic.rules.ops.DenseOps` for a Conv2d layer, as convolutions.

    Rows are (batch x output positions); ``error`` is ``delta`` (B, C_out, H', W'); ``P`` is a 1x1 kernel
    (C_out, r/g, 1, 1) and ``Q`` a (r, C_in/g, k, k) kernel with the layer's stride, padding, dilation and
    groups. :meth:`rows` gives the grouped row layout ``(B, g, channels/g, positions)`` of :meth:`cross`.
    ``weight_gradient`` is the layer's exact ``conv2d_weight(x, W.shape, delta)`` when the executor computed
    it: sums over batch and positions are then taken from it where cheaper
    (:func:`bioplastic.rules.low_rank.from_weight_gradient`; issue 14).
    """

    supports_targets = False  # per-position errors have no per-position targets
    targets = None
    covariance = None

    def __init__(self, x: torch.Tensor, delta: torch.Tensor, conf, *, is_output: bool, layer_name: str,
                 weight_gradient: torch.Tensor | None = None) -> None:
        self.h = x
        self.error = delta
        self.weight_gradient = weight_gradient  # the exact conv2d_weight(x, W.shape, delta), when computed
        self.stride, self.padding, self.dilation, self.groups = conf
        self.is_output = is_output
        self.layer_name = layer_name

    def compress(self, a, p):
        if self.groups == 1:  # the 1x1 convolution as one matmul over channels (CPU conv_transpose2d with a
            # 1x1 kernel runs 4-10x slower, issue 14): (r, C_out) @ (B, C_out, H'W') -> (B, r, H', W'), as a
            # batched product on the error's own memory (torch.matmul of a matrix and a batch folds the batch
            # through a transposed copy of the error)
            n, c = a.shape[:2]
            pt = p.reshape(c, -1).t().unsqueeze(0).expand(n, -1, -1)
            return torch.bmm(pt, a.reshape(n, c, -1)).reshape(n, -1, *a.shape[2:])
        n, c, g = a.shape[0], a.shape[1], self.groups
        if c // g < 8:  # many tiny groups (depthwise): the grouped 1x1 convolution beats batch x groups tiny products
            return F.conv_transpose2d(a, p, groups=g)
        # grouped: per group (r/g, C_out/g) @ (C_out/g, H'W'), batched over batch x groups (3.4x / 1.8x faster
        # than conv_transpose2d at 32 / 8 channels per group, batch 128, 16 x 16; 3.4x slower at 1)
        pt = p.reshape(g, c // g, -1).transpose(1, 2)  # (g, r/g, C_out/g)
        r_g = pt.shape[1]
        a3 = a.reshape(n * g, c // g, -1)
        return torch.bmm(pt.unsqueeze(0).expand(n, -1, -1, -1).reshape(n * g, r_g, c // g), a3).reshape(
            n, g * r_g, *a.shape[2:])

    def send(self, a, m):
        # stride 1: the transposed convolution is the convolution with the flipped, per-group transposed kernel
        # and padding dilation (k - 1) - padding; on a CPU ~1.5x faster than conv_transpose2d for the thin
        # r-channel error (issue 14)
        if tuple(self.stride) == (1, 1):
            pad = [self.dilation[i] * (m.shape[2 + i] - 1) - self.padding[i] for i in range(2)]
            if min(pad) >= 0:
                g = self.groups
                mt = (m.reshape(g, m.shape[0] // g, *m.shape[1:]).transpose(1, 2)
                      .reshape(m.shape[1] * g, m.shape[0] // g, *m.shape[2:]).flip(-2, -1))
                out = F.conv2d(a, mt, None, 1, pad, self.dilation, g)
                if out.shape[2:] == self.h.shape[2:]:
                    return out
        # otherwise the transposed convolution itself: on a CPU ~1.3x faster than conv2d_input's
        # convolution_backward; output_padding restores the input size conv2d_input reads
        out_pad = [self.h.shape[2 + i] - ((a.shape[2 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                                          + self.dilation[i] * (m.shape[2 + i] - 1) + 1) for i in range(2)]
        if all(0 <= o < max(s, d) for o, s, d in zip(out_pad, self.stride, self.dilation)):
            return F.conv_transpose2d(a, m, None, self.stride, self.padding, out_pad, self.groups, self.dilation)
        return conv2d_input(self.h.shape, m, a, self.stride, self.padding, self.dilation, self.groups)

    def outer(self, a, shape):
        return conv2d_weight(self.h, shape, a, self.stride, self.padding, self.dilation, self.groups)

    def drive(self, q):
        return F.conv2d(self.h, q, None, self.stride, self.padding, self.dilation, self.groups)

    def rows(self, a):
        return a.reshape(a.shape[0], self.groups, a.shape[1] // self.groups, -1)

    @staticmethod
    def centre(rows):  # per channel, over batch and positions
        return rows - rows.mean((0, 3), keepdim=True)

    def project(self, rows, p):
        return torch.einsum("bgoh,gor->bgrh", rows, self.grouped(p))

    def grouped(self, p):
        return p.reshape(self.groups, p.shape[0] // self.groups, -1)

    @staticmethod
    def cross(a, b):
        # sum over batch and positions as per-sample products summed over the batch: (B, g, o, r) -> (g, o, r);
        # einsum("bgoh,bgrh->gor") copies a (B, C, H'W') operand into one matmul, ~2.5x slower on a CPU
        return torch.matmul(a, b.transpose(-1, -2)).sum(0)

    @staticmethod
    def flat(t):
        return t.reshape(t.shape[0], -1)


class LinearFunction(torch.autograd.Function):
    """``y = x W^T + b`` with the rule's backward. ``x``: (..., in); ``W``: (out, in); tokens are batch rows.

    Inputs: ``x, weight, bias (or None), layer, slot, *feedback`` where ``feedback`` is the layer's feedback
    parameters in the order of ``layer.feedback_names``.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, layer, slot, *feedback):
        x, weight, bias = _save(ctx, layer, slot, x, weight, bias, feedback)
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        layer, slot, x, weight, fb, (need_x, need_w, need_b), need_fb = _saved(ctx, 5)
        out_f, in_f = weight.shape
        rule: Rule = layer.rule
        delta = grad_out.reshape(-1, out_f).to(weight.dtype)
        h = x.reshape(-1, in_f)
        bus = layer.bus
        force_bp = bus.force_bp

        if bus.capture is not None:
            bus.capture[id(layer)] = delta.detach().clone()
        if layer.is_output:
            slot.e = delta
            slot.lead = tuple(grad_out.shape[:-1])

        learn_fb = any(need_fb) and not force_bp
        grad_w = delta.t().mm(h) if (need_w or (rule.mirrors_weight_gradient and learn_fb)) else None
        grad_b = delta.sum(0) if need_b else None
        grad_x = None
        fb_grads: list[torch.Tensor | None] = [None] * len(fb)

        if force_bp or rule.has_feedback_kernel:
            if need_x:
                kernel, scale = (weight, None) if force_bp else rule.feedback_kernel(weight, fb)
                grad_x = delta.mm(kernel)
                if scale is not None:
                    grad_x = grad_x * scale
                grad_x = grad_x.reshape(x.shape)
            if learn_fb:
                fb_grads = rule.feedback_gradients(None, weight, fb, need_fb, grad_w=grad_w)
        elif not rule.direct:
            ops = DenseOps(delta, h, targets=slot.targets, is_output=layer.is_output, layer_name=layer.layer_name,
                           weight_gradient=grad_w)
            g, fb_grads = rule.backward(ops, weight, fb, need_x, need_fb, grad_w=grad_w)
            if g is not None:
                grad_x = g.reshape(x.shape)
        else:  # the output error e (or the targets) reach every layer through the bus
            e = _output_error(layer, slot, weight.dtype)
            lead = slot.lead
            ops = DenseOps(e, lambda: _direct_rows(h, lead), targets=slot.targets, is_output=layer.is_output,
                           layer_name=layer.layer_name)
            g, fb_grads = rule.backward(ops, weight, fb, need_x, need_fb, grad_w=grad_w)
            if g is not None:
                grad_x = _broadcast_direct(g, lead, x.shape, layer.layer_name)
        if not need_w:
            grad_w = None
        return (grad_x, grad_w, grad_b, None, None, *fb_grads)


class Conv2dFunction(torch.autograd.Function):
    """``y = conv2d(x, W, b)`` with the rule's backward. ``x``: (B, C_in, H, W); ``W``: (C_out, C_in/g, k, k).

    Inputs: ``x, weight, bias (or None), layer, slot, stride, padding, dilation, groups, *feedback``; the
    padding is numeric (string and non-zero padding modes are resolved by the layer before the call).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, layer, slot, stride, padding, dilation, groups, *feedback):
        ctx.conf = (stride, padding, dilation, groups)
        x, weight, bias = _save(ctx, layer, slot, x, weight, bias, feedback)
        with torch.autocast(x.device.type, enabled=False):
            return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        layer, slot, x, weight, fb, (need_x, need_w, need_b), need_fb = _saved(ctx, 9)
        stride, padding, dilation, groups = ctx.conf
        rule: Rule = layer.rule
        bus = layer.bus
        force_bp = bus.force_bp
        delta = grad_out.to(weight.dtype)
        n_b, c_out = delta.shape[:2]

        if bus.capture is not None:
            bus.capture[id(layer)] = delta.detach().transpose(0, 1).reshape(c_out, -1).t().clone()
        if layer.is_output:
            slot.e = delta.reshape(n_b, -1)
            slot.lead = (n_b,)

        grad_w = grad_b = grad_x = None
        fb_grads: list[torch.Tensor | None] = [None] * len(fb)
        learn_fb = any(need_fb) and not force_bp
        want_w = need_w or (rule.mirrors_weight_gradient and learn_fb)

        if force_bp or rule.has_feedback_kernel:
            # one fused call, as autograd's own conv backward: the input gradient through the feedback
            # kernel (W, B or sign(W)), the exact weight gradient (it depends on the kernel's shape only)
            # and the bias gradient
            kernel, scale = rule.feedback_kernel(weight, fb) if need_x and not force_bp else (weight, None)
            grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
                delta, x, kernel, [c_out] if need_b else None, list(stride), list(padding), list(dilation),
                False, [0, 0], groups, [need_x, want_w, need_b])
            if scale is not None:
                grad_x = grad_x * scale
            if learn_fb:
                fb_grads = rule.feedback_gradients(None, weight, fb, need_fb, grad_w=grad_w)
            if not need_w:
                grad_w = None
            return (grad_x, grad_w, grad_b, None, None, None, None, None, None, *fb_grads)

        if want_w or need_b:  # grad_W and grad_b in one call, as autograd's conv backward
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                delta, x, weight, [c_out] if need_b else None, list(stride), list(padding), list(dilation),
                False, [0, 0], groups, [False, want_w, need_b])

        if not rule.direct:
            ops = ConvOps(x, delta, ctx.conf, is_output=layer.is_output, layer_name=layer.layer_name,
                          weight_gradient=grad_w)
            grad_x, fb_grads = rule.backward(ops, weight, fb, need_x, need_fb, grad_w=grad_w)
        else:  # direct rules: e (B, d) -> (B, C_in, H, W), in row form on the flattened input
            e = _output_error(layer, slot, weight.dtype)
            if slot.lead != (n_b,):
                raise RuntimeError(
                    f"layer {layer.layer_name!r}: output error rows {slot.lead} do not match the batch {n_b}")
            ops = DenseOps(e, lambda: x.reshape(n_b, -1), targets=slot.targets, is_output=layer.is_output,
                           layer_name=layer.layer_name)
            g, grads = rule.backward(ops, weight, [DenseOps.flat(f) for f in fb], need_x, need_fb, grad_w=grad_w)
            grad_x = None if g is None else g.reshape(x.shape)
            fb_grads = [None if gr is None else gr.reshape(f.shape) for gr, f in zip(grads, fb)]
        if not need_w:
            grad_w = None
        return (grad_x, grad_w, grad_b, None, None, None, None, None, None, *fb_grads)
