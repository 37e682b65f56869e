"""Vision transformer (ViT) for small images, written so that every projection is an ``nn.Linear``.

Follows Dosovitskiy et al. (2021, "An image is worth 16x16 words", ICLR) with pre-norm blocks, and the
CIFAR-10 configuration of Hanut & Kadmon (2025, arXiv:2502.20580): 32x32 images, patch 4 (64 tokens),
width 384, depth 8, 8 heads, MLP ratio 2 (``models/vit_cifar.toml``; ``models/vit_small.toml`` is a
narrow, shallow variant for CPUs).

Attention uses a fused ``qkv = nn.Linear(dim, 3 * dim)`` and an output projection ``proj = nn.Linear(dim,
dim)`` around :func:`torch.nn.functional.scaled_dot_product_attention`, not ``nn.MultiheadAttention`` (whose
projections are applied functionally and could not be swapped by ``bioplastic.convert``). The softmax
attention, layer norms, GELU and residual sums keep their exact derivatives under every learning rule; only
the error sent through the Linear layers is replaced. The patch embedding is a ``Conv2d`` with kernel =
stride = patch size; the paper keeps it on backprop (``exclude=["patch_embed"]``, see :data:`CONVERT_EXCLUDE`),
and the fused qkv layer gets rank 3r (:func:`vit_ranks`).

Regularisation as in the authors' ViT (timm's ``VisionTransformer`` with ``drop_rate``, ``attn_drop_rate``,
``drop_path_rate``; 0.1 each in their CIFAR-10 configs, ``configs/cifar10_configs/*.yaml`` of
github.com/maherhanut1/Low-Dimensional-Feedback): ``dropout`` after the position embedding, after the
attention's output projection, after the MLP's activation and its second layer, and before the head;
``attention_dropout`` on the attention probabilities; ``drop_path`` (stochastic depth, Huang et al. 2016) on
each residual branch, rising linearly from 0 in the first block to ``drop_path`` in the last. All are
identities in ``eval()`` mode and at probability 0 (the default).

Module names::

    patch_embed                      Conv2d(in_channels, dim, patch, stride=patch)
    pos_drop                         Dropout after the position embedding
    blocks.{i}.norm1, blocks.{i}.attn.qkv, blocks.{i}.attn.proj, blocks.{i}.attn.proj_drop, blocks.{i}.drop_path1
    blocks.{i}.norm2, blocks.{i}.mlp.fc1, blocks.{i}.mlp.act, blocks.{i}.mlp.drop1, blocks.{i}.mlp.fc2,
    blocks.{i}.mlp.drop2, blocks.{i}.drop_path2
    norm, head_drop, head            final LayerNorm, Dropout and the classifier
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from bioplastic._checks import check_choice, check_positive_int
from bioplastic.architectures.spec import check_dropout, register

__all__ = ["Attention", "MLP", "Block", "DropPath", "ViT", "vit", "vit_ranks", "drop_path", "CONVERT_EXCLUDE"]

#: Layers the paper keeps on backprop when converting a ViT.
CONVERT_EXCLUDE = ("patch_embed",)

Pool = Literal["cls", "mean"]
POOLS = ("cls", "mean")


def drop_path(x: torch.Tensor, p: float, training: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016, "Deep networks with stochastic depth", ECCV): in training, zero
    the whole residual branch ``x`` of each sample with probability ``p`` and scale the kept ones by
    ``1 / (1 - p)``, so that the expectation over the mask is ``x``; the identity in evaluation or at p = 0.

    Parameters
    ----------
    x : torch.Tensor
        Branch output, shape (N, ...); one Bernoulli draw per sample (dim 0).
    p : float
        Drop probability in [0, 1).
    training : bool
        Apply the mask (``module.training``).
    generator : torch.Generator, optional
        Source of the mask (default: torch's global generator).

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.
    """
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep, generator=generator)
    return x * mask / keep


