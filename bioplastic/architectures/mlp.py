"""Multilayer perceptrons: the default network of ``bioplastic compare`` and of the paper's MLP experiments.

Hanut & Kadmon (2025, arXiv:2502.20580) train fully connected networks (e.g. 3072-512-512-512-10 with
BatchNorm + ReLU on CIFAR-10) with low-rank feedback; :func:`mlp` builds that family from a spec such as
``models/mlp_mnist.toml``::

    architecture = "mlp"
    in_features = 784
    hidden = [256, 256]
    n_classes = 10
    activation = "relu"
    norm = "batchnorm"     # or "layernorm", "none"
    dropout = 0.1

Module names (what ``bioplastic.convert(..., exclude=..., ranks=...)`` and the alignment diagnostics use)::

    flatten, fc{i}, norm{i}, act{i}, drop{i}   (hidden layer i = 1, 2, ...; norm / drop only when enabled)
    out                                        (the classifier: receives its exact error under every rule)
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

from bioplastic._checks import check_choice, check_positive_int
from bioplastic.architectures.spec import register

__all__ = ["MLP", "mlp", "ACTIVATIONS", "NORMS"]

Activation = Literal["relu", "tanh", "gelu", "sigmoid", "elu", "leaky_relu", "silu"]
Norm = Literal["none", "batchnorm", "layernorm"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
}
NORMS = ("none", "batchnorm", "layernorm")


class MLP(nn.Sequential):
    """Fully connected network ``flatten -> [Linear -> norm -> activation -> dropout] * L -> Linear``.

    Parameters
    ----------
    in_features : int
        Input size; inputs of any shape (N, ...) are flattened to (N, in_features).
    hidden : sequence of int
        Widths of the hidden layers (may be empty: a linear classifier).
    n_classes : int
        Number of outputs d (logits).
    activation : {"relu", "tanh", "gelu", "sigmoid", "elu", "leaky_relu", "silu"}
        Nonlinearity after each hidden layer.
    norm : {"none", "batchnorm", "layernorm"}
        Normalisation between each hidden Linear and its activation (``BatchNorm1d`` / ``LayerNorm``).
    dropout : float
        Dropout probability after each hidden activation, in [0, 1); 0 adds no dropout module.
    bias : bool
        Biases of the Linear layers (hidden layers followed by BatchNorm keep their bias too, for a plain
        count of parameters; BatchNorm makes it redundant but harmless).

    Raises
    ------
    ValueError
        Non-positive sizes, an unknown activation or norm (the message lists the allowed ones), dropout
        outside [0, 1).

    Notes
    -----
    Input (N, *) with ``prod(*) == in_features`` -> logits (N, n_classes). Weights use PyTorch's default
    initialisation (Kaiming-uniform with a = sqrt(5)), drawn from the global torch RNG: seed it (or use
    ``torch.random.fork_rng``) for reproducible weights.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (256, 256),
        n_classes: int = 10,
        *,
        activation: Activation = "relu",
        norm: Norm = "none",
        dropout: float = 0.0,
        bias: bool = True,
    ):
        in_features = check_positive_int("in_features", in_features)
        n_classes = check_positive_int("n_classes", n_classes)
        hidden = [check_positive_int(f"hidden[{i}]", h) for i, h in enumerate(hidden)]
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_choice("norm", norm, NORMS)
        dropout = float(dropout)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")

        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_features
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h, bias=bias)
            if norm == "batchnorm":
                layers[f"norm{i}"] = nn.BatchNorm1d(h)
            elif norm == "layernorm":
                layers[f"norm{i}"] = nn.LayerNorm(h)
            layers[f"act{i}"] = ACTIVATIONS[activation]()
            if dropout > 0:
                layers[f"drop{i}"] = nn.Dropout(dropout)
            width = h
        layers["out"] = nn.Linear(width, n_classes, bias=bias)
        super().__init__(layers)
        self.in_features, self.hidden, self.n_classes = in_features, tuple(hidden), n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D401 - documented in the class
        if x[0].numel() != self.in_features:
            raise ValueError(
                f"MLP expects inputs with {self.in_features} features per sample, got shape {tuple(x.shape)}"
            )
        return super().forward(x)


#: Builder of the registered architecture ``"mlp"``: the class itself (spec keys are its keyword
#: arguments; see :class:`MLP`; the spec's ``[training]`` and ``[rule]`` tables are read by the training code, not passed here).
mlp = register("mlp")(MLP)
