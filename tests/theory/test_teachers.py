import numpy as np
import pytest
import torch

from bioplastic import theory


def test_random_teacher_has_the_requested_spectrum_and_orthonormal_modes():
    t = theory.random_teacher(6, 9, [1.0, 4.0, 2.0], seed=3)
    torch.testing.assert_close(t.singular_values[:3], torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64))
    assert t.rank == 3
    torch.testing.assert_close(t.U.T @ t.U, torch.eye(6, dtype=torch.float64))
    torch.testing.assert_close(t.V.T @ t.V, torch.eye(9, dtype=torch.float64))
    torch.testing.assert_close(t.U[:, :3] @ torch.diag(t.singular_values[:3]) @ t.V[:, :3].T, t.weight)
    assert t.rank_r_loss(1) == pytest.approx(0.5 * (4 + 1))
    assert t.initial_loss() == pytest.approx(0.5 * (16 + 4 + 1))


def test_same_seed_same_teacher_different_seed_different():
    a, b = theory.random_teacher(5, 5, [2, 1], seed=1), theory.random_teacher(5, 5, [2, 1], seed=1)
    c = theory.random_teacher(5, 5, [2, 1], seed=2)
    assert torch.equal(a.weight, b.weight) and not torch.allclose(a.weight, c.weight)


def test_paper_teacher_matches_the_reference_construction():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64)) @ rng.standard_normal((64, 128)) / 8.0
    full = theory.paper_teacher(seed=0)
    np.testing.assert_allclose(full.weight.numpy(), w)
    t4 = theory.paper_teacher(rank=4, seed=0)
    assert t4.rank == 4
    s = np.linalg.svd(w, compute_uv=False)
    np.testing.assert_allclose(t4.singular_values[:4].numpy(), s[:4])
    # the initial loss 1154 of the reference simulation (docs/theory.md, the paper's teacher)
    assert t4.initial_loss() == pytest.approx(0.5 * (s[:4] ** 2).sum()) and round(t4.initial_loss()) == 1154


def test_noise_floor_and_input_not_mutated():
    w = np.arange(12, dtype=float).reshape(3, 4)
    before = w.copy()
    t = theory.as_teacher(w, noise_std=0.5)
    t.weight.mul_(0)  # the teacher holds a copy
    np.testing.assert_array_equal(w, before)
    assert t.floor == pytest.approx(0.5 * 3 * 0.25)


@pytest.mark.parametrize("bad,match", [
    (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN or Inf"),
    (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN or Inf"),
    (np.ones(4), "2-D"),
    (np.ones((0, 3)), "2-D"),
])
def test_bad_teacher_matrices(bad, match):
    with pytest.raises(ValueError, match=match):
        theory.as_teacher(bad)


def test_bad_teacher_arguments():
    with pytest.raises(ValueError, match="singular_values"):
        theory.random_teacher(3, 4, [1, 2, 3, 4])
    with pytest.raises(ValueError, match=">= 0"):
        theory.random_teacher(3, 4, [1, -2])
    with pytest.raises(ValueError, match="NaN"):
        theory.random_teacher(3, 4, [1, float("nan")])
    with pytest.raises(ValueError, match="out of range"):
        theory.paper_teacher(8, 8, hidden=4, rank=5)
    with pytest.raises(ValueError, match="noise_std"):
        theory.as_teacher(np.eye(2), noise_std=-1.0)
