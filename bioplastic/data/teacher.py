"""A synthetic classification task of any dimensionality: the argmax of a fixed random teacher network.

The task dimensionality is ``d = n_classes``: labels are the argmax of the ``d`` outputs of a random
one-hidden-layer tanh network over Gaussian inputs, so the decision function lives in a d-dimensional
output space. Per-output biases are balanced on a large reference sample so that every class has about
the same frequency (chance about 1/d). Everything is determined by ``seed``. It is the classic
teacher-student construction (Seung, Sompolinsky & Tishby 1992, Phys Rev A 45:6056) with a multi-class
argmax read-out, used here to vary the task dimensionality beyond the 10 classes of the offline datasets.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from bioplastic.data.base import ArrayDataset


def _teacher_logits(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x @ w1) @ w2 + b


def load_teacher(path: Any = None, *, n_classes: int = 10, input_dim: int = 20, hidden: int = 100,
                 n_train: int = 5000, n_test: int = 2000, seed: int = 0,
                 balance_samples: int = 50_000, balance_iterations: int = 200) -> ArrayDataset:
    """Load the random-teacher task (see the module docstring).

    Parameters
    ----------
    path : None
        Unused (the data are generated); accepted for the loader interface.
    n_classes : int
        Task dimensionality d (number of teacher outputs = classes), at least 2.
    input_dim : int
        Dimension of the standard Gaussian inputs, at least 1.
    hidden : int
        Width of the teacher's tanh hidden layer, at least 1.
    n_train, n_test : int
        Sizes of the training and test sets, at least 1.
    seed : int
        Fixes the teacher, the biases and both samples.
    balance_samples, balance_iterations : int
        Reference sample size and iterations of the bias balancing.

    Returns
    -------
    ArrayDataset
        Float32 inputs of shape (N, input_dim), int64 labels in 0..d-1; ``meta["class_frequencies"]``
        holds the balanced class frequencies on the reference sample.

    Raises
    ------
    ValueError
        An option outside its range (the message names the value and the range).
    """
    for name, value, low in (("n_classes", n_classes, 2), ("input_dim", input_dim, 1), ("hidden", hidden, 1),
                             ("n_train", n_train, 1), ("n_test", n_test, 1), ("seed", seed, 0),
                             ("balance_samples", balance_samples, 1), ("balance_iterations", balance_iterations, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"teacher option {name}={value!r} out of range: an integer >= {low}")
    g = torch.Generator().manual_seed(int(seed))
    w1 = torch.randn(input_dim, hidden, generator=g) * (2.0 / math.sqrt(input_dim))
    w2 = torch.randn(hidden, n_classes, generator=g) / math.sqrt(hidden)
    b = torch.zeros(n_classes)
    ref = torch.randn(balance_samples, input_dim, generator=g)
    h = _teacher_logits(ref, w1, w2, b)
    target = 1.0 / n_classes
    scale = float(h.std())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 200 small exact steps (argmax, bincount): thread start-up costs more than it saves,
    try:  # by orders of magnitude on a loaded machine; the result does not depend on the thread count
        for _ in range(balance_iterations):  # raise the bias of rare classes, lower that of frequent ones
            freq = torch.bincount((h + b).argmax(1), minlength=n_classes).float() / balance_samples
            b = b - 0.05 * scale * (freq - target) / target
    finally:
        torch.set_num_threads(threads)
    freq = torch.bincount((h + b).argmax(1), minlength=n_classes).double() / balance_samples
    x_train = torch.randn(n_train, input_dim, generator=g)
    x_test = torch.randn(n_test, input_dim, generator=g)
    y_train = _teacher_logits(x_train, w1, w2, b).argmax(1).long()
    y_test = _teacher_logits(x_test, w1, w2, b).argmax(1).long()
    return ArrayDataset(
        name="teacher", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        classes=[str(i) for i in range(n_classes)], transform=lambda x: x.float(),
        meta={"n_classes": n_classes, "input_dim": input_dim, "hidden": hidden, "seed": seed,
              "class_frequencies": freq.tolist(), "n_train": n_train, "n_test": n_test},
    )
