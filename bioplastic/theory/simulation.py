"""Full simulation of a two-layer linear student learning from a linear teacher on sampled data."""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import xarray as xr
from bioplastic._progress import progress_bar

from bioplastic._checks import check_finite, check_positive_int
from bioplastic.theory._results import build_dataset, diagnostics
from bioplastic.theory._threads import run_limited
from bioplastic.theory.dynamics import (
    ErrorNormalization, FeedbackLearning, Init, Rule, feedback_operator, increments, initial_state, make_rule_spec,
    svd_feedback,
)
from bioplastic.theory.teachers import Teacher, as_teacher

__all__ = ["simulate", "record_steps"]

log = logging.getLogger(__name__)
_CHUNK = 16384  # rows per chunk when drawing a data set (bounds the memory of the moments)


def record_steps(steps: int, record_every: int | None) -> np.ndarray:
    """Steps at which the state is recorded: ``0, record_every, 2 record_every, ...`` and always ``steps``.

    ``record_every=None`` records about 250 points.
    """
    steps = check_positive_int("steps", steps)
    every = max(1, steps // 250) if record_every is None else check_positive_int("record_every", record_every)
    return np.unique(np.r_[np.arange(0, steps, every), steps]).astype(np.int64)


def _draw(teacher_w: torch.Tensor, noise_std: float, rows: int, gen: torch.Generator, dtype, device):
    x = torch.randn(rows, teacher_w.shape[1], generator=gen, dtype=dtype, device=device)
    y = x @ teacher_w.T
    if noise_std:
        y = y + noise_std * torch.randn(rows, teacher_w.shape[0], generator=gen, dtype=dtype, device=device)
    return x, y


def _moments(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b = x.shape[0]
    return x.T @ x / b, y.T @ x / b, y.T @ y / b


def _check_data(data: Any, teacher: Teacher) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError("data must be a pair (x, y) of arrays of shapes (N, n_inputs) and (N, n_outputs)")
    x = torch.as_tensor(np.asarray(data[0]) if not isinstance(data[0], torch.Tensor) else data[0])
    y = torch.as_tensor(np.asarray(data[1]) if not isinstance(data[1], torch.Tensor) else data[1])
    if x.ndim != 2 or x.shape[1] != teacher.n_inputs or x.shape[0] < 1:
        raise ValueError(f"data x has shape {tuple(x.shape)}, expected (N, {teacher.n_inputs}) (n_inputs of the "
                         f"teacher)")
    if y.ndim != 2 or tuple(y.shape) != (x.shape[0], teacher.n_outputs):
        raise ValueError(f"data y has shape {tuple(y.shape)}, expected ({x.shape[0]}, {teacher.n_outputs}) "
                         f"(N of x, n_outputs of the teacher)")
    check_finite("data x", x)
    check_finite("data y", y)
    return x.detach().clone(), y.detach().clone()


@run_limited
def simulate(rule: Rule | Any, teacher: Teacher | np.ndarray | torch.Tensor, *, n_hidden: int = 64,
             rank: int | None = None, feedback_learning: FeedbackLearning | None = None, steps: int = 5000,
             lr: float = 2.5e-3, feedback_lr: float | None = None, weight_decay: float = 0.0,
             feedback_weight_decay: float | None = None, error_normalization: ErrorNormalization | None = None,
             sign_scale: str | None = None, reinit_every: int | None = None, feedback_lr_p: float | None = None,
             oja_covariance: str | None = None,
             init: Init = "random",
             init_scale: float = 0.1, feedback_init_scale: float = 1.0, n_samples: int | None = None,
             batch_size: int | None = None, record_every: int | None = None, seed: int = 0,
             dtype: torch.dtype = torch.float64, device: str | torch.device | None = None,
             initial_weights: dict[str, Any] | None = None, data: tuple[Any, Any] | None = None,
             progress: bool = False,
             num_threads: int | None = 1) -> xr.Dataset:
    """Train ``y_hat = W2 W1 x`` on a linear teacher with gradient descent and a chosen feedback rule.

    The output layer ``W2`` always receives its exact gradient ``<e h^T>``; the hidden layer receives the
    error through the rule's feedback operator ``F`` (``g_in = e F``; ``F = W2`` for backprop, a fixed
    random ``B`` for FA, ``P Q`` through ``r`` feedback units for LDFA), and the feedback weights learn as in
    :mod:`bioplastic.theory.dynamics` (the formulas of docs/rules.md and docs/theory.md; Hanut & Kadmon 2025,
    arXiv:2502.20580). Inputs are white Gaussian, ``y = W* x + noise_std * xi``, the loss is
    ``L = 0.5 <||y - W2 W1 x||^2>`` (summed over outputs, averaged over samples).

    Parameters
    ----------
    rule : {"bp", "fa", "dfa", "sign_symmetry", "kolen_pollack", "ldfa", "direct_ldfa"} or bioplastic.rules.Rule
        The rule core's name (or rule object, whose options are used unless given here). For this student
        ``dfa`` equals ``fa`` and ``direct_ldfa`` equals ``ldfa`` (the output error is ``W2``'s delta).
    teacher : Teacher or array of shape (m, n)
        See :func:`random_teacher`, :func:`paper_teacher`.
    n_hidden : int
        ``k``.
    rank : int, optional
        Number of feedback units ``r`` (LDFA), ``1 <= r <= min(m, k)``; for every rule also the number of
        directions in the feedback-subspace angles (at most the teacher's rank). Default: the ``Rule``
        object's rank, else 2 (the paper's figure).
    feedback_learning : {"fixed", "q_only", "normative", "local", "oja"}, optional
        LDFA only; default ``"normative"`` (``"local"`` for ``direct_ldfa``).
    steps : int
        Number of gradient steps.
    lr, feedback_lr : float
        Learning rates of the forward and the feedback weights (``feedback_lr=None``: ``lr``). The time
        constants of the gradient flow are ``tau = 1 / lr`` and ``tau_B = 1 / feedback_lr`` steps.
    feedback_lr_p : float, optional
        Learning rate of ``P`` where it learns (``normative``, ``local``, ``oja``); default ``feedback_lr``.
        For ``oja`` it sets the speed of Oja's subspace rule independently of the Kolen-Pollack rate of ``Q``.
    weight_decay, feedback_weight_decay : float
        Weight decay ``lambda`` (gradient ``+ lambda W``) of the forward and of the *learned* feedback weights.
    error_normalization : {"trace", "none"}, optional
        ``oja``: Oja's rule sees ``C / tr C`` (default, as the rule core) or the raw error covariance ``C``.
        ``local``: the feedback weights learn from the raw error (default, as the rule core) or from the error
        divided by its RMS ``sqrt(tr C)``.
    oja_covariance : {"error", "targets"}, optional
        ``oja`` only: ``P`` follows the error covariance ``<e e^T>`` (default, the torch executor's rule without
        targets) or the output covariance ``Syy = <y y^T>`` (``"targets"``: the paper's theory, ICLR 2025
        Eq. 8; on a training set or batch its sample ``Syy``).
    sign_scale : {"mean_abs", "unit"}, optional
        ``sign_symmetry`` only (default ``"mean_abs"``).
    reinit_every : int, optional
        Normative LDFA: reset ``P, Q`` to the truncated SVD of ``W2`` every this many steps.
    init : {"random", "decoupled"}
        Initial weights, see :func:`bioplastic.theory.dynamics.initial_state`; ``init_scale`` sets their size
        (each layer's singular values ~ ``init_scale``), ``feedback_init_scale`` that of random feedback.
    n_samples : int, optional
        Size of a fixed training set drawn once (``None``: no fixed set).
    batch_size : int, optional
        ``None``: full batch, i.e. the exact gradient on the training set computed through its second moments
        (or on the population when ``n_samples`` is also ``None``: plain gradient descent on the expected
        loss). An int: minibatch SGD, reshuffled each epoch of the training set, or fresh samples each step
        (online) when ``n_samples`` is ``None``.
    record_every : int, optional
        Record every this many steps (default: about 250 records); the last step is always recorded.
    seed : int
        Seeds the initial weights (a CPU generator: the same on every device) and the data.
    dtype, device
        Torch dtype (default float64) and device (default CPU) of the simulation.
    initial_weights : dict, optional
        ``{"W1": (k, n), "W2": (m, k)}`` arrays replacing the random initial weights.
    data : tuple (x, y), optional
        A training set to use instead of drawing one: ``x`` of shape (N, n), ``y`` of shape (N, m) (copied;
        ``n_samples`` must then be ``None`` or ``N``). ``loss`` stays the population loss under the teacher.
    progress : bool
        Show a tqdm progress bar.
    num_threads : int or None, default 1
        Torch and BLAS threads during the run (restored afterwards); the matrices are small, so one thread is
        fastest. ``None`` leaves the caller's settings.

    Returns
    -------
    xarray.Dataset
        Dims ``rule`` (length 1, label e.g. ``"ldfa_normative"``), ``step``, ``mode`` (the teacher's modes
        with ``s_j > 0``), ``direction`` (principal angles). Variables: ``loss`` (population loss),
        ``train_loss`` (on the training set or the current batch; absent on the population),
        ``mode_strength`` ``[U^T W2 W1 V]_jj / s_j``, ``cross_talk`` (per mode) and ``cross_talk_total``,
        ``feedback_angle`` and ``feedback_w2_angle`` (degrees; feedback subspace vs the teacher's top output
        modes and vs the top left singular directions of ``W2``), ``rank_r_loss`` (best rank-r loss, a
        reference line), ``floor``; attrs ``config`` (JSON), ``method="simulation"``.

    Raises
    ------
    ValueError
        Unknown names (listing the allowed values), rank out of range, non-finite teacher or data, mismatched
        ``initial_weights`` or ``data`` shapes, ``batch_size > n_samples``, non-positive sizes or learning
        rates.

    Notes
    -----
    A run that diverges (learning rate too large) returns NaN / Inf losses and logs a warning; it does not
    raise. The elementwise error clamp of the authors' ``oja`` runs is not part of the linear theory.
    """
    teacher = as_teacher(teacher)
    k = check_positive_int("n_hidden", n_hidden)
    spec = make_rule_spec(rule, n_outputs=teacher.n_outputs, n_hidden=k, rank=rank,
                          feedback_learning=feedback_learning, lr=lr, feedback_lr=feedback_lr,
                          weight_decay=weight_decay, feedback_weight_decay=feedback_weight_decay,
                          error_normalization=error_normalization, sign_scale=sign_scale,
                          reinit_every=reinit_every, feedback_lr_p=feedback_lr_p,
                          oja_covariance=oja_covariance)
    rec = record_steps(steps, record_every)
    if data is not None:
        x_given, y_given = _check_data(data, teacher)
        if n_samples is not None and n_samples != x_given.shape[0]:
            raise ValueError(f"n_samples {n_samples} does not match the {x_given.shape[0]} samples of data")
        n_samples = int(x_given.shape[0])
    if n_samples is not None:
        n_samples = check_positive_int("n_samples", n_samples)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
        if n_samples is not None and batch_size > n_samples:
            raise ValueError(f"batch_size {batch_size} larger than n_samples {n_samples}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a torch floating dtype, got {dtype!r}")
    device = torch.device("cpu" if device is None else device)
    state0 = initial_state(spec, teacher, k, init=init, init_scale=init_scale,
                           feedback_init_scale=feedback_init_scale, seed=seed, initial_weights=initial_weights)
    state = {name: t.to(device=device, dtype=dtype) for name, t in state0.items()}
    w_star = teacher.weight.to(device=device, dtype=dtype)
    u = teacher.U.to(device=device, dtype=dtype)
    v = teacher.V.to(device=device, dtype=dtype)
    s = teacher.singular_values.to(device=device, dtype=dtype)
    n_modes, n_angles = teacher.rank, min(spec.rank, teacher.rank)
    if n_modes == 0:
        raise ValueError("the teacher is the zero map: it has no modes to learn")
    noise = teacher.noise_std

    data_seed = int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])
    gen = torch.Generator(device=device).manual_seed(data_seed)
    x_data = y_data = None
    if n_samples is None and batch_size is None:
        fixed = (None, w_star,
                 w_star @ w_star.T + noise ** 2 * torch.eye(teacher.n_outputs, dtype=dtype, device=device))
        data_mode = "population"
    elif data is not None:
        x_data, y_data = x_given.to(device=device, dtype=dtype), y_given.to(device=device, dtype=dtype)
        fixed = _moments(x_data, y_data) if batch_size is None else None
        data_mode = "given_full_batch" if batch_size is None else "given_minibatch"
    elif n_samples is not None and batch_size is None:
        sxx = torch.zeros(teacher.n_inputs, teacher.n_inputs, dtype=dtype, device=device)
        syx = torch.zeros(teacher.n_outputs, teacher.n_inputs, dtype=dtype, device=device)
        syy = torch.zeros(teacher.n_outputs, teacher.n_outputs, dtype=dtype, device=device)
        for start in range(0, n_samples, _CHUNK):
            x, y = _draw(w_star, noise, min(_CHUNK, n_samples - start), gen, dtype, device)
            sxx += x.T @ x
            syx += y.T @ x
            syy += y.T @ y
        fixed = (sxx / n_samples, syx / n_samples, syy / n_samples)
        data_mode = "full_batch"
    else:
        fixed = None
        data_mode = "online" if n_samples is None else "minibatch"
        if n_samples is not None:
            x_data, y_data = _draw(w_star, noise, n_samples, gen, dtype, device)
    config = {"rule": spec.to_dict(), "n_inputs": teacher.n_inputs, "n_hidden": k, "n_outputs": teacher.n_outputs,
              "teacher_rank": teacher.rank, "teacher_noise_std": noise, "steps": int(steps), "init": init,
              "init_scale": init_scale, "feedback_init_scale": feedback_init_scale, "n_samples": n_samples,
              "batch_size": batch_size, "data": data_mode, "seed": seed, "dtype": str(dtype),
              "initial_weights_given": bool(initial_weights)}
    log.info("simulate %s: %s, %d steps, lr %g, feedback lr %g", spec.label, data_mode, steps, spec.lr,
             spec.feedback_lr)

    f0 = feedback_operator(spec, state)
    records: dict[str, list[torch.Tensor]] = {}
    train_losses: list[torch.Tensor] = []
    rec_set = set(rec.tolist())
    perm, cursor = None, 0
    for t in progress_bar(range(steps + 1), disable=not progress, desc=spec.label):
        if spec.reinit_every and 0 < t < steps and t % spec.reinit_every == 0:
            state["P"], state["Q"] = svd_feedback(state["W2"], spec.rank)
        if fixed is not None:
            stats = fixed
        elif x_data is None:
            stats = _moments(*_draw(w_star, noise, batch_size, gen, dtype, device))
        else:
            if perm is None or cursor + batch_size > n_samples:
                perm = torch.randperm(n_samples, generator=gen, device=device)
                cursor = 0
            idx = perm[cursor: cursor + batch_size]
            cursor += batch_size
            stats = _moments(x_data[idx], y_data[idx])
        if t in rec_set:
            for name, value in diagnostics(spec, state, w_star, u, v, s, n_modes, n_angles, teacher.floor,
                                           f0=f0).items():
                records.setdefault(name, []).append(value)
            if data_mode != "population":
                w1, w2 = state["W1"], state["W2"]
                m_ = w2 @ w1
                sxx, syx, syy = stats
                train_losses.append(0.5 * ((m_ @ sxx * m_).sum() - 2 * (m_ * syx).sum() + torch.trace(syy)))
        if t == steps:
            break
        inc = increments(spec, state, *stats)
        state = {name: (value + inc[name] if name in inc else value) for name, value in state.items()}

    stacked = {name: torch.stack(values) for name, values in records.items()}
    extra = {"train_loss": torch.stack(train_losses)} if train_losses else None
    final = float(stacked["loss"][-1])
    if not math.isfinite(final):
        log.warning("simulate %s diverged (final loss %s): lower lr / feedback_lr", spec.label, final)
    ds = build_dataset(stacked, rec, spec, teacher, k, config, "simulation", extra)
    if "train_loss" in ds:
        ds["train_loss"].attrs["long_name"] = "loss on the training set (full batch) or on the current batch"
    return ds
