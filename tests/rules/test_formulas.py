"""The rules' matrix-form functions against hand computations, autograd, and the two layouts against each other.

The convolution layout (``bioplastic.nn.functions.ConvOps``) must compute the same products as the row layout
(``bioplastic.rules.ops.DenseOps``) on the unfolded input (``torch.nn.functional.unfold``): then every formula
written once with ``ops`` holds for Linear and Conv2d layers alike.
"""
import pytest
import torch
import torch.nn.functional as F

from bioplastic.nn.functions import ConvOps
from bioplastic.rules import make
from bioplastic.rules.low_rank import (kolen_pollack_q_gradient, local_p_gradient, low_rank_feedback,
                                       normative_gradients, oja_covariance_gradient, oja_rows_gradient)
from bioplastic.rules.ops import DenseOps

GEN = torch.Generator().manual_seed(0)


def randn(*shape):
    return torch.randn(*shape, generator=GEN, dtype=torch.float64)


def test_dense_formulas_equal_their_closed_forms():
    delta, h, p, q = randn(9, 5), randn(9, 7), randn(5, 2), randn(2, 7)
    ops = DenseOps(delta, h)
    torch.testing.assert_close(local_p_gradient(ops, p, q), delta.T @ (h @ q.T), rtol=0, atol=1e-12)
    z = delta @ p
    torch.testing.assert_close(kolen_pollack_q_gradient(ops, z, q), p.T @ (delta.T @ h), rtol=0, atol=1e-12)
    c = delta.T @ delta
    cn = c / torch.trace(c)
    expected = -(cn @ p - p @ (p.T @ cn @ p))
    torch.testing.assert_close(oja_rows_gradient(ops, p), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(oja_covariance_gradient(c, p), expected, rtol=0, atol=1e-12)
    centred = delta - delta.mean(0)
    cc = centred.T @ centred / (centred ** 2).sum()
    torch.testing.assert_close(oja_rows_gradient(ops, p, centre=True), -(cc @ p - p @ (p.T @ cc @ p)),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("groups", [1, 2])
def test_normative_gradients_are_autograd_of_the_factorisation_error(groups):
    out, k, r = 6, 4, 4
    p, q, w = randn(out, r // groups).requires_grad_(), randn(r, k).requires_grad_(), randn(out, k)
    pq = low_rank_feedback(p, q, groups=groups)
    (0.5 * ((pq - w) ** 2).sum()).backward()
    gp, gq = normative_gradients(p.detach(), q.detach(), w, groups)
    torch.testing.assert_close(gp, p.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(gq, q.grad, rtol=0, atol=1e-12)
    if groups == 2:  # block diagonal: group g's P rows only see group g's Q rows
        torch.testing.assert_close(pq[:3], p.detach()[:3] @ q.detach()[:2], rtol=0, atol=1e-12)
        torch.testing.assert_close(pq[3:], p.detach()[3:] @ q.detach()[2:], rtol=0, atol=1e-12)


def test_rule_backward_is_the_sum_of_its_parts():
    delta, h = randn(8, 5), randn(8, 6)
    for mode in ("fixed", "q_only", "normative", "local", "oja"):
        rule = make("ldfa", rank=2, feedback_learning=mode, **({"error_clamp": 0.3} if mode == "local" else {}))
        fb = [randn(5, 2), randn(2, 6)]
        w = randn(5, 6)
        need = (rule.learns("P"), rule.learns("Q"))
        g, grads = rule.backward(DenseOps(delta, h), w, fb, True, need)
        expected_g = (delta @ fb[0]) @ fb[1]
        if mode == "local":
            expected_g = expected_g.clamp(-0.3, 0.3)
        torch.testing.assert_close(g, expected_g, rtol=0, atol=1e-12)
        assert [x is not None for x in grads] == list(need)
        torch.testing.assert_close(rule.feedback_matrix(w, fb), fb[0] @ fb[1], rtol=0, atol=1e-12)


def _conv_case(groups):
    b, c_in, c_out, r, k = 2, 4, 6, 2 * groups, 3
    x = randn(b, c_in, 5, 5)
    conf = ((2, 1), (1, 1), (1, 1), groups)
    weight = randn(c_out, c_in // groups, k, k)
    delta = randn(b, c_out, *F.conv2d(x, weight, None, *conf).shape[2:])
    p = randn(c_out, r // groups, 1, 1)
    q = randn(r, c_in // groups, k, k)
    return x, conf, weight, delta, p, q


def _rows(t):  # (B, C, H, W) -> (B H W, C)
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def test_conv_layout_equals_the_row_layout_on_the_unfolded_input():
    x, conf, weight, delta, p, q = _conv_case(groups=1)
    stride, padding, dilation, _ = conf
    ops = ConvOps(x, delta, conf, is_output=False, layer_name="conv")
    unf = F.unfold(x, weight.shape[2:], dilation, padding, stride)            # (B, C_in k k, L)
    h = unf.transpose(1, 2).reshape(-1, unf.shape[1])                         # rows (B L, C_in k k)
    d = _rows(delta)
    dense = DenseOps(d, h)
    p2, q2 = p.reshape(p.shape[0], -1), q.reshape(q.shape[0], -1)
    z = ops.compress(delta, p)
    torch.testing.assert_close(_rows(z), d @ p2, rtol=0, atol=1e-12)
    torch.testing.assert_close(ops.outer(delta, weight.shape).reshape(weight.shape[0], -1), d.T @ h, rtol=0, atol=1e-12)
    torch.testing.assert_close(_rows(ops.drive(q)), h @ q2.T, rtol=0, atol=1e-12)
    g_rows = (_rows(z) @ q2).reshape(x.shape[0], -1, q2.shape[1]).transpose(1, 2)
    folded = F.fold(g_rows, x.shape[2:], weight.shape[2:], dilation, padding, stride)
    torch.testing.assert_close(ops.send(z, q), folded, rtol=0, atol=1e-12)
    # the formulas written once give the same numbers in both layouts
    torch.testing.assert_close(local_p_gradient(ops, p, q).reshape(p2.shape), local_p_gradient(dense, p2, q2),
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(kolen_pollack_q_gradient(ops, z, q).reshape(q2.shape),
                               kolen_pollack_q_gradient(dense, d @ p2, q2), rtol=0, atol=1e-12)
    for centre in (False, True):
        torch.testing.assert_close(oja_rows_gradient(ops, p, z, centre=centre).reshape(p2.shape),
                                   oja_rows_gradient(dense, p2, d @ p2, centre=centre), rtol=0, atol=1e-12)


def test_grouped_conv_layout_is_block_diagonal():
    x, conf, weight, delta, p, q = _conv_case(groups=2)
    ops = ConvOps(x, delta, conf, is_output=False, layer_name="conv")
    z = ops.compress(delta, p)
    grad_p = local_p_gradient(ops, p, q)
    for g in range(2):  # group g alone: its channels of delta, x, and its block of P, Q
        sub = ConvOps(x[:, 2 * g: 2 * g + 2], delta[:, 3 * g: 3 * g + 3], conf[:3] + (1,), is_output=False,
                      layer_name="conv")
        p_g, q_g = p[3 * g: 3 * g + 3], q[2 * g: 2 * g + 2]
        torch.testing.assert_close(z[:, 2 * g: 2 * g + 2], sub.compress(sub.error, p_g), rtol=0, atol=1e-12)
        torch.testing.assert_close(grad_p[3 * g: 3 * g + 3], local_p_gradient(sub, p_g, q_g), rtol=0, atol=1e-12)
        # Oja: C is block diagonal across groups and normalised by its whole trace (all groups' rows)
        share = (sub.error ** 2).sum() / (delta ** 2).sum()
        torch.testing.assert_close(oja_rows_gradient(ops, p, z)[3 * g: 3 * g + 3],
                                   share * oja_rows_gradient(sub, p_g, sub.compress(sub.error, p_g)), rtol=0,
                                   atol=1e-12)
