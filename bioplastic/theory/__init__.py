"""Linear teacher-student theory of learning with low-dimensional error feedback.

A two-layer linear student ``y_hat = W2 W1 x`` learns a linear teacher ``y = W* x`` with backprop, feedback
alignment or LDFA (Hanut & Kadmon 2025, arXiv:2502.20580). Two executors share one definition of every rule
(:mod:`bioplastic.theory.dynamics`):

- :func:`simulate`: gradient descent on sampled data (population, full batch, minibatch or online);
- :func:`gradient_flow`: the gradient-flow ODE in the teacher's singular basis (exact for white inputs), and for
  BP from a decoupled start the closed-form sigmoids of Saxe, McClelland & Ganguli (2014)
  (:func:`saxe_mode_strength`); Oja's feedback subspace on ``Syy`` in closed form
  (:func:`oja_subspace_closed_form`).

Both return an ``xarray.Dataset`` with dims ``rule``, ``step``, ``mode``, ``direction``: loss, normalised mode
strengths ``[U^T W2 W1 V]_jj / s_j``, cross-talk, principal angles of the feedback subspace, and the loss of the
best rank-r approximation of the teacher as a reference line.

>>> from bioplastic import theory
>>> teacher = theory.random_teacher(8, 12, [4.0, 2.0, 1.0], seed=0)
>>> ds = theory.gradient_flow("bp", teacher, n_hidden=8, steps=2000, lr=0.01, init="decoupled")
>>> bool(ds.mode_strength.isel(step=-1).min() > 0.99)
True
"""
from bioplastic.theory.dynamics import (
    ERROR_NORMALIZATIONS, FEEDBACK_LEARNING, INITS, RULE_NAMES, THEORY_RULES, RuleSpec, increments, initial_state,
    make_rule_spec, rule_label,
)
from bioplastic.theory.experiment import compare_rules, parse_rule_label, rule_labels, teacher_from_spec
from bioplastic.theory.ode import FEEDBACK_METHODS, METHODS, gradient_flow, oja_subspace_closed_form, saxe_mode_strength
from bioplastic.theory.simulation import record_steps, simulate
from bioplastic.theory.teachers import Teacher, as_teacher, paper_teacher, random_teacher

__all__ = [
    "simulate", "gradient_flow", "saxe_mode_strength", "Teacher", "as_teacher", "random_teacher",
    "paper_teacher", "rule_label", "make_rule_spec", "RuleSpec", "increments", "initial_state", "record_steps",
    "compare_rules", "parse_rule_label", "rule_labels", "teacher_from_spec", "RULE_NAMES", "FEEDBACK_LEARNING",
    "THEORY_RULES", "ERROR_NORMALIZATIONS", "INITS", "METHODS", "FEEDBACK_METHODS", "oja_subspace_closed_form",
]
