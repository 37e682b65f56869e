"""The in-memory dataset container shared by every training loader, and the loader registry."""
from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bioplastic._checks import check_choice

DATA_PAGE = "docs/data.md of the bioplastic repository"
"""Where missing-file errors send a user: each dataset's source, citation, file names and folder layout."""

Transform = Callable[[torch.Tensor], torch.Tensor]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class ArrayDataset:
    """A classification dataset held in memory as tensors.

    Images stay in their compact stored dtype (``uint8``) and are turned into model inputs per batch,
    on the training device, by ``transform`` (and, for training batches only, ``augment``).

    Attributes
    ----------
    name : str
        Dataset name (``"mnist"``, ``"digits"``, ``"cifar10"``).
    x_train, x_test : torch.Tensor
        Inputs, shape (N, ...) (images (N, C, H, W)), stored dtype (uint8 for images).
    y_train, y_test : torch.Tensor
        Integer class labels, shape (N,), dtype int64.
    classes : list of str
        Class names, ``len(classes)`` is the number of outputs d.
    transform : callable
        ``transform(x_batch) -> float tensor`` (scaling, normalisation); runs on the batch's device.
    augment : callable or None
        ``augment(x_float_batch, generator) -> tensor`` applied to training batches after ``transform``.
    meta : dict
        Provenance: source files, citation, sizes.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    transform: Transform
    augment: Augment | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of classes d (the output size a model needs)."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. (1, 28, 28) for MNIST."""
        return tuple(self.x_train.shape[1:])


# name -> "module:function"; loaders take ``path`` (None for embedded data) and keyword options.
_LOADERS = {
    "mnist": "bioplastic.data.mnist:load_mnist",
    "digits": "bioplastic.data.digits:load_digits",
    "cifar10": "bioplastic.data.cifar10:load_cifar10",
    "teacher": "bioplastic.data.teacher:load_teacher",
}
DATASETS = tuple(_LOADERS)


def loader_of(name: str) -> Callable[..., ArrayDataset]:
    """The loader function of a dataset name (its keyword options are the dataset's options)."""
    check_choice("dataset", name, DATASETS)
    module, func = _LOADERS[name].split(":")
    return getattr(importlib.import_module(module), func)


def select_classes(data: ArrayDataset, classes: Sequence[int]) -> ArrayDataset:
    """A class subset of ``data``, labels re-indexed 0..K-1 in the order of ``classes``.

    Parameters
    ----------
    data : ArrayDataset
        The full dataset.
    classes : sequence of int
        K >= 2 distinct class indices of ``data`` (0..d-1); label ``classes[k]`` becomes ``k``.

    Returns
    -------
    ArrayDataset
        Training and test sets restricted to those classes (same order of examples), ``classes`` names
        in the new label order, ``meta["classes"]`` the original indices.

    Raises
    ------
    ValueError
        Fewer than 2 classes, duplicates, or an index outside 0..d-1 (the message names it and the range).
    """
    classes = [int(c) for c in classes]
    n = data.n_classes
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes {classes}: need at least 2 distinct class indices")
    bad = [c for c in classes if not 0 <= c < n]
    if bad:
        raise ValueError(f"classes {bad} not in dataset {data.name!r}: its class indices are 0..{n - 1}")
    lookup = torch.full((n,), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))

    def subset(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new = lookup[y.long()]
        keep = new >= 0
        return x[keep], new[keep]

    x_train, y_train = subset(data.x_train, data.y_train)
    x_test, y_test = subset(data.x_test, data.y_test)
    return dataclasses.replace(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                               classes=[data.classes[c] for c in classes],
                               meta={**data.meta, "classes": classes})


def load_dataset(name: str, path: str | os.PathLike | None = None, **options: Any) -> ArrayDataset:
    """Load a training dataset by name.

    Parameters
    ----------
    name : {"mnist", "digits", "cifar10", "teacher"}
        ``mnist``: the MNIST subset embedded in the package (5,000 training / 10,000 test digits);
        ``digits``: scikit-learn's 8x8 digits; ``cifar10``: from ``path`` (folder or zip files);
        ``teacher``: the synthetic random-teacher task of any dimensionality
        (:func:`bioplastic.data.teacher.load_teacher`: ``n_classes=d``, ``input_dim``, ``n_train``,
        ``n_test``, ``seed``).
    path : path-like, optional
        Where the data lies, for datasets that are not embedded.
    **options
        Passed to the loader (e.g. ``grayscale=True`` for CIFAR-10, ``n_classes=40`` for ``teacher``).

    Raises
    ------
    ValueError
        Unknown dataset name (the message lists the known ones).
    FileNotFoundError, ValueError
        Missing or corrupt data files (the message names the file).
    """
    return loader_of(name)(path=path, **options)
