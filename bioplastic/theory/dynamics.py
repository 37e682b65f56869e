"""One definition of every rule's learning dynamics for the two-layer linear student.

The student is ``y_hat = W2 W1 x`` with ``W1`` of shape ``(k, n)`` and ``W2`` of shape ``(m, k)`` (PyTorch's
``(out, in)``), trained on the MSE ``L = 0.5 <||W2 W1 x - y||^2>``. Everything a rule needs is a function of the
second moments of the data, ``Sxx = <x x^T>`` (n, n), ``Syx = <y x^T>`` (m, n) and ``Syy = <y y^T>`` (m, m): of a
minibatch, of a whole data set, or of the population (``Sxx = I``, ``Syx = W*``, ``Syy = W* W*^T + sigma^2 I``).
:func:`increments` returns the change of every parameter in one gradient step; the simulation
(:func:`bioplastic.theory.simulate`) applies it, the gradient flow (:func:`bioplastic.theory.gradient_flow`)
integrates ``d theta / d t = increments(theta)`` with ``t`` counted in steps (``tau = 1 / lr`` steps).

With ``M = W2 W1``, ``E = M Sxx - Syx = <e x^T>`` (``e = y_hat - y``, the output error ``delta`` of ``W2``),
``h = W1 x`` and ``F`` (m, k) the rule's feedback operator (the hidden layer receives ``g_in = e F``):

============================== ==================================================================
quantity                       formula
============================== ==================================================================
``grad_W2 = <e^T h>``          ``G2 = E W1^T``
``grad_W1 = <g_in^T x>``       ``G1 = F^T E``
error covariance ``<e e^T>``   ``C = E M^T - M Syx^T + Syy``
``F``, bp                      ``W2`` (weight transport)
``F``, fa / dfa / kp           ``B`` (shape of ``W2``; for one hidden layer DFA's ``D`` is FA's ``B``)
``F``, sign_symmetry           ``s sign(W2)``, ``s = mean |W2|`` or 1
``F``, ldfa / direct_ldfa      ``P Q``, ``P`` (m, r), ``Q`` (r, k)
============================== ==================================================================

Feedback learning (docs/rules.md, written for this student; ``eta_B`` the feedback learning rate
(``feedback_lr``; ``P`` may learn at its own ``feedback_lr_p``), ``lambda_B`` the feedback weight decay, every
gradient applied by plain descent):

- ``kolen_pollack``: ``grad_B = G2 + lambda_B B``.
- ``q_only``: ``grad_Q = P^T G2 + lambda_B Q`` (``(delta P)^T h``), ``P`` frozen.
- ``normative``: ``grad_P = (P Q - W2) Q^T``, ``grad_Q = P^T (P Q - W2)`` (+ ``lambda_B``). In the paper's column
  convention (``Q_c = Q^T`` of shape (k, r), ``P_c = P^T`` of shape (r, m), ``B_c = Q_c P_c = F^T``) this is
  exactly ``tau_B dQ_c/dt = (W2^T - Q_c P_c) P_c^T``, ``tau_B dP_c/dt = Q_c^T (W2^T - Q_c P_c)`` (section 3).
- ``local``: ``grad_P = G2 Q^T`` (``delta^T (h Q^T)``), ``grad_Q = P^T G2`` (``(delta P)^T h``) (+ ``lambda_B``);
  with ``error_normalization="trace"`` the error is divided by its RMS, ``G2 / sqrt(tr C)`` (a normalised
  teaching signal for the feedback weights, the role Adam's normalisation plays in the authors' runs).
- ``oja``: ``grad_P = -(C_n P - P (P^T C_n P))`` (Oja's subspace rule, Oja 1989), ``C_n = C / tr C`` (or ``C``
  unnormalised), and the Kolen-Pollack-like ``grad_Q = P^T G2`` (+ ``lambda_B`` on both). ``C`` is the error
  covariance ``<e e^T>`` (``oja_covariance="error"``, default) or the output covariance ``Syy = <y y^T>``
  (``"targets"``: the paper's theory, ICLR 2025 Eq. 8, and the authors' v1 code with one-hot labels at the
  output). Default ``error_normalization``: ``"trace"`` for ``oja``, ``"none"`` for ``local`` (as the rule
  core).

None of these formulas is restated here: :func:`increments` calls the rule object's own methods
(:meth:`bioplastic.rules.Rule.feedback_matrix` for ``F``, :meth:`bioplastic.rules.Rule.feedback_gradients` for the
feedback parameters), the methods the torch executor calls, with the population moments factorised as rows: in
:class:`bioplastic.rules.ops.DenseOps` the error rows are ``E^T`` (n, m) and the input rows ``W1^T`` (n, k), so
``delta^T h`` is ``E W1^T = <e h^T>``; Oja's rule gets its covariance ``C`` and normaliser directly. Which
parameters learn is the rule's :meth:`~bioplastic.rules.Rule.learns`.

Source: Hanut & Kadmon (2025), "Training Large Neural Networks With Low-Dimensional Error Feedback",
arXiv:2502.20580; BP mode dynamics: Saxe, McClelland & Ganguli (2014), ICLR.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Literal

import torch

from bioplastic import rules as _rules
from bioplastic._checks import check_choice, check_positive_int
from bioplastic.rules import FEEDBACK_LEARNING, RULE_NAMES
from bioplastic.rules.low_rank import KOLEN_POLLACK_MODES, svd_factors
from bioplastic.rules.ops import DenseOps

__all__ = ["RULE_NAMES", "FEEDBACK_LEARNING", "ERROR_NORMALIZATIONS", "INITS", "SIGN_SCALES", "RuleSpec",
           "make_rule_spec", "rule_label", "increments", "feedback_operator", "initial_state", "svd_feedback"]

#: Rules the linear theory implements (for a student with one hidden layer the "direct" variants coincide with
#: their layer-wise counterparts, as the output error is the delta of ``W2``; DRTP's teaching signal is the
#: target, not an error, and is not part of this theory).
THEORY_RULES = ("bp", "fa", "dfa", "sign_symmetry", "kolen_pollack", "ldfa", "direct_ldfa")
ERROR_NORMALIZATIONS = ("trace", "none")
#: Covariance source of ``oja`` in the theory: the error ``<e e^T>`` or the output covariance ``Syy``.
OJA_COVARIANCES = ("error", "targets")
INITS = ("random", "decoupled")
SIGN_SCALES = ("mean_abs", "unit")

Rule = Literal["bp", "fa", "dfa", "sign_symmetry", "kolen_pollack", "ldfa", "direct_ldfa"]
FeedbackLearning = Literal["fixed", "q_only", "normative", "local", "oja"]
ErrorNormalization = Literal["trace", "none"]
Init = Literal["random", "decoupled"]


def _check_rate(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class RuleSpec:
    """A validated rule with the hyper-parameters the linear theory uses (see :func:`make_rule_spec`)."""

    rule: str
    feedback_learning: str | None
    rank: int
    lr: float
    feedback_lr: float
    feedback_lr_p: float
    weight_decay: float
    feedback_weight_decay: float
    error_normalization: str
    sign_scale: str
    reinit_every: int | None
    oja_covariance: str = "error"

    @property
    def label(self) -> str:
        """Readable label for the ``rule`` coordinate (``"bp"``, ``"ldfa_normative"``, ...)."""
        return rule_label(self.rule, self.feedback_learning)

    @functools.cached_property
    def rule_object(self) -> _rules.Rule:
        """The :class:`bioplastic.rules.Rule` whose maths the theory calls."""
        if self.low_rank:
            return _rules.make(self.rule, rank=self.rank, feedback_learning=self.feedback_learning,
                               oja_covariance=self.oja_covariance if self.feedback_learning == "oja" else "auto")
        if self.rule == "sign_symmetry":
            return _rules.make(self.rule, scale=self.sign_scale)
        return _rules.make(self.rule)

    @property
    def low_rank(self) -> bool:
        return _rules.rule_class(self.rule).low_rank

    def feedback_names(self) -> tuple[str, ...]:
        """Names of the feedback parameters in the state (``()``, ``("B",)`` or ``("P", "Q")``): the rule's,
        with a single feedback matrix called ``B`` (DFA's ``D`` of the one hidden layer is FA's ``B``)."""
        names = _rules.rule_class(self.rule).feedback_names
        return ("B",) if len(names) == 1 else names

    def learns(self, name: str) -> bool:
        """Whether the state's feedback parameter ``name`` learns (the rule's :meth:`~bioplastic.rules.Rule.learns`)."""
        rule = self.rule_object
        return rule.learns(rule.feedback_names[self.feedback_names().index(name)])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def rule_label(rule: str, feedback_learning: str | None = None) -> str:
    """``"ldfa_normative"`` for LDFA-type rules, the rule name otherwise."""
    low_rank = rule in RULE_NAMES and _rules.rule_class(rule).low_rank
    return f"{rule}_{feedback_learning}" if low_rank and feedback_learning else rule


def make_rule_spec(rule: Any, *, n_outputs: int, n_hidden: int, rank: int | None = None,
                   feedback_learning: str | None = None, lr: float = 2.5e-3, feedback_lr: float | None = None,
                   weight_decay: float = 0.0, feedback_weight_decay: float | None = None,
                   error_normalization: str | None = None, sign_scale: str | None = None,
                   reinit_every: int | None = None, feedback_lr_p: float | None = None,
                   oja_covariance: str | None = None) -> RuleSpec:
    """Validate a rule name (or a :class:`bioplastic.rules.Rule` object) and its options.

    A ``Rule`` object supplies ``rank`` (or ``rank_fraction`` of ``n_outputs``), ``feedback_learning``,
    ``feedback_lr``, ``feedback_weight_decay``, ``reinit_every``, ``scale`` and ``oja_covariance``; keyword
    arguments given explicitly (not ``None``) override them. ``oja_covariance``: ``"error"`` (default) or
    ``"targets"`` (``Syy``, the paper's form); a ``Rule``'s ``"auto"`` means the default here.
    ``error_normalization`` defaults to ``"trace"`` for ``oja`` on the error (the rule core's choice) and to
    ``"none"`` for ``oja`` on ``Syy`` (the paper's Eq. 8, ``tau_P dP/dt = (I - P P^T) Syy P`` in the row
    convention) and for ``local``.

    Raises
    ------
    ValueError
        Unknown rule / feedback_learning / error_normalization / sign_scale (listing the allowed values);
        ``rank`` outside ``1 .. min(n_outputs, n_hidden)``; negative or non-finite rates; ``reinit_every``
        with a rule other than normative LDFA; ``normative`` with ``direct_ldfa``; a ``Rule`` with
        ``error_clamp`` (an elementwise clamp has no place in the linear theory).
    """
    if not isinstance(rule, str):  # a bioplastic.rules.Rule
        cfg = rule.to_dict() if hasattr(rule, "to_dict") else None
        if cfg is None or "name" not in cfg:
            raise ValueError(f"rule must be a rule name or a bioplastic.rules.Rule, got {rule!r}")
        if cfg.get("error_clamp") is not None:
            raise ValueError("the linear theory has no elementwise error clamp; use error_clamp=None")
        if cfg.get("rank") is None and cfg.get("rank_fraction") is not None:
            cfg["rank"] = max(1, math.ceil(cfg["rank_fraction"] * n_outputs))
        rank = cfg.get("rank") if rank is None else rank
        feedback_learning = feedback_learning or cfg.get("feedback_learning")
        feedback_lr = feedback_lr if feedback_lr is not None else cfg.get("feedback_lr")
        if feedback_weight_decay is None:
            feedback_weight_decay = cfg.get("feedback_weight_decay")
        reinit_every = reinit_every if reinit_every is not None else cfg.get("reinit_every")
        sign_scale = sign_scale or cfg.get("scale")
        if oja_covariance is None and cfg.get("oja_covariance") not in (None, "auto"):
            oja_covariance = cfg["oja_covariance"]
        if cfg.get("oja_centre"):
            raise ValueError("the linear theory's inputs have zero mean: oja_centre changes nothing there; "
                             "use oja_centre=False")
        rule = cfg["name"]
    check_choice("rule", rule, RULE_NAMES)
    check_choice("rule (linear theory)", rule, THEORY_RULES)
    m = check_positive_int("n_outputs", n_outputs)
    k = check_positive_int("n_hidden", n_hidden)
    if rank is None:
        rank = 2
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= min(m, k):
        raise ValueError(f"rank {rank!r} out of range: the feedback rank must be an integer in "
                         f"1 .. min(n_outputs, n_hidden) = {min(m, k)}")
    low_rank = _rules.rule_class(rule).low_rank
    if low_rank:
        feedback_learning = feedback_learning or ("normative" if rule == "ldfa" else "local")
        check_choice(f"{rule} feedback_learning", feedback_learning, FEEDBACK_LEARNING)
        if rule == "direct_ldfa" and feedback_learning == "normative":
            raise ValueError("direct_ldfa has no forward matrix for P Q to approximate: feedback_learning "
                             "'normative' is allowed only with rule 'ldfa'")
    elif feedback_learning is not None:
        raise ValueError(f"feedback_learning applies only to 'ldfa' and 'direct_ldfa', not to {rule!r}")
    lr = _check_rate("lr", lr, positive=True)
    feedback_lr = lr if feedback_lr is None else _check_rate("feedback_lr", feedback_lr, positive=True)
    feedback_lr_p = feedback_lr if feedback_lr_p is None else _check_rate("feedback_lr_p", feedback_lr_p,
                                                                          positive=True)
    weight_decay = _check_rate("weight_decay", weight_decay, positive=False)
    if feedback_weight_decay is None:  # q_only / oja: Kolen-Pollack's Q decays like W (the rule core's default)
        feedback_weight_decay = weight_decay if feedback_learning in KOLEN_POLLACK_MODES else None
    feedback_weight_decay = _check_rate("feedback_weight_decay", 0.0 if feedback_weight_decay is None
                                        else feedback_weight_decay, positive=False)
    oja_covariance = "error" if oja_covariance is None else oja_covariance
    check_choice("oja_covariance", oja_covariance, OJA_COVARIANCES)
    if oja_covariance != "error" and feedback_learning != "oja":
        raise ValueError(f"oja_covariance applies only to feedback_learning='oja', not {feedback_learning!r}")
    if error_normalization is None:  # the rule core's choices: oja normalises, local does not; Syy: the paper's
        error_normalization = ("none" if oja_covariance == "targets"
                               else "trace" if feedback_learning == "oja" else "none")
    check_choice("error_normalization", error_normalization, ERROR_NORMALIZATIONS)
    sign_scale = sign_scale or "mean_abs"
    check_choice("sign_scale", sign_scale, SIGN_SCALES)
    if reinit_every is not None:
        if not (rule == "ldfa" and feedback_learning == "normative"):
            raise ValueError("reinit_every applies only to rule 'ldfa' with feedback_learning='normative'")
        reinit_every = check_positive_int("reinit_every", reinit_every)
    return RuleSpec(rule=rule, feedback_learning=feedback_learning if low_rank else None, rank=rank,
                    lr=lr, feedback_lr=feedback_lr, feedback_lr_p=feedback_lr_p, weight_decay=weight_decay,
                    feedback_weight_decay=feedback_weight_decay, error_normalization=error_normalization,
                    sign_scale=sign_scale, reinit_every=reinit_every, oja_covariance=oja_covariance)


def feedback_operator(spec: RuleSpec, state: dict[str, torch.Tensor],
                      output_basis: torch.Tensor | None = None) -> torch.Tensor:
    """The matrix ``F`` (m, k) through which the hidden layer receives the error, ``g_in = e F``.

    ``F^T`` is the paper's ``B`` (k, m) in the column convention (``W2^T`` for BP, ``Q_c P_c`` for LDFA).
    ``output_basis`` (m, m): the state's output coordinates are ``U^T`` (neurons); only sign symmetry, which is
    not rotation covariant (the sign is taken synapse by synapse), needs it: ``F = U^T s sign(U W2')``.
    """
    rule = spec.rule_object
    w2 = state["W2"]
    feedback = [state[name] for name in spec.feedback_names()]
    if output_basis is None or rule.rotation_covariant:
        return rule.feedback_matrix(w2, feedback)
    return output_basis.T @ rule.feedback_matrix(output_basis @ w2, feedback)


def increments(spec: RuleSpec, state: dict[str, torch.Tensor], sxx: torch.Tensor | None, syx: torch.Tensor,
               syy: torch.Tensor, output_basis: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Change of every learned parameter in one gradient step (``-lr * grad``), from the data moments.

    Parameters
    ----------
    spec : RuleSpec
    state : dict of str to torch.Tensor
        ``W1`` (k, n), ``W2`` (m, k) and the feedback parameters (:meth:`RuleSpec.feedback_names`).
        Not modified.
    sxx, syx, syy : torch.Tensor
        ``<x x^T>`` (n, n), ``<y x^T>`` (m, n), ``<y y^T>`` (m, m) of the batch (or population);
        ``sxx=None`` stands for the identity (white inputs, population).
    output_basis : torch.Tensor, optional
        For a state in rotated output coordinates (see :func:`feedback_operator`).

    Returns
    -------
    dict of str to torch.Tensor
        Increments for ``W1``, ``W2`` and every *learned* feedback parameter (frozen ones are absent).
    """
    w1, w2 = state["W1"], state["W2"]
    m_ = w2 @ w1
    e = (m_ if sxx is None else m_ @ sxx) - syx   # <e x^T>, (m, n)
    g2 = e @ w1.T                           # <e h^T> = grad_W2, (m, k)
    f = feedback_operator(spec, state, output_basis)  # (m, k)
    g1 = f.T @ e                            # <g_in^T x>, (k, n)
    lr, flr = spec.lr, spec.feedback_lr
    wd, fwd = spec.weight_decay, spec.feedback_weight_decay
    out = {"W2": -lr * (g2 + wd * w2) if wd else -lr * g2,
           "W1": -lr * (g1 + wd * w1) if wd else -lr * g1}
    names = spec.feedback_names()
    need = tuple(spec.learns(name) for name in names)
    if any(need):
        rows = e.T                          # the population's error rows: rows^T W1^T = <e h^T> = grad_W2
        covariance = None
        if spec.feedback_learning == "local" and spec.error_normalization == "trace":  # delta / sqrt(tr <e e^T>)
            tr = torch.trace(e @ m_.T - m_ @ syx.T + syy)
            rows = rows / torch.sqrt(torch.clamp(tr, min=torch.finfo(tr.dtype).tiny))
        elif spec.feedback_learning == "oja":  # error covariance <e e^T> or the output covariance Syy (Eq. 8)
            c = syy if spec.oja_covariance == "targets" else e @ m_.T - m_ @ syx.T + syy
            covariance = (c, spec.error_normalization == "trace")
        ops = DenseOps(rows, w1.T, covariance=covariance)
        grads = spec.rule_object.feedback_gradients(ops, w2, [state[name] for name in names], need, grad_w=g2)
        for name, grad in zip(names, grads):
            if grad is not None:
                rate = spec.feedback_lr_p if name == "P" else flr
                out[name] = -rate * (grad + fwd * state[name]) if fwd else -rate * grad
    return out


def svd_feedback(w2: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``P = U_r sqrt(S_r)``, ``Q = sqrt(S_r) V_r^T`` from the truncated SVD of ``W2`` (Eckart-Young init):
    :func:`bioplastic.rules.low_rank.svd_factors`, the normative rule's start in the torch executor too."""
    return svd_factors(w2, rank)


def _orthonormal(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """Random (rows, cols) matrix with orthonormal columns (rows >= cols) or rows (rows < cols), Haar."""
    tall = rows >= cols
    a, b = (rows, cols) if tall else (cols, rows)
    g = torch.randn(a, b, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    d = torch.sign(torch.diagonal(r))
    d[d == 0] = 1
    q = q * d
    return q if tall else q.T


def initial_state(spec: RuleSpec, teacher, n_hidden: int, *, init: str = "random", init_scale: float = 0.1,
                  feedback_init_scale: float = 1.0, seed: int = 0,
                  initial_weights: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """Initial parameters (float64, CPU), identical for the simulation and the gradient flow.

    - ``init="random"``: ``W1`` entries ``N(0, init_scale^2 / n)``, ``W2`` entries ``N(0, init_scale^2 / k)``
      (each layer's singular values of order ``init_scale``; the product's of order ``init_scale^2``).
    - ``init="decoupled"`` (Saxe et al. 2014): ``W1 = O diag(a) V_p^T``, ``W2 = U_p diag(a) O^T`` with ``O`` a
      random orthonormal (k, p) basis, ``a = init_scale`` for the ``p = min(rank of teacher, k)`` modes: every
      mode starts with strength ``u_0 = init_scale^2`` and BP keeps the modes decoupled and balanced.
    - Feedback: ``B`` (fa, dfa, kolen_pollack) entries ``N(0, feedback_init_scale^2 / k)``; LDFA ``P`` random
      orthonormal columns (m, r) and ``Q = feedback_init_scale x`` random orthonormal rows (r, k), so the
      ``r`` non-zero singular values of ``P Q`` equal ``feedback_init_scale``; ``normative`` starts from the
      truncated SVD of ``W2`` (:func:`svd_feedback`).

    Raises
    ------
    ValueError
        Bad ``init``; negative or non-finite scales; ``initial_weights`` with unknown keys, wrong shapes or
        non-finite values.
    """
    check_choice("init", init, INITS)
    init_scale = _check_rate("init_scale", init_scale, positive=False)
    feedback_init_scale = _check_rate("feedback_init_scale", feedback_init_scale, positive=False)
    m, n, k, r = teacher.n_outputs, teacher.n_inputs, n_hidden, spec.rank
    gen = torch.Generator().manual_seed(int(seed))
    if init == "random":
        w1 = torch.randn(k, n, generator=gen, dtype=torch.float64) * (init_scale / math.sqrt(n))
        w2 = torch.randn(m, k, generator=gen, dtype=torch.float64) * (init_scale / math.sqrt(k))
    else:
        p = min(teacher.rank, k)
        o = _orthonormal(k, p, gen) if p else torch.zeros(k, 0, dtype=torch.float64)
        w1 = init_scale * o @ teacher.V[:, :p].T
        w2 = init_scale * teacher.U[:, :p] @ o.T
    state = {"W1": w1, "W2": w2}
    if initial_weights:
        from bioplastic._checks import check_finite

        for key, value in initial_weights.items():
            check_choice("initial_weights key", key, ("W1", "W2"))
            value = torch.as_tensor(value).detach().to("cpu", torch.float64).clone()
            expected = tuple(state[key].shape)
            if tuple(value.shape) != expected:
                raise ValueError(f"initial_weights[{key!r}] has shape {tuple(value.shape)}, expected {expected} "
                                 f"(n_outputs={m}, n_hidden={k}, n_inputs={n})")
            check_finite(f"initial_weights[{key!r}]", value)
            state[key] = value
    if spec.feedback_names() == ("B",):
        state["B"] = torch.randn(m, k, generator=gen, dtype=torch.float64) * (feedback_init_scale / math.sqrt(k))
    elif spec.low_rank:
        if spec.rule_object.starts_at_svd:
            state["P"], state["Q"] = svd_feedback(state["W2"], r)
        else:
            state["P"] = _orthonormal(m, r, gen)
            state["Q"] = feedback_init_scale * _orthonormal(r, k, gen)
    return state
