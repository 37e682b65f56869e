"""Reduced gradient-flow dynamics in the teacher's singular basis, and the closed-form BP mode solution."""
from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from scipy.integrate import solve_ivp

from bioplastic._checks import check_choice, check_positive_int
from bioplastic.theory._results import build_dataset, diagnostics
from bioplastic.theory._threads import run_limited
from bioplastic.theory.dynamics import (
    ErrorNormalization, FeedbackLearning, Init, Rule, feedback_operator, increments, initial_state, make_rule_spec,
    svd_feedback,
)
from bioplastic.theory.simulation import record_steps
from bioplastic.theory.teachers import Teacher, as_teacher

__all__ = ["gradient_flow", "saxe_mode_strength", "METHODS"]

log = logging.getLogger(__name__)

METHODS = ("RK45", "DOP853", "LSODA", "closed_form")
Method = Literal["RK45", "DOP853", "LSODA", "closed_form"]


def saxe_mode_strength(singular_values: Any, t: Any, lr: float, initial_strength: float) -> np.ndarray:
    """Closed-form BP mode strengths of a two-layer linear network from a decoupled, balanced start.

    With ``W1 = O diag(a) V^T``, ``W2 = U diag(a) O^T`` (``a_j^2 = u_0``), backprop gradient flow keeps every
    mode decoupled and balanced, and its strength ``u_j = [U^T W2 W1 V]_jj`` obeys
    ``du/dt = 2 lr u (s - u)``, so (Saxe, McClelland & Ganguli 2014, ICLR, eq. 7; time in steps, ``tau = 1/lr``)

    ``u(t) = s / (1 + (s / u_0 - 1) exp(-2 s lr t))``.

    Parameters
    ----------
    singular_values : array-like, shape (p,)
        Teacher singular values ``s_j >= 0``.
    t : array-like, shape (T,)
        Times in steps.
    lr : float
        Learning rate (``1 / tau``).
    initial_strength : float
        ``u_0 >= 0``; ``u_0 = 0`` is a fixed point.

    Returns
    -------
    numpy.ndarray, shape (T, p)
        ``u_j(t)`` (divide by ``s_j`` for the normalised strength).

    Raises
    ------
    ValueError
        Negative or non-finite inputs.
    """
    s = np.asarray(singular_values, dtype=np.float64)[None, :]
    t = np.asarray(t, dtype=np.float64)[:, None]
    if not (np.all(np.isfinite(s)) and np.all(s >= 0) and np.all(np.isfinite(t))):
        raise ValueError("singular_values must be finite and >= 0, and t finite")
    if not (np.isfinite(lr) and lr > 0 and np.isfinite(initial_strength) and initial_strength >= 0):
        raise ValueError(f"lr must be > 0 and initial_strength >= 0 (got {lr}, {initial_strength})")
    if initial_strength == 0:
        return np.zeros((t.shape[0], s.shape[1]))
    with np.errstate(over="ignore"):
        return s / (1.0 + (s / initial_strength - 1.0) * np.exp(-2.0 * s * lr * t))


def _rotate(state: dict[str, torch.Tensor], teacher: Teacher) -> dict[str, torch.Tensor]:
    """Express the parameters in the teacher's singular basis: W1 V, U^T W2, U^T B, U^T P (Q unchanged)."""
    u, v = teacher.U, teacher.V
    out = {"W1": state["W1"] @ v, "W2": u.T @ state["W2"]}
    for name in ("B", "P"):
        if name in state:
            out[name] = u.T @ state[name]
    if "Q" in state:
        out["Q"] = state["Q"].clone()
    return out


