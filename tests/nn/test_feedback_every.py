"""LDFA's ``feedback_every``: P, Q learn on steps 0, k, 2k, ... (counted by feedback_step) with the usual
gradients, and receive no gradient on the others; the error sent below is unchanged on every step."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import bioplastic
from bioplastic.nn import feedback_step


def _grads(net, x, y):
    net.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(x), y).backward()
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in net.named_parameters()}


@pytest.mark.parametrize("mode", ["normative", "local"])
def test_feedback_every_skips_feedback_gradients_only(mode):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    every = bioplastic.convert(plain, bioplastic.rules.make("ldfa", rank=2, feedback_learning=mode,
                                                           feedback_every=3), seed=1)
    ref = bioplastic.convert(plain, bioplastic.rules.make("ldfa", rank=2, feedback_learning=mode), seed=1)
    x, y = torch.randn(5, 12, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    feedback = [n for n, _ in every.named_parameters() if n.endswith((".P", ".Q"))]
    assert feedback
    for step in range(7):
        g, g_ref = _grads(every, x, y), _grads(ref, x, y)
        for name, value in g_ref.items():
            if name in feedback and step % 3:
                assert g[name] is None, (step, name)
            else:
                torch.testing.assert_close(g[name], value, rtol=0, atol=0)
        feedback_step(every)
        feedback_step(ref)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_feedback_every_is_validated(bad):
    with pytest.raises(ValueError, match="feedback_every"):
        bioplastic.rules.make("ldfa", feedback_every=bad)


def test_feedback_every_default_is_one():
    assert bioplastic.rules.make("ldfa").feedback_every == 1
