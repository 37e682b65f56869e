"""The one-pass hot paths of issue 14 compute the rules' formulas: checked on weights large enough to take them.

Reference values are the formulas written out with whole-tensor torch ops (``torch.sign``, ``abs().mean()``,
``(PQ - W) Q^T``, ``conv_transpose2d`` for the 1x1 ``P`` convolution); only the floating-point summation
order may differ, so float64 inputs must agree to ~1e-12 and float32 to ~1e-6 relative.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import bioplastic
from bioplastic.nn.functions import ConvOps
from bioplastic.rules import alignment, low_rank


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_normative_gradients_one_pass_is_the_formula(dtype, rtol):
    g = torch.Generator().manual_seed(0)
    out, k, r = 700, 1000, 7  # 5.6 MB in float64: above the one-pass threshold, 700 rows not a block multiple
    w = torch.randn(out, k, generator=g, dtype=dtype)
    p = torch.randn(out, r, generator=g, dtype=dtype)
    q = torch.randn(r, k, generator=g, dtype=dtype)
    assert low_rank._one_pass(w, p, q)
    grad_p, grad_q = low_rank.normative_gradients(p, q, w)
    resid = p @ q - w
    torch.testing.assert_close(grad_p, resid @ q.T, rtol=rtol, atol=rtol * float((resid @ q.T).abs().max()))
    torch.testing.assert_close(grad_q, p.T @ resid, rtol=rtol, atol=rtol * float((p.T @ resid).abs().max()))


def test_normative_gradients_under_autograd_keep_the_two_products():
    w = torch.randn(600, 1000, dtype=torch.float64, requires_grad=True)
    p, q = torch.randn(600, 5, dtype=torch.float64), torch.randn(5, 1000, dtype=torch.float64)
    assert not low_rank._one_pass(w, p, q)
    grad_p, _ = low_rank.normative_gradients(p, q, w)
    grad_p.sum().backward()  # differentiable: no in-place writes on the graph
    torch.testing.assert_close(w.grad, -torch.ones(600, 5, dtype=torch.float64) @ q)


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_sign_and_mean_abs_is_the_formula(dtype, rtol):
    w = torch.randn(900, 1000, generator=torch.Generator().manual_seed(1), dtype=dtype)
    w[0, :7] = 0.0  # sign(0) = 0 and |0| = 0
    sign, scale = alignment.sign_and_mean_abs(w)
    assert torch.equal(sign, torch.sign(w))
    torch.testing.assert_close(scale, w.abs().mean(), rtol=rtol, atol=0)


def test_sign_symmetry_large_layer_sends_scaled_sign_error():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(800, 1000), nn.ReLU(), nn.Linear(1000, 800), nn.Linear(800, 3)).double()
    conv = bioplastic.convert(net, bioplastic.rules.make("sign_symmetry"))
    x = torch.randn(6, 800, dtype=torch.float64)
    h1 = conv[1](conv[0](x)).detach().requires_grad_(True)
    h2 = conv[2](h1)
    delta = torch.randn_like(h2)
    (h2 * delta).sum().backward()
    w = conv[2].weight.detach()
    torch.testing.assert_close(h1.grad, delta @ (torch.sign(w) * w.abs().mean()), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_compress_is_the_1x1_transposed_convolution(groups):
    g = torch.Generator().manual_seed(2)
    delta = torch.randn(3, 8, 5, 6, generator=g, dtype=torch.float64)
    p = torch.randn(8, 4 // groups, 1, 1, generator=g, dtype=torch.float64)
    ops = ConvOps(torch.zeros(3, 2, 5, 6, dtype=torch.float64), delta, ((1, 1), (0, 0), (1, 1), groups),
                  is_output=False, layer_name="conv")
    torch.testing.assert_close(ops.compress(delta, p), F.conv_transpose2d(delta, p, groups=groups),
                               rtol=1e-12, atol=1e-13)
    # non-contiguous delta (channels-last memory format)
    torch.testing.assert_close(ops.compress(delta.to(memory_format=torch.channels_last), p),
                               F.conv_transpose2d(delta, p, groups=groups), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("stride, padding, dilation, groups, size", [
    (1, 1, 1, 1, 7), (2, 1, 1, 1, 7), (2, 1, 1, 1, 8), (3, 0, 1, 1, 10), (1, 2, 2, 1, 9), (2, 1, 1, 2, 9)])
def test_conv_send_is_the_input_gradient(stride, padding, dilation, groups, size):
    """``ConvOps.send`` (a transposed convolution with the output padding of the layer's input size) equals
    ``conv2d_input``, the input gradient of the convolution with kernel ``m``."""
    from torch.nn.grad import conv2d_input

    g = torch.Generator().manual_seed(3)
    h = torch.randn(2, 4, size, size, generator=g, dtype=torch.float64)
    m = torch.randn(2 * groups, 4 // groups, 3, 3, generator=g, dtype=torch.float64)
    out = F.conv2d(h, m, None, stride, padding, dilation, groups)
    a = torch.randn_like(out)
    conf = ((stride, stride), (padding, padding), (dilation, dilation), groups)
    ops = ConvOps(h, a, conf, is_output=False, layer_name="conv")
    ref = conv2d_input(h.shape, m, a, conf[0], conf[1], conf[2], groups)
    torch.testing.assert_close(ops.send(a, m), ref, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("groups", [1, 2])
def test_conv_cross_is_the_sum_over_batch_and_positions(groups):
    g = torch.Generator().manual_seed(4)
    a = torch.randn(5, groups, 6, 30, generator=g, dtype=torch.float64)
    b = torch.randn(5, groups, 3, 30, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ConvOps.cross(a, b), torch.einsum("bgoh,bgrh->gor", a, b), rtol=1e-12, atol=1e-12)
