"""Low-dimensional feedback alignment (LDFA) and its direct variant.

Hanut & Kadmon (2025), "Training Large Neural Networks With Low-Dimensional Error Feedback",
arXiv:2502.20580 (v4: "Efficiently Training Large Neural Networks With Low-Dimensional Error Feedback").
The error a layer sends below passes through ``r`` feedback units: ``z = delta P`` (shape ``(batch, r)``) and
``g_in = z Q``. With ``r`` of the order of the number of classes and an *adaptive* feedback subspace, networks
learn as well as with backprop while the backward input-gradient matmul is replaced by two thin ones.
"""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import torch

from bioplastic._checks import check_choice, check_positive_int
from bioplastic.rules.alignment import weight_std
from bioplastic.rules.base import Rule, check_nonnegative_float
from bioplastic.rules.ops import DenseOps, target_rows

__all__ = [
    "LDFA", "DirectLDFA", "FEEDBACK_LEARNING", "LEARNS", "KOLEN_POLLACK_MODES", "OJA_COVARIANCE",
    "oja_subspace_gradient", "oja_covariance_gradient", "oja_rows_gradient", "oja_rows", "target_rows",
    "local_p_gradient", "kolen_pollack_q_gradient", "from_weight_gradient", "sends_folded", "normative_gradients",
    "low_rank_feedback", "truncated_svd",
    "svd_factors", "orthonormal_columns", "DenseOps",
]

#: The five ways the feedback subspace learns (docs/rules.md, "LDFA feedback learning").
FEEDBACK_LEARNING = ("fixed", "q_only", "normative", "local", "oja")

#: Which of ``P`` and ``Q`` learn in each mode: the one place that decides it (the executors create frozen
#: parameters for the others, the linear theory integrates only the learned ones).
LEARNS = {
    "fixed": {"P": False, "Q": False},
    "q_only": {"P": False, "Q": True},
    "normative": {"P": True, "Q": True},
    "local": {"P": True, "Q": True},
    "oja": {"P": True, "Q": True},
}

FeedbackLearning = Literal["fixed", "q_only", "normative", "local", "oja"]

#: Where Oja's rule takes its covariance from (``LDFA.oja_covariance``).
OJA_COVARIANCE = ("auto", "error", "targets")

OjaCovariance = Literal["auto", "error", "targets"]

#: Modes whose ``Q`` learns by Kolen-Pollack, ``grad_Q = (delta P)^T h = P^T grad_W`` (Kolen & Pollack 1994;
#: Akrout et al. 2019). Their default feedback weight decay is the forward weights' own (``None`` in
#: ``_MODE_DEFAULTS``): with the same update and the same decay on both sides, ``Q - P^T W`` shrinks by
#: ``(1 - lr lambda)`` per SGD step, so ``Q`` forgets its random start and converges to ``P^T W``; a decay on
#: ``Q`` alone would instead pull ``Q`` towards 0 while ``W`` keeps its part ``W(0)``. The authors' v1 runs did
#: exactly this: one Adam optimiser with a coupled L2 decay of 5e-4 to 7e-4 on ``W``, ``P`` and ``Q``
#: (``train_cifar_fc_one_cycle.py``, github.com/maherhanut1/LDFA). Measured: docs/rules.md, "Kolen-Pollack decay".
KOLEN_POLLACK_MODES = ("q_only", "oja")

#: Defaults that depend on the feedback-learning mode: (feedback_lr, feedback_weight_decay).
#: ``None`` for the learning rate means "the forward learning rate", ``None`` for the weight decay "the forward
#: weight decay" (see bioplastic.nn.param_groups and the trainer's feedback optimiser).
_MODE_DEFAULTS = {
    "fixed": (None, 0.0),
    "q_only": (None, None),     # None: the forward weight decay (Kolen-Pollack, see KOLEN_POLLACK_MODES)
    "normative": (0.01, 0.0),   # authors: AdamW, lr 0.01-0.015, no weight decay
    "local": (None, 0.1),       # authors: AdamW, weight decay 0.1
    "oja": (None, None),
}

DEFAULT_RANK = 10


def oja_subspace_gradient(cp, ptcp, p, trace):
    """Oja's subspace rule (Oja 1982, 1989) as a descent gradient: ``-(C P - P (P^T C P)) / tr C``.

    The one formula of ``feedback_learning="oja"``, shared by the torch executor (:mod:`bioplastic.nn`) and the
    linear theory (:mod:`bioplastic.theory`); it takes ``C P`` and ``P^T C P`` rather than ``C`` so that a layer
    with thousands of outputs never forms its ``(out, out)`` covariance.

    Parameters
    ----------
    cp : torch.Tensor
        ``C P``, shape ``(..., out, r)`` (a leading group axis is allowed).
    ptcp : torch.Tensor
        ``P^T C P``, shape ``(..., r, r)``.
    p : torch.Tensor
        ``P``, shape ``(..., out, r)``.
    trace : torch.Tensor or float
        Normaliser of ``C`` (``tr C`` for the trace-normalised rule, 1 for the raw covariance); clamped to the
        smallest positive number of the dtype, so an all-zero batch gives a zero gradient.

    Returns
    -------
    torch.Tensor
        Shape of ``p``. Descent on it moves the columns of ``P`` towards an orthonormal basis of the top-r
        eigenvectors of ``C`` (the fixed points are ``P = U_r O``, ``O`` orthogonal).
    """
    if isinstance(trace, torch.Tensor):
        trace = trace.clamp_min(torch.finfo(trace.dtype).tiny)
    return (torch.matmul(p, ptcp) - cp) / trace


