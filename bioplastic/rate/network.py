"""The rate network: populations, the feedback population with its rule, and the weights.

The network description of :mod:`bioplastic.rate` (like a brian2 ``Network``, it carries its state: the weights);
the presentation protocol is :mod:`bioplastic.rate.protocol`, the backends :mod:`bioplastic.rate.torch_backend` and
:mod:`bioplastic.rate.brian2_backend`, the dispatcher :mod:`bioplastic.rate.dispatch` (which imports none of this
module: ``RateNetwork.run`` calls it). The model follows the low-dimensional feedback alignment (LDFA) of Hanut &
Kadmon, "Training Large Neural Networks With Low-Dimensional Error Feedback" (arXiv:2502.20580, 2025), written in
continuous time for rate neurons:

Forward (somatic) dynamics, for every hidden and the output population ``l``::

    tau_l dr_l/dt = -r_l + f_l(I_l),     I_l = W_l r_{l-1} + b_l

with ``r_0`` the stimulus (the input population is clamped to it). Rates and currents are dimensionless
(a rate divided by a reference rate); time constants are in seconds.

Output error population (``d`` units, one per output neuron)::

    tau_e de/dt = -e + (y - r_out)

At steady state ``e = y - r_out = -dL/dI_out`` for the loss paired with the output transfer function
(``linear``: squared error, ``sigmoid``: binary cross-entropy), so ``e`` is the teaching signal of the
output layer (target minus output).

Feedback population(s) of ``r`` units (``r`` = the rule's ``rank``), linear rate units::

    tau_z dz/dt = -z + t_src P          (P: (n_src, r))

and the apical (dendritic) compartment of hidden population ``j``::

    a_j = z Q_j                          (Q_j: (r, n_j))

which does not drive the rate but gates plasticity through the teaching signal ``t_j = f'(I_j) * a_j``.
The rule (:class:`~bioplastic.rate.populations.FeedbackPopulation`, in the vocabulary of :mod:`bioplastic.rules`)
sets the wiring: ``direct_ldfa``: one feedback population gets the output error (``t_src = e``) and sends it to
every hidden population (one ``P`` shared by all layers; the rules' ``direct_ldfa`` has one ``P_l`` per layer,
the same thing for one hidden population); ``ldfa``: hidden population ``j`` has its own feedback population,
driven by the teaching signal of the population above (``t_{j+1}``, or ``e`` for the last hidden population).

Plasticity (three factors, local at each synapse, per unit time, active while the plasticity gate is on)::

    dW_l/dt = eta_l (t_l^T r_{l-1} - lambda_W W_l)      db_l/dt = eta_b t_l     (t_out = e, eta_l = eta / n_{l-1})

averaged over parallel trials. Feedback learning (the rule's ``feedback_learning``; the rate forms, one table
entry per mode, are in :mod:`bioplastic.rate.plasticity` and call the rules' maths), all with rate ``eta_fb``
(1/s) and ``lambda`` the rule's ``feedback_weight_decay``:

- ``fixed``: P and Q frozen (the control).
- ``q_only``: P frozen, Q by the Kolen-Pollack rule ``dQ/dt = eta_fb (z^T r_pre - lambda Q)`` so
  that ``Q -> P^T W`` (Kolen & Pollack 1994, Akrout et al. 2019; direct wiring: the direct Kolen-Pollack rule
  of Webster et al. 2020).
- ``local``: both factors, the synapse-local rule ``dP/dt = eta_fb (t_src^T (r_pre Q^T) - lambda P)``,
  ``dQ/dt = eta_fb (z^T r_pre - lambda Q)`` (the factorised Kolen-Pollack rule of the paper's v4).
- ``oja``: P by Oja's subspace rule on the teaching signal's second moment, ``dP/dt = eta_fb (t_src - z P^T)^T z``
  (Oja 1982, 1989; columns of P converge to the top-r principal subspace of ``<t_src^T t_src>``; not
  trace-normalised, see :mod:`bioplastic.rate.plasticity`), Q by Kolen-Pollack as above.

Learning rates are defined per unit time, so halving ``dt`` does not change the learning trajectory, and
(by default) normalised by the fan-in, so widening a layer does not change it either
(:meth:`RateNetwork.synaptic_learning_rates`). A bias is a synapse from a constant input of 1, so its
fan-in is 1 and its rate ``eta_b`` (``bias_learning_rate``, default ``eta / 100``) is never divided by a width: the
change of a neuron's current from its weights, ``eta / n_{l-1} t_l |r_{l-1}|^2``, and from its bias,
``eta_b t_l``, then both stay the same when the layer below is widened (a network with every unit duplicated
follows the original exactly, biases included).
"""
from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Literal

