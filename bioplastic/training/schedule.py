"""Learning-rate schedules applied per optimiser step: linear warm-up, then constant or cosine decay.

The cosine schedule is SGDR's single cycle without restarts (Loshchilov & Hutter 2017, ICLR), preceded by
the linear warm-up of Goyal et al. (2017, arXiv:1706.02677), the recipe used for the paper's ViT
(Hanut & Kadmon 2025: 10 warm-up epochs then cosine).
"""
from __future__ import annotations

import math
from typing import Literal

import torch

from bioplastic._checks import check_choice

Schedule = Literal["constant", "cosine"]
SCHEDULES = ("constant", "cosine")


def lr_factor(
    step: int, total_steps: int, *, warmup_steps: int = 0, schedule: Schedule = "cosine", final: float = 0.0
) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based).

    Closed form, with ``W = warmup_steps`` and ``T = total_steps``::

        step < W          : (step + 1) / W                                  (linear warm-up, reaches 1 at W - 1)
        "constant"        : 1
        "cosine"          : final + (1 - final) * 0.5 * (1 + cos(pi * (step - W) / (T - W)))

    so the cosine starts at 1 on the first step after the warm-up and would reach ``final`` at step T
    (one past the last step).

    Parameters
    ----------
    step : int
        Index of the optimiser step about to be taken, 0 <= step.
    total_steps : int
        Number of optimiser steps of the whole run (epochs x steps per epoch), >= 1.
    warmup_steps : int
        Length of the linear warm-up, 0 <= warmup_steps <= total_steps.
    schedule : {"constant", "cosine"}
        Shape after the warm-up.
    final : float
        Cosine floor as a fraction of the base rate, in [0, 1].

    Raises
    ------
    ValueError
        Unknown schedule (lists the allowed ones), negative step or warm-up, warm-up longer than the run.
    """
    check_choice("schedule", schedule, SCHEDULES)
    if total_steps < 1 or step < 0 or warmup_steps < 0 or warmup_steps > total_steps:
        raise ValueError(
            f"need 0 <= step, 0 <= warmup_steps <= total_steps and total_steps >= 1; got step={step}, "
            f"warmup_steps={warmup_steps}, total_steps={total_steps}"
        )
    if not 0.0 <= final <= 1.0:
        raise ValueError(f"final must be in [0, 1], got {final}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = total_steps - warmup_steps
    progress = min(step - warmup_steps, span) / span if span > 0 else 1.0
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LRFactor:
    """Picklable ``step -> factor`` callable for :class:`torch.optim.lr_scheduler.LambdaLR` (see :func:`lr_factor`)."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, schedule: Schedule = "cosine", final: float = 0.0):
        lr_factor(0, total_steps, warmup_steps=warmup_steps, schedule=schedule, final=final)  # validate
        self.total_steps, self.warmup_steps, self.schedule, self.final = total_steps, warmup_steps, schedule, final

    def __call__(self, step: int) -> float:
        return lr_factor(
            step, self.total_steps, warmup_steps=self.warmup_steps, schedule=self.schedule, final=self.final
        )


def make_scheduler(
    optimizers: list[torch.optim.Optimizer],
    total_steps: int,
    *,
    warmup_steps: int = 0,
    schedule: Schedule = "cosine",
    final: float = 0.0,
) -> list[torch.optim.lr_scheduler.LambdaLR]:
    """One :class:`~torch.optim.lr_scheduler.LambdaLR` per optimiser, all following :func:`lr_factor`.

    Call ``scheduler.step()`` after each ``optimizer.step()``; the factor of step ``s`` multiplies each
    parameter group's initial learning rate.
    """
    factor = LRFactor(total_steps, warmup_steps, schedule, final)
    return [torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in optimizers]
