"""Per-layer diagnostics: how far a rule's updates and feedback are from backprop's."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import xarray as xr

from bioplastic._checks import check_finite
from bioplastic.nn.convert import conversion_report, feedback_layers, needs_targets, set_targets

__all__ = ["alignment", "matrix_angle", "largest_principal_angle", "true_gradient"]


@contextlib.contextmanager
def true_gradient(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: backward passes through ``model`` give the true derivative (backprop), not the rule's.

    A converted layer's backward is its learning rule's in training **and** in evaluation mode (``eval()``
    switches dropout and BatchNorm, as in PyTorch, not the learning rule): a gradient of a converted model
    is the rule's update signal, e.g. ``delta B`` for feedback alignment. Wrap a computation in
    ``with true_gradient(model):`` when you need the derivative of the network function itself: input
    gradients, saliency maps, gradient receptive fields
    (:func:`bioplastic.analysis.receptive_fields.measure_receptive_fields` uses it), or the backprop
    reference of :func:`alignment`. Inside, every converted layer sends ``delta W`` below (BatchNorm and
    other unconverted modules are exact anyway); feedback parameters get no gradient.

    Parameters
    ----------
    model : torch.nn.Module
        A model returned by :func:`bioplastic.convert` (or a plain model, for which nothing changes).

    Yields
    ------
    torch.nn.Module
        ``model`` itself.

    Notes
    -----
    The switch is read when the backward pass runs: ``loss.backward()`` / ``torch.autograd.grad`` must be
    called inside the block (the forward pass may be inside or before it). The previous state is restored
    on exit, also after an exception, and blocks may be nested. Not thread-safe across threads that share
    one converted model.

    Examples
    --------
    >>> net = bioplastic.convert(model, "fa")                              # doctest: +SKIP
    >>> with bioplastic.nn.true_gradient(net):                             # doctest: +SKIP
    ...     (saliency,) = torch.autograd.grad(net(x)[:, label].sum(), x)   # d(logit)/dx, not via B
    """
    buses = list({id(layer.bus): layer.bus for _, layer in feedback_layers(model)}.values())
    previous = [bus.force_bp for bus in buses]
    for bus in buses:
        bus.force_bp = True
    try:
        yield model
    finally:
        for bus, flag in zip(buses, previous):
            bus.force_bp = flag


def matrix_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle in degrees between two tensors seen as vectors (Frobenius inner product).

    Uses ``2 atan2(|u - v|, |u + v|)`` with ``u, v`` the unit vectors, exact at 0 and 180 degrees (where the
    ``arccos`` of the cosine loses half the digits). NaN when either tensor is zero.
    """
    a = a.detach().reshape(-1).double()
    b = b.detach().reshape(-1).double()
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return math.nan
    u, v = a / na, b / nb
    return math.degrees(2 * math.atan2(float((u - v).norm()), float((u + v).norm())))


def largest_principal_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest principal angle (degrees) between the column spaces of ``a`` (n, p) and ``b`` (n, q).

    ``sin(theta_max) = || (I - Qa Qa^T) Qb ||_2`` with orthonormal bases ``Qa``, ``Qb`` and ``q <= p``
    (Björck & Golub 1973; the sine form is accurate for small angles, as ``scipy.linalg.subspace_angles``).
    """
    qa, _ = torch.linalg.qr(a.detach().double())
    qb, _ = torch.linalg.qr(b.detach().double())
    if qb.shape[1] > qa.shape[1]:
        qa, qb = qb, qa
    resid = qb - qa @ (qa.t() @ qb)
    sine = float(torch.linalg.matrix_norm(resid, ord=2).clamp(max=1.0))
    return math.degrees(math.asin(sine))