class DropPath(nn.Module):
    """:func:`drop_path` as a module (identity in ``eval()`` mode)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = check_dropout("drop_path", p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` Linear and an output projection ``proj``.

    Input and output (N, T, dim). ``dim`` must be divisible by ``heads``. ``attention_dropout`` drops
    attention probabilities (training only); ``dropout`` follows the output projection.
    """

    def __init__(self, dim: int, heads: int, *, bias: bool = True, attention_dropout: float = 0.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by the number of heads {heads}")
        self.heads = heads
        self.attention_dropout = check_dropout("attention_dropout", attention_dropout)
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.proj_drop = nn.Dropout(check_dropout("dropout", dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        p = self.attention_dropout if self.training else 0.0
        q, k, v = qkv.unbind(0)  # one backward node (indexing three times zero-fills and adds three full copies)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (N, heads, T, c / heads)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(n, t, c)))


class MLP(nn.Module):
    """Token-wise ``drop2(fc2(drop1(GELU(fc1(x)))))`` with hidden width ``hidden`` and dropout ``dropout``."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        check_dropout("dropout", dropout)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + drop_path(attn(norm1(x)))`` then ``x + drop_path(mlp(norm2(x)))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, *, dropout: float = 0.0,
                 attention_dropout: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, attention_dropout=attention_dropout, dropout=dropout)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, max(1, int(round(dim * mlp_ratio))), dropout=dropout)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    """Vision transformer for images of size ``image_size`` (square).

    Parameters
    ----------
    image_size : int
        Height = width of the input in pixels; must be divisible by ``patch_size``.
    patch_size : int
        Side of the square patches (tokens = (image_size / patch_size) ** 2).
    in_channels, n_classes : int
        Input channels and number of outputs d.
    dim, depth, heads : int
        Token width, number of blocks, attention heads (``dim % heads == 0``).
    mlp_ratio : float
        Hidden width of each block's MLP relative to ``dim``.
    pool : {"cls", "mean"}
        Classify from a learned class token, or from the mean over patch tokens.
    dropout : float
        Dropout probability after the position embedding, the attention's output projection, the MLP's
        activation and second layer, and before the head (timm's ``drop_rate``; the authors: 0.1).
    attention_dropout : float
        Dropout probability of the attention weights (timm's ``attn_drop_rate``; the authors: 0.1).
    drop_path : float
        Stochastic-depth probability of the last block's residual branches; block i of D uses
        ``drop_path * i / (D - 1)`` (timm's ``drop_path_rate``; the authors: 0.1).

    Notes
    -----
    Input (N, in_channels, image_size, image_size) -> logits (N, n_classes). Parameters:
    patch embedding ``p^2 c_in dim + dim``; position embedding ``(T + [cls]) dim``; class token ``dim``
    (pool "cls"); per block ``4 dim`` (two LayerNorms) ``+ 3 dim^2 + 3 dim`` (qkv) ``+ dim^2 + dim`` (proj)
    ``+ 2 dim h + h + dim`` (MLP, h = round(mlp_ratio dim)); final norm ``2 dim``; head ``(dim + 1) d``.
    Initialisation: truncated normal (std 0.02) for Linear weights and embeddings, zero biases (as in
    the reference ViT implementations).
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        n_classes: int = 10,
        dim: int = 384,
        depth: int = 8,
        heads: int = 8,
        mlp_ratio: float = 2.0,
        pool: Pool = "cls",
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        check_dropout("dropout", dropout)
        check_dropout("attention_dropout", attention_dropout)
        check_dropout("drop_path", drop_path)
        for name, value in (("image_size", image_size), ("patch_size", patch_size), ("in_channels", in_channels),
                            ("n_classes", n_classes), ("dim", dim), ("depth", depth), ("heads", heads)):
            check_positive_int(name, value)
        check_choice("pool", pool, POOLS)
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {patch_size}")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio!r}")
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by the number of heads {heads}")
        self.image_size = image_size
        self.pool = pool
        n_tokens = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, n_tokens + (pool == "cls"), dim))
        self.pos_drop = nn.Dropout(dropout)
        # stochastic depth rising linearly over the blocks (timm: torch.linspace(0, drop_path_rate, depth))
        rates = [drop_path * i / (depth - 1) if depth > 1 else drop_path for i in range(depth)]
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, dropout=dropout, attention_dropout=attention_dropout,
                                            drop_path=p) for p in rates])
        self.norm = nn.LayerNorm(dim)
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, n_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_classes) of images ``x`` (N, in_channels, image_size, image_size)."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"ViT built for {self.image_size}x{self.image_size} images, got {tuple(x.shape)}")
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, T, dim)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.norm(self.blocks(self.pos_drop(tokens + self.pos_embed)))
        pooled = tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
        return self.head(self.head_drop(pooled))


def vit_ranks(model: nn.Module, rank: int, *, qkv_factor: int = 3) -> dict[str, int]:
    """Per-layer rank overrides for ``bioplastic.convert(..., ranks=...)``: ``qkv_factor * rank`` for every
    fused ``qkv`` Linear (its error carries queries, keys and values; Hanut & Kadmon 2025 use rank 3r).

    Parameters
    ----------
    model : nn.Module
        A :class:`ViT` (or any model whose fused projections are named ``*.qkv``).
    rank : int
        The rank r of the other layers.

    Returns
    -------
    dict
        ``{"blocks.0.attn.qkv": 3 r, ...}``.
    """
    check_positive_int("rank", rank)
    return {name: qkv_factor * rank for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.split(".")[-1] == "qkv"}


#: Builder of the registered architecture ``"vit"``: the class itself (spec keys are its keyword
#: arguments; see :class:`ViT` for them and what is raised).
vit = register("vit")(ViT)
