"""Evaluation of a model during training: test loss and accuracy, the model-fits-the-data check and the
per-epoch alignment record (:func:`bioplastic.nn.alignment`, Hanut & Kadmon 2025, arXiv:2502.20580)."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bioplastic.training.amp import autocast

__all__ = ["evaluate", "check_model_fits", "record_alignment"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 4096,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and top-1 accuracy of ``model`` on (``x``, ``y``), computed without gradients.

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated in eval mode (restored to its previous mode on return).
    x : torch.Tensor
        Stored inputs (N, ...), on the model's device; ``transform(x[batch])`` gives model inputs.
    y : torch.Tensor
        Labels (N,), int64, same device.
    transform : callable
        The dataset's transform from stored inputs to model inputs.
    batch_size : int
        Samples per forward pass.
    amp_dtype : torch.dtype, optional
        Run the forward passes under autocast with this dtype (None: full precision).

    Returns
    -------
    (loss, accuracy) : tuple of 0-d float tensors on the model's device
        Mean cross-entropy in nats and accuracy as a fraction; read them once (no per-batch sync).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.eye(2)), model.bias.zero_()
    >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])
    >>> loss, accuracy = evaluate(model, x, y, lambda t: t)
    >>> round(float(accuracy), 4)
    0.6667
    """
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    try:
        for start in range(0, len(y), batch_size):
            xb, yb = transform(x[start : start + batch_size]), y[start : start + batch_size]
            with autocast(x.device, amp_dtype):
                out = model(xb)
            out = out.float()
            loss += F.cross_entropy(out, yb, reduction="sum")
            correct += (out.argmax(dim=1) == yb).sum()
    finally:
        model.train(was_training)
    n = max(len(y), 1)
    return loss / n, correct.double() / n


def check_model_fits(model: nn.Module, spec_name: str, dataset: Any) -> None:
    """Run two training samples through the plain model: the output must be (2, n_classes).

    Raises
    ------
    ValueError
        The model cannot take the dataset's inputs, or gives another number of outputs than the dataset has
        classes (the message names the spec, the dataset and the shapes).
    """
    was_training = model.training
    model.eval()
    x = dataset.transform(dataset.x_train[:2])
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # any shape error inside the model
        raise ValueError(f"model spec {spec_name!r} does not accept {dataset.name} inputs of shape "
                         f"{tuple(x.shape[1:])}: {exc}") from None
    finally:
        model.train(was_training)
    if out.ndim != 2 or out.shape[1] != dataset.n_classes:
        raise ValueError(f"model spec {spec_name!r} gives outputs of shape {tuple(out.shape[1:])} per sample but "
                         f"dataset {dataset.name!r} has {dataset.n_classes} classes")


def record_alignment(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable, history: dict,
                     epoch: int, epochs: int) -> None:
    """Per-layer alignment with backprop (:func:`bioplastic.nn.alignment`) on a fixed batch, model in eval
    mode, written into ``history["alignment"][name][epoch]`` (no RNG draws leak out)."""
    from bioplastic import nn as bnn

    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            ds = bnn.alignment(model, x, y, loss_fn)
    finally:
        model.train(was_training)
    layers = [str(v) for v in ds["layer"].values]
    if not history["layers"]:
        history["layers"] = layers
    for name in ds.data_vars:
        if "layer" not in ds[name].dims:
            continue
        rows = history["alignment"].setdefault(name, [[math.nan] * len(layers) for _ in range(epochs)])
        rows[epoch] = [float(v) for v in np.asarray(ds[name].values, dtype=float)]