def _block_p(layer) -> torch.Tensor:
    """P as an (out, r) matrix; block diagonal across the groups of a grouped convolution."""
    p = layer.P.detach()
    g = 1 if layer.rule.direct else layer.groups_
    p2 = p.reshape(p.shape[0], -1)
    if g == 1:
        return p2
    return torch.block_diag(*p2.reshape(g, p2.shape[0] // g, -1).unbind(0))


def alignment(model: nn.Module, inputs: Any, targets: torch.Tensor,
              loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> xr.Dataset:
    """Per-layer alignment of a converted model's learning rule with backprop on one batch.

    Parameters
    ----------
    model : torch.nn.Module
        Returned by :func:`bioplastic.convert`, in the mode (train / eval) to diagnose.
    inputs : tensor or tuple of tensors
        One batch, passed as ``model(inputs)`` (``model(*inputs)`` for a tuple).
    targets : torch.Tensor
        Passed to ``loss_fn(output, targets)``.
    loss_fn : callable
        Returns a scalar loss, e.g. ``torch.nn.functional.cross_entropy``.

    Returns
    -------
    xarray.Dataset
        Dim ``layer`` (coordinate: module names of the converted layers, forward-definition order) with

        - ``update_cosine``: cosine similarity between the rule's weight update and the true backprop gradient
          on the same batch (1 for backprop and for the output layer, which gets its exact error);
        - ``feedback_angle`` (degrees): angle between ``W`` and the effective feedback matrix ``M`` with
          ``g_in = delta M`` (``B``, ``s sign(W)``, ``P Q``; conv kernels flattened to ``(C_out, -1)``); 0 for
          backprop; NaN for hidden layers of the direct rules, whose feedback maps ``e``, not ``delta``;
        - ``subspace_angle`` (degrees): largest principal angle between the feedback subspace ``span(P)``
          and the top-r right singular subspace of the layer's error rows ``delta`` (``e`` for direct LDFA);
          NaN for rules without a low-rank feedback subspace;
        - ``feedback_rank``: number of feedback units (NaN where not applicable).

        ``attrs``: ``rule`` and the rule's configuration (``config``, JSON).

    Raises
    ------
    ValueError
        A model not produced by :func:`bioplastic.convert`, non-finite inputs / targets / loss, a non-scalar
        loss.

    Notes
    -----
    One forward pass, two backward passes (the rule's and backprop's) with ``torch.autograd.grad``: the model's
    parameters, buffers (BatchNorm statistics are restored), ``.grad`` fields and random-number state are left
    unchanged.
    """
    report = conversion_report(model)
    layers = feedback_layers(model)
    if isinstance(inputs, (tuple, list)):
        for i, x in enumerate(inputs):
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                check_finite(f"inputs[{i}]", x)
    elif isinstance(inputs, torch.Tensor) and inputs.is_floating_point():
        check_finite("inputs", inputs)
    if isinstance(targets, torch.Tensor) and targets.is_floating_point():
        check_finite("targets", targets)
    names = [n for n, _ in layers]
    n_layers = len(layers)
    cosine = np.full(n_layers, np.nan)
    fb_angle = np.full(n_layers, np.nan)
    sub_angle = np.full(n_layers, np.nan)
    fb_rank = np.full(n_layers, np.nan)
    if n_layers:
        bus = layers[0][1].bus
        buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
        devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
        trainable = [i for i, (_, layer) in enumerate(layers) if layer.weight.requires_grad]
        weights = [layers[i][1].weight for i in trainable]
        force_bp_before = bus.force_bp  # alignment may run inside a true_gradient block
        try:
            with torch.random.fork_rng(devices=devices), torch.enable_grad():
                bus.force_bp = False
                bus.capture = {}
                out = model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)
                if needs_targets(model):  # a rule that learns from the targets (DRTP)
                    set_targets(model, targets)
                loss = loss_fn(out, targets)
                if loss.dim() != 0:
                    raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
                check_finite("loss", loss)
                rule_grads = torch.autograd.grad(loss, weights, retain_graph=True, allow_unused=True)
                captured = bus.capture
                bus.capture = None
                bus.force_bp = True
                bp_grads = torch.autograd.grad(loss, weights, allow_unused=True)
        finally:
            bus.capture = None
            bus.force_bp = force_bp_before
            with torch.no_grad():
                for k, v in model.named_buffers():
                    v.copy_(buffers[k])
        for j, i in enumerate(trainable):
            g_rule, g_bp = rule_grads[j], bp_grads[j]
            if g_rule is not None and g_bp is not None:
                angle = matrix_angle(g_rule, g_bp)
                cosine[i] = math.cos(math.radians(angle)) if not math.isnan(angle) else math.nan
        output_layer = next((layer for _, layer in layers if layer.is_output), None)
        for i, (_, layer) in enumerate(layers):
            m = layer.effective_feedback()
            if m is not None:
                fb_angle[i] = matrix_angle(m, layer.weight_matrix())
            if layer.rank is not None:
                fb_rank[i] = layer.rank
            if layer.rule.low_rank:  # span(P) vs the rows P compresses: delta, or e for a direct rule
                source = output_layer if layer.rule.direct else layer
                rows = captured.get(id(source)) if source is not None else None
                if rows is not None and rows.abs().sum() > 0:
                    p = _block_p(layer)
                    vh = torch.linalg.svd(rows.double(), full_matrices=False)[2]
                    k = min(p.shape[1], int(torch.linalg.matrix_rank(rows.double())))
                    sub_angle[i] = largest_principal_angle(p, vh[:k].t())
    rule = report.rule
    ds = xr.Dataset(
        {
            "update_cosine": ("layer", cosine, {"long_name": "cosine(rule weight update, backprop gradient)"}),
            "feedback_angle": ("layer", fb_angle, {"units": "degree",
                                                   "long_name": "angle between W and the effective feedback"}),
            "subspace_angle": ("layer", sub_angle, {"units": "degree",
                                                    "long_name": "largest principal angle, span(P) vs top-r error"}),
            "feedback_rank": ("layer", fb_rank),
        },
        coords={"layer": np.array(names, dtype=object).astype(str)},
        attrs={"rule": str(rule["name"])},
    )
    from bioplastic.io import stamp

    return stamp(ds, {"rule": dict(rule)})
