"""The parts of a rate network's description: neuron populations and the feedback population (with its rule).

A leaf of :mod:`bioplastic.rate`: the network (:mod:`bioplastic.rate.network`), the protocol, the backends and the
dispatcher import it; it imports none of them.

The feedback population speaks the vocabulary of :mod:`bioplastic.rules`: it takes a rule object,
``bioplastic.rules.make("direct_ldfa", rank=10, feedback_learning="oja")`` (one feedback population fed by the
output error, projecting to every hidden population) or ``bioplastic.rules.make("ldfa", ...)`` (one feedback
population per hidden population, fed by the teaching signal of the population above). The rate network's
earlier dialect (``FeedbackPopulation(rank, wiring="direct", learning="kolen_pollack")``) still works in this
release and warns (``DeprecationWarning``) with the spelling that replaces it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from bioplastic import rules as _rules
from bioplastic._checks import check_choice, check_positive_int
from bioplastic.rate.activations import ACTIVATIONS
from bioplastic.rate.units import to_si
from bioplastic.rules.low_rank import LDFA

__all__ = ["Population", "FeedbackPopulation", "Projection", "FeedbackGroup", "ERROR_POPULATION", "RATE_RULES",
           "FEEDBACK_LEARNING", "FEEDBACK_RULES", "WIRINGS", "DEFAULT_RULE", "legacy_rule"]

#: Name of the output error population.
ERROR_POPULATION = "error"
#: The rules of :mod:`bioplastic.rules` a rate network implements, and the wiring each one means.
RATE_RULES: tuple[str, ...] = ("direct_ldfa", "ldfa")
WIRING_OF_RULE = {"direct_ldfa": "direct", "ldfa": "layerwise"}
#: Wirings (read from the rule: ``direct_ldfa`` -> ``"direct"``, ``ldfa`` -> ``"layerwise"``).
WIRINGS: tuple[str, ...] = ("direct", "layerwise")
#: Feedback-learning modes with a rate form (the rules' names; ``"normative"`` reads ``W``: weight transport).
FEEDBACK_LEARNING: tuple[str, ...] = ("fixed", "q_only", "local", "oja")
#: Alias of :data:`FEEDBACK_LEARNING` (the name of earlier releases).
FEEDBACK_RULES = FEEDBACK_LEARNING
#: The rate network's earlier names of feedback-learning modes, and the rules' names that replace them.
DEPRECATED_LEARNING = {"kolen_pollack": "q_only"}
_LEGACY_LEARNING = ("fixed", "kolen_pollack", "local", "oja", "q_only")
#: The rule of a network built without one (the earlier defaults: 10 units, direct wiring, Oja + Kolen-Pollack,
#: no feedback weight decay).
DEFAULT_RULE = _rules.make("direct_ldfa", rank=10, feedback_learning="oja", feedback_weight_decay=0.0)


@dataclass(frozen=True)
class Population:
    """A population of rate neurons, ``tau dr/dt = -r + f(I)``.

    Parameters
    ----------
    name : str
        Unique name (used as the ``population`` coordinate of recordings). ``"error"`` and names starting
        with ``"feedback"`` are reserved.
    size : int
        Number of neurons.
    tau : float or brian2 time quantity, default 0.01
        Membrane (rate) time constant; floats are seconds. Ignored for the input population, whose rates
        are clamped to the stimulus.
    activation : {"relu", "tanh", "sigmoid", "softplus", "linear"}, default "relu"
        Transfer function ``f``. For the output population only ``"linear"`` (paired with squared error) and
        ``"sigmoid"`` (paired with binary cross-entropy) are allowed.

    Raises
    ------
    ValueError
        Bad size, unknown activation, a ``tau`` with the wrong unit or not > 0.
    """

    name: str
    size: int
    tau: float = 0.01
    activation: str = "relu"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"population name must be a Python identifier, got {self.name!r}")
        check_positive_int(f"size of population {self.name!r}", self.size)
        object.__setattr__(self, "tau", to_si(f"tau of population {self.name!r}", self.tau, "second"))
        check_choice(f"activation of population {self.name!r}", self.activation, ACTIVATIONS)


def check_rule(rule: Any) -> LDFA:
    """Return ``rule`` (a :class:`bioplastic.rules.LDFA` / ``DirectLDFA`` or its name) as a rule a rate network
    implements.

    Raises
    ------
    ValueError
        A rule other than ``ldfa`` / ``direct_ldfa`` (listing them), a fractional rank, a feedback-learning mode
        without a rate form (``normative`` reads ``W``), or an option the rate network does not implement:
        ``feedback_lr`` (a rate network's feedback learning rate is ``FeedbackPopulation.learning_rate``, a rate
        in 1/second), ``oja_covariance="targets"`` (its feedback units receive the teaching signal only),
        ``oja_centre`` (no batch to centre over), ``error_clamp``.
    """
    if isinstance(rule, str):
        check_choice("rate-network rule", rule, RATE_RULES)
        rule = _rules.make(rule)
    if not isinstance(rule, _rules.Rule):
        raise ValueError(f"rule must be a bioplastic.rules rule object or name, got {type(rule).__name__}")
    check_choice("rate-network rule", rule.name, RATE_RULES)
    if rule.rank is None:
        raise ValueError(f"{rule.name}: a rate network needs an absolute rank (the number of feedback units), got "
                         f"rank_fraction={rule.rank_fraction}")
    if rule.feedback_learning not in FEEDBACK_LEARNING:
        allowed = ", ".join(map(repr, FEEDBACK_LEARNING))
        raise ValueError(f"{rule.name}: feedback_learning {rule.feedback_learning!r} has no rate-network form (it "
                         f"reads the forward weights W); allowed: {allowed}")
    if rule.feedback_lr is not None:
        raise ValueError(f"{rule.name}: feedback_lr={rule.feedback_lr} is an optimiser's step size; a rate network's "
                         "feedback learning rate is FeedbackPopulation(learning_rate=...) in 1/second (leave "
                         "feedback_lr None)")
    if rule.oja_covariance == "targets":
        raise ValueError(f"{rule.name}: oja_covariance='targets' is not implemented in the rate network (its feedback "
                         "units receive the teaching signal only); use 'auto' or 'error'")
    if rule.oja_centre:
        raise ValueError(f"{rule.name}: oja_centre=True is not defined in the rate network (no batch to centre over)")
    if rule.error_clamp is not None:
        raise ValueError(f"{rule.name}: error_clamp is not implemented in the rate network")
    return rule


def legacy_rule(rank: Any = None, wiring: Any = None, learning: Any = None, weight_decay: Any = None) -> LDFA:
    """The rule meant by the rate network's earlier keywords (``rank``, ``wiring``, ``learning``,
    ``weight_decay``), with their earlier defaults (10, ``"direct"``, ``"oja"``, 0.0); no warning.

    ``wiring="direct"`` is ``direct_ldfa``, ``"layerwise"`` is ``ldfa``; ``learning="kolen_pollack"`` is the rules'
    ``q_only``; ``weight_decay`` is the rule's ``feedback_weight_decay``.

    Raises
    ------
    ValueError
        Unknown wiring or learning (listing the allowed values), rank < 1, a weight decay with a unit.
    """
    rank = check_positive_int("feedback rank", 10 if rank is None else rank)
    wiring = check_choice("feedback wiring", "direct" if wiring is None else wiring, WIRINGS)
    learning = check_choice("feedback learning", "oja" if learning is None else learning, _LEGACY_LEARNING)
    decay = to_si("feedback weight_decay", 0.0 if weight_decay is None else weight_decay, "1", allow_zero=True)
    name = {v: k for k, v in WIRING_OF_RULE.items()}[wiring]
    return _rules.make(name, rank=rank, feedback_learning=DEPRECATED_LEARNING.get(learning, learning),
                       feedback_weight_decay=decay)


def rule_spelling(rule: LDFA) -> str:
    """How to write ``rule`` in the rules' vocabulary (for deprecation messages)."""
    return (f"bioplastic.rules.make({rule.name!r}, rank={rule.rank}, feedback_learning={rule.feedback_learning!r}, "
            f"feedback_weight_decay={rule.feedback_weight_decay!r})")


