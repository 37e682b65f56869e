"""The per-epoch learning-rate schedule of ``train_online``: closed-form factors, the constant schedule
reproducing schedule-free training exactly, and the scaled rates reaching the simulation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bioplastic.rate import RateNetwork, simulate, train_online
from bioplastic.rate.training import learning_rate_scale

OPTS = dict(presentation=0.01, dt=0.001, plasticity_delay=0.002)


def _net(**kw):
    kw = dict(feedback_rank=2, feedback_learning="kolen_pollack", feedback_weight_decay=0.1, learning_rate=20.0,
              feedback_learning_rate=10.0, dtype=torch.float64) | kw
    return RateNetwork.from_sizes([5, 4, 3], **kw)


def _data():
    rng = np.random.default_rng(0)
    return rng.random((6, 5)), rng.integers(0, 3, 6), rng.random((4, 5)), rng.integers(0, 3, 4)


@pytest.mark.parametrize(("schedule", "decay", "epochs", "expected"), [
    (None, None, 3, [1.0, 1.0, 1.0]),
    (None, 0.0, 3, [1.0, 1.0, 1.0]),
    ("constant", None, 2, [1.0, 1.0]),
    (None, 0.2, 4, [1.0, 0.8, 0.64, 0.512]),            # None with a decay: exponential
    ("exponential", 0.5, 3, [1.0, 0.5, 0.25]),
    ("cosine", None, 4, [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]),
])
def test_schedule_closed_form(schedule, decay, epochs, expected):
    got = [learning_rate_scale(k, epochs, schedule, decay) for k in range(epochs)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("kw", [dict(schedule="linear"), dict(decay=1.0), dict(decay=-0.1),
                                dict(decay=float("nan")), dict(schedule="cosine", decay=0.1),
                                dict(epoch=3), dict(epoch=-1)])
def test_schedule_bad_options(kw):
    args = dict(epoch=0, epochs=3, schedule="exponential", decay=0.1) | kw
    with pytest.raises(ValueError):
        learning_rate_scale(**args)
    if "epoch" not in kw:
        x, y, xt, yt = _data()
        with pytest.raises(ValueError):
            train_online(_net(), x, y, xt, yt, epochs=2, eval_every=4, learning_rate_schedule=args["schedule"],
                         learning_rate_decay=args["decay"], **OPTS)


def _reference(net, x, y, epochs, eval_every, seed=0):
    """The schedule-free algorithm: shuffled passes, one simulate call per ``eval_every`` presentations."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(x), generator=gen) for _ in range(epochs)])
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y)
    for start in range(0, len(order), eval_every):
        idx = order[start:start + eval_every]
        simulate(net, x[idx], y[idx], record=(), **OPTS)


@pytest.mark.parametrize("kw", [dict(), dict(learning_rate_decay=0.0), dict(learning_rate_decay=None),
                                dict(learning_rate_schedule="constant")])
def test_no_decay_reproduces_constant_training_exactly(kw):
    x, y, xt, yt = _data()
    ref = _net()
    _reference(ref, x, y, epochs=2, eval_every=4)
    net = _net()
    curve = train_online(net, x, y, xt, yt, epochs=2, eval_every=4, **OPTS, **kw)
    for k, w in ref.weights.items():
        assert torch.equal(net.weights[k], w), k
    assert list(curve.step.values) == [0, 4, 8, 12]
    np.testing.assert_array_equal(curve.learning_rate_scale.values, 1.0)
    assert curve.attrs["learning_rate_schedule"] == "constant"


def test_exponential_schedule_scales_each_epoch_and_restores_the_config():
    x, y, xt, yt = _data()
    net = _net()
    config = net.to_dict()
    curve = train_online(net, x, y, xt, yt, epochs=2, eval_every=4, learning_rate_decay=0.5, **OPTS)
    assert net.to_dict() == config  # the caller's rates are back
    # epochs 0, 1 at factors 1, 0.5: calls split at the epoch boundary (presentation 6), evaluations every 4
    gen = torch.Generator().manual_seed(0)
    order = torch.cat([torch.randperm(6, generator=gen) for _ in range(2)])
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    ref = _net()
    for (a, b), eta, eta_fb in [((0, 4), 20.0, 10.0), ((4, 6), 20.0, 10.0), ((6, 8), 10.0, 5.0),
                                ((8, 12), 10.0, 5.0)]:
        scaled = _net(learning_rate=eta, feedback_learning_rate=eta_fb)
        scaled.set_weights(ref.weights)
        simulate(scaled, xs[order[a:b]], ys[order[a:b]], record=(), **OPTS)
        ref.set_weights(scaled.weights)
    for k, w in ref.weights.items():
        torch.testing.assert_close(net.weights[k], w, rtol=0, atol=0)
    assert list(curve.step.values) == [0, 4, 8, 12]
    np.testing.assert_allclose(curve.learning_rate_scale.values, [1.0, 1.0, 0.5, 0.5])
    # a different schedule really trains differently
    net2 = _net()
    train_online(net2, x, y, xt, yt, epochs=2, eval_every=4, **OPTS)
    assert not torch.equal(net2.weights["W_hidden1"], net.weights["W_hidden1"])


def test_schedule_restores_rates_on_error():
    x, y, xt, yt = _data()
    net = _net()
    config = net.to_dict()
    y_bad = np.array([0, 1, 2, 0, 1, 7])  # label out of range: simulate raises inside the scaled block
    with pytest.raises(ValueError):
        train_online(net, x, y_bad, xt, yt, epochs=2, eval_every=4, learning_rate_schedule="cosine", **OPTS)
    assert net.to_dict() == config


def test_schedule_with_parallel_trials_splits_at_whole_batches():
    x, y, xt, yt = _data()
    net = _net()
    curve = train_online(net, x[:5], y[:5], xt, yt, epochs=2, eval_every=4, batch_size=2,
                         learning_rate_schedule="cosine", **OPTS)
    # 10 presentations in batches of 2; epoch 0 runs to presentation 6 (5 rounded up to whole batches)
    assert list(curve.step.values) == [0, 4, 8, 10]
    np.testing.assert_allclose(curve.learning_rate_scale.values, [1.0, 1.0, 0.5, 0.5], atol=1e-15)