import torch

from bioplastic import rules as _rules
from bioplastic._checks import check_choice, check_finite, check_positive_int
from bioplastic.rate.activations import OUTPUT_ACTIVATIONS
from bioplastic.rate.dispatch import BACKENDS, predict, simulate
from bioplastic.rate.plasticity import RATE_FORMS
from bioplastic.rate.populations import (
    DEFAULT_RULE,
    ERROR_POPULATION,
    FEEDBACK_LEARNING,
    FEEDBACK_RULES,
    WIRINGS,
    FeedbackGroup,
    FeedbackPopulation,
    Population,
    Projection,
    legacy_rule,
    rule_spelling,
)
from bioplastic.rate.units import to_si

LearningRateScaling = Literal["fan_in", "none"]
LEARNING_RATE_SCALINGS: tuple[str, ...] = ("fan_in", "none")
#: Default bias learning rate as a fraction of ``learning_rate`` (width-independent; see ``bias_learning_rate``).
BIAS_LEARNING_RATE_FRACTION = 0.01


class RateNetwork:
    """A feedforward rate network with a low-dimensional feedback population (LDFA in continuous time).

    See the module docstring for the equations (Hanut & Kadmon 2025, arXiv:2502.20580, written for rate
    neurons). The network holds its weights as torch tensors; :meth:`run` simulates it with the ``torch``
    or ``brian2`` backend and, when learning, updates the weights in place (like a brian2 ``Network``,
    the object carries its state forward). Neural state (rates) starts at rest (zero) at every run.

    Parameters
    ----------
    populations : sequence of Population
        Input, hidden population(s) (at least one), output, in feedforward order.
    feedback : FeedbackPopulation or bioplastic.rules.LDFA
        The feedback pathway, or just its rule (``bioplastic.rules.make("direct_ldfa", rank=10,
        feedback_learning="oja")``; the feedback units then get the default ``tau`` and ``learning_rate`` of
        :class:`~bioplastic.rate.populations.FeedbackPopulation`).
    learning_rate : float or brian2 rate quantity, default 1.0
        ``eta`` of the forward weights, in 1/second (the biases learn at ``bias_learning_rate``).
    learning_rate_scaling : {"fan_in", "none"}, default "fan_in"
        ``fan_in``: ``learning_rate`` (and the feedback learning rate) is a normalised rate; each synapse
        learns at ``eta / n_pre`` with ``n_pre`` the number of inputs of the layer (a bias, the synapse of
        a constant input 1, has fan-in 1: it learns at ``bias_learning_rate``, never divided) (for the feedback
        weights Q_j and the local rule's P: the width of the hidden population they serve, the fan-in of
        the forward matrix they mirror, so Kolen-Pollack tracking holds with ``eta_fb = eta``; Oja's P: the
        size of its source population). The change of a neuron's summed input then does not grow with the width, so learning
        does not change when a layer is made wider at the same ``learning_rate``. ``none``: every synapse
        learns at ``learning_rate`` (resp. the feedback rate) as given. See :meth:`synaptic_learning_rates`.
    weight_decay : float, default 0.0
        ``lambda_W`` (dimensionless) of the forward weights: ``dW/dt = eta_l (t r_pre^T - lambda_W W)``
        (biases do not decay). With ``lambda_W`` equal to the rule's ``feedback_weight_decay`` (its default,
        ``None``, means exactly that) and equal rates, Kolen-Pollack makes ``Q - P^T W`` decay to zero
        (Akrout et al. 2019).
    learn_biases : bool, default True
        Whether the biases (thresholds) learn (``db_l/dt = eta_b t_l``) or stay at their initial value 0.
    bias_learning_rate : float or brian2 rate quantity, optional
        ``eta_b`` of the biases, in 1/second, under either ``learning_rate_scaling``: a bias has fan-in 1, so
        it is never divided by a width, and widening a layer does not change how fast its biases (or its
        neurons' currents) move. Default: ``learning_rate / 100`` (:data:`BIAS_LEARNING_RATE_FRACTION`). A
        bias sums the teaching signal of every stimulus, so in online learning it must be slow next to the
        weights: at ``eta_b = learning_rate`` the output biases follow the last few targets (measured in
        ``docs/rate.md``: online MNIST 0.700 instead of 0.827 after one epoch of ``rate_mnist``).
    tau_error : float or brian2 time quantity, default 0.005
        Time constant of the output error population (seconds).
    seed : int, default 0
        Seed of the initial weights (same seed -> same weights on every device and backend).
    dtype : torch.dtype, default torch.float32
        Dtype of the weights and of the torch simulation (brian2 always runs in float64).
    device : str or torch.device, default "cpu"

    Raises
    ------
    ValueError
        Fewer than three populations, duplicate or reserved names, an output activation other than
        ``"linear"``/``"sigmoid"``, a feedback rank above the output size or a hidden width, wrong units.

    Examples
    --------
    >>> from bioplastic import rules
    >>> net = RateNetwork.from_sizes([784, 256, 10], rule=rules.make("direct_ldfa", rank=10, feedback_learning="oja"))
    >>> net.feedback.wiring, net.feedback.feedback_learning
    ('direct', 'oja')
    >>> rec = net.run(x[:100], y[:100], presentation=0.05, dt=0.001)   # doctest: +SKIP
    """

    def __init__(
        self,
        populations: Sequence[Population],
        feedback: FeedbackPopulation | _rules.Rule,
        *,
        learning_rate: float = 1.0,
        learning_rate_scaling: str = "fan_in",
        weight_decay: float = 0.0,
        learn_biases: bool = True,
        bias_learning_rate: float | None = None,
        tau_error: float = 0.005,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> None:
        populations = tuple(populations)
        if len(populations) < 3:
            raise ValueError("a rate network needs an input, at least one hidden and an output population; "
                             f"got {len(populations)} population(s)")
        for p in populations:
            if not isinstance(p, Population):
                raise ValueError(f"populations must be Population objects, got {type(p).__name__}")
        names = [p.name for p in populations]
        if len(set(names)) != len(names):
            raise ValueError(f"population names must be unique, got {names}")
        for n in names:
            if n == ERROR_POPULATION or n.startswith("feedback"):
                raise ValueError(f"population name {n!r} is reserved (error and feedback populations)")
        if isinstance(feedback, _rules.Rule):
            feedback = FeedbackPopulation(feedback)
        if not isinstance(feedback, FeedbackPopulation):
            raise ValueError(f"feedback must be a FeedbackPopulation or a bioplastic.rules rule, got "
                             f"{type(feedback).__name__}")
        check_choice(f"activation of the output population {populations[-1].name!r}",
                     populations[-1].activation, OUTPUT_ACTIVATIONS)
        d = populations[-1].size
        if feedback.rank > d:
            raise ValueError(f"feedback rank {feedback.rank} exceeds the output size d={d}: the feedback "
                             f"population carries the {d}-dimensional output error")
        for p in populations[1:-1]:
            if feedback.rank > p.size:
                raise ValueError(f"feedback rank {feedback.rank} exceeds the width {p.size} of hidden "
                                 f"population {p.name!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a torch floating dtype, got {dtype!r}")
        self.populations = populations
        self.feedback = feedback
        self.learning_rate = to_si("learning_rate", learning_rate, "1/second", allow_zero=True)
        self.weight_decay = to_si("weight_decay", weight_decay, "1", allow_zero=True)
        if not isinstance(learn_biases, bool):
            raise ValueError(f"learn_biases must be True or False, got {learn_biases!r}")
        self.learn_biases = learn_biases
        self.bias_learning_rate = (None if bias_learning_rate is None
                                   else to_si("bias_learning_rate", bias_learning_rate, "1/second", allow_zero=True))
        self.learning_rate_scaling = check_choice("learning_rate_scaling", learning_rate_scaling,
                                                  LEARNING_RATE_SCALINGS)
        self.tau_error = to_si("tau_error", tau_error, "second")
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.dtype = dtype
        self.device = torch.device(device)
        self._weights = {k: v.to(dtype=dtype, device=self.device) for k, v in self.initial_weights().items()}

    # ------------------------------------------------------------------ structure
    @property
    def input(self) -> Population:
        return self.populations[0]

    @property
    def hidden(self) -> tuple[Population, ...]:
        return self.populations[1:-1]

    @property
    def output(self) -> Population:
        return self.populations[-1]

    def population(self, name: str) -> Population:
        """The population called ``name`` (``ValueError`` listing the names if unknown)."""
        for p in self.populations:
            if p.name == name:
                return p
        check_choice("population", name, [p.name for p in self.populations])
        raise AssertionError  # unreachable

    @property
    def feedback_groups(self) -> tuple[FeedbackGroup, ...]:
        """The feedback population(s): one (direct) or one per hidden population (layerwise)."""
        hid = [p.name for p in self.hidden]
        if self.feedback.wiring == "direct":
            return (FeedbackGroup("feedback", ERROR_POPULATION, tuple(hid), "P",
                                  tuple(f"Q_{h}" for h in hid)),)
        groups = []
        for j, h in enumerate(hid):
            source = hid[j + 1] if j + 1 < len(hid) else ERROR_POPULATION
            groups.append(FeedbackGroup(f"feedback_{h}", source, (h,), f"P_{h}", (f"Q_{h}",)))
        return tuple(groups)

    def size_of(self, name: str) -> int:
        """Number of units of any population, including ``"error"`` and the feedback populations."""
        if name == ERROR_POPULATION:
            return self.output.size
        if name.startswith("feedback"):
            return self.feedback.rank
        return self.population(name).size

    @property
    def projections(self) -> tuple[Projection, ...]:
        """Every weight matrix, forward first (feedforward order), then P and Q of each feedback group."""
        out = []
        for pre, post in zip(self.populations[:-1], self.populations[1:]):
            out.append(Projection(f"W_{post.name}", pre.name, post.name, "forward", True, "I"))
        rule = self.feedback.rule
        for g in self.feedback_groups:
            out.append(Projection(g.p_name, g.source, g.name, "feedback_P", rule.learns_p, "u"))
            for q, t in zip(g.q_names, g.targets):
                out.append(Projection(q, g.name, t, "feedback_Q", rule.learns_q, "apical"))
        return tuple(out)

    @property
    def recorded_populations(self) -> tuple[str, ...]:
        """Populations in recordings, in this order: hidden, output, error, feedback."""
        return (tuple(p.name for p in self.populations[1:]) + (ERROR_POPULATION,)
                + tuple(g.name for g in self.feedback_groups))

    @property
    def n_neurons(self) -> int:
        """Number of simulated rate units (input excluded: it is clamped to the stimulus)."""
        return sum(self.size_of(n) for n in self.recorded_populations)

    # ------------------------------------------------------------------ weights
    def initial_weights(self) -> dict[str, torch.Tensor]:
        """The initial weights for :attr:`seed` (float64, CPU; independent of device and dtype).

        Forward ``W_l ~ N(0, g^2 / n_{l-1})`` (``g = sqrt(2)`` for relu, else 1; He / LeCun scaling),
        biases 0; ``P`` with orthonormal columns (QR of a Gaussian matrix, signs fixed by ``diag(R) > 0``);
        ``Q_j ~ N(0, 1 / n_j)``, the scale of ``P^T W`` that the Kolen-Pollack rules converge to.
        """
        gen = torch.Generator().manual_seed(self.seed)
        w: dict[str, torch.Tensor] = {}
        for pre, post in zip(self.populations[:-1], self.populations[1:]):
            gain = math.sqrt(2.0) if (pre is not self.input and pre.activation == "relu") else 1.0
            w[f"W_{post.name}"] = torch.randn(post.size, pre.size, generator=gen, dtype=torch.float64) \
                * (gain / math.sqrt(pre.size))
            w[f"b_{post.name}"] = torch.zeros(post.size, dtype=torch.float64)
        r = self.feedback.rank
        for g in self.feedback_groups:
            n_src = self.size_of(g.source)
            gauss = torch.randn(n_src, r, generator=gen, dtype=torch.float64)
            q_fac, r_fac = torch.linalg.qr(gauss)
            w[g.p_name] = q_fac * torch.sign(torch.diagonal(r_fac)).where(torch.diagonal(r_fac) != 0,
                                                                           torch.ones(r, dtype=torch.float64))
            for qn, t in zip(g.q_names, g.targets):
                n_t = self.size_of(t)
                w[qn] = torch.randn(r, n_t, generator=gen, dtype=torch.float64) / math.sqrt(n_t)
        return w

    def synaptic_learning_rates(self) -> dict[str, float]:
        """Per-synapse learning rate (1/second) of every plastic weight (and bias); both backends use these.

        Forward ``W_l``: ``eta / n_{l-1}`` with ``learning_rate_scaling="fan_in"``, else ``eta``. Biases
        ``b_l``: ``bias_learning_rate`` (default ``eta / 100``) with either scaling (a bias is a synapse from a
        constant input 1, fan-in 1; dividing it by ``n_{l-1}`` would slow the biases of a wider layer down and
        break the width invariance); absent with ``learn_biases=False``.
        ``Q_j`` (Kolen-Pollack, local, Oja) and ``P`` of the local rule: ``eta_fb / n`` with ``n`` the width of
        the hidden population(s) served (summed over targets for a direct local ``P``); Oja's ``P``:
        ``eta_fb / n_src`` (its own fan-in, the size of the population sending the teaching signal). With
        ``learning_rate_scaling="none"`` every rate is ``eta`` / ``eta_fb``. Fixed feedback weights are absent.
        """
        fan = self.learning_rate_scaling == "fan_in"
        rates: dict[str, float] = {}
        for pre, post in zip(self.populations[:-1], self.populations[1:]):
            rate = self.learning_rate / pre.size if fan else self.learning_rate
            rates[f"W_{post.name}"] = rate
            if self.learn_biases:
                # a bias is a synapse from a constant input 1: its fan-in is 1 under either scaling
                rates[f"b_{post.name}"] = self.effective_bias_learning_rate
        fb = self.feedback
        form = RATE_FORMS[fb.feedback_learning]
        for g in self.feedback_groups:
            if fb.rule.learns_q:
                for qn, t in zip(g.q_names, g.targets):
                    rates[qn] = fb.learning_rate / self.size_of(t) if fan else fb.learning_rate
            if fb.rule.learns_p:
                n = (sum(self.size_of(t) for t in g.targets) if form.p_fan_in == "targets"
                     else self.size_of(g.source))
                rates[g.p_name] = fb.learning_rate / n if fan else fb.learning_rate
        return rates

    @property
    def feedback_weight_decay(self) -> float:
        """``lambda`` of the feedback rules (dimensionless): the rule's ``feedback_weight_decay``, or the forward
        ``weight_decay`` where that is ``None`` (the rules' convention for Kolen-Pollack)."""
        decay = self.feedback.weight_decay
        return self.weight_decay if decay is None else decay

    @property
    def effective_bias_learning_rate(self) -> float:
        """``eta_b`` of the biases (1/second): ``bias_learning_rate``, or ``learning_rate / 100`` when it is
        None (:data:`BIAS_LEARNING_RATE_FRACTION`)."""
        if self.bias_learning_rate is None:
            return self.learning_rate * BIAS_LEARNING_RATE_FRACTION
        return self.bias_learning_rate

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self._weights.items()}

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """A copy of every weight and bias (``W_<pop>``, ``b_<pop>``, ``P``/``P_<hidden>``, ``Q_<hidden>``)."""
        return {k: v.detach().clone() for k, v in self._weights.items()}

    def set_weights(self, weights: Mapping[str, Any], *, strict: bool = False) -> None:
        """Replace some (or, with ``strict``, all) weights by copies of the given arrays.

        Raises
        ------
        ValueError
            Unknown name (lists the known ones), wrong shape, NaN/Inf, or missing names with ``strict``.
            Nothing is changed when an error is raised.
        """
        new = {}
        for k, v in weights.items():
            check_choice("weight", k, sorted(self._weights))
            t = torch.as_tensor(v).detach()
            if tuple(t.shape) != tuple(self._weights[k].shape):
                raise ValueError(f"weight {k!r} must have shape {tuple(self._weights[k].shape)}, "
                                 f"got {tuple(t.shape)}")
            check_finite(f"weight {k!r}", t)
            new[k] = t.to(dtype=self.dtype, device=self.device).clone()
        if strict and set(new) != set(self._weights):
            raise ValueError(f"missing weights: {sorted(set(self._weights) - set(new))}")
        self._weights.update(new)

    def reset_weights(self) -> None:
        """Restore the initial weights of :attr:`seed`."""
        self._weights = {k: v.to(dtype=self.dtype, device=self.device) for k, v in self.initial_weights().items()}

    def copy(self) -> RateNetwork:
        """An independent copy (weights cloned)."""
        new = copy.copy(self)
        new._weights = {k: v.clone() for k, v in self._weights.items()}
        return new

    def to(self, *args: Any, **kwargs: Any) -> RateNetwork:
        """A copy of the network on another device and/or with another floating dtype.

        Accepts the arguments of ``torch.nn.Module.to``: ``net.to(torch.float64)``, ``net.to("cuda")``,
        ``net.to("cuda", torch.float64)``, ``net.to(device=..., dtype=...)``, or ``net.to(tensor)`` (the
        tensor's device and dtype); ``non_blocking`` is accepted and has no effect. Unlike ``nn.Module.to``
        it returns a new network (weights copied) and leaves this one unchanged, like ``torch.Tensor.to``.

        Returns
        -------
        RateNetwork
            The copy; its torch simulation runs on ``device`` in ``dtype`` (brian2 always runs in float64).

        Raises
        ------
        TypeError
            Arguments ``nn.Module.to`` does not accept (the message says what to pass).
        ValueError
            A dtype that is not a real floating-point dtype (e.g. ``torch.int64``, ``torch.complex64``).
        """
        try:
            bad = [a for a in args if isinstance(a, bool) or not isinstance(a, (str, int, torch.device, torch.dtype,
                                                                                 torch.Tensor))]
            if bad:  # torch's parser reads e.g. a float as a dtype
                raise TypeError(f"unexpected positional argument(s) {bad!r}")
            device, dtype, _non_blocking, _memory_format = torch._C._nn._parse_to(*args, **kwargs)
        except (TypeError, RuntimeError) as exc:
            raise TypeError(
                "RateNetwork.to accepts what torch.nn.Module.to accepts: net.to(dtype), net.to(device), "
                "net.to(device, dtype), net.to(tensor), or net.to(device=..., dtype=...); got "
                f"args={args!r}, kwargs={kwargs!r} ({str(exc).splitlines()[0]})") from None
        if dtype is not None and (not dtype.is_floating_point or dtype.is_complex):
            raise ValueError(f"dtype must be a real floating-point torch dtype (e.g. torch.float64), got {dtype}")
        new = self.copy()
        new.device = torch.device(device) if device is not None else self.device
        new.dtype = dtype if dtype is not None else self.dtype
        new._weights = {k: v.to(device=new.device, dtype=new.dtype) for k, v in self._weights.items()}
        return new

    # ------------------------------------------------------------------ configuration
    def to_dict(self) -> dict[str, Any]:
        """JSON-able configuration (everything but the weight values); ``from_dict`` inverts it."""
        return {
            "architecture": "rate_network",
            "populations": [asdict(p) for p in self.populations],
            "feedback": self.feedback.to_dict(),
            "learning_rate": self.learning_rate,
            "learning_rate_scaling": self.learning_rate_scaling,
            "weight_decay": self.weight_decay,
            "learn_biases": self.learn_biases,
            "bias_learning_rate": self.bias_learning_rate,
            "tau_error": self.tau_error,
            "seed": self.seed,
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], **overrides: Any) -> RateNetwork:
        """Build from :meth:`to_dict` output (``overrides`` replace top-level keyword arguments)."""
        cfg = {**dict(config), **overrides}
        pops = [p if isinstance(p, Population) else Population(**p) for p in cfg["populations"]]
        fb = cfg["feedback"]
        fb = fb if isinstance(fb, (FeedbackPopulation, _rules.Rule)) else FeedbackPopulation.from_dict(fb)
        dtype = cfg.get("dtype", torch.float32)
        if isinstance(dtype, str):
            check_choice("dtype", dtype, ("float32", "float64"))
            dtype = getattr(torch, dtype)
        return cls(pops, fb, learning_rate=cfg.get("learning_rate", 1.0),
                   learning_rate_scaling=cfg.get("learning_rate_scaling", "fan_in"),
                   weight_decay=cfg.get("weight_decay", 0.0), learn_biases=cfg.get("learn_biases", True),
                   bias_learning_rate=cfg.get("bias_learning_rate"), tau_error=cfg.get("tau_error", 0.005),
                   seed=cfg.get("seed", 0), dtype=dtype, device=cfg.get("device", "cpu"))

    @classmethod
    def from_sizes(
        cls,
        sizes: Sequence[int],
        *,
        activation: str = "relu",
        output_activation: str = "sigmoid",
        tau: float = 0.01,
        rule: _rules.Rule | str | None = None,
        feedback_tau: float = 0.005,
        feedback_learning_rate: float = 1.0,
        feedback_rank: int | None = None,
        wiring: str | None = None,
        feedback_learning: str | None = None,
        feedback_weight_decay: float | None = None,
        **kwargs: Any,
    ) -> RateNetwork:
        """Feedforward network from layer sizes ``[n_in, n_hidden..., d]`` (populations ``input``,
        ``hidden1``..., ``output``).

        Parameters
        ----------
        sizes : sequence of int
        activation, output_activation : str
            Transfer functions of the hidden and the output populations.
        tau : float or brian2 time quantity
            Time constant of every population (seconds).
        rule : bioplastic.rules.LDFA or str, optional
            The feedback rule, e.g. ``bioplastic.rules.make("direct_ldfa", rank=10, feedback_learning="oja")``
            (see :class:`~bioplastic.rate.populations.FeedbackPopulation`). Default
            :data:`~bioplastic.rate.populations.DEFAULT_RULE`: ``direct_ldfa``, rank 10, ``oja``, no feedback
            weight decay.
        feedback_tau, feedback_learning_rate : float or brian2 quantity
            ``tau`` (seconds) and ``learning_rate`` (1/second) of the feedback units.
        feedback_rank, wiring, feedback_learning, feedback_weight_decay
            Deprecated (this release only; ``DeprecationWarning`` with the replacing ``rule``): the rank,
            ``"direct"`` (``direct_ldfa``) / ``"layerwise"`` (``ldfa``), the mode (``"kolen_pollack"`` is the
            rules' ``q_only``) and the rule's ``feedback_weight_decay`` (default 0.0).
        **kwargs
            Passed to :class:`RateNetwork` (``learning_rate``, ``seed``, ``dtype``, ...).

        Raises
        ------
        ValueError
            Fewer than three sizes, ``rule`` together with a deprecated keyword, and what
            :class:`RateNetwork` raises.
        """
        sizes = list(sizes)
        if len(sizes) < 3:
            raise ValueError(f"sizes needs input, at least one hidden and output sizes, got {sizes}")
        legacy = {k: v for k, v in dict(rank=feedback_rank, wiring=wiring, learning=feedback_learning,
                                        weight_decay=feedback_weight_decay).items() if v is not None}
        if legacy:
            if rule is not None:
                raise ValueError("give rule= or the deprecated feedback_rank / wiring / feedback_learning / "
                                 "feedback_weight_decay, not both")
            rule = legacy_rule(**legacy)
            warnings.warn("RateNetwork.from_sizes(feedback_rank=..., wiring=..., feedback_learning=..., "
                          "feedback_weight_decay=...) is deprecated and will be removed in the next release; write "
                          f"RateNetwork.from_sizes(..., rule={rule_spelling(rule)})", DeprecationWarning,
                          stacklevel=2)
        pops = [Population("input", sizes[0], tau=tau, activation="linear")]
        pops += [Population(f"hidden{i}", n, tau=tau, activation=activation) for i, n in enumerate(sizes[1:-1], 1)]
        pops.append(Population("output", sizes[-1], tau=tau, activation=output_activation))
        fb = FeedbackPopulation(DEFAULT_RULE if rule is None else rule, tau=feedback_tau,
                                learning_rate=feedback_learning_rate)
        return cls(pops, fb, **kwargs)

    @classmethod
    def from_spec(cls, spec: str | os.PathLike | Mapping[str, Any], **overrides: Any) -> RateNetwork:
        """Build from a declarative spec (``models/rate_*.toml``, read with
        :func:`bioplastic.architectures.load_spec`).

        Keys ``sizes``, ``activation``, ``output_activation``, ``tau``, ``tau_error``, ``learning_rate``,
        ``learning_rate_scaling``, ``weight_decay``, ``learn_biases``, ``bias_learning_rate``, ``seed``, ``dtype``
        and a ``[feedback]`` table: ``rule`` (``"direct_ldfa"`` or ``"ldfa"``) with the rule's options
        (``rank``, ``feedback_learning``, ``feedback_weight_decay``, ...; passed to
        :func:`bioplastic.rules.make`), and the feedback units' ``tau`` (s) and ``learning_rate`` (1/s). The
        earlier keys ``wiring``, ``learning`` and ``weight_decay`` of ``[feedback]`` are deprecated (a
        ``DeprecationWarning`` names the replacement). ``overrides`` replace top-level keys (``feedback=`` a
        whole table).

        Raises
        ------
        ValueError
            A spec whose ``architecture`` is not ``"rate_network"``, unknown keys (listing the allowed ones), an
            unknown rule option (listed by :func:`bioplastic.rules.make`).
        """
        from bioplastic.architectures.spec import load_spec

        s = {**load_spec(dict(spec) if isinstance(spec, Mapping) else spec), **overrides}
        if s.get("architecture") != "rate_network":
            raise ValueError(f"spec {s.get('name')!r} has architecture {s.get('architecture')!r}, "
                             "expected 'rate_network'")
        allowed = {"name", "architecture", "description", "training", "feedback", "sizes", "activation",
                   "output_activation", "tau", "tau_error", "learning_rate", "learning_rate_scaling", "seed",
                   "dtype", "weight_decay", "learn_biases", "bias_learning_rate"}
        if set(s) - allowed:
            raise ValueError(f"unknown rate-network spec keys {sorted(set(s) - allowed)}; allowed: {sorted(allowed)}")
        if "sizes" not in s:
            raise ValueError(f"rate-network spec {s.get('name')!r} has no 'sizes'")
        kw: dict[str, Any] = {k: s[k] for k in ("activation", "output_activation", "tau", "tau_error",
                                               "learning_rate", "learning_rate_scaling", "weight_decay", "learn_biases",
                                               "bias_learning_rate", "seed")
                              if k in s}
        if "dtype" in s:
            check_choice("dtype", s["dtype"], ("float32", "float64"))
            kw["dtype"] = getattr(torch, s["dtype"])
        fb = dict(s.get("feedback", {}))
        if "tau" in fb:
            kw["feedback_tau"] = fb.pop("tau")
        if "learning_rate" in fb:
            kw["feedback_learning_rate"] = fb.pop("learning_rate")
        kw["rule"] = spec_rule(fb, s.get("name"))
        return cls.from_sizes(s["sizes"], **kw)

    def __repr__(self) -> str:
        sizes = "-".join(str(p.size) for p in self.populations)
        fb = self.feedback
        return (f"RateNetwork({sizes}, {fb.rule.name} rank {fb.rank} {fb.feedback_learning}, "
                f"eta={self.learning_rate}/s, seed={self.seed}, {str(self.dtype).replace('torch.', '')}, "
                f"{self.device})")

    # ------------------------------------------------------------------ simulation
    def run(self, stimuli: Any, targets: Any = None, *, backend: str = "torch", **options: Any):
        """Present ``stimuli`` one after another and simulate; see :func:`bioplastic.rate.simulate`."""
        return simulate(self, stimuli, targets, backend=backend, **options)

    def predict(self, stimuli: Any, **options: Any) -> torch.Tensor:
        """Output rates at the end of each presentation, learning off; see :func:`bioplastic.rate.predict`."""
        return predict(self, stimuli, **options)


