"""Data augmentation on batches of image tensors, on the training device, with an explicit generator.

Random crop with padding and horizontal flip, the standard CIFAR augmentation (He et al. 2016, "Deep residual
learning for image recognition", CVPR: pad 4, random 32x32 crop, flip with probability 1/2), vectorised over
the batch: one gather for all crops and one ``torch.where`` for all flips, no per-image Python loop. Random
numbers come from a caller-owned :class:`torch.Generator` (on any device; the draws are moved to the batch's
device), so the same seed gives the same augmented batches on CPU and CUDA.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from bioplastic._checks import check_choice

__all__ = ["random_crop", "horizontal_flip", "RandomCropFlip", "crop_offsets", "PADDING_MODES"]

PaddingMode = Literal["constant", "reflect", "replicate"]
PADDING_MODES = ("constant", "reflect", "replicate")


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"expected a batch of images of shape (N, C, H, W), got {getattr(x, 'shape', type(x))}")


def crop_offsets(n: int, padding: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the crop offsets used by :func:`random_crop`: rows and columns, each (n,) int64 in ``[0, 2 padding]``,
    on the generator's device."""
    draws = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=generator.device)
    return draws[0], draws[1]


def random_crop(
    x: torch.Tensor,
    padding: int,
    generator: torch.Generator,
    *,
    padding_mode: PaddingMode = "constant",
    fill: float = 0.0,
) -> torch.Tensor:
    """Pad every image by ``padding`` pixels on each side and crop it back to (H, W) at a random offset.

    Parameters
    ----------
    x : torch.Tensor
        Images (N, C, H, W), any float dtype, any device (not modified).
    padding : int
        Pixels added on each side; offsets are uniform in ``[0, 2 padding]`` per image and axis.
    generator : torch.Generator
        Source of the offsets (drawn as by :func:`crop_offsets`, two (N,) draws: rows then columns).
    padding_mode : {"constant", "reflect", "replicate"}
        How the border is filled (:func:`torch.nn.functional.pad`); "constant" uses ``fill`` (0 is the
        mean image after normalisation).
    fill : float
        Value of constant padding.

    Returns
    -------
    torch.Tensor
        (N, C, H, W): ``out[n] = pad(x)[n, :, i_n:i_n + H, j_n:j_n + W]``.

    Raises
    ------
    ValueError
        ``x`` not 4-D, negative padding, unknown ``padding_mode``.
    """
    _check_images(x)
    check_choice("padding_mode", padding_mode, PADDING_MODES)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if padding == 0:
        return x.clone()
    n, c, h, w = x.shape
    rows0, cols0 = crop_offsets(n, padding, generator)
    rows0, cols0 = rows0.to(x.device), cols0.to(x.device)
    if padding_mode == "constant":
        padded = F.pad(x, (padding,) * 4, mode="constant", value=fill)
    else:
        padded = F.pad(x, (padding,) * 4, mode=padding_mode)
    rows = rows0[:, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = cols0[:, None] + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]


def horizontal_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (one (N,) uniform draw from ``generator``).

    Parameters
    ----------
    x : torch.Tensor
        Images (N, C, H, W) (not modified).
    generator : torch.Generator
        Source of the draws.
    p : float
        Flip probability in [0, 1].

    Returns
    -------
    torch.Tensor
        (N, C, H, W).

    Raises
    ------
    ValueError
        ``x`` not 4-D or ``p`` outside [0, 1].
    """
    _check_images(x)
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"flip probability p must be in [0, 1], got {p!r}")
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class RandomCropFlip:
    """``augment(x, generator)`` callable for :class:`bioplastic.data.ArrayDataset`: random crop with padding,
    then horizontal flip (the standard CIFAR-10 augmentation). Picklable (usable in spawned DDP workers).

    Parameters
    ----------
    padding : int
        Crop padding in pixels (4 for 32x32 CIFAR images).
    flip : bool
        Also flip left-right with probability 1/2.
    padding_mode : {"constant", "reflect", "replicate"}
        Border filling of the crop.
    """

    def __init__(self, padding: int = 4, flip: bool = True, padding_mode: PaddingMode = "constant") -> None:
        check_choice("padding_mode", padding_mode, PADDING_MODES)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        self.padding = padding
        self.flip = bool(flip)
        self.padding_mode = padding_mode

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = random_crop(x, self.padding, generator, padding_mode=self.padding_mode)
        return horizontal_flip(out, generator) if self.flip else out

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip}, padding_mode={self.padding_mode!r})"
