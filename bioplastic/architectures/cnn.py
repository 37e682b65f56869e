"""Convolutional networks for CIFAR-sized images: the VGG-like CNN of Hanut & Kadmon (2025) and small variants.

The paper's convnet (Hanut & Kadmon 2025, arXiv:2502.20580, CIFAR-10 experiments; after Simonyan & Zisserman
2015, "Very deep convolutional networks", ICLR) is four blocks of two 3x3 convolutions with 64-128-256-512
channels, each followed by batch normalisation and ReLU, a 2x2 max-pool after every block, a global average
pool and a fully connected head. The authors' code (``CIFAR10CNNBP`` in ``models/ConvNet.py`` of
github.com/maherhanut1/Low-Dimensional-Feedback) leaves out the max-pool after the last block and uses the head
512 -> 256 -> ReLU -> dropout 0.4 -> 10. :func:`vgg` builds that family; the spec ``models/vgg_cifar.toml`` is
the authors' network and ``models/cnn_small.toml`` a narrow, shallow member that trains on a CPU in minutes.

Module names (what ``bioplastic.convert(..., exclude=..., ranks=...)`` and the alignment diagnostics use)::

    features.conv{b}_{i}, features.bn{b}_{i}, features.relu{b}_{i}, features.pool{b}   (b, i from 1)
    head.fc{j}, head.relu{j}, head.drop{j}                                             (hidden FC layers)
    head.out                                                                           (the classifier)
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from bioplastic._checks import check_positive_int
from bioplastic.architectures.spec import check_dropout, register

__all__ = ["VGG", "vgg", "scaled_widths"]


def scaled_widths(widths: Sequence[int], width_multiplier: float) -> list[int]:
    """Channel counts ``max(1, round(w * width_multiplier))`` for each block.

    Raises
    ------
    ValueError
        If ``width_multiplier`` is not a positive finite number.
    """
    mult = float(width_multiplier)
    if not (mult > 0 and mult < float("inf")):
        raise ValueError(f"width_multiplier must be a positive number, got {width_multiplier!r}")
    return [max(1, int(round(w * mult))) for w in widths]


class VGG(nn.Module):
    """VGG-like convolutional network with batch norm, max-pooling, global average pooling and an FC head.

    Parameters
    ----------
    in_channels : int
        Input channels (3 for RGB, 1 for grayscale).
    n_classes : int
        Number of outputs d.
    widths : sequence of int
        Channels of each block (after the width multiplier).
    convs_per_block : int
        3x3 convolutions per block (the paper: 2).
    head_widths : sequence of int
        Hidden widths of the fully connected head before the classifier (empty: the classifier directly
        follows the global average pool).
    batch_norm : bool
        Batch normalisation after every convolution (convolutions then have no bias).
    pool_every : int
        A 2x2 max-pool after every ``pool_every``-th block (1: after every block).
    pool_last : bool
        Whether the last block may be followed by a max-pool (False: the global average pool follows the last
        block's convolutions directly, as in the authors' network).
    dropout : float
        Dropout probability after the ReLU of every hidden FC layer of the head, in [0, 1) (the authors: 0.4;
        0 leaves the modules out; no effect without ``head_widths``).

    Notes
    -----
    Input (N, in_channels, H, W) -> logits (N, n_classes) for any H, W >= 2 ** (number of pools): the global
    average pool removes the spatial size. Parameter count (batch norm on, all widths w_b, k = 3):
    ``sum_b sum_i 9 * c_in * w_b + 2 * w_b`` for the convolutions and their BN, plus the head's
    ``sum (fan_in + 1) * fan_out``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        n_classes: int = 10,
        widths: Sequence[int] = (64, 128, 256, 512),
        convs_per_block: int = 2,
        head_widths: Sequence[int] = (),
        batch_norm: bool = True,
        pool_every: int = 1,
        pool_last: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_dropout("dropout", dropout)
        if not isinstance(pool_last, bool):
            raise ValueError(f"pool_last must be true or false, got {pool_last!r}")
        check_positive_int("in_channels", in_channels)
        check_positive_int("n_classes", n_classes)
        check_positive_int("convs_per_block", convs_per_block)
        check_positive_int("pool_every", pool_every)
        widths = [check_positive_int("widths[]", w) for w in widths]
        if not widths:
            raise ValueError("widths must name at least one block")
        head_widths = [check_positive_int("head_widths[]", w) for w in head_widths]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = in_channels
        for b, w in enumerate(widths, start=1):
            for i in range(1, convs_per_block + 1):
                layers[f"conv{b}_{i}"] = nn.Conv2d(c_in, w, kernel_size=3, padding=1, bias=not batch_norm)
                if batch_norm:
                    layers[f"bn{b}_{i}"] = nn.BatchNorm2d(w)
                layers[f"relu{b}_{i}"] = nn.ReLU()
                c_in = w
            if b % pool_every == 0 and (pool_last or b < len(widths)):
                layers[f"pool{b}"] = nn.MaxPool2d(2)
        self.features = nn.Sequential(layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        head: OrderedDict[str, nn.Module] = OrderedDict()
        fan_in = c_in
        for j, w in enumerate(head_widths, start=1):
            head[f"fc{j}"] = nn.Linear(fan_in, w)
            head[f"relu{j}"] = nn.ReLU()
            if dropout > 0:
                head[f"drop{j}"] = nn.Dropout(dropout)
            fan_in = w
        head["out"] = nn.Linear(fan_in, n_classes)
        self.head = nn.Sequential(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) of images ``x`` (N, in_channels, H, W)."""
        return self.head(self.flatten(self.pool(self.features(x))))


@register("vgg")
def vgg(*, widths: Sequence[int] = (64, 128, 256, 512), width_multiplier: float = 1.0, **options: Any) -> VGG:
    """Build a :class:`VGG` (registered architecture ``"vgg"``).

    Parameters
    ----------
    widths : sequence of int
        Channels of each block before scaling.
    width_multiplier : float
        Scales every block's channels: ``max(1, round(w * width_multiplier))``.
    **options
        The other keyword arguments of :class:`VGG` (``in_channels``, ``n_classes``, ``convs_per_block``,
        ``head_widths``, ``batch_norm``, ``pool_every``, ``pool_last``, ``dropout``).

    Raises
    ------
    ValueError
        Non-positive sizes or multiplier, ``dropout`` outside [0, 1), a non-boolean ``pool_last``.
    """
    return VGG(widths=scaled_widths(widths, width_multiplier), **options)