def oja_rows(rows, *, centre: bool):
    """The error (or target) rows of Oja's covariance, centred over the batch when ``centre`` is true.

    ``rows``: (N, out). Centring (``rows - mean``) is the authors' v1 convolution rule (``rAFA_conv.py``,
    github.com/maherhanut1/LDFA: per-pixel errors centred and divided by the largest column s.d.; the scalar
    division is absorbed by the trace normalisation of :func:`oja_subspace_gradient`).
    """
    return DenseOps.centre(rows) if centre else rows


def oja_covariance_gradient(c, p, *, normalise: bool = True):
    """Oja's ``grad_P`` from a covariance matrix: ``-(C_n P - P (P^T C_n P))``, ``C_n = C / tr C``.

    Parameters
    ----------
    c : torch.Tensor
        ``C``, shape ``(out, out)`` (symmetric, positive semi-definite: an error or label covariance).
    p : torch.Tensor
        ``P``, shape ``(out, r)``.
    normalise : bool
        Divide ``C`` by its trace (default, as every executor of bioplastic); False uses ``C`` as it is.

    Returns
    -------
    torch.Tensor
        Shape ``(out, r)``: :func:`oja_subspace_gradient` of ``C P``, ``P^T C P``.
    """
    cp = c @ p
    return oja_subspace_gradient(cp, p.T @ cp, p, torch.trace(c) if normalise else 1.0)


def oja_rows_gradient(ops, p, z=None, *, source=None, centre: bool = False):
    """Oja's ``grad_P`` from rows ``S``: ``C = S^T S / tr(S^T S)``, without forming ``C``.

    Parameters
    ----------
    ops : DenseOps or a layout with the same methods
        ``ops.error`` is ``S`` unless ``source`` is given (rows (N, out) in :class:`DenseOps`).
    p : torch.Tensor
        ``P``, shape ``(out, r)`` (a convolution layout: ``(C_out, r/g, 1, 1)``).
    z : torch.Tensor, optional
        ``ops.error P`` when already computed (ignored with ``source`` or ``centre``).
    source : torch.Tensor, optional
        Rows to use instead of the error (the targets, :func:`target_rows`), in :meth:`DenseOps.rows` layout.
    centre : bool
        Subtract the rows' batch mean first (``oja_centre``; for a convolution, per channel over batch and
        positions).

    Returns
    -------
    torch.Tensor
        Shape of ``p``. Oja (1982, 1989); Hanut & Kadmon (2025), arXiv:2502.20580.
    """
    rows = ops.rows(ops.error) if source is None else source
    if centre:
        rows = ops.centre(rows)
        zs = ops.project(rows, p)
    elif source is not None or z is None:
        zs = ops.project(rows, p)
    else:
        zs = ops.rows(z)
    grad = oja_subspace_gradient(ops.cross(rows, zs), ops.cross(zs, zs), ops.grouped(p), rows.square().sum())
    return grad.reshape(p.shape)


def local_p_gradient(ops, p, q):
    """The synapse-local ``grad_P = delta^T (h Q^T)``: error times the feedback units' feedforward drive.

    ``ops.error``: ``delta`` (N, out), ``ops.h``: (N, in); ``p`` (out, r), ``q`` (r, in). Returns the shape
    of ``p``. Hanut & Kadmon (2025), arXiv:2502.20580 (v4).

    Where the layout carries the layer's exact weight gradient (``ops.weight_gradient = delta^T h``) and the
    rows outnumber the weights (convolutions: batch x positions; token rows), the same sum is taken as
    ``(delta^T h) Q^T`` (per group): ``out in r`` multiply-adds instead of ``N r (in + out)``
    (:func:`from_weight_gradient`).
    """
    fast = from_weight_gradient(ops, p, q, "P")
    if fast is not None:
        return fast
    return ops.cross(ops.rows(ops.error), ops.rows(ops.drive(q))).reshape(p.shape)


def kolen_pollack_q_gradient(ops, z, q):
    """``grad_Q = (delta P)^T h = z^T h``: the feedback units' activity times the layer's input.

    Equals ``P^T grad_W`` (Kolen & Pollack 1994; Akrout et al. 2019, projected by ``P``). ``z`` (N, r),
    ``ops.h`` (N, in); returns the shape of ``q`` (r, in). :func:`from_weight_gradient` takes the product
    ``P^T grad_W`` instead where the layer's weight gradient is at hand and that is cheaper.
    """
    return ops.outer(z, q.shape)


def _n_rows(ops) -> int:
    """Rows ``N`` of the layer's error: batch (x tokens) for rows, batch x output positions for a convolution."""
    e = ops.error
    return e.numel() // e.shape[1]


