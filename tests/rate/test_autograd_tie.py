"""The tie between the two executors (design.md): a rate network whose dynamics have settled changes its
forward weights, over one presentation with a small learning rate, in the direction of the autograd LDFA
update for the same P, Q.

Two oracles: an explicit autograd computation written here (a custom ``autograd.Function`` whose backward
sends ``(g P) Q`` below, the definition in docs/rules.md), and the rule core
(``bioplastic.convert`` with ``bioplastic.rules.make("ldfa" | "direct_ldfa", feedback_learning="fixed")``),
whose feedback parameters are set to the rate network's P and Q.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from bioplastic.rate import RateNetwork

SIZES = [9, 8, 7, 4]
RANK = 2


class _LowRankFeedbackLinear(torch.autograd.Function):
    """y = x W^T + b; backward: exact dW, db; error below = (g P) Q, or (e P) Q with the output error e."""

    @staticmethod
    def forward(ctx, x, weight, bias, p, q, bus):
        ctx.save_for_backward(x, p, q)
        ctx.bus = bus
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, g):
        x, p, q = ctx.saved_tensors
        source = ctx.bus["e"] if ctx.bus is not None else g
        return (source @ p) @ q, g.T @ x, g.sum(0), None, None, None


def _explicit_ldfa_grads(net: RateNetwork, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """dL/dW with LDFA backward for the loss paired with a sigmoid output (binary cross-entropy)."""
    w = {k: v.clone().requires_grad_(k.startswith(("W_", "b_"))) for k, v in net.weights.items()}
    direct = net.feedback.wiring == "direct"
    hidden = [p.name for p in net.hidden]
    layers = [p.name for p in net.populations[1:]]
    bus = {} if direct else None
    h = x
    for i, name in enumerate(layers):
        if i == 0:
            cur = h @ w[f"W_{name}"].T + w[f"b_{name}"]  # input layer: the error below is not used
        else:
            below = hidden[i - 1]  # the hidden population that receives this layer's feedback
            p = w["P"] if direct else w[f"P_{below}"]
            cur = _LowRankFeedbackLinear.apply(h, w[f"W_{name}"], w[f"b_{name}"], p, w[f"Q_{below}"], bus)
        h = torch.tanh(cur) if name != layers[-1] else cur
    logits = h
    if direct:
        bus["e"] = (torch.sigmoid(logits) - y).detach()  # dL/dlogits, delivered to every layer
    loss = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
    loss.backward()
    return {k: v.grad for k, v in w.items() if v.grad is not None}


def _rate_update(wiring: str, seed: int = 0):
    net = RateNetwork.from_sizes(SIZES, feedback_rank=RANK, wiring=wiring, feedback_learning="fixed",
                                 activation="tanh", output_activation="sigmoid", learning_rate=1e-3,
                                 tau=0.01, tau_error=0.005, feedback_tau=0.005, dtype=torch.float64, seed=seed)
    g = torch.Generator().manual_seed(seed + 10)
    x = torch.rand(1, SIZES[0], generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.tensor([seed % SIZES[-1]]), SIZES[-1]).double()
    before = net.weights
    # plasticity only once the dynamics have settled (0.3 s = 30 tau after onset)
    trained = net.copy()
    trained.run(x, y, presentation=0.4, dt=0.001, plasticity_delay=0.3, record=())
    delta = {k: trained.weights[k] - before[k] for k in before}
    return net, x, y, delta


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.parametrize("wiring", ["layerwise", "direct"])
@pytest.mark.parametrize("seed", [0, 1])
def test_settled_weight_change_follows_explicit_autograd_ldfa(wiring, seed):
    net, x, y, delta = _rate_update(wiring, seed)
    grads = _explicit_ldfa_grads(net, x, y)
    for name in [f"W_{p.name}" for p in net.populations[1:]] + ["b_hidden1"]:
        cos = _cosine(delta[name], -grads[name])
        assert cos > 0.99, (name, cos)
    # and the size: eta * (plastic duration) * gradient, up to the small drift of the state
    rate = net.synaptic_learning_rates()["W_output"]  # eta / fan-in = 1e-3 / 7
    assert rate == pytest.approx(1e-3 / 7)
    torch.testing.assert_close(delta["W_output"], -rate * 0.1 * grads["W_output"], rtol=0.02, atol=1e-12)
    rate_b = net.synaptic_learning_rates()["b_output"]  # a bias has fan-in 1: default eta / 100 (issue 15 case 4)
    assert rate_b == pytest.approx(1e-3 / 100)
    torch.testing.assert_close(delta["b_output"], -rate_b * 0.1 * grads["b_output"], rtol=0.02, atol=1e-12)


@pytest.mark.parametrize("wiring", ["layerwise", "direct"])
def test_settled_weight_change_follows_rule_core(wiring):
    import bioplastic
    from bioplastic.rules import make

    net, x, y, delta = _rate_update(wiring, seed=3)
    w = net.weights
    model = nn.Sequential(nn.Linear(9, 8), nn.Tanh(), nn.Linear(8, 7), nn.Tanh(), nn.Linear(7, 4)).double()
    with torch.no_grad():
        for idx, name in zip((0, 2, 4), ("hidden1", "hidden2", "output")):
            model[idx].weight.copy_(w[f"W_{name}"])
            model[idx].bias.copy_(w[f"b_{name}"])
    rule = make("ldfa" if wiring == "layerwise" else "direct_ldfa", rank=RANK, feedback_learning="fixed")
    conv = bioplastic.convert(model, rule, seed=0)
    params = dict(conv.named_parameters())
    with torch.no_grad():
        # layer "2" sends its error to hidden1, layer "4" to hidden2
        for idx, below in ((2, "hidden1"), (4, "hidden2")):
            params[f"{idx}.P"].copy_(w["P"] if wiring == "direct" else w[f"P_{below}"])
            params[f"{idx}.Q"].copy_(w[f"Q_{below}"])
    loss = nn.functional.binary_cross_entropy_with_logits(conv(x), y, reduction="sum")
    loss.backward()
    for idx, name in zip((0, 2, 4), ("hidden1", "hidden2", "output")):
        cos = _cosine(delta[f"W_{name}"], -params[f"{idx}.weight"].grad)
        assert cos > 0.99, (name, cos)
        cos_b = _cosine(delta[f"b_{name}"], -params[f"{idx}.bias"].grad)
        assert cos_b > 0.99, (name, cos_b)


def test_unsettled_or_fast_learning_is_what_breaks_the_tie():
    """Control: with plasticity on from stimulus onset (transients included) and a short presentation the
    update of the deepest layer is measurably off the autograd direction; the test above is not vacuous."""
    net = RateNetwork.from_sizes(SIZES, feedback_rank=RANK, wiring="layerwise", feedback_learning="fixed",
                                 activation="tanh", learning_rate=1e-3, tau=0.01, tau_error=0.005,
                                 feedback_tau=0.005, dtype=torch.float64, seed=0)
    g = torch.Generator().manual_seed(10)
    x = torch.rand(1, SIZES[0], generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.tensor([0]), SIZES[-1]).double()
    trained = net.copy()
    trained.run(x, y, presentation=0.02, dt=0.001, record=())
    grads = _explicit_ldfa_grads(net, x, y)
    cos = _cosine(trained.weights["W_hidden1"] - net.weights["W_hidden1"], -grads["W_hidden1"])
    assert cos < 0.99
