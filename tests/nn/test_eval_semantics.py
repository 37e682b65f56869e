"""Issue 15 case 3: a converted model's backward is its rule's in train and in eval mode (docs/rules.md);
``true_gradient`` gives the derivative of the network function (autograd on the original model is the
oracle); ``alignment`` measures the rule against backprop in either mode and inside a ``true_gradient`` block."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import bioplastic
from bioplastic.nn import alignment, true_gradient
from bioplastic.rules import make
from bioplastic.testing import assert_gradients_equal, gradients

from .conftest import convnet, mlp

RULES = ["fa", "dfa", make("ldfa", rank=2), "sign_symmetry", "kolen_pollack", make("direct_ldfa", rank=2)]


def _input_grad(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g


@pytest.mark.parametrize("rule", RULES, ids=str)
def test_true_gradient_equals_autograd_of_the_original_model(rule, batch_mlp):
    x, y = batch_mlp
    model = mlp()
    net = bioplastic.convert(model, rule, seed=0)
    with true_gradient(net) as same:
        assert same is net
        assert_gradients_equal(net, model, x, y, F.cross_entropy, rtol=0, atol=1e-12)
        torch.testing.assert_close(_input_grad(net, x, y), _input_grad(model, x, y), rtol=0, atol=1e-12)
        # feedback parameters get no update from a true-gradient pass
        fb = {n: g for n, g in gradients(net, x, y, F.cross_entropy).items() if n.split(".")[-1] in "BDPQ"}
        assert all(g is None for g in fb.values())
    # outside the block: the rule again (the hidden layers' updates differ from backprop's)
    got, want = gradients(net, x, y, F.cross_entropy), gradients(model, x, y, F.cross_entropy)
    assert (got["0.weight"] - want["0.weight"]).abs().max() > 1e-3


def test_true_gradient_on_a_conv_net_in_eval_mode(batch_conv):
    x, y = batch_conv
    model = convnet().eval()
    net = bioplastic.convert(model, "fa", seed=0).eval()
    with true_gradient(net):
        assert_gradients_equal(net, model, x, y, F.cross_entropy, rtol=0, atol=1e-12)
        torch.testing.assert_close(_input_grad(net, x, y), _input_grad(model, x, y), rtol=0, atol=1e-12)


@pytest.mark.parametrize("rule", ["fa", make("ldfa", rank=2)], ids=str)
def test_eval_mode_backward_is_the_rule_not_backprop(rule, batch_mlp):
    """eval() changes dropout / BatchNorm only: for a model without them, eval and train gradients are the
    same rule updates, and they are not backprop's."""
    x, y = batch_mlp
    model = mlp()
    net = bioplastic.convert(model, rule, seed=0)
    train = gradients(net.train(), x, y, F.cross_entropy)
    evaluated = gradients(net.eval(), x, y, F.cross_entropy)
    for name, g in train.items():
        if g is not None:
            torch.testing.assert_close(evaluated[name], g, rtol=0, atol=0)
    bp = gradients(model, x, y, F.cross_entropy)
    assert (evaluated["0.weight"] - bp["0.weight"]).abs().max() > 1e-3
    torch.testing.assert_close(evaluated["4.weight"], bp["4.weight"], rtol=0, atol=1e-12)  # output: exact e


def test_true_gradient_restores_after_errors_and_nests(batch_mlp):
    x, y = batch_mlp
    net = bioplastic.convert(mlp(), "fa", seed=0)
    bus = net[0].bus
    with pytest.raises(RuntimeError, match="boom"):
        with true_gradient(net):
            raise RuntimeError("boom")
    assert bus.force_bp is False
    with true_gradient(net):
        with true_gradient(net):
            assert bus.force_bp
        assert bus.force_bp
    assert bus.force_bp is False
    with true_gradient(mlp()):  # a plain model: nothing to switch
        pass


def test_alignment_measures_the_rule_in_eval_mode_and_inside_true_gradient(batch_mlp):
    x, y = batch_mlp
    model = mlp()
    net = bioplastic.convert(model, "fa", seed=0)
    train = alignment(net.train(), x, y, F.cross_entropy)
    evaluated = alignment(net.eval(), x, y, F.cross_entropy)
    # the rule's update against the true gradient, by hand
    rule = gradients(net, x, y, F.cross_entropy)["0.weight"]
    bp = gradients(model, x, y, F.cross_entropy)["0.weight"]
    cos = float((rule * bp).sum() / (rule.norm() * bp.norm()))
    assert float(evaluated.update_cosine.sel(layer="0")) == pytest.approx(cos, abs=1e-12)
    assert cos < 0.99
    assert float(evaluated.update_cosine.sel(layer="4")) == pytest.approx(1.0, abs=1e-12)
    assert train.update_cosine.values.tolist() == evaluated.update_cosine.values.tolist()
    with true_gradient(net):
        inside = alignment(net, x, y, F.cross_entropy)
        assert net[0].bus.force_bp  # alignment restores the block's state
    assert inside.update_cosine.values.tolist() == evaluated.update_cosine.values.tolist()
