"""Rules that must reduce to backprop do so exactly, for every parameter (oracle: plain autograd)."""
import pytest
import torch
import torch.nn.functional as F

import bioplastic
from bioplastic.nn import feedback_layers
from bioplastic.testing import assert_gradients_equal

from .conftest import convnet, mlp


def _models(kind, bias):
    return mlp(bias) if kind == "mlp" else convnet(bias)


@pytest.fixture(params=[("mlp", True), ("mlp", False), ("conv", True), ("conv", False)],
                ids=["mlp-bias", "mlp-nobias", "conv-bias", "conv-nobias"])
def case(request, batch_mlp, batch_conv):
    kind, bias = request.param
    x, y = batch_mlp if kind == "mlp" else batch_conv
    return _models(kind, bias), x, y


def _all_forward_names(model):
    return [n for n, _ in model.named_parameters()]


def test_bp_path_is_autograd(case):
    model, x, y = case
    converted = bioplastic.convert(model, "bp")
    assert_gradients_equal(converted, model, x, y, F.cross_entropy, names=_all_forward_names(model))


@pytest.mark.parametrize("rule", ["fa", "kolen_pollack"])
def test_feedback_alignment_with_b_equal_w_is_backprop(case, rule):
    model, x, y = case
    converted = bioplastic.convert(model, rule, seed=0)
    with torch.no_grad():
        for _, layer in feedback_layers(converted):
            assert layer.B.shape == layer.weight.shape
            assert not torch.equal(layer.B, layer.weight)
            layer.B.copy_(layer.weight)
    assert_gradients_equal(converted, model, x, y, F.cross_entropy, names=_all_forward_names(model))


@pytest.mark.parametrize("mode", ["normative", "fixed", "local", "oja", "q_only"])
def test_ldfa_full_rank_with_pq_equal_w_is_backprop(case, mode):
    model, x, y = case
    with pytest.warns(UserWarning, match="clipped"):
        converted = bioplastic.convert(model, bioplastic.rules.make("ldfa", rank=10_000, feedback_learning=mode),
                                       seed=0)
    for _, layer in feedback_layers(converted):
        if mode != "normative":  # random init: set P Q = W from the SVD by hand
            layer.reinit_feedback_svd()
        g = layer.groups_
        w = layer.weight_matrix().detach()
        torch.testing.assert_close(layer.effective_feedback(), w, rtol=0, atol=1e-12)
        assert layer.rank == g * min(w.shape[0] // g, w.shape[1])
    assert_gradients_equal(converted, model, x, y, F.cross_entropy, names=_all_forward_names(model))


def test_sign_symmetry_on_sign_weights_is_backprop(batch_mlp):
    """With W = c sign(W) (all |w| equal), s sign(W) = W under the mean_abs scale."""
    model = mlp()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(0.3 * torch.sign(p))
    x, y = batch_mlp
    assert_gradients_equal(bioplastic.convert(model, "sign_symmetry"), model, x, y, F.cross_entropy,
                           names=_all_forward_names(model))


@pytest.mark.filterwarnings("ignore:.*clipped:UserWarning")
def test_output_layer_gets_exact_error_under_every_rule(batch_mlp):
    model = mlp()
    x, y = batch_mlp
    for rule in bioplastic.rules.RULE_NAMES:
        converted = bioplastic.convert(model, rule, seed=0)
        g = bioplastic.testing.gradients(converted, x, y, F.cross_entropy)
        ref = bioplastic.testing.gradients(model, x, y, F.cross_entropy)
        torch.testing.assert_close(g["4.weight"], ref["4.weight"], rtol=0, atol=1e-12)
        torch.testing.assert_close(g["4.bias"], ref["4.bias"], rtol=0, atol=1e-12)
        assert bioplastic.nn.conversion_report(converted).output_layer == "4"


@pytest.mark.filterwarnings("ignore:.*clipped:UserWarning")
def test_input_model_is_untouched(batch_mlp):
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted = bioplastic.convert(model, "ldfa", seed=0)
    x, y = batch_mlp
    F.cross_entropy(converted(x), y).backward()
    assert all(type(m).__module__.startswith("torch.nn") for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert converted[0].weight is not model[0].weight