def from_weight_gradient(ops, p, q, which: str):
    """``grad_P = (delta^T h) Q^T`` or ``grad_Q = P^T (delta^T h)`` from the layer's exact weight gradient.

    ``delta^T (h Q^T) = (delta^T h) Q^T`` and ``(delta P)^T h = P^T (delta^T h)``: the sums over the rows
    (batch, tokens, output positions) are the weight gradient's, which the executor computes anyway. Per group
    of a grouped convolution, on the flattened kernel ``grad_W.view(C_out, -1)``. Issue 14: on a convolution
    the row form needs two thin r-channel convolutions (``drive``, ``outer``) over every position.

    Parameters
    ----------
    ops : layout
        Its ``weight_gradient`` (shape of ``W``) must be the exact ``error^T h`` of its rows (the executor
        sets it; the linear theory's moment rows carry none).
    p, q : torch.Tensor
        ``P`` (out, r/g) or (C_out, r/g, 1, 1), ``Q`` (r, in) or (r, C_in/g, k, k).
    which : {"P", "Q"}

    Returns
    -------
    torch.Tensor or None
        Shaped like ``p`` (``"P"``) or ``q`` (``"Q"``); None where ``ops`` carries no weight gradient or the
        row products cost fewer multiply-adds (``"P"``: ``N (in + out) <= out in`` per group; ``"Q"``:
        ``N <= out``, e.g. an MLP layer of width 2048 on a batch of 256).
    """
    gw = getattr(ops, "weight_gradient", None)
    if gw is None:
        return None
    groups = ops.groups
    r_g = q.shape[0] // groups
    out_g = p.shape[0] // groups
    k = q[0].numel()
    n = _n_rows(ops)
    if which == "P":
        if n * (k + out_g) <= out_g * k:
            return None
        if groups == 1:
            return gw.reshape(out_g, k).mm(q.reshape(r_g, k).t()).reshape(p.shape)
        return torch.bmm(gw.reshape(groups, out_g, k), q.reshape(groups, r_g, k).transpose(1, 2)).reshape(p.shape)
    if which != "Q":
        raise ValueError(f"from_weight_gradient: which must be 'P' or 'Q', got {which!r}")
    if n <= out_g:
        return None
    if groups == 1:
        return p.reshape(out_g, r_g).t().mm(gw.reshape(out_g, k)).reshape(q.shape)
    return torch.bmm(p.reshape(groups, out_g, r_g).transpose(1, 2), gw.reshape(groups, out_g, k)).reshape(q.shape)


def sends_folded(ops, p, q) -> bool:
    """Whether ``g_in = (delta P) Q`` is cheaper as ``delta (P Q)`` (one product with the folded kernel).

    Per group, the two thin products cost ``N r (out + in)`` multiply-adds, the folded one ``N out in`` plus
    ``out r in`` to form ``P Q``: folding pays only near full rank (``r > out in / (out + in)``, e.g. ``r`` above
    half the width of a square layer). Same maths, so the choice is by cost alone (issue 14).
    """
    groups = ops.groups
    r_g, out_g, k = q.shape[0] // groups, p.shape[0] // groups, q[0].numel()
    n = _n_rows(ops)
    return n * r_g * (out_g + k) > out_g * k * (n + r_g)


#: Bytes of ``W`` per row block of :func:`_w_products`: a block stays in a core's L2 cache between its two
#: products, so ``W`` is read from memory once instead of twice.
_BLOCK_BYTES = 1 << 19
#: Smaller weights are read twice (they stay in cache anyway; one block loop would only add Python calls).
_ONE_PASS_MIN_BYTES = 1 << 21


def _one_pass(w, p, q) -> bool:
    """Whether :func:`normative_gradients` reads a (large, CPU, no-autograd) ``W`` once, by row blocks."""
    return (w.device.type == "cpu" and w.is_contiguous() and w.numel() * w.element_size() >= _ONE_PASS_MIN_BYTES
            and not (torch.is_grad_enabled() and (w.requires_grad or p.requires_grad or q.requires_grad)))


