"""scikit-learn's 8x8 handwritten digits (1,797 images), the smallest real dataset for fast tests.

Source: the UCI "Optical Recognition of Handwritten Digits" data (Alpaydin & Kaynak 1998), shipped inside
scikit-learn (``sklearn.datasets.load_digits``); nothing is downloaded.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from bioplastic.data.base import ArrayDataset

#: Fraction of each class held out for testing, and the seed of the (fixed) stratified split.
TEST_FRACTION = 0.25
SPLIT_SEED = 0
#: Pixel intensities are integers 0-16; mean and standard deviation of the pixels scaled to [0, 1].
DIGITS_MAX = 16
DIGITS_MEAN, DIGITS_STD = 0.3053, 0.3760


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 digits (N, 1, 8, 8), values 0-16 -> float32 scaled to [0, 1] then standardised."""
    return (x.float() * (1.0 / DIGITS_MAX) - DIGITS_MEAN) * (1.0 / DIGITS_STD)


def load_digits(path: str | os.PathLike | None = None) -> ArrayDataset:
    """scikit-learn's digits with a fixed stratified train/test split.

    Parameters
    ----------
    path : None
        Must be None: the data ship inside scikit-learn. Present for the common loader signature.

    Returns
    -------
    ArrayDataset
        ``x_train`` uint8 (1347, 1, 8, 8) and ``x_test`` uint8 (450, 1, 8, 8) with values 0-16, labels
        int64; classes ``"0"``..``"9"``; ``transform`` = :func:`normalize`; no augmentation. The split
        keeps 25% of every class for testing (``sklearn.model_selection.train_test_split`` with
        ``stratify`` and ``random_state=0``), identical on every call and machine.

    Raises
    ------
    ValueError
        If ``path`` is given.

    References
    ----------
    Alpaydin & Kaynak (1998), Optical Recognition of Handwritten Digits, UCI Machine Learning Repository.
    """
    if path is not None:
        raise ValueError(f"the digits dataset ships inside scikit-learn and takes no path (got {path!r})")
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = bunch.images.astype(np.uint8)  # (1797, 8, 8), integer values 0-16
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    return ArrayDataset(
        name="digits",
        x_train=torch.from_numpy(images[idx_train]).unsqueeze(1),
        y_train=torch.from_numpy(labels[idx_train]),
        x_test=torch.from_numpy(images[idx_test]).unsqueeze(1),
        y_test=torch.from_numpy(labels[idx_test]),
        classes=[str(i) for i in range(10)],
        transform=normalize,
        augment=None,
        meta={
            "source": "sklearn.datasets.load_digits",
            "citation": "Alpaydin & Kaynak (1998), UCI Optical Recognition of Handwritten Digits",
            "split": f"stratified, test_size={TEST_FRACTION}, random_state={SPLIT_SEED}",
            "n_train": int(len(idx_train)),
            "n_test": int(len(idx_test)),
        },
    )
