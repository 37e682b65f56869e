"""The converted layers' backward does only the work its outputs need (counted with FlopCounterMode)."""
import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import bioplastic


def _backward_flops(out: torch.Tensor) -> int:
    g = torch.ones_like(out)
    with FlopCounterMode(display=False) as counter:
        out.backward(g)
    return counter.get_total_flops()


@pytest.mark.parametrize("bias", [True, False])
def test_first_layer_ldfa_fixed_linear_backward_is_weight_gradient_only(bias):
    # The first layer's input needs no gradient and fixed P, Q learn nothing: z = delta P is not computed.
    batch, tokens, n_in, n_hid, n_out, r = 3, 4, 12, 16, 5, 2
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(n_in, n_hid, bias=bias), nn.Tanh(), nn.Linear(n_hid, n_out, bias=bias)).double()
    conv = bioplastic.convert(model, bioplastic.rules.make("ldfa", rank=r, feedback_learning="fixed"), seed=0)
    first = conv[0]
    x = torch.randn(batch, tokens, n_in, dtype=torch.float64)  # leading dims: N = batch * tokens rows
    n = batch * tokens
    flops = _backward_flops(first(x))
    # grad_W = delta^T h: 2 N in out; the bias gradient is a sum (FlopCounterMode counts no reductions: 0)
    assert flops == 2 * n * n_in * n_hid + 0
    assert first.weight.grad is not None
    assert not bias or first.bias.grad is not None
    assert first.P.grad is None and first.Q.grad is None
    # the input gradient adds exactly the two feedback products (delta P) Q: 2 N out r + 2 N r in
    first.zero_grad()
    flops_x = _backward_flops(first(x.requires_grad_()))
    assert flops_x == 2 * n * n_in * n_hid + 2 * n * n_hid * r + 2 * n * r * n_in


def test_first_layer_ldfa_fixed_conv_backward_is_weight_gradient_only():
    b, c_in, c_out, k, size, r = 2, 3, 8, 3, 6, 4
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(c_out * size * size, 5)).double()
    conv = bioplastic.convert(model, bioplastic.rules.make("ldfa", rank=r, feedback_learning="fixed"), seed=0)
    first = conv[0]
    x = torch.randn(b, c_in, size, size, dtype=torch.float64)
    flops = _backward_flops(first(x))
    # grad_W as a convolution: 2 per output position per kernel entry (same-size output, padding 1)
    assert flops == 2 * b * size * size * c_out * c_in * k * k
    assert first.P.grad is None and first.Q.grad is None