def _w_products(w, qt, pt):
    """``(W Q^T, P^T W)`` with one pass over ``W`` (out, K): per block of rows ``W_b`` (kept in cache),
    ``(W Q^T)_b = W_b Q^T`` and ``P^T W += P_b^T W_b``. ``qt`` (K, r), ``pt`` (r, out)."""
    out, k = w.shape
    rows = max(1, _BLOCK_BYTES // (k * w.element_size()))
    wqt = torch.empty(out, qt.shape[1], dtype=w.dtype, device=w.device)
    ptw = torch.zeros(pt.shape[0], k, dtype=w.dtype, device=w.device)
    for i in range(0, out, rows):
        wb = w[i:i + rows]
        torch.mm(wb, qt, out=wqt[i:i + rows])
        ptw.addmm_(pt[:, i:i + rows], wb)
    return wqt, ptw


def normative_gradients(p, q, w, groups: int = 1):
    """``grad_P = (PQ - W) Q^T``, ``grad_Q = P^T (PQ - W)`` per group, without materialising ``PQ``.

    Descent on ``0.5 ||P Q - W||_F^2`` (Hanut & Kadmon 2025, arXiv:2502.20580, normative rule).

    Parameters
    ----------
    p : torch.Tensor
        (out, r/g) (the groups' blocks stacked along rows).
    q : torch.Tensor
        (r, K).
    w : torch.Tensor
        (out, K), ``K`` = in per group (a flattened kernel ``W.view(C_out, -1)``).
    groups : int

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Shaped like ``p`` and ``q``.
    """
    out = w.shape[0]
    if groups == 1:
        qt = q.t()
        pt = p.t()
        if _one_pass(w, p, q):  # W Q^T and P^T W from one read of W (issue 14: memory-bound on a CPU)
            # contiguous (K, r) and (r, out) copies (a few KiB): the skinny products with a transposed
            # operand view ran 10-30 % slower (one thread, 2048 x 2048, r = 10)
            wqt, ptw = _w_products(w, qt.contiguous(), pt.contiguous())
            return p.mm(q.mm(qt)).sub_(wqt), pt.mm(p).mm(q).sub_(ptw)
        grad_p = torch.addmm(p.mm(q.mm(qt)), w, qt, beta=1, alpha=-1)
        grad_q = torch.addmm(pt.mm(p).mm(q), pt, w, beta=1, alpha=-1)
        return grad_p, grad_q
    p3 = p.reshape(groups, out // groups, -1)
    q3 = q.reshape(groups, q.shape[0] // groups, -1)
    w3 = w.reshape(groups, out // groups, -1)
    qt = q3.transpose(1, 2)
    grad_p = torch.baddbmm(p3.bmm(q3.bmm(qt)), w3, qt, beta=1, alpha=-1)
    pt = p3.transpose(1, 2)
    grad_q = torch.baddbmm(pt.bmm(p3).bmm(q3), pt, w3, beta=1, alpha=-1)
    return grad_p.reshape(p.shape), grad_q.reshape(q.shape)


def low_rank_feedback(p, q, *, groups: int = 1):
    """The effective feedback ``P Q`` (out, K): block diagonal per group (``g_in = delta P Q``).

    ``p`` (out, r/g) or a conv ``(C_out, r/g, 1, 1)``; ``q`` (r, ...) flattened to (r, K). In the paper's
    column convention this is ``B^T = (Q_c P_c)^T`` (``B`` of shape (in, out)).
    """
    p3 = p.reshape(groups, p.shape[0] // groups, -1)
    q3 = q.reshape(groups, q.shape[0] // groups, -1)
    return p3.bmm(q3).reshape(p.shape[0], -1)


# Exact SVD below this size, randomised (Halko, Martinsson & Tropp 2011) above: exact SVD of a 4096 x 4096
# matrix takes minutes on two CPU cores.
_EXACT_SVD_MAX = 1024


def truncated_svd(w, rank: int, *, generator=None, n_iter: int = 4, oversample: int = 10):
    """Rank-``rank`` truncated SVD ``w ~ U diag(S) Vh`` (Eckart-Young best approximation).

    Parameters
    ----------
    w : torch.Tensor
        Matrix of shape (m, n).
    rank : int
        Number of singular triplets, ``1 <= rank <= min(m, n)``.
    generator : torch.Generator, optional
        CPU generator for the randomised algorithm (used when ``min(m, n) > 1024``); same generator state,
        same result.
    n_iter, oversample : int
        Power iterations and oversampling of the randomised range finder (Halko, Martinsson & Tropp 2011,
        SIAM Review 53:217).

    Returns
    -------
    U : (m, rank), S : (rank,), Vh : (rank, n)
    """
    m, n = w.shape
    if min(m, n) <= _EXACT_SVD_MAX:
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        return u[:, :rank], s[:rank], vh[:rank]
    k = min(rank + oversample, m, n)
    omega = torch.randn(n, k, generator=generator, dtype=torch.float32).to(device=w.device, dtype=w.dtype)
    y, _ = torch.linalg.qr(w @ omega)
    for _ in range(n_iter):
        z, _ = torch.linalg.qr(w.t() @ y)
        y, _ = torch.linalg.qr(w @ z)
    u_b, s, vh = torch.linalg.svd(y.t() @ w, full_matrices=False)
    return (y @ u_b)[:, :rank], s[:rank], vh[:rank]


def svd_factors(w, rank: int, *, groups: int = 1, generator=None):
    """``P = U sqrt(S)``, ``Q = sqrt(S) V^T`` from the rank-r truncated SVD of ``W`` (per group).

    The start (and restart) of the normative rule (Hanut & Kadmon 2025, arXiv:2502.20580): ``P Q`` is the best
    rank-r approximation of ``W`` (Eckart-Young). ``w`` (out, K); returns ``P`` (out, r/g) and ``Q`` (r, K),
    the groups' blocks stacked. ``generator``: see :func:`truncated_svd`.
    """
    r_g = rank // groups
    ps, qs = [], []
    for blk in w.reshape(groups, w.shape[0] // groups, -1):
        u, s, vh = truncated_svd(blk, r_g, generator=generator)
        root = s.sqrt()
        ps.append(u * root)
        qs.append(root.unsqueeze(1) * vh)
    return torch.cat(ps), torch.cat(qs)


def orthonormal_columns(rows: int, cols: int, generator) -> torch.Tensor:
    """(rows, cols) CPU float32 matrix with orthonormal columns (cols <= rows), Haar-distributed."""
    g = torch.randn(rows, cols, generator=generator)
    q, r = torch.linalg.qr(g)
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


@dataclasses.dataclass(frozen=True)
class LDFA(Rule):
    """Low-dimensional feedback alignment: ``g_in = (delta P) Q`` through ``r`` feedback units.

    ``P`` has shape ``(out, r)`` and ``Q`` shape ``(r, in)`` (Conv2d: ``P`` is a 1x1 convolution
    ``(C_out, r, 1, 1)`` and ``Q`` a ``(r, C_in/groups, k, k)`` kernel applied as the transposed convolution
    with the layer's stride, padding, dilation and groups). Hanut & Kadmon (2025), arXiv:2502.20580.

    Parameters
    ----------
    rank : int, optional
        Number of feedback units ``r`` per layer (absolute). Give ``rank`` or ``rank_fraction``, not both;
        with neither, ``rank = 10`` (the number of classes of CIFAR-10, the paper's ``r ~ d``). The effective
        rank of a layer is at most ``min(out, in)`` (``min(C_out, C_in k^2)`` per group for a convolution):
        :func:`bioplastic.convert` **clips** larger ranks to that bound and warns (``UserWarning``) naming
        the clipped layers. Grouped convolutions round ``r`` up to a multiple of ``groups``.
    rank_fraction : float, optional
        ``r = max(1, ceil(rank_fraction * out))`` for each layer of output width ``out`` (``C_out`` for a
        convolution); the paper's "width/4" is ``rank_fraction=0.25``. In ``(0, 1]``.
    feedback_learning : {"fixed", "q_only", "normative", "local", "oja"}
        How ``P`` and ``Q`` learn; each mode's ``grad_P`` and ``grad_Q`` are in the one table of the modes,
        ``docs/rules.md`` ("LDFA feedback learning"), and in :meth:`feedback_gradients`. The updates arrive as
        ``.grad`` during ``loss.backward()`` (plus the optimiser's weight decay). ``"normative"`` (the default)
        fits ``P Q`` to ``W`` (weight transport: the normative reference); the others do not read ``W``.
    feedback_lr : float, optional
        Learning rate of the feedback optimiser, used by :func:`bioplastic.nn.param_groups`; ``None`` means the
        forward learning rate. Default per mode: 0.01 for ``"normative"`` (authors: AdamW, 0.01-0.015),
        ``None`` otherwise.
    feedback_weight_decay : float, optional
        Weight decay of the feedback optimiser (:func:`bioplastic.nn.param_groups`; decoupled with AdamW).
        Default per mode: 0.1 for ``"local"`` (authors: AdamW, 0.1); ``None`` for ``"q_only"`` and ``"oja"``,
        meaning *the forward weights' decay*: their ``Q`` learns by Kolen-Pollack, which converges to
        ``P^T W`` only when ``W`` and ``Q`` get the same update and the same decay (Akrout et al. 2019; the
        authors' one optimiser with coupled L2 5e-4 on ``W``, ``P``, ``Q``); without any decay ``Q`` never
        forgets its random start (docs/rules.md, "Kolen-Pollack decay"); 0 for ``"fixed"`` and
        ``"normative"``.
    oja_covariance : {"auto", "error", "targets"}
        ``"oja"`` only: the rows ``S`` whose covariance drives ``P``.

        - ``"error"``: the layer's error ``delta`` (every layer);
        - ``"targets"``: at the **output layer** the targets of the batch (class indices one-hot encoded, or
          target vectors), so ``C`` is the label covariance ``Sigma^yy`` of the paper's theory (ICLR 2025 Eq. 8)
          and of the authors' v1 code (``rAFA_linear.py``: one-hot labels at the output layer); hidden layers
          keep their error (the targets do not live in their space). :class:`DirectLDFA`: every layer's ``P``
          lives in the output space, so every layer uses the targets, standardised per class over the batch
          (the authors' ``rADFA_linear.py``). Needs the targets of each batch:
          :func:`bioplastic.nn.set_targets` (bioplastic's trainer calls it); without them ``backward`` raises.
        - ``"auto"`` (default): ``"targets"`` when targets were given for the batch, ``"error"`` otherwise.
          bioplastic's trainer always gives them, so its runs follow the paper; a custom loop that does not
          call :func:`bioplastic.nn.set_targets` gets the error covariance (the package's earlier rule).
    oja_centre : bool
        ``"oja"`` only: subtract the batch mean from the rows ``S`` before forming ``C`` (for a convolution the
        rows are the per-position errors). The authors' v1 convolution rule centres them (``rAFA_conv.py``;
        their division by the largest column s.d. is a scalar that the trace normalisation removes). Default
        False.
    reinit_every : int, optional
        ``"normative"`` only: re-initialise ``P, Q`` from the truncated SVD of ``W`` every this many optimiser
        steps, counted by :func:`bioplastic.nn.feedback_step` (the authors: every half epoch). ``None``: never.
    error_clamp : float, optional
        Clamp the propagated error ``g_in`` elementwise to ``[-error_clamp, error_clamp]`` (the authors of the
        v1 rule used 1.0). ``None``: no clamp.
    feedback_every : int
        Compute the gradients of ``P`` and ``Q`` only on every ``feedback_every``-th optimiser step (steps
        counted by :func:`bioplastic.nn.feedback_step`, from 0: steps 0, k, 2k, ... learn); on the other steps
        ``P`` and ``Q`` get no ``.grad`` (``None``), so an optimiser zeroing with ``set_to_none=True`` (the
        default) leaves them unchanged. Amortises the feedback's cost (``normative``: ``2 r out in`` per layer,
        two reads of ``W``) over ``k`` steps (issue 14; docs/rules.md, "Cost"). Default 1: every step.

    Raises
    ------
    ValueError
        Unknown ``feedback_learning`` (listing the allowed values), ``rank < 1``, both ``rank`` and
        ``rank_fraction``, ``rank_fraction`` outside ``(0, 1]``, negative or non-finite rates,
        ``reinit_every`` with a mode other than ``"normative"``, ``feedback_every`` not a positive integer.

    Notes
    -----
    The maths, called by the torch executor, the linear theory and the rate network (docs/rules.md, "How the
    rules are written"): :meth:`learns` (:data:`LEARNS`), :meth:`feedback_shapes`, :meth:`init_feedback`,
    :meth:`send_error` ``(delta P) Q``, :meth:`feedback_gradients` and :meth:`backward`, written with this
    module's functions on a layout ``ops`` (:class:`~bioplastic.rules.ops.DenseOps` for rows):
    :func:`oja_rows_gradient` ``(ops, p, z=None, *, source=None, centre=False)``,
    :func:`oja_covariance_gradient` ``(c, p, *, normalise=True)``, :func:`local_p_gradient` ``(ops, p, q)``,
    :func:`kolen_pollack_q_gradient` ``(ops, z, q)``, :func:`normative_gradients` ``(p, q, w, groups=1)``,
    :func:`low_rank_feedback` ``(p, q, *, groups=1)`` (``P Q``) and :func:`svd_factors` ``(w, rank, *,
    groups=1, generator=None)``. Where the sums are taken is chosen by cost, never the result (issue 14):
    :func:`from_weight_gradient` (``grad_W Q^T``, ``P^T grad_W`` when the executor's exact weight gradient is at
    hand and the rows outnumber the weights: convolutions, token rows) and :func:`sends_folded` (``delta (P Q)``
    near full rank).
    """

    name = "ldfa"
    display_name = "LDFA"
    #: The feedback-learning modes this rule accepts.
    feedback_learning_modes: ClassVar[tuple[str, ...]] = FEEDBACK_LEARNING
    feedback = "low_rank"
    feedback_names = ("P", "Q")
    low_rank = True
    rank: int | None = None
    rank_fraction: float | None = None
    feedback_learning: FeedbackLearning = "normative"
    feedback_lr: float | None = dataclasses.field(default=None)
    feedback_weight_decay: float | None = dataclasses.field(default=None)
    reinit_every: int | None = None
    error_clamp: float | None = None
    oja_covariance: OjaCovariance = "auto"
    oja_centre: bool = False
    feedback_every: int = 1

    @classmethod
    def transport_of(cls, feedback_learning: str | None = None) -> str:
        """``"yes"`` for ``normative`` (it fits ``P Q`` to ``W``, reading ``W``), ``"no"`` for the other modes (they
        learn from signals at their own synapses; the table in docs/rules.md, "LDFA feedback learning"). None:
        the rule's default mode."""
        if feedback_learning is None:
            feedback_learning = cls.__dataclass_fields__["feedback_learning"].default
        return "yes" if feedback_learning == "normative" else "no"

    def __post_init__(self) -> None:
        rule = self.name
        check_choice(f"{rule} feedback_learning", self.feedback_learning, self._allowed_modes())
        check_choice(f"{rule} oja_covariance", self.oja_covariance, OJA_COVARIANCE)
        if not isinstance(self.oja_centre, bool):
            raise ValueError(f"{rule}: option oja_centre must be True or False, got {self.oja_centre!r}")
        if self.feedback_learning != "oja" and (self.oja_covariance != "auto" or self.oja_centre):
            raise ValueError(f"{rule}: oja_covariance and oja_centre apply only to feedback_learning='oja', "
                             f"not {self.feedback_learning!r}")
        if self.rank is not None and self.rank_fraction is not None:
            raise ValueError(f"{rule}: give rank or rank_fraction, not both (got rank={self.rank}, "
                             f"rank_fraction={self.rank_fraction})")
        if self.rank is None and self.rank_fraction is None:
            object.__setattr__(self, "rank", DEFAULT_RANK)
        if self.rank is not None:
            object.__setattr__(self, "rank", check_positive_int(f"{rule} rank", self.rank))
        if self.rank_fraction is not None:
            frac = check_nonnegative_float(rule, "rank_fraction", self.rank_fraction, strictly_positive=True)
            if frac > 1:
                raise ValueError(f"{rule}: option rank_fraction must be in (0, 1], got {frac}")
            object.__setattr__(self, "rank_fraction", frac)
        lr_default, wd_default = _MODE_DEFAULTS[self.feedback_learning]
        lr = lr_default if self.feedback_lr is None else self.feedback_lr
        wd = wd_default if self.feedback_weight_decay is None else self.feedback_weight_decay
        object.__setattr__(self, "feedback_lr",
                           check_nonnegative_float(rule, "feedback_lr", lr, allow_none=True, strictly_positive=True))
        object.__setattr__(self, "feedback_weight_decay",
                           check_nonnegative_float(rule, "feedback_weight_decay", wd, allow_none=True))
        if self.reinit_every is not None:
            if self.feedback_learning != "normative":
                raise ValueError(f"{rule}: reinit_every applies only to feedback_learning='normative', "
                                 f"not {self.feedback_learning!r}")
            object.__setattr__(self, "reinit_every", check_positive_int(f"{rule} reinit_every", self.reinit_every))
        object.__setattr__(self, "feedback_every", check_positive_int(f"{rule} feedback_every", self.feedback_every))
        if self.error_clamp is not None:
            object.__setattr__(self, "error_clamp",
                               check_nonnegative_float(rule, "error_clamp", self.error_clamp, strictly_positive=True))

    @staticmethod
    def _allowed_modes() -> tuple[str, ...]:
        return FEEDBACK_LEARNING

    # --- which factor learns, the feedback hyper-parameters ------------------------------------------------------
    def learns(self, name: str) -> bool:
        """Whether ``"P"`` / ``"Q"`` learns in this mode (:data:`LEARNS`)."""
        self._check_feedback_name(name)
        return LEARNS[self.feedback_learning][name]

    @property
    def learns_p(self) -> bool:
        """Whether ``P`` receives a gradient."""
        return self.learns("P")

    @property
    def learns_q(self) -> bool:
        """Whether ``Q`` receives a gradient."""
        return self.learns("Q")

    @property
    def feedback_decay_follows_forward(self) -> bool:
        """``q_only`` and ``oja``: their ``Q`` learns by Kolen-Pollack (:data:`KOLEN_POLLACK_MODES`)."""
        return self.feedback_learning in KOLEN_POLLACK_MODES

    @property
    def reads_targets(self) -> bool:
        """Oja's rule with ``oja_covariance`` ``"targets"`` or ``"auto"`` reads the batch targets."""
        return self.feedback_learning == "oja" and self.oja_covariance != "error"

    @property
    def gradients_scale_with_loss(self) -> bool:
        """``normative`` (reads ``W``) and ``oja`` (trace-normalised covariance) give feedback gradients that do
        not scale with the loss."""
        return self.feedback_learning not in ("normative", "oja")

    @property
    def starts_at_svd(self) -> bool:
        """``normative``: ``P, Q`` start (and restart every ``reinit_every`` steps) at :func:`svd_factors`."""
        return self.feedback_learning == "normative"

    def rank_for(self, width: int) -> int:
        """Requested rank for a layer of output width ``width`` (before clipping to the layer's maximum)."""
        if self.rank is not None:
            return self.rank
        return max(1, math.ceil(self.rank_fraction * width))

    # --- shapes and initial values --------------------------------------------------------------------------------
    def feedback_shapes(self, weight_shape, *, rank=None, groups=1, d=None, input_shape=None):
        """``P`` (out, r), ``Q`` (r, in); Conv2d: ``P`` (C_out, r/g, 1, 1), ``Q`` (r, C_in/g, k, k)."""
        out = weight_shape[0]
        if len(weight_shape) == 4:
            return {"P": (out, rank // groups, 1, 1), "Q": (rank, *weight_shape[1:])}
        return {"P": (out, rank), "Q": (rank, weight_shape[1])}

    def init_feedback(self, weight, *, rank=None, groups=1, d=None, input_shape=None, generator=None):
        """``P`` with orthonormal columns (per group), ``Q`` Gaussian with s.d. ``std(W) sqrt(out / r)``, so that
        ``delta P Q`` has the expected size of ``delta B`` with FA's ``B``. ``normative`` then restarts at
        :func:`svd_factors` (:attr:`starts_at_svd`; the executor does it, it needs the layer's SVD seed)."""
        shapes = self.feedback_shapes(tuple(weight.shape), rank=rank, groups=groups)
        out = weight.shape[0]
        p = torch.cat([orthonormal_columns(out // groups, rank // groups, generator) for _ in range(groups)])
        q = torch.randn(shapes["Q"], generator=generator) * (weight_std(weight) * math.sqrt(out / rank))
        return {"P": p.reshape(shapes["P"]), "Q": q}

    # --- the error sent below and the gradients of P, Q --------------------------------------------------------
    def send_error(self, ops, weight, feedback, z=None):
        """``g_in = (delta P) Q`` (``e`` for :class:`DirectLDFA`), clamped to ``error_clamp`` if set."""
        p, q = feedback
        if z is None and sends_folded(ops, p, q):  # delta (P Q): one product, cheaper near full rank
            g = ops.send(ops.error, low_rank_feedback(p, q, groups=ops.groups).reshape(p.shape[0], *q.shape[1:]))
        else:
            g = ops.send(ops.compress(ops.error, p) if z is None else z, q)
        return g if self.error_clamp is None else g.clamp(-self.error_clamp, self.error_clamp)

    def feedback_gradients(self, ops, weight, feedback, need, *, grad_w=None, z=None):
        """``[grad_P, grad_Q]`` of the mode (docs/rules.md table; ``None`` where not learned or not needed)."""
        mode = self.feedback_learning
        if mode == "fixed" or not any(need):
            return [None, None]
        p, q = feedback
        if mode == "normative":
            gp, gq = normative_gradients(ops.flat(p), ops.flat(q), ops.flat(weight), ops.groups)
            return [gp.reshape(p.shape) if need[0] else None, gq.reshape(q.shape) if need[1] else None]
        # z = delta P is computed here only where read (grad_Q in row form, Oja's grad_P); where the layout
        # carries the exact weight gradient, grad_Q = P^T grad_W and local grad_P = grad_W Q^T need no rows
        # (from_weight_gradient: chosen by cost)
        grad_q = None
        if need[1]:
            grad_q = from_weight_gradient(ops, p, q, "Q")
            if grad_q is None:
                if z is None:
                    z = ops.compress(ops.error, p)
                grad_q = kolen_pollack_q_gradient(ops, z, q)
        grad_p = None
        if need[0]:
            if mode == "local":
                grad_p = local_p_gradient(ops, p, q)
            else:  # oja
                covariance = getattr(ops, "covariance", None)
                if covariance is not None:  # population moments (the linear theory): (C, normalise)
                    grad_p = oja_covariance_gradient(covariance[0], p, normalise=covariance[1])
                else:
                    source = self._oja_target_rows(ops)
                    if z is None and source is None and not self.oja_centre:
                        z = ops.compress(ops.error, p)
                    grad_p = oja_rows_gradient(ops, p, z, source=source, centre=self.oja_centre)
        return [grad_p, grad_q]

    def backward(self, ops, weight, feedback, need_x, need, *, grad_w=None):
        """``(g_in, [grad_P, grad_Q])`` sharing ``z = delta P`` (computed once, only where read)."""
        z = ops.compress(ops.error, feedback[0]) if need_x and not sends_folded(ops, *feedback) else None
        g_in = self.send_error(ops, weight, feedback, z) if need_x else None
        return g_in, self.feedback_gradients(ops, weight, feedback, need, grad_w=grad_w, z=z)

    def _oja_target_rows(self, ops):
        """Target rows for Oja's covariance of this layer (``oja_covariance``), ``None`` for the error rows.

        Targets stand in for the error at the output layer of layer-wise LDFA and at every layer of direct LDFA
        (whose ``P`` lives in the output space), standardised per class for the direct variant (the authors'
        ``rADFA_linear.py``).

        Raises
        ------
        RuntimeError
            ``oja_covariance="targets"`` without the batch targets, or at a Conv2d output layer.
        """
        cov = self.oja_covariance
        if cov == "error" or not (self.direct or ops.is_output):
            return None
        if not ops.supports_targets:
            if cov == "targets":
                raise RuntimeError(f"layer {ops.layer_name!r}: oja_covariance='targets' is not defined for a "
                                   "Conv2d output layer (per-position errors have no per-position targets); use "
                                   "oja_covariance='error'")
            return None
        if ops.targets is None:
            if cov == "auto":
                return None
            raise RuntimeError(
                f"layer {ops.layer_name!r} ({self.name}, feedback_learning='oja', oja_covariance='targets') "
                "needs the targets of this batch: call bioplastic.nn.set_targets(model, targets) after the forward "
                "pass and before backward (bioplastic's trainer does), or use oja_covariance='error'")
        rows = ops.error
        return target_rows(ops.targets.to(rows.device), rows.shape[0], rows.shape[1], standardize=self.direct,
                           dtype=rows.dtype)

    def feedback_matrix(self, weight, feedback, *, groups=1):
        """``P Q`` (block diagonal per group), :func:`low_rank_feedback`."""
        return low_rank_feedback(feedback[0], feedback[1], groups=groups)


@dataclasses.dataclass(frozen=True)
class DirectLDFA(LDFA):
    """Direct LDFA: every layer ``l`` sends ``g_in_l = (e P_l) Q_l`` below, straight from the output error.

    ``e`` (shape ``(batch, d)``) is the output layer's exact error, delivered by the error bus of
    :func:`bioplastic.convert`; ``P_l`` has shape ``(d, r)``, ``Q_l`` shape ``(r, in_l)`` (``(r, C_in, H, W)``
    for a Conv2d layer). Hanut & Kadmon (2025), arXiv:2502.20580. Parameters as :class:`LDFA`, except:

    - the maximal rank of a layer is ``min(d, in_l)``; ``rank_fraction`` is a fraction of ``d``;
    - ``feedback_learning`` is one of ``"fixed"``, ``"q_only"``, ``"local"`` (default), ``"oja"``, with ``e``
      in place of ``delta`` in the formulas of :class:`LDFA`; Oja's targets are standardised per class
      (``oja_covariance``). ``"normative"`` raises ``ValueError``: the
      direct pathway has no forward matrix for ``P Q`` to approximate.
    """

    name = "direct_ldfa"
    display_name = "direct LDFA"
    feedback_learning_modes = tuple(m for m in FEEDBACK_LEARNING if m != "normative")
    feedback = "direct_low_rank"
    direct = True
    feedback_learning: FeedbackLearning = "local"

    def feedback_shapes(self, weight_shape, *, rank=None, groups=1, d=None, input_shape=None):
        """``P`` (d, r), ``Q`` (r, *input_shape): ``(r, in)`` or ``(r, C_in, H, W)``."""
        return {"P": (d, rank), "Q": (rank, *input_shape)}

    def init_feedback(self, weight, *, rank=None, groups=1, d=None, input_shape=None, generator=None):
        """``P`` with orthonormal columns, ``Q`` Gaussian with s.d. ``1 / sqrt(3 r)``, so that ``e P Q`` has the
        expected size of DFA's ``e D``."""
        p = orthonormal_columns(d, rank, generator)
        q = torch.randn((rank, *input_shape), generator=generator) / math.sqrt(3 * rank)
        return {"P": p, "Q": q}

    def feedback_matrix(self, weight, feedback, *, groups=1):
        """``P Q`` (d, in): the map of ``e``; it maps ``delta`` only at the output layer (where ``delta = e``)."""
        return feedback[0] @ feedback[1].reshape(feedback[1].shape[0], -1)

    def __post_init__(self) -> None:
        if self.feedback_learning == "normative":
            allowed = ", ".join(repr(m) for m in self._allowed_modes())
            raise ValueError("direct_ldfa: feedback_learning 'normative' is not defined (the direct pathway has "
                             f"no forward matrix for P Q to approximate); allowed: {allowed}")
        super().__post_init__()

    @staticmethod
    def _allowed_modes() -> tuple[str, ...]:
        return tuple(m for m in FEEDBACK_LEARNING if m != "normative")
