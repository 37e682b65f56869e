"""Kolen-Pollack convergence of LDFA's Q under the trainer's recipes (issue 11, case 2).

With the same SGD on ``W`` and ``Q`` (learning rate and schedule, momentum, coupled decay) the gap ``Q - P^T W``
follows a scalar linear recursion whatever the data: ``D_t = c_t D_0`` (``bioplastic.training.kolen_pollack_gap``).
Adam normalises each parameter on its own, so no such identity exists there (its first step is ``lr sign(grad)``).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bioplastic.data import load_dataset
from bioplastic.nn import feedback_layers
from bioplastic.nn.diagnostics import matrix_angle
from bioplastic.training import TrainConfig, kolen_pollack_gap, step_learning_rates, train


def _gaps(model) -> dict[str, torch.Tensor]:
    out = {}
    for name, layer in feedback_layers(model):
        w = layer.weight_matrix().detach().double()
        p = layer.P.detach().double()
        out[name] = layer.Q.detach().double() - p.T @ w
    return out


def test_kolen_pollack_gap_is_torch_sgd_on_the_gap():
    """Two parameters that receive the same gradient under torch.optim.SGD (momentum, coupled decay, a
    LambdaLR schedule) keep a difference that shrinks by exactly kolen_pollack_gap; without momentum it is the
    product of (1 - lr_t lambda)."""
    g = torch.Generator().manual_seed(0)
    w = torch.nn.Parameter(torch.randn(7, generator=g, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(7, generator=g, dtype=torch.float64))
    d0 = (b - w).detach().clone()
    lr, wd, mu, steps = 0.1, 0.3, 0.9, 40
    factor = lambda s: 0.5 * (1 + np.cos(np.pi * s / steps))  # noqa: E731 (a cosine schedule)
    opt = torch.optim.SGD([w, b], lr=lr, momentum=mu, weight_decay=wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for _ in range(steps):
        grad = torch.randn(7, generator=g, dtype=torch.float64)
        w.grad, b.grad = grad.clone(), grad.clone()
        opt.step()
        sched.step()
    c = kolen_pollack_gap([lr * factor(s) for s in range(steps)], wd, momentum=mu)
    torch.testing.assert_close(b - w, c[-1] * d0, rtol=1e-12, atol=1e-14)
    lrs = np.linspace(0.01, 0.1, 25)
    np.testing.assert_allclose(kolen_pollack_gap(lrs, 0.2), np.concatenate([[1], np.cumprod(1 - 0.2 * lrs)]),
                               rtol=1e-14)
    assert np.all(kolen_pollack_gap(lrs, 0.0, momentum=0.9) == 1.0)  # no decay: the gap never changes


def test_trainer_keeps_the_kolen_pollack_identity_of_q_under_sgd():
    """q_only trained by the trainer with SGD (momentum 0.9, warm-up + cosine, coupled decay): the feedback
    optimiser gets W's kind, learning rate, schedule, momentum and decay, so every layer's
    Q - P^T W = c_T (Q_0 - P^T W_0), c_T the closed form. D_0 is read from the same run without decay (c = 1)."""
    digits = load_dataset("digits")
    base = dict(model="mlp_digits", rule="ldfa", rule_options={"rank": 3, "feedback_learning": "q_only"},
                epochs=3, batch_size=64, max_train=320, device="cpu", alignment=False, optimizer="sgd", lr=0.05,
                momentum=0.9, schedule="cosine", warmup_epochs=1.0, seed=3)
    d0 = _gaps(train(TrainConfig(**base, weight_decay=0.0), digits, progress=False).model)
    cfg = TrainConfig(**base, weight_decay=0.4)
    model = train(cfg, digits, progress=False).model
    c = kolen_pollack_gap(step_learning_rates(cfg, 320), cfg.weight_decay, momentum=cfg.momentum)[-1]
    assert len(d0) == 3 and 0.05 < c < 0.9  # a gap that did shrink, and not to nothing
    for name, gap in _gaps(model).items():
        torch.testing.assert_close(gap, c * d0[name], rtol=1e-4, atol=1e-6 * float(d0[name].norm()))


def test_adam_breaks_the_identity_from_its_first_step():
    """Adam's first step is lr sign(grad) (bias-corrected m / sqrt(v)), so Q moves by lr sign(P^T g) while
    P^T W moves by lr P^T sign(g): the Kolen-Pollack gap changes although both got 'the same' gradient."""
    g = torch.Generator().manual_seed(1)
    p = torch.linalg.qr(torch.randn(6, 2, generator=g, dtype=torch.float64))[0]
    w = torch.nn.Parameter(torch.randn(6, 5, generator=g, dtype=torch.float64))
    q = torch.nn.Parameter(p.T @ w.detach())  # the gap starts at exactly 0
    grad = torch.randn(6, 5, generator=g, dtype=torch.float64)
    w.grad, q.grad = grad, p.T @ grad
    torch.optim.Adam([w, q], lr=1e-2, eps=1e-12).step()
    gap = (q - p.T @ w).detach()
    torch.testing.assert_close(gap, -1e-2 * (torch.sign(p.T @ grad) - p.T @ torch.sign(grad)), rtol=1e-8, atol=1e-12)
    assert matrix_angle(q.detach(), (p.T @ w).detach()) > 0.1


def test_kolen_pollack_gap_rejects_bad_input():
    with pytest.raises(ValueError, match="one-dimensional"):
        kolen_pollack_gap(np.ones((2, 2)), 0.1)
    with pytest.raises(ValueError, match="finite and >= 0"):
        kolen_pollack_gap([0.1, np.nan], 0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        kolen_pollack_gap([0.1], -1.0)
    with pytest.raises(ValueError, match="momentum"):
        kolen_pollack_gap([0.1], 0.1, momentum=1.0)
    with pytest.raises(ValueError, match="n_train"):
        step_learning_rates(TrainConfig(model="mlp_digits"), 0)

