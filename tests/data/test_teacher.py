import math

import pytest
import torch

from bioplastic.data import load_dataset


def test_teacher_deterministic_and_balanced():
    a = load_dataset("teacher", n_classes=10, input_dim=8, n_train=2000, n_test=500, seed=3)
    b = load_dataset("teacher", n_classes=10, input_dim=8, n_train=2000, n_test=500, seed=3)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert a.n_classes == 10 and a.input_shape == (8,)
    # reference-sample frequencies within 4 binomial s.d. of 1/d (n = 50,000)
    p, n = 0.1, 50_000
    tol = 4 * math.sqrt(p * (1 - p) / n) + 0.01  # + balancing step resolution
    assert max(abs(f - p) for f in a.meta["class_frequencies"]) < tol
    freq = torch.bincount(a.y_train, minlength=10).double() / 2000
    assert freq.min() > p - 4 * math.sqrt(p * (1 - p) / 2000) - 0.01


def test_teacher_other_seed_differs_and_bad_option():
    a = load_dataset("teacher", n_classes=5, n_train=100, n_test=10, seed=0)
    b = load_dataset("teacher", n_classes=5, n_train=100, n_test=10, seed=1)
    assert not torch.equal(a.y_train, b.y_train)
    with pytest.raises(ValueError, match="n_classes=1"):
        load_dataset("teacher", n_classes=1)