@run_limited
def gradient_flow(rule: Rule | Any, teacher: Teacher | np.ndarray | torch.Tensor, *, n_hidden: int = 64,
                  rank: int | None = None, feedback_learning: FeedbackLearning | None = None, steps: int = 5000,
                  lr: float = 2.5e-3, feedback_lr: float | None = None, weight_decay: float = 0.0,
                  feedback_weight_decay: float | None = None, error_normalization: ErrorNormalization | None = None,
                  sign_scale: str | None = None, reinit_every: int | None = None, feedback_lr_p: float | None = None,
                  oja_covariance: str | None = None,
                  init: Init = "random",
                  init_scale: float = 0.1, feedback_init_scale: float = 1.0, record_every: int | None = None,
                  seed: int = 0, initial_weights: dict[str, Any] | None = None, method: Method = "RK45",
                  rtol: float = 1e-8, atol: float = 1e-10,
                  num_threads: int | None = 1) -> xr.Dataset:
    """The gradient-flow ODE of a rule, integrated in the teacher's singular basis (the "theory" curves).

    With white inputs the population gradient depends on the data only through ``Sxx = I`` and
    ``Syx = W* = U S V^T``. In rotated coordinates ``W1' = W1 V``, ``W2' = U^T W2``, ``P' = U^T P``,
    ``B' = U^T B`` the flow of every rule keeps its form with ``W*`` replaced by the rectangular diagonal
    ``S`` (docs/theory.md: ``tau dW2/dt = R W1^T``, ``tau dW1/dt = B R`` with ``B = W2^T`` for BP,
    the fixed ``B`` for FA, ``Q P`` for LDFA, and the feedback flows of :mod:`bioplastic.theory.dynamics`),
    so the reduction is exact for any initial condition (sign symmetry, whose ``sign`` acts synapse by synapse,
    is evaluated in the neurons' basis): the per-mode quantities are read off the diagonal
    of ``W2' W1'``. Time is counted in steps (``tau = 1 / lr``, ``tau_B = 1 / feedback_lr``), so the result
    is the small-learning-rate limit of :func:`simulate` on the population, started from the *same* initial
    weights for the same ``seed``.

    For BP from a decoupled, balanced start (``init="decoupled"``) the modes never mix and follow the
    sigmoids of Saxe, McClelland & Ganguli (2014): ``method="closed_form"`` evaluates
    :func:`saxe_mode_strength` instead of integrating. Source of the feedback rules: Hanut & Kadmon (2025),
    arXiv:2502.20580.

    Parameters
    ----------
    rule, teacher, n_hidden, rank, feedback_learning, steps, lr, feedback_lr, feedback_lr_p, weight_decay,
    feedback_weight_decay, error_normalization, sign_scale, reinit_every, oja_covariance, init, init_scale,
    feedback_init_scale, record_every, seed, initial_weights
        As :func:`simulate` (``steps`` is the duration in steps; records at the same steps).
    method : {"RK45", "DOP853", "LSODA", "closed_form"}
        ``scipy.integrate.solve_ivp`` method, or the closed form (BP, ``init="decoupled"``, no weight decay,
        no ``initial_weights``).
    rtol, atol : float
        Tolerances of ``solve_ivp``.
    num_threads : int or None, default 1
        Torch and BLAS threads during the run (restored afterwards); ``None`` leaves the caller's settings.

    Returns
    -------
    xarray.Dataset
        As :func:`simulate` (without ``train_loss``), ``attrs["method"] = "gradient_flow"`` (or
        ``"closed_form"``).

    Raises
    ------
    ValueError
        As :func:`simulate`; ``method="closed_form"`` with anything but BP from a decoupled start.
    RuntimeError
        If ``solve_ivp`` fails (e.g. the flow blows up).
    """
    teacher = as_teacher(teacher)
    k = check_positive_int("n_hidden", n_hidden)
    check_choice("method", method, METHODS)
    spec = make_rule_spec(rule, n_outputs=teacher.n_outputs, n_hidden=k, rank=rank,
                          feedback_learning=feedback_learning, lr=lr, feedback_lr=feedback_lr,
                          weight_decay=weight_decay, feedback_weight_decay=feedback_weight_decay,
                          error_normalization=error_normalization, sign_scale=sign_scale,
                          reinit_every=reinit_every, feedback_lr_p=feedback_lr_p,
                          oja_covariance=oja_covariance)
    rec = record_steps(steps, record_every)
    n_modes, n_angles = teacher.rank, min(spec.rank, teacher.rank)
    if n_modes == 0:
        raise ValueError("the teacher is the zero map: it has no modes to learn")
    if method == "closed_form" and (spec.rule != "bp" or init != "decoupled" or spec.weight_decay
                                    or initial_weights):
        raise ValueError("method 'closed_form' holds only for rule 'bp' from init='decoupled' without "
                         "weight_decay or initial_weights; use an ODE method")
    state0 = _rotate(initial_state(spec, teacher, k, init=init, init_scale=init_scale,
                                   feedback_init_scale=feedback_init_scale, seed=seed,
                                   initial_weights=initial_weights), teacher)
    m, n = teacher.n_outputs, teacher.n_inputs
    s = teacher.singular_values
    target = torch.zeros(m, n, dtype=torch.float64)
    target[torch.arange(s.numel()), torch.arange(s.numel())] = s
    sxx = None  # white inputs: <x x^T> = I
    syy = target @ target.T + teacher.noise_std ** 2 * torch.eye(m, dtype=torch.float64)
    config = {"rule": spec.to_dict(), "n_inputs": n, "n_hidden": k, "n_outputs": m, "teacher_rank": teacher.rank,
              "teacher_noise_std": teacher.noise_std, "steps": int(steps), "init": init, "init_scale": init_scale,
              "feedback_init_scale": feedback_init_scale, "seed": seed, "method": method, "rtol": rtol,
              "atol": atol, "initial_weights_given": bool(initial_weights), "basis": "teacher singular basis"}

    if method == "closed_form":
        p = min(teacher.rank, k)
        strength = saxe_mode_strength(s[:p].numpy(), rec, spec.lr, init_scale ** 2)
        o = state0["W1"][:, :p] / init_scale if init_scale else torch.zeros(k, p, dtype=torch.float64)
        states = []
        for row in torch.as_tensor(strength):
            a = torch.sqrt(row)
            w1 = torch.zeros(k, n, dtype=torch.float64)
            w1[:, :p] = o * a
            w2 = torch.zeros(m, k, dtype=torch.float64)
            w2[:p] = a[:, None] * o.T
            states.append({"W1": w1, "W2": w2})
        label = "closed_form"
    else:
        learned = ["W1", "W2", *[nm for nm in spec.feedback_names() if spec.learns(nm)]]
        shapes = {nm: tuple(state0[nm].shape) for nm in learned}
        sizes = [int(np.prod(shapes[nm])) for nm in learned]
        frozen = {nm: t for nm, t in state0.items() if nm not in learned}

        def unpack(y: np.ndarray) -> dict[str, torch.Tensor]:
            flat = torch.from_numpy(np.ascontiguousarray(y))
            parts = torch.split(flat, sizes)
            return {**frozen, **{nm: part.view(shapes[nm]) for nm, part in zip(learned, parts)}}

        def rhs(_t: float, y: np.ndarray) -> np.ndarray:
            inc = increments(spec, unpack(y), sxx, target, syy, teacher.U)
            return torch.cat([inc[nm].reshape(-1) for nm in learned]).numpy()

        bounds = [0]
        if spec.reinit_every:
            bounds += list(range(spec.reinit_every, steps, spec.reinit_every))
        bounds.append(steps)
        y0 = torch.cat([state0[nm].reshape(-1) for nm in learned]).numpy()
        states = []
        for i, (t0, t1) in enumerate(zip(bounds[:-1], bounds[1:])):
            if i > 0:  # normative re-initialisation from the truncated SVD of W2 (rotation-covariant)
                st = unpack(y0)
                p_, q_ = svd_feedback(st["W2"], spec.rank)
                st = {**st, "P": p_, "Q": q_}
                y0 = torch.cat([st[nm].reshape(-1) for nm in learned]).numpy()
            last = i == len(bounds) - 2
            keep = rec[(rec >= t0) & ((rec <= t1) if last else (rec < t1))]
            t_eval = np.union1d(keep, [t1]).astype(float)
            sol = solve_ivp(rhs, (float(t0), float(t1)), y0, method=method, t_eval=t_eval, rtol=rtol, atol=atol)
            if not sol.success:
                raise RuntimeError(f"gradient flow of {spec.label} failed at t={sol.t[-1] if sol.t.size else t0}: "
                                   f"{sol.message}")
            states.extend(unpack(col.copy()) for tt, col in zip(sol.t, sol.y.T) if tt in set(keep.tolist()))
            y0 = sol.y[:, -1].copy()
        label = "gradient_flow"

    records: dict[str, list[torch.Tensor]] = {}
    f0 = feedback_operator(spec, state0, teacher.U)
    for st in states:
        for name, value in diagnostics(spec, st, target, None, None, s, n_modes, n_angles, teacher.floor,
                                       teacher.U, f0=f0).items():
            records.setdefault(name, []).append(value)
    stacked = {name: torch.stack(values) for name, values in records.items()}
    log.info("gradient_flow %s: final loss %.4g", spec.label, float(stacked["loss"][-1]))
    return build_dataset(stacked, rec, spec, teacher, k, config, label)
