"""Per-mode diagnostics of a linear student and the xarray Dataset both executors return."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import xarray as xr

from bioplastic.io import stamp
from bioplastic.theory.dynamics import RuleSpec, feedback_operator

_DEG = 180.0 / math.pi


def _principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (degrees, increasing) between the spans of two matrices with orthonormal columns."""
    c = a.T @ b
    finite = torch.isfinite(c)
    poison = torch.where(finite.all(), 0.0, float("nan"))  # NaN angles for a diverged run, no host sync
    cos = torch.linalg.svdvals(torch.where(finite, c, torch.zeros_like(c))).clamp(-1.0, 1.0)
    return torch.arccos(cos) * _DEG + poison


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Frobenius cosine ``<a, b> / (||a|| ||b||)`` (NaN if either is zero)."""
    return (a * b).sum() / (torch.linalg.matrix_norm(a) * torch.linalg.matrix_norm(b))


def _top_left(a: torch.Tensor, r: int) -> torch.Tensor:
    """Orthonormal basis (columns) of the top-``r`` left singular subspace of ``a`` (eigh of ``a a^T``).

    A non-finite ``a`` (a diverged run) gives NaN, without a host synchronisation.
    """
    finite = torch.isfinite(a)
    safe = torch.where(finite, a, torch.zeros_like(a))
    poison = torch.where(finite.all(), 0.0, float("nan"))
    try:
        return torch.linalg.eigh(safe @ safe.T)[1][:, -r:] + poison
    except torch.linalg.LinAlgError:  # LAPACK's eigh can fail on a low-rank Gram matrix (many zero eigenvalues)
        return torch.linalg.svd(safe, full_matrices=False)[0][:, :r] + poison


def diagnostics(spec: RuleSpec, state: dict[str, torch.Tensor], target: torch.Tensor,
                u: torch.Tensor | None, v: torch.Tensor | None, s: torch.Tensor, n_modes: int, n_angles: int,
                floor: float, output_basis: torch.Tensor | None = None,
                f0: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Loss, normalised mode strengths, cross-talk and feedback-subspace angles of one state.

    ``target`` is ``W*`` in the basis of ``state``; ``u``, ``v`` the teacher's singular vectors in that basis
    (``None`` for the identity: the rotated basis of the gradient flow, whose ``U`` is then ``output_basis``).
    No host synchronisation.
    """
    w1, w2 = state["W1"], state["W2"]
    m_ = w2 @ w1
    loss = 0.5 * ((target - m_) ** 2).sum() + floor
    mbar = m_ if u is None else u.T @ m_ @ v                 # [U^T W2 W1 V]
    sp = s[:n_modes]
    diag = torch.diagonal(mbar)[:n_modes]
    idx = torch.arange(n_modes, device=mbar.device)
    offdiag = mbar.index_put((idx, idx), torch.zeros_like(diag))   # everything but the mode diagonal
    off = (offdiag[:n_modes] ** 2).sum(dim=1) + (offdiag[:, :n_modes] ** 2).sum(dim=0)
    total_off = (offdiag ** 2).sum()
    out = {
        "loss": loss,
        "mode_strength": diag / sp,
        "cross_talk": torch.sqrt(off) / sp,
        "cross_talk_total": torch.sqrt(total_off) / torch.linalg.vector_norm(sp),
    }
    f = feedback_operator(spec, state, output_basis)
    out["feedback_cosine"] = _cosine(f, w2)
    if f0 is None:
        out["feedback_change"] = torch.zeros((), dtype=w2.dtype, device=w2.device)
    else:
        out["feedback_change"] = torch.linalg.matrix_norm(f - f0) / torch.linalg.matrix_norm(f0)
    if spec.low_rank:
        out["q_alignment"] = _cosine(state["Q"], state["P"].T @ w2)
    else:
        out["q_alignment"] = torch.full((), float("nan"), dtype=w2.dtype, device=w2.device)
    uw = _top_left(w2, n_angles)
    uf = uw if f is w2 else _top_left(f, n_angles)  # backprop: F is W2 itself
    if u is None:
        ut = torch.eye(w2.shape[0], n_angles, dtype=w2.dtype, device=w2.device)
    else:
        ut = u[:, :n_angles]
    out["feedback_angle"] = _principal_angles(uf, ut)
    out["feedback_w2_angle"] = _principal_angles(uf, uw)
    return out


