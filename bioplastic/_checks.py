"""Input validation shared by every module: one place, one wording of the errors."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``.

    Raises
    ------
    ValueError
        Naming the parameter, the bad value and every allowed value.
    """
    allowed = tuple(allowed)
    if value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"unknown {name} {value!r}; allowed: {listed}")
    return value


def check_finite(name: str, array: Any) -> None:
    """Raise ``ValueError`` if ``array`` (numpy array or torch tensor) holds NaN or Inf."""
    try:
        import torch

        if isinstance(array, torch.Tensor):
            if not bool(torch.isfinite(array).all()):
                raise ValueError(f"{name} contains NaN or Inf values")
            return
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    arr = np.asarray(array)
    if np.issubdtype(arr.dtype, np.number) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf values")


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as int if it is an integer >= ``minimum``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_device(device: str, *, resolve_auto: bool = True) -> str:
    """Validate a torch device string before anything runs.

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ...
    resolve_auto : bool
        ``"auto"`` becomes ``"cuda"`` where available, else ``"cpu"``; False: ``"auto"`` is returned as is.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        An unknown device string, or a CUDA / MPS device this machine does not have (the message names both the
        Python form ``device='cpu'`` and the command-line flag ``--device cpu``).
    """
    import torch

    if device == "auto":
        return ("cuda" if torch.cuda.is_available() else "cpu") if resolve_auto else device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use device='cpu' "
                         "(on the command line: --device cpu)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available; use device='cpu' "
                         "(on the command line: --device cpu)")
    return str(device)