@dataclass(frozen=True, init=False)
class FeedbackPopulation:
    """The low-dimensional feedback pathway: ``rule.rank`` linear feedback units per feedback population.

    Parameters
    ----------
    rule : bioplastic.rules.LDFA or str
        The learning rule, in the vocabulary of :mod:`bioplastic.rules`:
        ``bioplastic.rules.make("direct_ldfa", rank=10, feedback_learning="oja")`` (one feedback population fed by
        the output error, projecting to every hidden population; one ``P`` shared by all of them) or
        ``bioplastic.rules.make("ldfa", ...)`` (one feedback population per hidden population, fed by the teaching
        signal of the population above). Its ``rank`` is the number of feedback units ``r``;
        ``feedback_learning`` (``"fixed"``, ``"q_only"``, ``"local"``, ``"oja"``) says how ``P`` and ``Q`` learn
        (the rate forms are in :mod:`bioplastic.rate.plasticity`); ``feedback_weight_decay`` is the ``lambda`` of
        ``dQ/dt = eta_fb (z^T r - lambda Q)`` (``None``: the forward weights' ``weight_decay``, as in the rules).
        A name uses that rule's defaults.
    tau : float or brian2 time quantity, default 0.005
        Time constant of the feedback units (seconds).
    learning_rate : float or brian2 rate quantity, default 1.0
        ``eta_fb`` in 1/second (the rule's ``feedback_lr``, an optimiser step size, must be None).

    Deprecated (this release only; each warns with the spelling that replaces it): ``FeedbackPopulation(rank,
    wiring="direct" | "layerwise", learning="fixed" | "kolen_pollack" | "local" | "oja", tau, learning_rate,
    weight_decay)``, where ``wiring="direct"`` is ``direct_ldfa``, ``"layerwise"`` is ``ldfa``, ``"kolen_pollack"``
    is the rules' ``q_only`` and ``weight_decay`` (default 0.0) the rule's ``feedback_weight_decay``.

    Attributes
    ----------
    rank, wiring, feedback_learning, weight_decay
        Read from the rule (``wiring``: ``"direct"`` for ``direct_ldfa``, ``"layerwise"`` for ``ldfa``).

    Raises
    ------
    ValueError
        A rule the rate network does not implement (:func:`check_rule`), wrong units or signs, the rule given
        together with the deprecated keywords.
    """

    rule: LDFA
    tau: float = 0.005
    learning_rate: float = 1.0

    def __init__(self, rule: Any = None, wiring: str | None = None, learning: str | None = None,
                 tau: Any = 0.005, learning_rate: Any = 1.0, weight_decay: Any = None, *,
                 rank: int | None = None) -> None:
        legacy = {k: v for k, v in dict(rank=rank, wiring=wiring, learning=learning,
                                        weight_decay=weight_decay).items() if v is not None}
        if rule is None or (not isinstance(rule, (str, _rules.Rule))):
            # FeedbackPopulation(rank, wiring, learning, ...): the earlier dialect
            if rule is not None:
                if rank is not None:
                    raise ValueError("give the feedback rank once")
                legacy["rank"] = rule
            rule = legacy_rule(**legacy)
            warnings.warn("FeedbackPopulation(rank, wiring=..., learning=..., weight_decay=...) is deprecated and "
                          f"will be removed in the next release; write FeedbackPopulation({rule_spelling(rule)}, "
                          "tau=..., learning_rate=...)", DeprecationWarning, stacklevel=2)
        elif legacy:
            raise ValueError(f"give the rule or the deprecated keywords {sorted(legacy)}, not both")
        object.__setattr__(self, "rule", check_rule(rule))
        object.__setattr__(self, "tau", to_si("tau of the feedback population", tau, "second"))
        object.__setattr__(self, "learning_rate",
                           to_si("feedback learning_rate", learning_rate, "1/second", allow_zero=True))

    @classmethod
    def from_legacy(cls, rank: Any = None, wiring: Any = None, learning: Any = None, weight_decay: Any = None,
                    **kwargs: Any) -> FeedbackPopulation:
        """The feedback population meant by the earlier keywords, without a warning (for stored configurations)."""
        return cls(legacy_rule(rank, wiring, learning, weight_decay), **kwargs)

    @property
    def rank(self) -> int:
        """Number of feedback units per feedback population (the rule's ``rank``)."""
        return self.rule.rank

    @property
    def wiring(self) -> str:
        """``"direct"`` (``direct_ldfa``) or ``"layerwise"`` (``ldfa``)."""
        return WIRING_OF_RULE[self.rule.name]

    @property
    def feedback_learning(self) -> str:
        """How ``P`` and ``Q`` learn, in the rules' names (``fixed``, ``q_only``, ``local``, ``oja``)."""
        return self.rule.feedback_learning

    @property
    def weight_decay(self) -> float | None:
        """The rule's ``feedback_weight_decay`` (``None``: the forward weights' decay)."""
        return self.rule.feedback_weight_decay

    @property
    def learning(self) -> str:
        """Deprecated: the earlier name of :attr:`feedback_learning` (``"kolen_pollack"`` for ``q_only``)."""
        warnings.warn("FeedbackPopulation.learning is deprecated; use .feedback_learning (the rules' names: "
                      "'kolen_pollack' is 'q_only')", DeprecationWarning, stacklevel=2)
        return {v: k for k, v in DEPRECATED_LEARNING.items()}.get(self.feedback_learning, self.feedback_learning)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able ``{"rule": rule.to_dict(), "tau": ..., "learning_rate": ...}``; :meth:`from_dict` inverts it."""
        return {"rule": self.rule.to_dict(), "tau": self.tau, "learning_rate": self.learning_rate}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> FeedbackPopulation:
        """Inverse of :meth:`to_dict`; also reads the earlier form (``rank``, ``wiring``, ``learning``, ...)."""
        cfg = dict(config)
        if "rule" in cfg:
            rule = cfg.pop("rule")
            return cls(rule if isinstance(rule, (str, _rules.Rule)) else _rules.from_dict(rule), **cfg)
        legacy = {k: cfg.pop(k) for k in ("rank", "wiring", "learning", "weight_decay") if k in cfg}
        return cls.from_legacy(**legacy, **cfg)


@dataclass(frozen=True)
class Projection:
    """A weight matrix of the network (read-only description; the values live in ``RateNetwork``).

    Attributes
    ----------
    name : str
        Key in :attr:`RateNetwork.weights` (``"W_<post>"``, ``"P"``/``"P_<hidden>"``, ``"Q_<hidden>"``).
    pre, post : str
        Source and target populations. Weights have shape ``(post.size, pre.size)`` for forward weights,
        ``(pre.size, rank)`` for P (the PyTorch convention ``z = t P`` of ``docs/rules.md``) and
        ``(rank, post.size)`` for Q (``a = z Q``).
    kind : {"forward", "feedback_P", "feedback_Q"}
    plastic : bool
        Whether the projection learns.
    target : str
        The post-synaptic variable it drives: ``"I"`` (soma), ``"u"`` (feedback unit) or ``"apical"``.
    """

    name: str
    pre: str
    post: str
    kind: str
    plastic: bool
    target: str


@dataclass(frozen=True)
class FeedbackGroup:
    """One feedback population: its source of teaching signal, its targets and its P / Q projections."""

    name: str
    source: str  # "error" or the hidden population above
    targets: tuple[str, ...]  # hidden populations receiving apical input
    p_name: str
    q_names: tuple[str, ...]

