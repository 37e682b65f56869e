"""The feedback-alignment family: FA, DFA, DRTP, sign symmetry and Kolen-Pollack.

Each rule keeps the exact weight update ``grad_W = delta^T h`` and replaces the transported ``W`` in the error
sent below (``g_in = delta W`` under backprop) by another matrix (docs/rules.md, "The rules").
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

from bioplastic._checks import check_choice
from bioplastic.rules.base import Rule
from bioplastic.rules.ops import target_rows

__all__ = ["FeedbackAlignment", "DirectFeedbackAlignment", "DirectRandomTargetProjection", "SignSymmetry",
           "KolenPollack", "weight_std", "uniform", "sign_and_mean_abs"]

SIGN_SCALES = ("mean_abs", "unit")


def weight_std(weight: torch.Tensor) -> float:
    """Standard deviation of a layer's weights, the scale of its random feedback.

    Falls back to ``1 / sqrt(3 fan_in)`` (the s.d. of PyTorch's default uniform initialisation) for a weight
    with one entry, all entries equal, or non-finite entries.
    """
    w = weight.detach()
    std = float(w.float().std()) if w.numel() > 1 else 0.0
    if std == 0.0 or not math.isfinite(std):
        std = 1.0 / math.sqrt(3 * w[0].numel())
    return std


def uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    """Entries uniform in ``[-bound, bound]`` (CPU float32), drawn from ``generator``."""
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


@dataclasses.dataclass(frozen=True)
class FeedbackAlignment(Rule):
    """Feedback alignment: ``g_in = delta B`` with a fixed random ``B`` of the shape of ``W``.

    ``B`` is drawn once at conversion, uniform with the variance of the layer's weights
    (``sqrt(3) std(W)`` bound), and never learns; the forward weights come to align with it (Lillicrap,
    Cownden, Tweed & Akerman 2016, Nat Commun 7:13276).
    """

    name = "fa"
    display_name = "FA"
    feedback = "matrix"
    feedback_names = ("B",)

    def feedback_shapes(self, weight_shape, *, rank=None, groups=1, d=None, input_shape=None):
        """``{"B": weight_shape}``: ``(out, in)`` or ``(C_out, C_in/g, k, k)``."""
        return {"B": tuple(weight_shape)}

    def init_feedback(self, weight, *, rank=None, groups=1, d=None, input_shape=None, generator=None):
        """``B`` uniform in ``[-sqrt(3) s, sqrt(3) s]``, ``s`` = :func:`weight_std` (the variance of ``W``)."""
        return {"B": uniform(tuple(weight.shape), math.sqrt(3.0) * weight_std(weight), generator)}

    def feedback_kernel(self, weight, feedback):
        """``(B, None)``: the error sent below is ``delta B``."""
        return feedback[0], None


@dataclasses.dataclass(frozen=True)
class KolenPollack(FeedbackAlignment):
    """Kolen-Pollack (weight mirror): ``g_in = delta B`` with ``grad_B = grad_W = delta^T h``.

    ``B`` receives exactly the forward weight's update; with the same optimiser and the same weight decay on
    both sides, ``B - W`` shrinks by ``(1 - lr * weight_decay)`` per step, so ``B -> W`` and the rule becomes
    backprop (Kolen & Pollack 1994; Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019, NeurIPS).
    The weight decay is the optimiser's: :func:`bioplastic.nn.param_groups` gives ``B`` the forward learning
    rate and weight decay (:attr:`feedback_decay_follows_forward`). Without weight decay ``B - W`` never
    shrinks. ``B`` starts as in :class:`FeedbackAlignment`.
    """

    name = "kolen_pollack"
    display_name = "Kolen-Pollack"
    mirrors_weight_gradient = True

    def learns(self, name):
        self._check_feedback_name(name)
        return True

    @property
    def feedback_decay_follows_forward(self) -> bool:
        return True

    def feedback_gradients(self, ops, weight, feedback, need, *, grad_w=None, z=None):
        """``[grad_W]``: ``B`` gets exactly ``W``'s update (the executor passes its ``grad_W``)."""
        return [grad_w if need[0] else None]


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
    display_name = "DFA"
    feedback = "direct"
    feedback_names = ("D",)
    direct = True

    def feedback_shapes(self, weight_shape, *, rank=None, groups=1, d=None, input_shape=None):
        """``{"D": (d, *input_shape)}``."""
        return {"D": (d, *input_shape)}

    def init_feedback(self, weight, *, rank=None, groups=1, d=None, input_shape=None, generator=None):
        """``D`` uniform in ``[-1/sqrt(d), 1/sqrt(d)]``."""
        return {"D": uniform((d, *input_shape), 1.0 / math.sqrt(d), generator)}

    def feedback_matrix(self, weight, feedback, *, groups=1):
        """``D`` (d, in): the map of ``e``; it maps ``delta`` only at the output layer (where ``delta = e``)."""
        return feedback[0]

    def send_error(self, ops, weight, feedback, z=None):
        """``g_in = e D``: ``ops.error`` is ``e`` (N, d), ``feedback[0]`` is ``D`` as a (d, in) matrix."""
        return ops.send(ops.error, feedback[0])


@dataclasses.dataclass(frozen=True)
class DirectRandomTargetProjection(DirectFeedbackAlignment):
    """Direct random target projection (DRTP): every layer ``l`` sends ``g_in_l = y* D_l`` below.

    ``y*`` (shape ``(batch, d)``) is the one-hot target of the batch (or the target vectors, for float targets):
    the hidden layers learn from a fixed random projection of the *target* instead of the error, so no error
    travels backwards and a layer can update as soon as its forward pass is done (Frenkel, Lefebvre & Bol 2021,
    "Learning without feedback: fixed random learning signals allow for feedforward training of deep neural
    networks", Front. Neurosci. 15:629892, Eq. for ``delta y_k = (B_k^T y*) . f'(y_k)``; ``D_l`` here is their
    ``B_l^T`` in PyTorch's row convention). ``D_l`` is a fixed random ``(d, in_l)`` matrix
    (``(d, C_in, H, W)`` for a Conv2d layer) drawn as DFA's, uniform in ``[-1/sqrt(d), 1/sqrt(d)]``; its sign
    is arbitrary (``D`` and ``-D`` are equally likely), so the paper's sign convention needs no special case.
    The output layer, as under every rule, updates with its exact error ``e``.

    The targets reach the layers through the model's error bus: :func:`bioplastic.nn.set_targets` after the
    forward pass and before ``loss.backward()`` (bioplastic's trainer, :func:`bioplastic.nn.alignment` and
    :func:`bioplastic.testing.gradients` call it). Class indices are one-hot encoded to the output size ``d``.

    Raises
    ------
    RuntimeError
        In backward, when the targets of the batch were not given.
    ValueError
        In backward, targets whose shape does not match the output rows or class indices outside ``[0, d)``.
    """

    name = "drtp"
    display_name = "DRTP"
    feedback = "target"
    needs_targets = True

    @property
    def gradients_scale_with_loss(self) -> bool:
        """False: the hidden layers' teaching signal is the target, whatever the loss scale."""
        return False

    def send_error(self, ops, weight, feedback, z=None):
        """``g_in = y* D``: ``y*`` the one-hot targets (N, d), ``feedback[0]`` is ``D`` as a (d, in) matrix."""
        if ops.targets is None:
            raise RuntimeError(
                f"layer {ops.layer_name!r} (drtp) needs the targets of this batch: call "
                "bioplastic.nn.set_targets(model, targets) after the forward pass and before backward "
                "(bioplastic's trainer does)")
        n_rows, width = ops.error.shape[0], feedback[0].shape[0]
        y = target_rows(ops.targets.to(ops.error.device), n_rows, width, standardize=False, dtype=ops.error.dtype)
        return ops.send(y, feedback[0])

    def feedback_matrix(self, weight, feedback, *, groups=1):
        """``None``: the error sent below maps the targets, not the layer's ``delta`` (not even at the output)."""
        return None


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
    display_name = "sign symmetry"
    weight_transport = "sign"
    feedback = "sign"
    rotation_covariant = False
    scale: Literal["mean_abs", "unit"] = "mean_abs"

    def __post_init__(self) -> None:
        check_choice("sign_symmetry scale", self.scale, SIGN_SCALES)

    def feedback_kernel(self, weight, feedback):
        """``(sign(W), s)``: ``s = mean |W|`` (``"mean_abs"``) or ``None`` (``"unit"``)."""
        if self.scale == "unit":
            return torch.sign(weight), None
        return sign_and_mean_abs(weight)


#: Elements per block of :func:`sign_and_mean_abs` (512 KiB of float32: a block stays in cache between its
#: two reads); weights below ``_ONE_PASS_MIN_NUMEL`` take the two whole-tensor passes.
_BLOCK_NUMEL = 1 << 17
_ONE_PASS_MIN_NUMEL = 1 << 19


def sign_and_mean_abs(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sign(W), mean |W|)``, for a large CPU weight in one pass over ``W`` (issue 14).

    ``sum |W| = sum sign(W) * W`` is taken block by block from the block of ``sign(W)`` just written (still
    in cache), so ``W`` is read from memory once, not twice, and no ``|W|`` temporary is made. The value is
    ``weight.abs().mean()`` up to the floating-point summation order. Under autograd, on other devices and
    for small weights: ``torch.sign(W), W.abs().mean()``.
    """
    if (weight.device.type != "cpu" or weight.numel() < _ONE_PASS_MIN_NUMEL or not weight.is_contiguous()
            or (torch.is_grad_enabled() and weight.requires_grad)):
        return torch.sign(weight), weight.abs().mean()
    flat = weight.view(-1)
    sign = torch.empty_like(weight)
    sign_flat = sign.view(-1)
    parts = []
    for i in range(0, flat.numel(), _BLOCK_NUMEL):
        block = flat[i:i + _BLOCK_NUMEL]
        sign_block = sign_flat[i:i + _BLOCK_NUMEL]
        torch.sign(block, out=sign_block)
        parts.append(torch.dot(sign_block, block))
    return sign, torch.stack(parts).sum() / flat.numel()
