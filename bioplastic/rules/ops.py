"""The matrix layout of a layer's signals: the products the rules' formulas are written with.

A rule writes its maths once with the products of this module (``g_in = (delta P) Q`` is
``ops.send(ops.compress(ops.error, P), Q)``). :class:`DenseOps` evaluates them on rows: a batch of ``N`` rows,
``error`` (N, out) and ``h`` (N, in), all products plain matrix products. The convolution executor of
:mod:`bioplastic.nn` supplies the same methods as convolutions (no unfolding), and the linear theory
(:mod:`bioplastic.theory`) the population moments factorised as rows (docs/rules.md, "How the rules are
written").
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["DenseOps", "target_rows"]


class DenseOps:
    """Signals and products of one layer in row form (Linear layers, the direct rules, the theory).

    Parameters
    ----------
    error : torch.Tensor
        (N, k): the rows the rule's feedback acts on: the layer's error ``delta`` (N, out), or the output
        error ``e`` (N, d) for a direct rule.
    h : torch.Tensor or callable, optional
        (N, in): the layer's input rows, or a function returning them (evaluated once, when first read).
    targets : torch.Tensor, optional
        The batch targets given by :func:`bioplastic.nn.set_targets` (class indices (N,) or vectors (N, d)).
    is_output : bool
        Whether the layer is the model's output layer.
    layer_name : str
        For error messages.
    covariance : tuple of (torch.Tensor, bool), optional
        ``(C, normalise)``: a covariance (out, out) for Oja's rule in place of the rows' own, divided by its
        trace when ``normalise`` (the linear theory's population moments, whose rows are not available).
    weight_gradient : torch.Tensor, optional
        (out, in): the layer's exact weight gradient ``error^T h`` of these rows when the executor computed it
        (never for a direct rule, whose ``error`` is not the layer's). Rules may then take sums over the rows
        from it (``delta^T (h Q^T) = grad_W Q^T``) where that is cheaper:
        :func:`bioplastic.rules.low_rank.from_weight_gradient`.

    Attributes
    ----------
    groups : int
        Always 1 (grouped convolutions have their own layout).
    supports_targets : bool
        True: the rows are batch rows, so targets have one row per error row.
    """

    groups = 1
    supports_targets = True

    def __init__(self, error: torch.Tensor, h: torch.Tensor | Callable[[], torch.Tensor] | None = None, *,
                 targets: torch.Tensor | None = None, is_output: bool = False, layer_name: str = "layer",
                 covariance=None, weight_gradient: torch.Tensor | None = None) -> None:
        self.error = error
        self.weight_gradient = weight_gradient
        self._h = h
        self.targets = targets
        self.is_output = is_output
        self.layer_name = layer_name
        self.covariance = covariance

    @property
    def h(self) -> torch.Tensor:
        """The input rows (N, in)."""
        if callable(self._h):
            self._h = self._h()
        return self._h

    # products ---------------------------------------------------------------------------------------------------
    @staticmethod
    def compress(a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``a P``: rows of the output space (N, out) to the feedback units (N, r)."""
        return a.mm(p)

    @staticmethod
    def send(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``a M``: rows (N, k) through a (k, in) matrix to the input space (N, in)."""
        return a.mm(m)

    def outer(self, a: torch.Tensor, shape=None) -> torch.Tensor:
        """``a^T h`` (k, in): the weight-gradient form (``delta^T h`` is ``grad_W``). ``shape`` is unused here
        (a convolution layout needs the kernel shape)."""
        return a.t().mm(self.h)

    def drive(self, q: torch.Tensor) -> torch.Tensor:
        """``h Q^T`` (N, r): the feedforward drive of the feedback units."""
        return self.h.mm(q.t())

    @staticmethod
    def rows(a: torch.Tensor) -> torch.Tensor:
        """``a`` as the rows of :meth:`cross` (identity here)."""
        return a

    @staticmethod
    def centre(rows: torch.Tensor) -> torch.Tensor:
        """Rows minus their mean over the batch."""
        return rows - rows.mean(0, keepdim=True)

    @staticmethod
    def project(rows: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``rows P`` for rows of :meth:`rows`."""
        return rows.mm(p)

    @staticmethod
    def grouped(p: torch.Tensor) -> torch.Tensor:
        """``P`` in the layout of :meth:`cross`'s results (identity here)."""
        return p

    @staticmethod
    def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a^T b`` summed over rows: (N, k1), (N, k2) -> (k1, k2).

        With ``k1 > k2`` (e.g. ``grad_P = delta^T (h Q^T)``: k1 = out, k2 = r) computed as ``(b^T a)^T``, the
        same sum in the orientation a CPU GEMM runs about twice as fast (a transposed view of the result)."""
        if a.shape[1] > b.shape[1]:
            return b.t().mm(a).t()
        return a.t().mm(b)

    @staticmethod
    def flat(t: torch.Tensor) -> torch.Tensor:
        """``t`` as a matrix ``t.reshape(t.shape[0], -1)`` (a view)."""
        return t.reshape(t.shape[0], -1)


def target_rows(targets, n_rows: int, width: int, *, standardize: bool, dtype=None):
    """The rows ``T`` (``n_rows``, ``width``) whose covariance ``T^T T`` drives Oja's rule with targets.

    Parameters
    ----------
    targets : torch.Tensor
        Class indices (integer, shape ``(n_rows,)``; one-hot encoded to ``width`` classes) or target vectors
        (floating point, shape ``(n_rows, width)``: regression targets, soft labels).
    n_rows, width : int
        Rows and width of the layer's error (``N`` rows of the flattened batch, ``d`` outputs).
    standardize : bool
        Standardise each column over the batch, ``(T - mean) / (std + 1e-8)``: the authors' direct variant
        (``rADFA_linear.py`` of github.com/maherhanut1/LDFA). Without it the raw one-hot labels (their
        layer-wise output layer, ``rAFA_linear.py``): ``T^T T / N`` is the label covariance ``Sigma^yy``.
    dtype : torch.dtype, optional

    Raises
    ------
    ValueError
        Targets whose shape does not match the layer's error rows, or class indices outside ``[0, width)``.
    """
    if not targets.is_floating_point():
        if tuple(targets.shape) != (n_rows,):
            raise ValueError(f"oja targets: class indices must have shape ({n_rows},) (one per error row of the "
                             f"output layer), got {tuple(targets.shape)}")
        # checked on CPU only: on an accelerator a host read would sync every step (F.one_hot checks there)
        lo, hi = (int(targets.min()), int(targets.max())) if targets.device.type == "cpu" else (0, 0)
        if lo < 0 or hi >= width:
            raise ValueError(f"oja targets: class indices must lie in [0, {width}), got values in [{lo}, {hi}]")
        t = F.one_hot(targets.long(), width).to(dtype or torch.get_default_dtype())
    else:
        t = targets.reshape(-1, targets.shape[-1]) if targets.dim() > 1 else targets
        if tuple(t.shape) != (n_rows, width):
            raise ValueError(f"oja targets: target vectors must have shape ({n_rows}, {width}) (one per error row "
                             f"of the output layer), got {tuple(targets.shape)}")
        t = t.to(dtype or t.dtype)
    if standardize:
        std = t.std(0) if n_rows > 1 else torch.zeros_like(t[0])
        t = (t - t.mean(0)) / (std + 1e-8)
    return t
