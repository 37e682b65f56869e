"""Issue 16 item 11: ``convert`` warns when weight-bearing layers stay on backprop without the user asking for
it, and when nothing is converted; deliberate exclusions (a spec's ``[rule].exclude``) and bp stay quiet."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

import bioplastic
from bioplastic.nn import conversion_report

from .test_convert import Mixed

QUIET = "weight-bearing|converted no layer"


def _convert_recording(model, rule, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = bioplastic.convert(model, rule, seed=0, **kw)
    return net, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_unsupported_weight_layers_on_backprop_warn_naming_them_and_why():
    with pytest.warns(UserWarning, match="weight-bearing") as record:
        bioplastic.convert(Mixed(), "fa", seed=0)
    (message,) = [str(w.message) for w in record if "weight-bearing" in str(w.message)]
    for name in ("'embed' (Embedding)", "'conv1d' (Conv1d)", "'attn' (MultiheadAttention)",
                 "'block.self_attn' (MultiheadAttention)"):
        assert name in message
    assert "4 weight-bearing layer(s)" in message  # not the projections inside attention, norms or the free scale
    assert "'norm'" not in message and "out_proj" not in message and "<root>" not in message
    assert "F.multi_head_attention_forward" in message and "exclude=" in message


def test_excluded_layers_and_bp_do_not_warn():
    _, msgs = _convert_recording(Mixed(), "fa", exclude=["embed", "conv1d", "attn", "block.self_attn"])
    assert not [m for m in msgs if "weight-bearing" in m]
    _, msgs = _convert_recording(Mixed(), "bp")  # on bp, backprop for these layers is the rule itself
    assert not [m for m in msgs if "weight-bearing" in m]


@pytest.mark.parametrize("layer, kind", [
    (nn.LSTM(6, 6, batch_first=True), "LSTM"), (nn.GRU(6, 6, batch_first=True), "GRU"),
    (nn.RNN(6, 6, batch_first=True), "RNN"), (nn.Conv3d(1, 2, 1), "Conv3d"),
    (nn.ConvTranspose2d(2, 2, 3), "ConvTranspose2d"), (nn.Bilinear(3, 3, 3), "Bilinear"),
    (nn.EmbeddingBag(5, 3), "EmbeddingBag"), (nn.LSTMCell(3, 3), "LSTMCell"),
])
def test_each_unsupported_weight_layer_type_warns(layer, kind):
    model = nn.ModuleDict({"odd": layer, "head": nn.Linear(6, 2)})
    _, msgs = _convert_recording(model, "fa")
    assert any(f"'odd' ({kind})" in m for m in msgs), msgs


def test_overriding_parametrized_and_custom_weight_layers_warn():
    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 4))

    class Positive(nn.Module):
        def forward(self, w):
            return w.abs()

    param = nn.Linear(4, 4)
    parametrize.register_parametrization(param, "weight", Positive())
    model = nn.ModuleDict({"scaled": Scaled(4, 4), "custom": Custom(), "param": param, "head": nn.Linear(4, 2)})
    _, msgs = _convert_recording(model, "fa")
    (message,) = [m for m in msgs if "weight-bearing" in m]
    assert "'scaled' (Scaled)" in message and "'custom' (Custom)" in message and "'param' (" in message
    # free parameters (class token), norms and PReLU are not weight layers
    quiet = nn.ModuleDict({"norm": nn.LayerNorm(4), "act": nn.PReLU(), "head": nn.Linear(4, 2)})
    quiet.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
    _, msgs = _convert_recording(quiet, "fa")
    assert not [m for m in msgs if "weight-bearing" in m]


def test_converting_nothing_warns():
    with pytest.warns(UserWarning, match=r"convert\(rule='fa'\) converted no layer: the model has no nn.Linear"):
        net = bioplastic.convert(nn.Sequential(nn.ReLU()), "fa")
    assert conversion_report(net).converted == []
    with pytest.warns(UserWarning, match=r"converted no layer: every weight layer is excluded.*'0'"):
        bioplastic.convert(nn.Sequential(nn.Linear(3, 2)), "fa", exclude=["0"])


@pytest.mark.parametrize("name", ["cnn_small", "mlp_mnist", "mlp_digits", "retina_vvs", "vgg_cifar", "vit_cifar",
                                  "vit_small"])
def test_shipped_specs_convert_without_these_warnings(name):
    """The specs keep layers on backprop only deliberately (their [rule].exclude: a CNN head, a ViT's patch
    embedding): no warning."""
    from bioplastic.architectures.spec import build_model, load_spec

    spec = load_spec(name)
    model = build_model(spec)
    _, msgs = _convert_recording(model, "fa", exclude=spec.get("rule", {}).get("exclude", []))
    assert not [m for m in msgs if "weight-bearing" in m or "converted no layer" in m], msgs
