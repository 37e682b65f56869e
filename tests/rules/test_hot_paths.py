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
from bioplastic.rules.ops import DenseOps


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


# ---------------------------------------------------------------- issue 14, conv / token rows: sums over rows from
# grad_W, the stride-1 send as a convolution, the folded kernel near full rank. References: the row products
# written out (einsum over batch and positions, conv2d_input, (delta P) Q), float64.
def _conv_case(groups, stride=1, rank=4, c_in=4, c_out=6, size=7, seed=5):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(3, c_in, size, size, generator=g, dtype=torch.float64)
    w = torch.randn(c_out, c_in // groups, 3, 3, generator=g, dtype=torch.float64)
    delta = torch.randn_like(F.conv2d(h, w, None, stride, 1, 1, groups))
    p = torch.randn(c_out, rank // groups, 1, 1, generator=g, dtype=torch.float64)
    q = torch.randn(rank, c_in // groups, 3, 3, generator=g, dtype=torch.float64)
    conf = ((stride, stride), (1, 1), (1, 1), groups)
    gw = torch.nn.grad.conv2d_weight(h, w.shape, delta, conf[0], conf[1], conf[2], groups)
    return h, w, delta, p, q, conf, gw


@pytest.mark.parametrize("groups, stride", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_conv_feedback_gradients_from_weight_gradient_are_the_row_sums(groups, stride):
    h, w, delta, p, q, conf, gw = _conv_case(groups, stride)
    ops = ConvOps(h, delta, conf, is_output=False, layer_name="conv", weight_gradient=gw)
    rows = ConvOps(h, delta, conf, is_output=False, layer_name="conv")  # no weight gradient: row products
    # reference: local grad_P = sum over batch and positions of delta (x) conv(h, Q), per group
    drive = F.conv2d(h, q, None, conf[0], conf[1], conf[2], groups)
    d5 = delta.reshape(3, groups, 6 // groups, -1)
    u5 = drive.reshape(3, groups, 4 // groups, -1)
    want_p = torch.einsum("bgoh,bgrh->gor", d5, u5).reshape(p.shape)
    # reference: grad_Q = the weight gradient of conv(h, Q) receiving z = delta P (1x1 transposed convolution)
    z = F.conv_transpose2d(delta, p, groups=groups)
    want_q = torch.nn.grad.conv2d_weight(h, q.shape, z, conf[0], conf[1], conf[2], groups)
    got_p = low_rank.from_weight_gradient(ops, p, q, "P")
    got_q = low_rank.from_weight_gradient(ops, p, q, "Q")
    assert got_p is not None and got_q is not None  # 3 x 49 (or 16) rows: cheaper from grad_W
    torch.testing.assert_close(got_p, want_p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_q, want_q, rtol=1e-12, atol=1e-12)
    assert low_rank.from_weight_gradient(rows, p, q, "P") is None
    torch.testing.assert_close(low_rank.local_p_gradient(rows, p, q), want_p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(low_rank.local_p_gradient(ops, p, q), want_p, rtol=1e-12, atol=1e-12)


def test_dense_feedback_gradients_choose_rows_or_weight_gradient_by_cost():
    g = torch.Generator().manual_seed(6)

    def case(n, n_out, n_in, r):
        d = torch.randn(n, n_out, generator=g, dtype=torch.float64)
        h = torch.randn(n, n_in, generator=g, dtype=torch.float64)
        p = torch.randn(n_out, r, generator=g, dtype=torch.float64)
        q = torch.randn(r, n_in, generator=g, dtype=torch.float64)
        return DenseOps(d, h, weight_gradient=d.T @ h), d, h, p, q

    # token rows (N >> width): both from grad_W, equal to the row formulas
    ops, d, h, p, q = case(300, 12, 10, 3)
    torch.testing.assert_close(low_rank.from_weight_gradient(ops, p, q, "P"), d.T @ (h @ q.T), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(low_rank.from_weight_gradient(ops, p, q, "Q"), (d @ p).T @ h, rtol=1e-12, atol=1e-12)
    # a wide layer on a small batch (the MLP of issue 14: 2048 x 2048, batch 256): the rows are cheaper
    ops, d, h, p, q = case(8, 40, 30, 3)
    assert low_rank.from_weight_gradient(ops, p, q, "P") is None
    assert low_rank.from_weight_gradient(ops, p, q, "Q") is None
    with pytest.raises(ValueError, match="'P' or 'Q'"):
        low_rank.from_weight_gradient(case(300, 12, 10, 3)[0], p, q, "W")


@pytest.mark.parametrize("mode", ["local", "q_only", "oja"])
@pytest.mark.parametrize("groups", [1, 2])
def test_converted_conv_ldfa_stride1_gradients_are_the_row_formulas(mode, groups):
    """Through bioplastic.convert: a stride-1 hidden conv layer (send as a convolution, P/Q gradients from
    grad_W) gives g_in = (delta P) Q and the mode's row formulas."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, padding=1, groups=groups), nn.Flatten(), nn.Linear(6 * 25, 3)).double()
    options = {"oja_covariance": "error"} if mode == "oja" else {}
    net = bioplastic.convert(model, bioplastic.rules.make("ldfa", rank=4, feedback_learning=mode, **options), seed=0,
                             exclude=["4"])
    layer = net[2]
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    h = net[1](net[0](x)).detach().requires_grad_(True)
    y = layer(h)
    delta = torch.randn_like(y)
    y.backward(delta)
    p, q, conf = layer.P.detach(), layer.Q.detach(), ((1, 1), (1, 1), (1, 1), groups)
    z = F.conv_transpose2d(delta, p, groups=groups)
    want_x = torch.nn.grad.conv2d_input(h.shape, q, z, 1, 1, 1, groups)
    torch.testing.assert_close(h.grad, want_x, rtol=1e-12, atol=1e-12)
    want_q = torch.nn.grad.conv2d_weight(h.detach(), q.shape, z, 1, 1, 1, groups)
    torch.testing.assert_close(layer.Q.grad, want_q, rtol=1e-12, atol=1e-12)
    if mode == "local":
        u = F.conv2d(h.detach(), q, None, 1, 1, 1, groups)
        want_p = torch.einsum("bgoh,bgrh->gor", delta.reshape(2, groups, 6 // groups, -1),
                              u.reshape(2, groups, 4 // groups, -1)).reshape(p.shape)
        torch.testing.assert_close(layer.P.grad, want_p, rtol=1e-12, atol=1e-12)


def test_first_conv_layer_local_ldfa_computes_no_feedback_rows():
    """No input gradient: z = delta P is not formed; P and Q learn from grad_W (FLOPs: grad_W + 2 small
    products)."""
    from torch.utils.flop_counter import FlopCounterMode

    b, c_in, c_out, k, size, r = 4, 3, 8, 3, 10, 2
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(c_out * size * size, 5)).double()
    net = bioplastic.convert(model, bioplastic.rules.make("ldfa", rank=r, feedback_learning="local"), seed=0)
    first = net[0]
    out = first(torch.randn(b, c_in, size, size, dtype=torch.float64))
    with FlopCounterMode(display=False) as counter:
        out.backward(torch.ones_like(out))
    grad_w = 2 * b * size * size * c_out * c_in * k * k
    assert counter.get_total_flops() == grad_w + 2 * (2 * c_out * c_in * k * k * r)
    assert first.P.grad is not None and first.Q.grad is not None


@pytest.mark.parametrize("stride, padding, dilation, groups, size", [
    (1, 0, 1, 1, 6), (1, 1, 1, 2, 7), (1, 3, 1, 1, 7), (1, 2, 2, 2, 9)])
def test_conv_send_stride1_convolution_is_the_input_gradient(stride, padding, dilation, groups, size):
    """The stride-1 send (a convolution with the flipped, transposed kernel), including a padding larger than
    the kernel reach (padding 3 > k - 1: the transposed-convolution fallback)."""
    from torch.nn.grad import conv2d_input

    g = torch.Generator().manual_seed(7)
    h = torch.randn(2, 4, size, size, generator=g, dtype=torch.float64)
    m = torch.randn(2 * groups, 4 // groups, 3, 3, generator=g, dtype=torch.float64)
    a = torch.randn_like(F.conv2d(h, m, None, stride, padding, dilation, groups))
    conf = ((stride, stride), (padding, padding), (dilation, dilation), groups)
    ops = ConvOps(h, a, conf, is_output=False, layer_name="conv")
    torch.testing.assert_close(ops.send(a, m), conv2d_input(h.shape, m, a, conf[0], conf[1], conf[2], groups),
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_near_full_rank_sends_through_the_folded_kernel(kind):
    """r above out in / (out + in): g_in = delta (P Q), one product, equal to (delta P) Q."""
    g = torch.Generator().manual_seed(8)
    rule = bioplastic.rules.make("ldfa", rank=6, feedback_learning="fixed")
    if kind == "linear":
        d = torch.randn(20, 6, generator=g, dtype=torch.float64)
        p = torch.randn(6, 6, generator=g, dtype=torch.float64)
        q = torch.randn(6, 6, generator=g, dtype=torch.float64)
        ops = DenseOps(d, torch.zeros(20, 6, dtype=torch.float64))
        want = (d @ p) @ q
    else:
        h = torch.randn(2, 1, 5, 5, generator=g, dtype=torch.float64)
        d = torch.randn(2, 6, 5, 5, generator=g, dtype=torch.float64)
        p = torch.randn(6, 6, 1, 1, generator=g, dtype=torch.float64)
        q = torch.randn(6, 1, 3, 3, generator=g, dtype=torch.float64)  # K = 9: out K / (out + K) = 3.6 < 6
        ops = ConvOps(h, d, ((1, 1), (1, 1), (1, 1), 1), is_output=False, layer_name="conv")
        want = torch.nn.grad.conv2d_input(h.shape, q, F.conv_transpose2d(d, p), 1, 1, 1, 1)
    assert low_rank.sends_folded(ops, p, q)
    g_in, _ = rule.backward(ops, None, [p, q], True, (False, False))
    torch.testing.assert_close(g_in, want, rtol=1e-12, atol=1e-12)
    assert not low_rank.sends_folded(ops, p[:, :2], q[:2])  # rank 2: the thin products


def test_token_rows_local_ldfa_backward_is_grad_w_plus_thin_products():
    """A Linear layer on token rows (N = batch x tokens >> width): the backward is grad_W, z = delta P, z Q and
    the two (out, in) x r products of from_weight_gradient, no product over the rows for P or Q (FLOP count)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch, tokens, n_in, n_out, r = 3, 40, 6, 5, 2
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(n_in, n_out), nn.Tanh(), nn.Linear(n_out, 4)).double()
    net = bioplastic.convert(model, bioplastic.rules.make("ldfa", rank=r, feedback_learning="local"), seed=0)
    x = torch.randn(batch, tokens, n_in, dtype=torch.float64, requires_grad=True)
    out = net[0](x)
    delta = torch.randn_like(out)
    with FlopCounterMode(display=False) as counter:
        out.backward(delta)
    n = batch * tokens
    assert counter.get_total_flops() == (2 * n * n_in * n_out + 2 * n * n_out * r + 2 * n * r * n_in
                                         + 2 * (2 * n_out * n_in * r))
    p, q = net[0].P.detach(), net[0].Q.detach()
    d, h = delta.reshape(n, n_out), x.detach().reshape(n, n_in)
    torch.testing.assert_close(net[0].P.grad, d.T @ (h @ q.T), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net[0].Q.grad, (d @ p).T @ h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, ((d @ p) @ q).reshape(x.shape), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("groups, c_out, rank", [(2, 32, 4), (4, 32, 8), (8, 16, 8), (16, 16, 16)])
def test_conv_compress_grouped_is_the_1x1_transposed_convolution(groups, c_out, rank):
    """Grouped 1x1 ``P``: batched per-group products (>= 8 channels per group) or the grouped transposed
    convolution (fewer), both equal ``conv_transpose2d(delta, P, groups)``; also on channels-last memory."""
    g = torch.Generator().manual_seed(9)
    delta = torch.randn(3, c_out, 5, 6, generator=g, dtype=torch.float64)
    p = torch.randn(c_out, rank // groups, 1, 1, generator=g, dtype=torch.float64)
    ops = ConvOps(torch.zeros(3, 2, 5, 6, dtype=torch.float64), delta, ((1, 1), (0, 0), (1, 1), groups),
                  is_output=False, layer_name="conv")
    want = F.conv_transpose2d(delta, p, groups=groups)
    torch.testing.assert_close(ops.compress(delta, p), want, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(ops.compress(delta.to(memory_format=torch.channels_last), p), want,
                               rtol=1e-12, atol=1e-13)
