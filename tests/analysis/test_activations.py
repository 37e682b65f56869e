"""record_activations: values equal a manual forward pass; model state untouched; clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bioplastic.analysis import cka, leaf_layers, rdm, record_activations, representation_layers


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.Dropout(0.5), nn.ReLU(), nn.Linear(6, 3),
    )


@pytest.fixture
def stimuli():
    return torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_activations_equal_a_manual_forward_pass(stimuli):
    net = _net()
    net.train()
    acts = record_activations(net, stimuli, ["2", "5", "8"], batch_size=3,
                              coords={"category": list("ab") * 5})
    net.eval()
    with torch.no_grad():
        relu = net[:3](stimuli)
        fc = net[:6](stimuli)
        logits = net(stimuli)
    np.testing.assert_allclose(acts["2"].values, relu.reshape(10, -1).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(acts["5"].values, fc.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(acts["8"].values, logits.numpy(), rtol=1e-6, atol=1e-6)
    assert acts["2"].dims == ("stimulus", "neuron_2")
    assert acts["2"].attrs["shape"] == "(4, 8, 8)" and acts["2"].attrs["module"] == "ReLU"
    # channel / position coordinates follow C-order flattening
    flat = 2 * 64 + 3 * 8 + 5
    assert (int(acts["channel_2"][flat]), int(acts["y_2"][flat]), int(acts["x_2"][flat])) == (2, 3, 5)
    assert list(acts["category"].values) == list("ab") * 5
    # the analyses take the variables as they are
    assert rdm(acts["5"]).shape == (10, 10)
    assert cka(acts["2"], acts["2"]) == pytest.approx(1.0)


def test_model_state_and_modes_are_restored(stimuli):
    net = _net()
    net.train()
    net[6].eval()  # a mixed state must come back exactly
    modes = [m.training for m in net.modules()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    record_activations(net, stimuli, ["1"])
    assert [m.training for m in net.modules()] == modes
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, state[k])  # batch-norm running stats untouched
    assert not net[1]._forward_hooks


def test_default_layers_are_the_leaves(stimuli):
    net = _net()
    acts = record_activations(net, stimuli)
    assert list(acts.data_vars) == leaf_layers(net) == [str(i) for i in range(9)]


def test_activations_bad_input(stimuli):
    net = _net()
    with pytest.raises(ValueError, match="unknown layers \\['fc9'\\]; model has: '0', '1'"):
        record_activations(net, stimuli, ["fc9"])
    with pytest.raises(ValueError, match="dtype torch.uint8"):
        record_activations(net, (stimuli * 10).to(torch.uint8), ["2"])
    bad = stimuli.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        record_activations(net, bad, ["2"])
    with pytest.raises(ValueError, match="coordinate 'category'"):
        record_activations(net, stimuli, ["2"], coords={"category": [1, 2]})
    with pytest.raises(ValueError, match="batch_size"):
        record_activations(net, stimuli, ["2"], batch_size=0)


def test_hooks_removed_when_forward_fails(stimuli):
    net = _net()
    with pytest.raises(RuntimeError):
        record_activations(net, stimuli[:, :2], ["5"])  # wrong number of channels
    assert all(not m._forward_hooks for m in net.modules())


def test_representation_layers_are_nonlinearities_and_readout():
    assert representation_layers(_net()) == ["2", "7", "8"]
    assert representation_layers(_net(), include_output=False) == ["2", "7"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_activations_on_cuda_equal_cpu(stimuli):
    net = _net()
    cpu = record_activations(net, stimuli, ["2", "8"])
    gpu = record_activations(_net().cuda(), stimuli, ["2", "8"], device="cuda")
    np.testing.assert_allclose(gpu["8"].values, cpu["8"].values, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu["2"].values, cpu["2"].values, rtol=1e-4, atol=1e-5)