_LEGACY_SPEC_KEYS = {"wiring": "rule", "learning": "feedback_learning", "weight_decay": "feedback_weight_decay"}


def spec_rule(table: Mapping[str, Any], spec_name: str | None = None) -> _rules.Rule:
    """The rule of a spec's ``[feedback]`` table without ``tau`` and ``learning_rate`` (see
    :meth:`RateNetwork.from_spec`); an empty table gives :data:`~bioplastic.rate.populations.DEFAULT_RULE` with
    the table's ``rank``.

    Raises
    ------
    ValueError
        ``rule`` together with a deprecated key, a rule other than ``ldfa`` / ``direct_ldfa``, unknown options.
    """
    fb = dict(table)
    legacy = {k: fb.pop(k) for k in list(fb) if k in _LEGACY_SPEC_KEYS}
    if legacy:
        if "rule" in fb or set(fb) - {"rank"}:
            raise ValueError(f"spec {spec_name!r}: [feedback] mixes the deprecated keys {sorted(legacy)} with "
                             f"{sorted(fb)}; write rule = 'direct_ldfa' | 'ldfa' with the rule's options")
        rule = legacy_rule(rank=fb.get("rank"), **legacy)
        new = {"rule": rule.name, "rank": rule.rank, "feedback_learning": rule.feedback_learning,
               "feedback_weight_decay": rule.feedback_weight_decay}
        warnings.warn(f"spec {spec_name!r}: [feedback] keys {sorted(legacy)} are deprecated and will be removed in "
                      f"the next release; write {new}", DeprecationWarning, stacklevel=3)
        return rule
    name = fb.pop("rule", None)
    if name is None:
        return _rules.make(DEFAULT_RULE, **fb)
    if not isinstance(name, str):
        raise ValueError(f"spec {spec_name!r}: [feedback] rule must be a rule name, got {name!r}")
    return _rules.make(name, **fb)


__all__ = ["RateNetwork", "spec_rule", "LEARNING_RATE_SCALINGS", "BIAS_LEARNING_RATE_FRACTION",
           # re-exported from the description's parts
           "Population", "FeedbackPopulation", "Projection", "FeedbackGroup", "WIRINGS", "FEEDBACK_LEARNING",
           "FEEDBACK_RULES", "BACKENDS", "ERROR_POPULATION"]
