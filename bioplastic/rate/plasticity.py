"""Plasticity of the rate network: one table entry per feedback-learning mode, for both backends.

Each mode of :mod:`bioplastic.rules` (``fixed``, ``q_only``, ``local``, ``oja``) is one :class:`RateForm`: its
torch increments, which call the rules' maths (:mod:`bioplastic.rules.low_rank`), and its brian2 equations, built
from the same entry. *Which* factor learns is the rule's decision (``rule.learns_p`` / ``rule.learns_q``); this table
only writes the rate forms (a test checks that it has a P form exactly where the rule learns P).

Signs. The rules' functions return descent gradients in the error ``delta = dL/dy`` and ``z = delta P``; the rate
network carries the teaching signal ``t = -delta`` (``e = y - r_out``) and ``z = t P``. The rate increment per unit
time is therefore ``-gradient(delta=-t, z=-z, h=r)`` (for the bilinear Kolen-Pollack and local forms this is
``gradient(t, z, r)``; Oja's is quadratic in the error, so only the outer sign flips).

Oja's rule is **not trace-normalised here**, unlike in the autograd executor, for two reasons:

- *locality*: the normaliser ``tr C = sum_k <t_k^2>`` is a sum over every source unit, a population-level quantity
  that no synapse of ``P`` sees (each sees its own ``t_i`` and ``z_j``, plus ``z P^T`` through its own
  reconstruction pathway); the autograd executor has the whole batch at hand;
- *continuous online time*: with one trial at a time the batch covariance is the instantaneous outer product
  ``t^T t``, whose trace ``|t|^2`` shrinks as the network learns; dividing by it would make ``P`` move as fast for a
  nearly-learned digit as for a wrong one (and divide by ~0 when the error vanishes).

The rate form is ``dP/dt = eta_P (C P - P P^T C P)`` with ``C = <t^T t>`` unnormalised (``t`` and ``z``
dimensionless rates, ``eta_P`` in 1/second), i.e. exactly ``tr C`` times the descent direction of the
trace-normalised rule: :func:`oja_increment` equals ``-trace * oja_subspace_gradient(C P, P^T C P, P, trace)``
(tested), and its stability needs ``eta_P dt |t|^2 << 1`` instead of the optimiser's ``lr < 1``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bioplastic.rules.low_rank import kolen_pollack_q_gradient, local_p_gradient, oja_subspace_gradient
from bioplastic.rules.ops import DenseOps

__all__ = ["RateForm", "RATE_FORMS", "rate_form", "kolen_pollack_increment", "local_p_increment", "oja_increment"]


# ------------------------------------------------------------------------------------------ torch increments
def kolen_pollack_increment(z: torch.Tensor, rate: torch.Tensor, q: torch.Tensor, decay: float) -> torch.Tensor:
    """Kolen-Pollack ``Q`` (``q_only``, ``local``, ``oja``): ``<z^T r> - lambda Q``, i.e.
    ``-kolen_pollack_q_gradient`` (:func:`bioplastic.rules.low_rank.kolen_pollack_q_gradient`, ``grad_Q = z^T h``
    with the rules' ``z = delta P = -z``) over the trials, minus the decay; ``h`` is the rate of the hidden
    population that receives the apical input (the input of the forward matrix ``Q`` mirrors).

    ``z`` (B, r), ``rate`` (B, n), ``q`` (r, n) -> (r, n). Kolen & Pollack (1994); Akrout et al. (2019).
    """
    return -kolen_pollack_q_gradient(DenseOps(None, rate), -z, q) / z.shape[0] - decay * q


def local_p_increment(teach: torch.Tensor, pairs, p: torch.Tensor, decay: float) -> torch.Tensor:
    """The synapse-local ``P`` rule: ``<t^T sum_j r_j Q_j^T> - lambda P``, i.e. ``-local_p_gradient``
    (:func:`bioplastic.rules.low_rank.local_p_gradient`, ``grad_P = delta^T (h Q^T)`` with ``delta = -t``) summed
    over the hidden populations ``j`` the feedback population serves (``pairs``: ``(r_j, Q_j)``; the drive
    ``r_j Q_j^T`` reaches the feedback units through ``Q_j``'s synapses), trial mean, minus the decay.

    ``teach`` (B, n_src), ``p`` (n_src, r) -> (n_src, r). Hanut & Kadmon (2025), v4.
    """
    grad = sum(local_p_gradient(DenseOps(-teach, rate), p, q) for rate, q in pairs)
    return -grad / teach.shape[0] - decay * p


def oja_increment(teach: torch.Tensor, z: torch.Tensor, p: torch.Tensor, decay: float = 0.0, pairs=()) -> torch.Tensor:
    """Oja's subspace rule on the teaching signal, unnormalised: ``C P - P (P^T C P)`` with ``C P = <t^T z>`` and
    ``P^T C P = <z^T z>`` read from the feedback units (``z = t P`` once they have settled), i.e.
    ``-oja_subspace_gradient(<t^T z>, <z^T z>, P, 1)`` (:func:`bioplastic.rules.low_rank.oja_subspace_gradient`).
    Not trace-normalised: see the module docstring. ``decay`` and ``pairs`` are not used (Oja's rule keeps ``P``
    bounded; it reads the feedback units, not the drive through ``Q``).

    ``teach`` (B, n_src), ``z`` (B, r), ``p`` (n_src, r) -> (n_src, r). Oja (1982, 1989).
    """
    n = teach.shape[0]
    return -oja_subspace_gradient((teach.T @ z) / n, (z.T @ z) / n, p, 1.0)


# ------------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class RateForm:
    """One feedback-learning mode of the rules, written for the rate network.

    Attributes
    ----------
    mode : str
        The rules' name (``fixed``, ``q_only``, ``local``, ``oja``).
    p_increment, q_increment : callable or None
        Torch increments per unit rate and time: ``p_increment(teach, second, P, lambda)`` with ``second`` the
        feedback units' ``z`` (Oja) or the pairs ``(r_j, Q_j)`` of the hidden populations served (the local rule,
        whose drive ``sum_j r_j Q_j^T`` travels back through ``Q``'s synapses), and ``q_increment(z, r, Q,
        lambda)``; None where the factor is frozen.
    p_reads_drive : bool
        ``p_increment`` takes the pairs ``(r_j, Q_j)`` (the local rule) rather than ``z``.
    p_fan_in : {"targets", "source"} or None
        What divides ``eta_fb`` for ``P`` under ``learning_rate_scaling="fan_in"``: the width of the hidden
        population(s) served (local rule, the fan-in of the forward matrix it mirrors) or the size of the source
        population (Oja: its own fan-in).
    brian2_p, brian2_q : str
        brian2 synaptic equation of ``p`` (pre: the source population, post: the feedback units) and of ``q``
        (pre: the feedback units, post: a hidden population); ``{drive}`` is replaced by the summed drive.
    brian2_p_summed, brian2_q_summed : tuple of str
        Extra summed variables of the ``P`` synapses (Oja's reconstruction ``z P^T`` at the source) and of each
        ``Q`` synapse (the local rule's drive, ``{k}`` the index of the target).
    brian2_source_variables, brian2_unit_variables : tuple of str
        Extra neuron variables of the source population and of the feedback units (``{k}`` per target).
    """

    mode: str
    p_increment: Callable[..., torch.Tensor] | None = None
    q_increment: Callable[..., torch.Tensor] | None = None
    p_reads_drive: bool = False
    p_fan_in: str | None = None
    brian2_p: str = "p : 1"
    brian2_q: str = "q : 1"
    brian2_p_summed: tuple[str, ...] = ()
    brian2_q_summed: tuple[str, ...] = ()
    brian2_source_variables: tuple[str, ...] = ()
    brian2_unit_variables: tuple[str, ...] = ()


_GATE = "eta_fb * plasticity_gate(t)"
_KOLEN_POLLACK_Q = f"dq/dt = {_GATE} * (z_pre * r_post - lambda_fb * q) : 1 (clock-driven)"

#: The rate form of every feedback-learning mode (one entry each; both backends read it).
RATE_FORMS: dict[str, RateForm] = {form.mode: form for form in (
    RateForm("fixed"),
    RateForm("q_only", q_increment=kolen_pollack_increment, brian2_q=_KOLEN_POLLACK_Q),
    RateForm("local", p_increment=local_p_increment, q_increment=kolen_pollack_increment, p_reads_drive=True,
             p_fan_in="targets",
             brian2_p=f"dp/dt = {_GATE} * (teach_pre * ({{drive}}) - lambda_fb * p) : 1 (clock-driven)",
             brian2_q=_KOLEN_POLLACK_Q, brian2_q_summed=("ffdrive_{k}_pre = q * r_post : 1 (summed)",),
             brian2_unit_variables=("ffdrive_{k} : 1",)),
    RateForm("oja", p_increment=oja_increment, q_increment=kolen_pollack_increment, p_fan_in="source",
             brian2_p=f"dp/dt = {_GATE} * (teach_pre - recon_pre) * z_post : 1 (clock-driven)",
             brian2_q=_KOLEN_POLLACK_Q, brian2_p_summed=("recon_pre = p * z_post : 1 (summed)",),
             brian2_source_variables=("recon : 1",)),
)}


def rate_form(rule, *, learn: bool = True) -> RateForm:
    """The :class:`RateForm` of ``rule.feedback_learning`` (the ``fixed`` form when ``learn`` is False)."""
    return RATE_FORMS[rule.feedback_learning if learn else "fixed"]
