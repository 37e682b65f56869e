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

__all__ = ["gradient_flow", "saxe_mode_strength", "oja_subspace_closed_form", "METHODS", "FEEDBACK_METHODS"]

log = logging.getLogger(__name__)

METHODS = ("RK45", "DOP853", "LSODA", "Radau", "BDF", "closed_form")
Method = Literal["RK45", "DOP853", "LSODA", "Radau", "BDF", "closed_form"]
#: ``solve_ivp`` methods for ``feedback_method`` (P's own flow; the implicit ones suit its stiffness).
FEEDBACK_METHODS = ("RK45", "DOP853", "LSODA", "Radau", "BDF")


def _p_flow_is_autonomous(spec) -> bool:
    """True where P's flow depends on P alone: Oja's subspace rule on the output covariance ``Syy`` (a property
    of the teacher, not of the student), with P's own weight decay."""
    return spec.low_rank and spec.feedback_learning == "oja" and spec.oja_covariance == "targets"


def oja_subspace_closed_form(covariance: Any, p0: Any, t: Any, lr: float) -> np.ndarray:
    """Orthonormal bases of ``span P(t)`` under Oja's subspace flow on a fixed covariance, in closed form.

    The flow ``dP/dt = lr (C P - P P^T C P)`` (Oja 1989; here ``lr`` = ``feedback_lr_p``, time in steps) from
    ``P(0) = P0`` with orthonormal columns has the solution ``P(t) = exp(lr C t) P0 K(t)`` with an invertible
    ``r x r`` matrix ``K(t)`` (Yan, Helmke & Moore 1994, IEEE Trans. Neural Netw. 5: 674), so
    ``span P(t) = span(exp(lr C t) P0)`` exactly; a weight decay on ``P`` (a multiple of ``P``) only changes
    ``K``. This is the feedback subspace of ``oja`` with ``oja_covariance="targets"`` (``C = Syy``) in the
    linear theory, which evolves independently of the student.

    Parameters
    ----------
    covariance : array-like, shape (m, m)
        Symmetric ``C`` (e.g. ``Syy``).
    p0 : array-like, shape (m, r)
        Initial ``P`` with orthonormal columns.
    t : array-like, shape (T,)
        Times in steps, ``>= 0``.
    lr : float
        Rate of the flow (``> 0``).

    Returns
    -------
    numpy.ndarray, shape (T, m, r)
        Orthonormal bases of ``span(exp(lr C t) P0)``, computed in ``C``'s eigenbasis as the span of
        ``[I; X(t)]`` with ``X_kj = exp(lr (lambda_{r+k} - lambda_j) t) [Y_rest Y_top^{-1}]_kj`` (eigenvalues in
        descending order, ``Y = V^T P0``), which keeps every direction when the spectrum has large gaps.

    Raises
    ------
    ValueError
        Non-symmetric or non-finite ``C``, ``P0`` without orthonormal columns, shapes that do not match,
        negative times or a non-positive ``lr``.
    """
    c = np.asarray(covariance, dtype=np.float64)
    p0 = np.asarray(p0, dtype=np.float64)
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if c.ndim != 2 or c.shape[0] != c.shape[1] or not np.all(np.isfinite(c)) or not np.allclose(c, c.T):
        raise ValueError("covariance must be a finite symmetric (m, m) matrix")
    if p0.ndim != 2 or p0.shape[0] != c.shape[0] or p0.shape[1] > c.shape[0]:
        raise ValueError(f"p0 must have shape (m, r) with r <= m = {c.shape[0]}, got {p0.shape}")
    if not np.allclose(p0.T @ p0, np.eye(p0.shape[1]), atol=1e-8):
        raise ValueError("p0 must have orthonormal columns (P0^T P0 = I)")
    if not (np.all(np.isfinite(t)) and np.all(t >= 0)) or not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"times must be finite and >= 0 and lr > 0 (got lr={lr})")
    evals, evecs = np.linalg.eigh(c)
    evals, evecs = evals[::-1], evecs[:, ::-1]         # descending
    r = p0.shape[1]
    y = evecs.T @ p0                                   # P0 in C's eigenbasis
    # span(exp(lr Lambda t) Y) = span([I; X(t)]) with X_kj = exp(lr (lambda_{r+k} - lambda_j) t) G_kj,
    # G = Y_rest Y_top^{-1}: ratios of exponentials, so no column is lost to round-off when the spectrum has gaps
    try:
        g = np.linalg.solve(y[:r].T, y[r:].T).T
    except np.linalg.LinAlgError:
        raise ValueError("p0 is orthogonal to a top-r eigenvector of the covariance: its span never reaches the "
                         "top-r subspace (Y_top singular)") from None
    out = np.empty((t.size, *p0.shape))
    for i, ti in enumerate(t):
        x = np.exp(lr * (evals[r:, None] - evals[None, :r]) * ti) * g
        out[i] = evecs @ np.linalg.qr(np.vstack([np.eye(r), x]))[0]
    return out


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
                  rtol: float = 1e-8, atol: float = 1e-10, feedback_method: str | None = None,
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
    method : {"RK45", "DOP853", "LSODA", "Radau", "BDF", "closed_form"}
        ``scipy.integrate.solve_ivp`` method, or the closed form (BP, ``init="decoupled"``, no weight decay,
        no ``initial_weights``). The implicit methods (``"Radau"``, ``"BDF"``, ``"LSODA"`` once it switches)
        form a dense finite-difference Jacobian of the whole state (its size squared in memory, one
        right-hand side per column): fine up to a few thousand parameters, not at the paper's sizes (12,800).
    rtol, atol : float
        Tolerances of ``solve_ivp``.
    feedback_method : {"RK45", "DOP853", "LSODA", "Radau", "BDF"} or None
        Integrate ``P`` on its own with this method first, then the other parameters with ``method``, reading
        ``P(t)`` from its dense output (tolerances ``rtol / 100``, ``atol / 100``). Exact (not a splitting
        approximation) where ``P``'s flow depends on ``P`` alone: ``feedback_learning="oja"`` with
        ``oja_covariance="targets"`` (Oja on ``Syy``), the only setting allowed. Its flow relaxes at rates up to
        ``2 feedback_lr_p lambda_max(Syy)`` per step (~1.3 at the paper's sizes), far faster than the weights
        (~0.1): that stiffness is then confined to ``P`` (``m r`` values), where ``"Radau"`` handles it, and the
        rest is integrated at the weights' pace. None (default): everything together with ``method``.
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
        As :func:`simulate`; ``method="closed_form"`` with anything but BP from a decoupled start;
        ``feedback_method`` unknown or given for a rule whose ``P`` does not evolve on its own.
    RuntimeError
        If ``solve_ivp`` fails (e.g. the flow blows up).
    """
    teacher = as_teacher(teacher)
    k = check_positive_int("n_hidden", n_hidden)
    check_choice("method", method, METHODS)
    if feedback_method is not None:
        check_choice("feedback_method", feedback_method, FEEDBACK_METHODS)
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
    if feedback_method is not None and (method == "closed_form" or not _p_flow_is_autonomous(spec)):
        raise ValueError("feedback_method integrates P on its own, which is exact only where P's flow depends on P "
                         "alone: rule 'ldfa' / 'direct_ldfa' with feedback_learning='oja' and "
                         f"oja_covariance='targets', with an ODE method (got {spec.label}, oja_covariance="
                         f"{spec.oja_covariance!r}, method {method!r})")
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
              "atol": atol, "feedback_method": feedback_method, "initial_weights_given": bool(initial_weights),
              "basis": "teacher singular basis"}

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
        p_of_t = None
        if feedback_method is not None:  # P's autonomous (stiff) flow first, on its own
            learned.remove("P")
            p_shape = tuple(state0["P"].shape)

            def rhs_p(_t: float, y: np.ndarray) -> np.ndarray:
                st = {**state0, "P": torch.from_numpy(np.ascontiguousarray(y)).view(p_shape)}
                return increments(spec, st, sxx, target, syy, teacher.U)["P"].reshape(-1).numpy()

            sol_p = solve_ivp(rhs_p, (0.0, float(steps)), state0["P"].reshape(-1).numpy(), method=feedback_method,
                              dense_output=True, rtol=rtol / 100, atol=atol / 100)
            if not sol_p.success:
                raise RuntimeError(f"flow of P ({spec.label}, {feedback_method}) failed: {sol_p.message}")
            log.info("gradient_flow %s: P integrated by %s in %d evaluations", spec.label, feedback_method,
                     sol_p.nfev)

            def p_of_t(t: float) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(sol_p.sol(t))).view(p_shape)

        shapes = {nm: tuple(state0[nm].shape) for nm in learned}
        sizes = [int(np.prod(shapes[nm])) for nm in learned]
        frozen = {nm: t for nm, t in state0.items() if nm not in learned}

        def unpack(y: np.ndarray, t: float | None = None) -> dict[str, torch.Tensor]:
            flat = torch.from_numpy(np.ascontiguousarray(y))
            parts = torch.split(flat, sizes)
            st = {**frozen, **{nm: part.view(shapes[nm]) for nm, part in zip(learned, parts)}}
            if p_of_t is not None and t is not None:
                st["P"] = p_of_t(t)
            return st

        def rhs(t: float, y: np.ndarray) -> np.ndarray:
            inc = increments(spec, unpack(y, t), sxx, target, syy, teacher.U)
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
            states.extend(unpack(col.copy(), tt) for tt, col in zip(sol.t, sol.y.T) if tt in set(keep.tolist()))
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
