"""Rate transfer functions f and their derivatives f', written once for torch and once for brian2.

Both forms must compute the same numbers: the backend-agreement tests rely on it. Rates are
dimensionless (a firing rate divided by a reference rate); the summed input ``I`` is dimensionless too.
"""
from __future__ import annotations

from typing import Literal

import torch

Activation = Literal["relu", "tanh", "sigmoid", "softplus", "linear"]
ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "sigmoid", "softplus", "linear")
# The output population pairs its transfer function with the loss whose error dL/dI is ``r - y``
# (canonical link): linear <-> mean squared error, sigmoid <-> binary cross-entropy.
OutputActivation = Literal["linear", "sigmoid"]
OUTPUT_ACTIVATIONS: tuple[str, ...] = ("linear", "sigmoid")


def rate_function(name: str, current: torch.Tensor) -> torch.Tensor:
    """Transfer function ``f(I)`` (torch)."""
    if name == "relu":
        return torch.relu(current)
    if name == "tanh":
        return torch.tanh(current)
    if name == "sigmoid":
        return torch.sigmoid(current)
    if name == "softplus":
        return torch.nn.functional.softplus(current)
    if name == "linear":
        return current
    raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(map(repr, ACTIVATIONS))}")


def rate_derivative(name: str, current: torch.Tensor) -> torch.Tensor:
    """Derivative ``f'(I)`` (torch); ``relu'(0) = 0`` as in torch autograd."""
    if name == "relu":
        return (current > 0).to(current.dtype)
    if name == "tanh":
        return 1.0 - torch.tanh(current) ** 2
    if name == "sigmoid":
        s = torch.sigmoid(current)
        return s * (1.0 - s)
    if name == "softplus":
        return torch.sigmoid(current)
    if name == "linear":
        return torch.ones_like(current)
    raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(map(repr, ACTIVATIONS))}")


def brian2_expressions(name: str, var: str = "I") -> tuple[str, str]:
    """``(f, f')`` as brian2 expression strings in the variable ``var``."""
    if name == "relu":
        return f"clip({var}, 0, inf)", f"int({var} > 0)"
    if name == "tanh":
        return f"tanh({var})", f"(1 - tanh({var})**2)"
    if name == "sigmoid":
        return f"1/(1 + exp(-{var}))", f"(1/(1 + exp(-{var}))) * (1 - 1/(1 + exp(-{var})))"
    if name == "softplus":
        # log(1 + exp(I)) written stably, as torch does for large I
        return f"(clip({var}, 0, inf) + log(1 + exp(-abs({var}))))", f"1/(1 + exp(-{var}))"
    if name == "linear":
        return var, "1.0"
    raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(map(repr, ACTIVATIONS))}")
