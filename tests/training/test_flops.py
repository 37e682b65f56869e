"""FLOP counting of ``bioplastic.training.flops``: torch's FlopCounterMode sees the custom autograd
Functions' backward, counts match the closed forms of Linear / Conv2d / attention, and the LDFA / BP ratio
of the weight layers falls towards 2/3 as the rank shrinks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import xarray as xr

import bioplastic
from bioplastic.training.flops import count_step_flops, epochs_to_target, flops_to_target, step_flops
from bioplastic.training.config import conversion_options


SIZES = [(20, 30), (30, 40), (40, 10)]  # (in, out) of a 3-layer MLP


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 40), nn.Tanh(), nn.Linear(40, 10))


def test_linear_forward_flops_are_2_n_in_out_also_with_tokens():
    from torch.utils.flop_counter import FlopCounterMode

    layer = nn.Linear(7, 5)
    for shape in [(11, 7), (3, 4, 7)]:
        with FlopCounterMode(display=False) as fc:
            layer(torch.randn(*shape))
        n = int(np.prod(shape[:-1]))
        assert fc.get_total_flops() == 2 * n * 7 * 5


def test_bp_step_is_three_forwards_of_every_weight_layer():
    n = 16
    x = torch.randn(n, 20, requires_grad=True)  # every layer then computes its input gradient
    y = torch.randint(0, 10, (n,))
    counts = count_step_flops(bioplastic.convert(_mlp(), "bp"), x, y)
    forward = sum(2 * n * i * o for i, o in SIZES)
    assert counts["forward_weight_layers"] == forward
    assert counts["weight_layers"] == 3 * forward  # forward + weight gradient + input gradient


@pytest.mark.parametrize("rank", [1, 3])
def test_custom_function_backward_is_counted_ldfa_closed_form(rank):
    n = 16
    x = torch.randn(n, 20, requires_grad=True)
    y = torch.randint(0, 10, (n,))
    model = bioplastic.convert(_mlp(), bioplastic.rules.make("ldfa", rank=rank, feedback_learning="fixed"))
    counts = count_step_flops(model, x, y)
    # forward + weight gradient, and (delta P) Q instead of delta W: 2 n r (out + in)
    expected = sum(4 * n * i * o + 2 * n * rank * (i + o) for i, o in SIZES)
    assert counts["weight_layers"] == expected


def test_conv_flops_closed_form():
    from torch.utils.flop_counter import FlopCounterMode

    conv = nn.Conv2d(3, 8, 3, padding=1)
    with FlopCounterMode(display=False) as fc:
        conv(torch.randn(2, 3, 10, 10))
    assert fc.get_total_flops() == 2 * 2 * 10 * 10 * 8 * 3 * 9


def test_cpu_attention_is_counted_with_torchs_sdpa_formula():
    spec = {"architecture": "vit", "name": "tiny", "dim": 16, "depth": 2, "heads": 2, "mlp_ratio": 2.0}
    model = bioplastic.architectures.build_model(spec)
    n, t, dim = 3, 64 + 1, 16
    counts = count_step_flops(model, torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,)))
    # torch's SDPA formulas, per block: forward Q K^T and A V (2 matmuls of 2 n T^2 dim FLOPs); backward
    # (flash attention) recomputes Q K^T and forms dV, dA, dQ, dK (5 matmuls)
    assert counts["attention"] == 2 * (2 + 5) * 2 * n * t * t * dim


def test_weight_flop_ratio_falls_towards_two_thirds():
    ds = step_flops(["cnn_small"], [1, 4, 16, 64], ["fixed"], batch_size=4)
    ratio = ds["weight_flop_ratio"].sel(model="cnn_small", feedback_learning="fixed").values
    limit = float(ds["flop_ratio_limit"].sel(model="cnn_small"))
    assert np.all(np.diff(ratio) > 0)  # cheaper with smaller rank
    assert limit < ratio[0] < limit + 0.01
    # the first conv computes no input gradient under BP either, so the limit is just above 2/3
    assert 2 / 3 < limit < 0.68


def test_convert_options_from_spec():
    spec = bioplastic.architectures.load_spec("vit_small")
    model = bioplastic.architectures.build_model(spec)
    opts = conversion_options(spec, model, bioplastic.rules.make("ldfa", rank=10))
    assert opts["exclude"] == ["patch_embed"]
    assert opts["ranks"] == {f"blocks.{i}.attn.qkv": 30 for i in range(4)}
    assert conversion_options(spec, model, bioplastic.rules.make("bp")) == {"exclude": ["patch_embed"]}


def test_epochs_to_target_interpolates():
    acc = np.array([0.2, 0.5, 0.8, 0.9])
    assert epochs_to_target(acc, 0.5) == 2.0
    assert epochs_to_target(acc, 0.65) == pytest.approx(2.5)
    assert epochs_to_target(acc, 0.1) == pytest.approx(0.5)  # from 0 before epoch 1
    assert np.isnan(epochs_to_target(acc, 0.95))


def test_flops_to_target_from_a_comparison_file():
    spec = {"architecture": "vgg", "name": "toy", "widths": [4, 8], "convs_per_block": 1, "head_widths": []}
    nan = np.nan
    # the layout of bioplastic.compare: bp at rank -1, ldfa at its rank, NaN where not applicable
    acc = np.array([[[0.3, 0.6, 0.8, 0.8]], [[nan] * 4]]), np.array([[[nan] * 4], [[0.2, 0.4, 0.6, 0.8]]])
    curves = xr.Dataset(
        {"test_accuracy": (("rule", "rank", "seed", "epoch"), np.stack(acc))},
        coords={"rule": ["bp", "ldfa_fixed"], "rank": [-1, 2], "seed": [0], "epoch": [1, 2, 3, 4],
                "base_rule": ("rule", ["bp", "ldfa"]), "feedback_learning": ("rule", ["", "fixed"])},
        attrs={"config": json.dumps({"model": spec, "train": {"batch_size": 10}, "n_train": 100})},
    )
    out = flops_to_target(curves, target="bp")
    target = 0.9 * 0.8
    bp, ld = dict(rule="bp", rank=-1, seed=0), dict(rule="ldfa_fixed", rank=2, seed=0)
    assert float(out["target_accuracy"].sel(**bp)) == pytest.approx(target)
    ep_bp, ep_ld = 2 + (target - 0.6) / 0.2, 3 + (target - 0.6) / 0.2
    assert float(out["epochs_to_target"].sel(**bp)) == pytest.approx(ep_bp)
    assert float(out["epochs_to_target"].sel(**ld)) == pytest.approx(ep_ld)
    f_bp = float(out["flops_per_step"].sel(rule="bp", rank=-1))
    f_ld = float(out["flops_per_step"].sel(rule="ldfa_fixed", rank=2))
    assert f_ld < f_bp
    assert np.isnan(float(out["flops_per_step"].sel(rule="bp", rank=2)))
    # 10 steps per epoch (100 samples, batch 10)
    assert float(out["flops_to_target"].sel(**bp)) == pytest.approx(ep_bp * 10 * f_bp)
    assert float(out["flops_to_target"].sel(**ld)) == pytest.approx(ep_ld * 10 * f_ld)
    assert float(out["saving_vs_bp"].sel(rule="ldfa_fixed", rank=2)) == pytest.approx(1 - ep_ld * f_ld / (ep_bp * f_bp))


def test_random_batch_of_an_mlp_spec_is_flat_and_fits_the_model():
    """An MLP spec's inputs are flat (in_features,), so its step FLOPs can be counted (the MNIST MLP's
    FLOPs to a target accuracy, ``bioplastic reproduce``'s compute_to_target)."""
    import torch

    from bioplastic.architectures import build_model, load_spec
    from bioplastic.training.flops import count_step_flops, input_shape, random_batch

    spec = load_spec("mlp_mnist")
    assert input_shape(spec) == (784,)
    x, y = random_batch(spec, 4)
    assert x.shape == (4, 784) and y.shape == (4,)
    model = build_model(spec)
    flops = count_step_flops(model, x, y)
    # forward, input-gradient and weight-gradient matmuls of 784-256-256-10 at batch 4: 3 x 2 x 4 x sum(n m),
    # less the first layer's input gradient (not needed), plus the norm / activation ops
    weights = 784 * 256 + 256 * 256 + 256 * 10
    assert flops["weight_layers"] >= 2 * 2 * 4 * weights
    with torch.no_grad():
        assert model(x).shape == (4, 10)
