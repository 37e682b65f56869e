"""How fast Kolen-Pollack feedback forgets its start under a training recipe: a closed form per step.

Kolen-Pollack learning gives a feedback matrix the forward matrix's own gradient, projected where the feedback is
low-rank: ``grad_B = grad_W`` (``kolen_pollack``) or ``grad_Q = (delta P)^T h = P^T grad_W`` (LDFA ``q_only``, the
``Q`` of ``oja``). With the *same* linear optimiser on both sides (SGD, with or without heavy-ball momentum; the
same per-step learning rates ``lr_t``, momentum ``mu`` and coupled L2 weight decay ``lambda``) the data-driven
parts of the two updates cancel in the gap ``D = B - W`` (``D = Q - P^T W`` with ``P`` frozen), which follows a
linear recursion of its own, whatever the data (Kolen & Pollack 1994; Akrout et al. 2019, NeurIPS)::

    buf_1 = lambda D_0,   buf_t = mu buf_{t-1} + lambda D_{t-1}   (t > 1; PyTorch's SGD: first buffer = gradient)
    D_t   = D_{t-1} - lr_t buf_t

so ``D_t = c_t D_0`` with the scalar ``c_t`` of :func:`kolen_pollack_gap`. Without decay ``c_t = 1``: the
feedback keeps its random start for ever. Adam and AdamW normalise each parameter's gradient on its own, so
``Adam(P^T grad_W) != P^T Adam(grad_W)`` and no such recursion exists (docs/rules.md, "Kolen-Pollack decay").

Choose the decay of a recipe with it: ``kolen_pollack_gap(step_learning_rates(config, n_train),
config.weight_decay, momentum=config.momentum)[-1]`` is the fraction of the initial gap left after the run.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["kolen_pollack_gap", "step_learning_rates"]


def kolen_pollack_gap(lrs: Any, weight_decay: float, *, momentum: float = 0.0) -> np.ndarray:
    """Fraction ``c_t`` of the initial Kolen-Pollack gap left after each SGD step (closed form, see the module).

    Parameters
    ----------
    lrs : array-like, shape (T,)
        Learning rate of each optimiser step (the schedule included), ``>= 0``.
    weight_decay : float
        Coupled L2 weight decay ``lambda >= 0`` of ``torch.optim.SGD``, the same on the forward and the feedback
        weights.
    momentum : float, default 0
        Heavy-ball momentum ``mu`` in [0, 1) of ``torch.optim.SGD`` (no dampening, no Nesterov).

    Returns
    -------
    numpy.ndarray, shape (T + 1,)
        ``c_0 = 1, c_1, ..., c_T``: ``B_t - W_t = c_t (B_0 - W_0)`` (``Q_t - P^T W_t = c_t (Q_0 - P^T W_0)``).

    Raises
    ------
    ValueError
        Non-finite or negative learning rates or decay, momentum outside [0, 1), ``lrs`` not one-dimensional.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    if lrs.ndim != 1:
        raise ValueError(f"lrs must be one-dimensional (one learning rate per step), got shape {lrs.shape}")
    if not (np.all(np.isfinite(lrs)) and np.all(lrs >= 0)):
        raise ValueError("lrs must be finite and >= 0")
    if isinstance(weight_decay, bool) or not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if isinstance(momentum, bool) or not (math.isfinite(momentum) and 0 <= momentum < 1):
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    c = np.empty(lrs.size + 1)
    c[0] = 1.0
    buf = 0.0
    for t, lr in enumerate(lrs):
        buf = weight_decay * c[t] if t == 0 else momentum * buf + weight_decay * c[t]
        c[t + 1] = c[t] - lr * buf
    return c


def step_learning_rates(config: Any, n_train: int) -> np.ndarray:
    """The learning rate of every optimiser step of a :class:`~bioplastic.training.TrainConfig` run.

    ``config.lr`` times :func:`bioplastic.training.schedule.lr_factor` of each step, with the trainer's step
    count: ``ceil(n_train / batch_size)`` steps per epoch, the warm-up rounded to whole steps.

    Parameters
    ----------
    config : TrainConfig
        Its ``lr``, ``epochs``, ``batch_size``, ``warmup_epochs`` and ``schedule`` are used.
    n_train : int
        Number of training samples (after ``max_train``).

    Returns
    -------
    numpy.ndarray, shape (epochs x steps per epoch,)

    Raises
    ------
    ValueError
        ``n_train < 1``.
    """
    from bioplastic.training.schedule import lr_factor

    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    steps_per_epoch = math.ceil(n_train / config.batch_size)
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    return np.array([config.lr * lr_factor(s, total, warmup_steps=warmup, schedule=config.schedule)
                     for s in range(total)])
