"""Mixed precision (automatic mixed precision, AMP) of the training loop and the evaluation passes.

``TrainConfig(amp=True)`` runs the forward passes under :func:`torch.autocast`; losses, evaluation metrics and
optimiser states stay float32. float16 needs a :class:`torch.amp.GradScaler` (dynamic loss scaling), which
:func:`check_scaler_fits` refuses for rules whose feedback gradients do not scale with the loss.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["amp_dtype", "autocast", "check_scaler_fits"]


def amp_dtype(device: torch.device, name: str) -> torch.dtype:
    """The autocast dtype of ``TrainConfig.amp_dtype`` on ``device``.

    ``"bfloat16"`` / ``"float16"`` as named; ``"auto"``: bfloat16 on CPU, on CUDA bfloat16 where the GPU
    supports it, else float16.
    """
    if name == "bfloat16":
        return torch.bfloat16
    if name == "float16":
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` with ``dtype``; a no-op context for ``dtype=None`` (AMP off)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def check_scaler_fits(rule: Any, dtype: torch.dtype | None) -> None:
    """Refuse float16 (gradient scaling) for a rule whose gradients do not scale with the loss.

    Which rules those are, the rule says (``rule.gradients_scale_with_loss``): LDFA with ``normative`` or
    ``oja`` feedback learning, DRTP.

    Raises
    ------
    ValueError
        Their gradients do not scale with the loss, so the gradient scaler would unscale them wrongly; the
        message suggests bfloat16 or ``amp=False``.
    """
    if dtype == torch.float16 and not rule.gradients_scale_with_loss:
        raise ValueError(
            f"float16 mixed precision cannot train {rule!r}: its gradients do not scale with the loss, so the "
            "gradient scaler would unscale them wrongly; use amp_dtype='bfloat16' or amp=False"
        )
