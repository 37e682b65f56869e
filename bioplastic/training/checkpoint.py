"""Atomic training checkpoints: written to a temporary file in the same folder and renamed.

A crash or Ctrl-C while writing never leaves a half-written checkpoint, and the previous one stays intact.
Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with ``weights_only=True``
(no arbitrary code runs when reading a file).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from bioplastic.io import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with :func:`torch.save` to ``path`` atomically (temporary file + ``os.replace``).

    Parent folders are created. Returns the path written.

    Raises
    ------
    bioplastic.io.WriteError
        The file cannot be written (e.g. no space left on device); the message names ``path``, no partial
        file is left and an older checkpoint at ``path`` stays intact.
    """
    return atomic_write(path, lambda tmp: torch_save(state, tmp))


def torch_save(obj: Any, path: Path) -> None:
    """:func:`torch.save` through a Python file object, so that a failed write (no space left, quota) is an
    ``OSError`` with its ``errno`` rather than torch's "unexpected pos" ``RuntimeError``."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """Read a checkpoint written by :func:`save_checkpoint`; None if ``path`` does not exist.

    Raises
    ------
    ValueError
        If the file exists but cannot be read (truncated, not a checkpoint); the message names the file.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError / UnpicklingError / EOFError for bad files
        raise ValueError(f"checkpoint {path} is corrupt or not a bioplastic checkpoint: {exc}") from exc
    if not isinstance(state, dict) or "epoch" not in state:
        raise ValueError(f"checkpoint {path} is corrupt or not a bioplastic checkpoint (no 'epoch' entry)")
    return state
