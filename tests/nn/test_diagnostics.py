"""alignment(): per-layer update cosine, feedback angle, subspace angle against independent oracles."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn as nn
import torch.nn.functional as F

import bioplastic
from bioplastic.nn import alignment, feedback_layers
from bioplastic.rules import make
from bioplastic.testing import gradients

from .conftest import convnet, mlp


def _cos(a, b):
    a, b = a.reshape(-1).numpy(), b.reshape(-1).numpy()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_backprop_is_perfectly_aligned(batch_conv):
    x, y = batch_conv
    ds = alignment(bioplastic.convert(convnet(), "bp"), x, y, F.cross_entropy)
    assert list(ds.layer.values) == ["0", "2", "4", "8"]
    np.testing.assert_allclose(ds.update_cosine, 1.0, atol=1e-12)
    np.testing.assert_allclose(ds.feedback_angle, 0.0, atol=1e-6)
    assert np.isnan(ds.subspace_angle).all()
    assert ds.attrs["rule"] == "bp" and ds.feedback_angle.attrs["units"] == "degree"


@pytest.mark.parametrize("rule", ["fa", "sign_symmetry", "dfa", make("ldfa", rank=3, feedback_learning="local")])
def test_update_cosine_and_feedback_angle_match_oracles(rule, batch_mlp):
    x, y = batch_mlp
    model = mlp()
    net = bioplastic.convert(model, rule, seed=0)
    ds = alignment(net, x, y, F.cross_entropy)
    g_rule = gradients(net, x, y, F.cross_entropy)
    g_bp = gradients(model, x, y, F.cross_entropy)
    for name, layer in feedback_layers(net):
        want = _cos(g_rule[f"{name}.weight"], g_bp[f"{name}.weight"])
        assert ds.update_cosine.sel(layer=name) == pytest.approx(want, abs=1e-10)
        w = layer.weight.detach()
        fb = {"fa": lambda: layer.B, "sign_symmetry": lambda: torch.sign(w),
              "dfa": lambda: layer.D, "ldfa": lambda: layer.P @ layer.Q}[layer.rule.name]().detach()
        if layer.rule.name == "dfa" and not layer.is_output:
            assert np.isnan(ds.feedback_angle.sel(layer=name))
        else:
            want_angle = math.degrees(math.acos(_cos(fb, w)))
            assert ds.feedback_angle.sel(layer=name) == pytest.approx(want_angle, abs=1e-6)
    assert ds.update_cosine.sel(layer="4") == pytest.approx(1.0, abs=1e-12)  # output layer: exact error


def test_subspace_angle_matches_scipy(batch_mlp):
    x, y = batch_mlp
    net = bioplastic.convert(mlp(), make("ldfa", rank=3, feedback_learning="oja"), seed=0)
    outputs = {}

    def keep(name):
        def hook(mod, args, out):
            out.retain_grad()
            outputs[name] = out
        return hook

    for name, layer in feedback_layers(net):
        layer.register_forward_hook(keep(name))
    ds = alignment(net, x, y, F.cross_entropy)
    F.cross_entropy(net(x), y).backward()
    for name, layer in feedback_layers(net):
        delta = outputs[name].grad.reshape(-1, layer.out_features).numpy()
        vh = np.linalg.svd(delta, full_matrices=False)[2]
        want = np.degrees(scipy.linalg.subspace_angles(layer.P.detach().numpy(), vh[:3].T).max())
        assert ds.subspace_angle.sel(layer=name) == pytest.approx(want, abs=1e-6)
        assert ds.feedback_rank.sel(layer=name) == 3


def test_alignment_leaves_model_state_unchanged(batch_conv):
    x, y = batch_conv
    model = nn.Sequential(convnet(), nn.Dropout(0.5))
    net = bioplastic.convert(model, make("ldfa", rank=2, feedback_learning="local"), seed=0)
    F.cross_entropy(net(x), y).backward()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    rng = torch.get_rng_state()
    ds = alignment(net, x, y, F.cross_entropy)
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in net.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, state[k]), k
    for k, p in net.named_parameters():
        if k in grads:
            assert torch.equal(p.grad, grads[k]), k
    assert ds.sizes["layer"] == 4


def test_alignment_saves_to_netcdf(tmp_path, batch_mlp):
    x, y = batch_mlp
    ds = alignment(bioplastic.convert(mlp(), make("direct_ldfa", rank=2), seed=0), x, y, F.cross_entropy)
    path = bioplastic.io.save(ds, tmp_path / "align.nc")
    back = bioplastic.io.load(path)
    assert bioplastic.io.config_of(back)["rule"]["name"] == "direct_ldfa"
    np.testing.assert_allclose(back.subspace_angle, ds.subspace_angle)


def test_alignment_bad_input(batch_mlp):
    x, y = batch_mlp
    net = bioplastic.convert(mlp(), "fa")
    with pytest.raises(ValueError, match="inputs contains NaN or Inf"):
        alignment(net, x * float("nan"), y, F.cross_entropy)
    with pytest.raises(ValueError, match="not produced by bioplastic.convert"):
        alignment(mlp(), x, y, F.cross_entropy)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        alignment(net, x, y, lambda out, t: F.cross_entropy(out, t, reduction="none"))
    # a failed call leaves the error bus clean: the next call works
    assert alignment(net, x, y, F.cross_entropy).sizes["layer"] == 3
