"""scikit-learn digits: the fixed stratified split."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

from bioplastic.data import load_dataset
from bioplastic.data.digits import load_digits, normalize


def test_shapes_and_stratified_split():
    data = load_digits()
    assert data.x_train.shape == (1347, 1, 8, 8) and data.x_test.shape == (450, 1, 8, 8)
    assert data.x_train.dtype == torch.uint8 and data.y_train.dtype == torch.int64
    full = np.bincount(sk_load_digits().target)
    test = np.bincount(data.y_test.numpy(), minlength=10)
    # Stratified: every class keeps 25% of its samples in the test set (to rounding).
    assert np.all(np.abs(test - 0.25 * full) <= 1)
    assert np.array_equal(test + np.bincount(data.y_train.numpy(), minlength=10), full)
    assert int(data.x_train.max()) == 16 and int(data.x_train.min()) == 0


def test_split_is_a_partition_of_sklearn_digits_and_fixed():
    bunch = sk_load_digits()
    a, b = load_digits(), load_dataset("digits")
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    images = np.concatenate([a.x_train.numpy(), a.x_test.numpy()])[:, 0]
    labels = np.concatenate([a.y_train.numpy(), a.y_test.numpy()])
    # Same multiset of (image, label) pairs as scikit-learn's: sort both by a key of image bytes and label.
    key = lambda im, y: sorted(zip((r.tobytes() for r in im.astype(np.uint8)), y.tolist()))  # noqa: E731
    assert key(images, labels) == key(bunch.images, bunch.target)


def test_normalize_standardises():
    x = normalize(load_digits().x_train)
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02


def test_path_is_refused():
    with pytest.raises(ValueError, match="takes no path"):
        load_digits("somewhere")