def build_dataset(records: dict[str, torch.Tensor], steps: np.ndarray, spec: RuleSpec, teacher: Any,
                  n_hidden: int, config: dict[str, Any], method: str,
                  extra: dict[str, torch.Tensor] | None = None) -> xr.Dataset:
    """Assemble the result Dataset (dims ``rule`` of length 1, ``step``, ``mode``, ``direction``)."""
    label = spec.label
    n_modes = records["mode_strength"].shape[1]
    n_angles = records["feedback_angle"].shape[1]
    s = teacher.singular_values[:n_modes].numpy()

    def arr(name: str) -> np.ndarray:
        return records[name].detach().to("cpu", torch.float64).numpy()[None]

    data = {
        "loss": (("rule", "step"), arr("loss"), {"long_name": "population loss 0.5 <||y - y_hat||^2>"}),
        "mode_strength": (("rule", "step", "mode"), arr("mode_strength"),
                          {"long_name": "normalised mode strength [U^T W2 W1 V]_jj / s_j"}),
        "cross_talk": (("rule", "step", "mode"), arr("cross_talk"),
                       {"long_name": "off-diagonal strength of row and column j of U^T W2 W1 V, over s_j"}),
        "cross_talk_total": (("rule", "step"), arr("cross_talk_total"),
                             {"long_name": "||offdiag(U^T W2 W1 V)||_F / ||s||"}),
        "feedback_angle": (("rule", "step", "direction"), arr("feedback_angle"),
                           {"long_name": "principal angles between the feedback subspace (top singular "
                                         "directions of F, g_in = e F) and the teacher's top output modes",
                            "units": "degree"}),
        "feedback_w2_angle": (("rule", "step", "direction"), arr("feedback_w2_angle"),
                              {"long_name": "principal angles between the feedback subspace and the top left "
                                            "singular directions of W2", "units": "degree"}),
        "feedback_cosine": (("rule", "step"), arr("feedback_cosine"),
                            {"long_name": "Frobenius cosine between the feedback operator F and W2 (1 for BP; "
                                          "the alignment of feedback alignment)"}),
        "feedback_change": (("rule", "step"), arr("feedback_change"),
                            {"long_name": "||F(t) - F(0)||_F / ||F(0)||_F, how far the feedback operator has moved "
                                          "from its initial value (0 for fixed feedback)"}),
        "q_alignment": (("rule", "step"), arr("q_alignment"),
                        {"long_name": "LDFA: Frobenius cosine between Q and P^T W2, the Kolen-Pollack target of Q "
                                      "(NaN for other rules)"}),
        "rank_r_loss": (("rule",), [teacher.rank_r_loss(spec.rank)],
                        {"long_name": "loss of the best rank-r approximation of the teacher (reference line)"}),
        "feedback_rank": (("rule",), [spec.rank]),
        "lr": (("rule",), [spec.lr]),
        "feedback_lr": (("rule",), [spec.feedback_lr]),
        "feedback_lr_p": (("rule",), [spec.feedback_lr_p]),
        "feedback_weight_decay": (("rule",), [spec.feedback_weight_decay]),
        "floor": ((), teacher.floor, {"long_name": "teacher noise floor 0.5 m sigma^2"}),
        "initial_loss_zero_map": ((), teacher.initial_loss(), {"long_name": "0.5 ||W*||_F^2 + floor"}),
    }
    for name, value in (extra or {}).items():
        data[name] = (("rule", "step"), value.detach().to("cpu", torch.float64).numpy()[None])
    coords = {
        "rule": [label],
        "step": ("step", np.asarray(steps, dtype=np.int64), {"long_name": "gradient step (time in units of 1/lr "
                                                                          "steps = tau)"}),
        "mode": np.arange(n_modes),
        "singular_value": ("mode", s),
        "direction": np.arange(n_angles),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update({"method": method, "n_inputs": teacher.n_inputs, "n_hidden": n_hidden,
                     "n_outputs": teacher.n_outputs, "teacher_rank": teacher.rank,
                     "source": "Hanut & Kadmon (2025) arXiv:2502.20580, linear theory; "
                               "Saxe, McClelland & Ganguli (2014) ICLR"})
    return stamp(ds, config)
