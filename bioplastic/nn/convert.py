"""``convert(model, rule)``: run any torch model under a learning rule; parameters, report, periodic actions."""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from bioplastic._checks import check_finite, check_positive_int
from bioplastic.nn.error_bus import ErrorBus
from bioplastic.nn.layers import FeedbackConv2d, FeedbackLayer, FeedbackLinear, init_feedback
from bioplastic.rules import Backprop, Rule, make

__all__ = [
    "convert", "conversion_report", "set_targets", "needs_targets", "split_parameters", "param_groups", "feedback_step", "feedback_layers",
    "ConversionReport", "LayerReport",
]

logger = logging.getLogger(__name__)

_REPORT_ATTR = "_bioplastic_conversion"
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
_WEIGHT_TYPES = (nn.Linear, nn.Conv2d)


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """One entry of a :class:`ConversionReport`.

    Attributes
    ----------
    name : str
        Module name in the model (``""`` for the root module).
    type : str
        Class name of the original module.
    status : {"converted", "backprop"}
        ``"converted"``: the rule's backward; ``"backprop"``: exact autograd derivative.
    reason : str
        Why (role of a converted layer, or why a layer stays on backprop).
    rank : int or None
        Number of feedback units (low-rank rules).
    feedback : dict
        Feedback parameter name -> shape.
    """

    name: str
    type: str
    status: Literal["converted", "backprop"]
    reason: str
    rank: int | None = None
    feedback: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert` did: which layers run the rule and which stay on backprop, and why.

    ``str(report)`` gives a table (logged at INFO level by :func:`convert`).
    """

    rule: Mapping[str, Any]
    output_layer: str | None
    layers: tuple[LayerReport, ...]

    @property
    def converted(self) -> list[str]:
        """Names of the layers that run the rule, in module order."""
        return [entry.name for entry in self.layers if entry.status == "converted"]

    @property
    def kept(self) -> dict[str, str]:
        """Layers (and other modules with parameters) on exact backprop: name -> reason."""
        return {entry.name: entry.reason for entry in self.layers if entry.status == "backprop"}

    def __str__(self) -> str:
        lines = [f"bioplastic conversion, rule {self.rule.get('name')!r}, output layer {self.output_layer!r}"]
        width = max([len(e.name or "<root>") for e in self.layers] + [5])
        for e in self.layers:
            fb = ", ".join(f"{k}{tuple(v)}" for k, v in e.feedback.items())
            rank = f" r={e.rank}" if e.rank is not None else ""
            lines.append(f"  {(e.name or '<root>'):<{width}}  {e.type:<22} {e.status:<9}{rank} {fb}  {e.reason}")
        return "\n".join(lines)


def _resolve_generator(seed: int | torch.Generator | None) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        if seed.device.type != "cpu":
            raise ValueError(f"seed generator must be a CPU torch.Generator, got device {seed.device}")
        return seed
    if seed is None:  # like torch's own layer initialisation: follows torch.manual_seed
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator().manual_seed(check_positive_int("seed", seed, minimum=0))


def _convertible_type(m: nn.Module) -> bool:
    for base in _WEIGHT_TYPES:
        if isinstance(m, base):
            return type(m).forward is base.forward
    return False


def _ancestors(name: str) -> list[str]:
    parts = name.split(".") if name else []
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


def _input_shapes(model: nn.Module, names: Iterable[str], example_input: Any) -> dict[str, tuple]:
    """Shapes (without batch) of the inputs of named modules and of their outputs, from one forward pass."""
    modules = dict(model.named_modules())
    shapes: dict[str, tuple] = {}
    handles = []
    for name in names:
        def hook(mod, args, out, name=name):
            shapes[name] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))
        handles.append(modules[name].register_forward_hook(hook))
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    try:
        with torch.no_grad():
            if isinstance(example_input, (tuple, list)):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():  # a probing forward pass must not move BatchNorm statistics
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
    return shapes


def _max_rank(m: nn.Module) -> tuple[int, int]:
    """(groups, maximal rank per group) of an LDFA layer."""
    if isinstance(m, nn.Conv2d):
        g = m.groups
        return g, min(m.out_channels // g, m.weight[0].numel())
    return 1, min(m.out_features, m.in_features)


def convert(
    model: nn.Module,
    rule: Rule | str,
    *,
    output_layer: str | None = None,
    exclude: Iterable[str] = (),
    ranks: Mapping[str, int] | None = None,
    seed: int | torch.Generator | None = None,
    example_input: Any = None,
) -> nn.Module:
    """Return a deep copy of ``model`` whose Linear and Conv2d layers learn with ``rule``.

    The forward maths is unchanged; each converted layer's backward gives the exact weight update
    ``grad_W = delta^T h`` and sends the rule's error below (docs/rules.md; Hanut & Kadmon 2025,
    arXiv:2502.20580 for LDFA). Feedback parameters (``B``, ``D``, ``P``, ``Q``) become parameters of the
    converted layers and get their rule's update as ``.grad`` during ``loss.backward()``.

    Parameters
    ----------
    model : torch.nn.Module
        Any model; it is not modified (the result is a deep copy).
    rule : Rule or str
        From :func:`bioplastic.rules.make`, or a rule name (default options).
    output_layer : str, optional
        Module name of the output layer (the one producing the logits). Default: the last Linear / Conv2d in
        module order. It always receives its exact error ``e = dL/d(logits)`` (its weight update is exact
        for every rule); for ``dfa`` / ``direct_ldfa`` it is the source of ``e`` for every layer.
    exclude : iterable of str
        Module names kept on backprop (a name excludes everything inside that module), e.g. the classifier
        of a CNN or the patch embedding of a ViT.
    ranks : mapping, optional
        Per-layer number of feedback units ``{"layer.name": r}``, overriding ``rule.rank`` /
        ``rule.rank_fraction`` (low-rank rules only).
    seed : int or torch.Generator, optional
        Seed of the random feedback weights (same seed, same feedback). ``None``: draw the seed from torch's
        default generator, so ``torch.manual_seed`` controls it as it controls torch's layer initialisation.
    example_input : tensor or tuple of tensors, optional
        One input batch; needed only by ``dfa`` / ``direct_ldfa`` on models with Conv2d layers (their ``D`` /
        ``Q`` span the layer's whole input, ``(C_in, H, W)``) or with a Conv2d output layer. The probing
        forward pass leaves buffers (BatchNorm statistics) unchanged.

    Returns
    -------
    torch.nn.Module
        The converted copy. Its :func:`conversion_report` lists every layer converted and every module kept
        on backprop with the reason (MultiheadAttention's fused projections, Conv1d, Embedding, normalisation
        layers, excluded layers, ...); the report is also logged at INFO level.

    Raises
    ------
    ValueError
        Unknown rule; ``model`` already converted; unknown names in ``output_layer``, ``exclude`` or
        ``ranks`` (the message lists the weight layers); rank < 1; a direct rule whose output size cannot be
        found (no Linear / Conv2d output layer, or an excluded one) or that needs ``example_input``;
        non-finite weights.

    Warns
    -----
    UserWarning
        When no layer is converted (e.g. ``convert(nn.Sequential(nn.ReLU()), "fa")``), and, for every rule
        but ``bp``, when weight-bearing layers stay on backprop without being listed in ``exclude``
        (MultiheadAttention, LSTM / GRU / RNN, Embedding, Conv1d / Conv3d, transposed convolutions, Bilinear,
        Linear / Conv2d subclasses that override ``forward``, parametrized weights, custom modules with a 2-D+
        ``weight``): the warning names them and why. Layers the user excludes, normalisation layers and free
        parameters (class tokens) do not warn.
    UserWarning
        When a requested rank exceeds a layer's maximum (``min(out, in)`` for Linear, ``groups *
        min(C_out/g, C_in/g k^2)`` for Conv2d, ``min(d, in)`` for direct LDFA): the rank is **clipped** to the
        maximum, where the layer's feedback is exact-rank (``normative`` then equals backprop).
    """
    rule = make(rule)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if any(isinstance(m, FeedbackLayer) for m in model.modules()):
        raise ValueError("model is already converted; convert the original model instead")
    exclude = tuple(exclude)
    ranks = dict(ranks or {})
    new = copy.deepcopy(model)
    modules = dict(new.named_modules())
    mha_names = {n for n, m in modules.items() if isinstance(m, nn.MultiheadAttention)}
    weight_layers = [
        n for n, m in modules.items()
        if isinstance(m, _WEIGHT_TYPES) and not any(a in mha_names for a in _ancestors(n)[:-1])
    ]
    listed = ", ".join(repr(n) for n in weight_layers) or "(none)"
    for name in exclude:
        if name not in modules:
            raise ValueError(f"exclude: no module named {name!r} in the model; weight layers: {listed}")
    excluded = set(exclude)

    def is_excluded(name: str) -> bool:
        return any(a in excluded for a in _ancestors(name))

    reasons: dict[str, str] = {}
    to_convert: list[str] = []
    for name in weight_layers:
        m = modules[name]
        if is_excluded(name):
            reasons[name] = "excluded by the user (exact backprop)"
        elif not _convertible_type(m):
            reasons[name] = f"{type(m).__name__} overrides forward(); kept on backprop"
        elif parametrize.is_parametrized(m):
            reasons[name] = "parametrized weight (torch.nn.utils.parametrize); kept on backprop"
        else:
            to_convert.append(name)

    if output_layer is None:
        output_name = weight_layers[-1] if weight_layers else None
    else:
        if output_layer not in weight_layers:
            raise ValueError(f"output_layer {output_layer!r} is not a Linear/Conv2d layer of the model; "
                             f"weight layers: {listed}")
        output_name = output_layer
    if rule.direct:
        if output_name is None:
            raise ValueError(f"{rule.name}: cannot find the output size d: the model has no Linear/Conv2d "
                             "output layer; pass output_layer='name'")
        if output_name not in to_convert:
            raise ValueError(f"{rule.name}: the output layer {output_name!r} is not converted "
                             f"({reasons[output_name]}); it must be, as it is the source of the output error")

    for name, r in ranks.items():
        if name not in to_convert:
            raise ValueError(f"ranks: {name!r} is not a converted layer; converted layers: "
                             + (", ".join(repr(n) for n in to_convert) or "(none)"))
        check_positive_int(f"rank of layer {name!r}", r)
    if ranks and not rule.low_rank:
        raise ValueError(f"ranks applies to the low-rank rules ('ldfa', 'direct_ldfa'), not {rule.name!r}")

    for name in to_convert:
        m = modules[name]
        check_finite(f"weight of layer {name!r}", m.weight)
        if m.bias is not None:
            check_finite(f"bias of layer {name!r}", m.bias)

    # --- sizes the direct rules need ----------------------------------------------------------------------
    shapes: dict[str, tuple] = {}
    d = None
    if rule.direct:
        needs_probe = [n for n in to_convert if isinstance(modules[n], nn.Conv2d)]
        if needs_probe:
            if example_input is None:
                raise ValueError(f"{rule.name} on Conv2d layers ({', '.join(map(repr, needs_probe))}) needs their "
                                 "input size: pass example_input=<one input batch>")
            shapes = _input_shapes(new, needs_probe, example_input)
            missing = [n for n in needs_probe if n not in shapes]
            if missing:
                raise ValueError(f"{rule.name}: layers {missing} were not called by the forward pass of "
                                 "example_input")
        out_mod = modules[output_name]
        if isinstance(out_mod, nn.Conv2d):
            d = math.prod(shapes[output_name][1])
        else:
            d = out_mod.out_features

    # --- ranks ----------------------------------------------------------------------------------------------
    layer_rank: dict[str, int | None] = {}
    clipped: list[str] = []
    notes: dict[str, str] = {}
    for name in to_convert:
        m = modules[name]
        if not rule.low_rank:
            layer_rank[name] = None
            continue
        # direct rules: feedback units between e (d) and the layer's input; layer-wise: per group of W
        requested = ranks.get(name, rule.rank_for(d if rule.direct else m.weight.shape[0]))
        if rule.direct:
            g, per_group = 1, min(d, math.prod(shapes[name][0]) if name in shapes else m.in_features)
        else:
            g, per_group = _max_rank(m)
        r_g = min(math.ceil(requested / g), per_group)
        if r_g * g < requested:
            clipped.append(f"{name!r} ({requested} -> {r_g * g})")
        elif r_g * g > requested:
            notes[name] = f"rank rounded up from {requested} to a multiple of groups={g}"
        layer_rank[name] = r_g * g
    if clipped:
        message = (f"{rule.name}: rank above the layer's maximum, clipped (effective rank is min(r, in, out)): "
                   + ", ".join(clipped))
        warnings.warn(message, UserWarning, stacklevel=2)

    # --- convert ------------------------------------------------------------------------------------------
    generator = _resolve_generator(seed)
    bus = ErrorBus()
    for name in to_convert:
        m = modules[name]
        m.__class__ = FeedbackConv2d if isinstance(m, nn.Conv2d) else FeedbackLinear
        svd_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        m._setup(rule, name=name, output_name=output_name, bus=bus, rank=layer_rank[name], svd_seed=svd_seed)
        input_shape = shapes[name][0] if name in shapes else (m.weight.shape[1],)
        init_feedback(m, d=d, input_shape=input_shape, generator=generator)

    # --- report ---------------------------------------------------------------------------------------------
    entries: list[LayerReport] = []
    converted = set(to_convert)
    unsupported: list[str] = []  # weight-bearing layers left on backprop without the user asking for it
    for name, m in new.named_modules():
        if name not in converted and not is_excluded(name) and _weight_bearing(m, name, reasons):
            unsupported.append(f"{name or '<root>'!r} ({type(m).__name__})")
        if name in converted:
            role = "output layer: exact error e" if name == output_name else "hidden layer"
            if rule.direct and name != output_name:
                role += f"; receives {'the targets' if rule.needs_targets else 'e'} (d={d}) directly"
            if name in notes:
                role += f"; {notes[name]}"
            entries.append(LayerReport(name, type(model.get_submodule(name)).__name__,
                                       "converted", role, layer_rank[name],
                                       {k: tuple(getattr(m, k).shape) for k in m.feedback_names}))
            continue
        own = list(m.parameters(recurse=False))
        if name in reasons:
            entries.append(LayerReport(name, type(m).__name__, "backprop", reasons[name]))
        elif isinstance(m, nn.MultiheadAttention):
            entries.append(LayerReport(name, type(m).__name__, "backprop",
                                       "MultiheadAttention: its fused q/k/v and output projections are used inside "
                                       "F.multi_head_attention_forward, not as modules; exact backprop"))
        elif any(a in mha_names for a in _ancestors(name)[:-1]):
            if own:
                entries.append(LayerReport(name, type(m).__name__, "backprop",
                                           "projection inside MultiheadAttention; exact backprop"))
        elif own:
            if isinstance(m, _NORM_TYPES):
                reason = "normalisation layer: exact derivative (not a weight layer)"
            elif isinstance(m, (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                                nn.Embedding, nn.EmbeddingBag, nn.Bilinear, nn.RNNBase, nn.PReLU)):
                reason = f"{type(m).__name__} is not supported by the rules (Linear and Conv2d only); exact backprop"
            else:
                reason = f"parameters of {type(m).__name__} ({', '.join(n for n, _ in m.named_parameters(recurse=False))})" \
                         "; exact backprop"
            if is_excluded(name):
                reason = "excluded by the user (exact backprop)"
            entries.append(LayerReport(name, type(m).__name__, "backprop", reason))
    report = ConversionReport(rule.to_dict(), output_name, tuple(entries))
    new.__dict__[_REPORT_ATTR] = report
    logger.info("%s", report)
    if not to_convert:
        why = (f"every weight layer is excluded or unsupported ({listed})" if weight_layers
               else "the model has no nn.Linear or nn.Conv2d layer")
        warnings.warn(f"convert(rule={rule.name!r}) converted no layer: {why}. The model trains with exact "
                      "backprop; see conversion_report(model) for every module", UserWarning, stacklevel=2)
    if unsupported and not isinstance(rule, Backprop):
        warnings.warn(
            f"convert(rule={rule.name!r}): {len(unsupported)} weight-bearing layer(s) stay on exact backprop, not "
            f"on the rule: {', '.join(unsupported)}. The rules replace the backward of nn.Linear and nn.Conv2d "
            "only (MultiheadAttention computes its fused projections inside F.multi_head_attention_forward; "
            "RNNs, Embedding, Conv1d/Conv3d, transposed convolutions, Bilinear, subclasses that override "
            "forward() and parametrized weights are not supported), so these layers learn with backprop's "
            "gradient. Build them from nn.Linear / nn.Conv2d (e.g. bioplastic.architectures.vit's attention) "
            "to put them on the rule, or pass exclude=[...] to keep them on backprop deliberately (no warning). "
            "The reasons are in conversion_report(model).kept", UserWarning, stacklevel=2)
    return new


_UNSUPPORTED_WEIGHT_TYPES = (nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase, nn.Embedding, nn.EmbeddingBag,
                             nn.Bilinear, nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                             nn.ConvTranspose3d)


def _weight_bearing(m: nn.Module, name: str, reasons: Mapping[str, str]) -> bool:
    """Whether a module left on backprop holds a weight matrix / kernel the rules would normally train.

    Linear / Conv2d kept for a reason other than the user's ``exclude`` (overridden forward, parametrized),
    the unsupported weight layers (MultiheadAttention counts once, not its inner projections), and any other
    module with its own ``weight`` parameter of 2 or more dims (a custom layer). Normalisation layers, PReLU
    and free parameters (a ViT's class token, position embedding) are not weight layers.
    """
    if name in reasons:
        return True
    if isinstance(m, _UNSUPPORTED_WEIGHT_TYPES):
        return True
    if isinstance(m, (_NORM_TYPES, nn.PReLU, *_WEIGHT_TYPES)):
        return False
    weight = m._parameters.get("weight")
    return isinstance(weight, torch.Tensor) and weight.ndim >= 2


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel / DataParallel keep the converted model in .module
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module) and _REPORT_ATTR not in model.__dict__:
        return inner
    return model


def conversion_report(model: nn.Module) -> ConversionReport:
    """The :class:`ConversionReport` of a model returned by :func:`convert`.

    Raises
    ------
    ValueError
        If ``model`` was not produced by :func:`convert`.
    """
    report = _unwrap(model).__dict__.get(_REPORT_ATTR)
    if report is None:
        raise ValueError("model was not produced by bioplastic.convert (no conversion report)")
    return report


def feedback_layers(model: nn.Module) -> list[tuple[str, FeedbackLayer]]:
    """``(name, layer)`` of every converted layer, in module (forward-definition) order."""
    return [(n, m) for n, m in _unwrap(model).named_modules() if isinstance(m, FeedbackLayer)]


def set_targets(model: nn.Module, targets: torch.Tensor) -> None:
    """Give a converted model the targets of its latest forward pass, for Oja's rule with targets.

    ``feedback_learning="oja"`` with ``oja_covariance="targets"`` (or ``"auto"``) forms ``P``'s covariance from
    the targets at the output layer (layer-wise LDFA) or at every layer (direct LDFA): the label covariance
    ``Sigma^yy`` of Hanut & Kadmon (2025, arXiv:2502.20580, ICLR Eq. 8). Call it after the forward pass and
    before ``loss.backward()``; bioplastic's trainer does. Models whose rule does not read targets ignore them.

    Parameters
    ----------
    model : torch.nn.Module
        A model returned by :func:`convert` (also wrapped: DDP, ``torch.compile``).
    targets : torch.Tensor
        Class indices, integer, shape ``(N,)``, or target vectors, floating point, shape ``(N, d)``; ``N`` the
        rows of the output layer's error (the batch), ``d`` its width. Detached; not copied.

    Raises
    ------
    TypeError
        ``targets`` is not a tensor.
    ValueError
        ``model`` has no converted layers.
    RuntimeError
        No forward pass has run yet.
    """
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a torch.Tensor, got {type(targets).__name__}")
    layers = feedback_layers(model)
    if not layers:
        raise ValueError("set_targets: the model has no converted layers; convert it with bioplastic.convert first")
    bus = layers[0][1].bus
    if bus.last is None:
        raise RuntimeError("set_targets: call it after the forward pass (the targets belong to that pass)")
    bus.last.targets = targets.detach()


def needs_targets(model: nn.Module) -> bool:
    """Whether the converted model's rule computes the error it sends from the batch targets (DRTP), so that every
    backward pass needs :func:`set_targets` first. False for a model without converted layers."""
    layers = feedback_layers(model)
    return bool(layers) and layers[0][1].rule.needs_targets


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Forward and feedback parameters, for separate optimisers or parameter groups.

    Returns
    -------
    forward_params : list of Parameter
        Every parameter of the model that is not a feedback parameter (as ``model.parameters()``).
    feedback_params : list of Parameter
        The trainable feedback parameters (``B`` of Kolen-Pollack, ``P`` / ``Q`` of adaptive LDFA); frozen
        feedback (``fa``, ``dfa``, ``fixed`` ...) is in neither list.
    """
    fb_all: set[int] = set()
    feedback: list[nn.Parameter] = []
    for _, layer in feedback_layers(model):
        for p in layer.feedback_parameters():
            fb_all.add(id(p))
            if p.requires_grad:
                feedback.append(p)
    forward = [p for p in model.parameters() if id(p) not in fb_all]
    return forward, feedback


def param_groups(model: nn.Module, lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Optimiser parameter groups realising the rule's feedback learning rate and weight decay.

    ``[{"name": "forward", "params": ..., "lr": lr, "weight_decay": weight_decay},
    {"name": "feedback", "params": ..., "lr": ..., "weight_decay": ...}]`` for e.g.
    ``torch.optim.AdamW(param_groups(model, 1e-3, 0.05))``. Feedback group: Kolen-Pollack gets the forward
    ``lr`` and ``weight_decay`` (Akrout et al. 2019: same update and decay on both sides, so ``B -> W``);
    LDFA gets ``rule.feedback_lr`` (or ``lr`` when None) and ``rule.feedback_weight_decay`` (decoupled with
    AdamW, as the authors); when that is None (the default of ``q_only`` and ``oja``, whose ``Q`` learns by
    Kolen-Pollack) the forward ``weight_decay``, so that ``Q - P^T W`` decays as ``B - W`` does. The feedback
    group is omitted when there is no trainable feedback.
    """
    forward, feedback = split_parameters(model)
    groups = [{"name": "forward", "params": forward, "lr": lr, "weight_decay": weight_decay}]
    if feedback:
        conversion_report(model)  # raises for a model not produced by convert
        fb_lr, fb_wd = feedback_layers(model)[0][1].rule.feedback_hyper(lr, weight_decay)
        groups.append({"name": "feedback", "params": feedback, "lr": fb_lr, "weight_decay": fb_wd})
    return groups


def feedback_step(model: nn.Module) -> None:
    """Call after each optimiser step: counts steps and runs the rule's periodic actions.

    Currently: the ``normative`` LDFA re-initialisation of ``P, Q`` from the truncated SVD of ``W`` every
    ``reinit_every`` steps (Hanut & Kadmon 2025: every half epoch). Otherwise a Python counter increment per
    layer: no device synchronisation.
    """
    for _, layer in feedback_layers(model):
        layer._count_step()
        every = getattr(layer.rule, "reinit_every", None)
        if every is not None and layer.steps % every == 0:
            layer.reinit_feedback_svd()
