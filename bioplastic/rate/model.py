"""Rate networks with an explicit low-dimensional feedback population: the model objects.

One network object, two backends (``net.run(..., backend="torch" | "brian2")``). The model follows the
low-dimensional feedback alignment (LDFA) of Hanut & Kadmon, "Training Large Neural Networks With
Low-Dimensional Error Feedback" (arXiv:2502.20580, 2025), written in continuous time for rate neurons:

Forward (somatic) dynamics, for every hidden and the output population ``l``::

    tau_l dr_l/dt = -r_l + f_l(I_l),     I_l = W_l r_{l-1} + b_l

with ``r_0`` the stimulus (the input population is clamped to it). Rates and currents are dimensionless
(a rate divided by a reference rate); time constants are in seconds.

Output error population (``d`` units, one per output neuron)::

    tau_e de/dt = -e + (y - r_out)

At steady state ``e = y - r_out = -dL/dI_out`` for the loss paired with the output transfer function
(``linear``: squared error, ``sigmoid``: binary cross-entropy), so ``e`` is the teaching signal of the
output layer (target minus output).

Feedback population(s) of ``r`` units (``r`` = ``rank``), linear rate units::

    tau_z dz/dt = -z + t_src P          (P: (n_src, r))

and the apical (dendritic) compartment of hidden population ``j``::

    a_j = z Q_j                          (Q_j: (r, n_j))

which does not drive the rate but gates plasticity through the teaching signal ``t_j = f'(I_j) * a_j``.
``wiring="direct"``: one feedback population gets the output error (``t_src = e``) and sends it to every
hidden population (the DFA-like ``direct_ldfa`` of the rule core, with one ``P`` shared by all layers).
``wiring="layerwise"``: hidden population ``j`` has its own feedback population, driven by the teaching
signal of the population above (``t_{j+1}``, or ``e`` for the last hidden population): the ``ldfa`` rule.

Plasticity (three factors, local at each synapse, per unit time, active while the plasticity gate is on)::

    dW_l/dt = eta_l (t_l^T r_{l-1} - lambda_W W_l)      db_l/dt = eta_b t_l     (t_out = e, eta_l = eta / n_{l-1})

averaged over parallel trials. Feedback learning (``FeedbackPopulation.learning``), the continuous-time
forms of section 2 of the science notes (``docs/rate.md``), all with rate ``eta_fb`` (1/s):

- ``fixed``: P and Q frozen (the control).
- ``kolen_pollack``: P frozen, Q by the Kolen-Pollack rule ``dQ/dt = eta_fb (z^T r_pre - lambda Q)`` so
  that ``Q -> P^T W`` (the rule core's ``q_only``; Kolen & Pollack 1994, Akrout et al. 2019; direct
  wiring: the direct Kolen-Pollack rule of Webster et al. 2020).
- ``local``: both factors, the synapse-local rule ``dP/dt = eta_fb (t_src^T (r_pre Q^T) - lambda P)``,
  ``dQ/dt = eta_fb (z^T r_pre - lambda Q)`` (the factorised Kolen-Pollack rule of the paper's v4).
- ``oja``: P by Oja's subspace rule on the error covariance, ``dP/dt = eta_fb (t_src - P z)^T z``
  (Oja 1982, 1989; columns of P converge to the top-r principal subspace of ``<t_src^T t_src>``), Q by
  Kolen-Pollack as above.

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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from bioplastic._checks import check_choice, check_finite, check_positive_int
from bioplastic.rate.activations import ACTIVATIONS, OUTPUT_ACTIVATIONS
from bioplastic.rate.units import to_si

Wiring = Literal["direct", "layerwise"]
WIRINGS: tuple[str, ...] = ("direct", "layerwise")
FeedbackRule = Literal["fixed", "kolen_pollack", "local", "oja"]
FEEDBACK_RULES: tuple[str, ...] = ("fixed", "kolen_pollack", "local", "oja")
LearningRateScaling = Literal["fan_in", "none"]
LEARNING_RATE_SCALINGS: tuple[str, ...] = ("fan_in", "none")
Backend = Literal["torch", "brian2"]
BACKENDS: tuple[str, ...] = ("torch", "brian2")
ERROR_POPULATION = "error"
#: Default bias learning rate as a fraction of ``learning_rate`` (width-independent; see ``bias_learning_rate``).
BIAS_LEARNING_RATE_FRACTION = 0.01


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


@dataclass(frozen=True)
class FeedbackPopulation:
    """The low-dimensional feedback pathway: ``rank`` linear feedback units per feedback population.

    Parameters
    ----------
    rank : int
        Number of feedback units ``r`` (the rank of the feedback). Must not exceed the output size ``d`` nor
        any hidden width (checked by :class:`RateNetwork`).
    wiring : {"direct", "layerwise"}, default "direct"
        ``direct``: one population gets the output error and projects to every hidden population;
        ``layerwise``: one population per hidden population, driven by the teaching signal of the
        population above.
    learning : {"fixed", "kolen_pollack", "local", "oja"}, default "oja"
        How P and Q learn (see the module docstring); ``fixed`` is the control.
    tau : float or brian2 time quantity, default 0.005
        Time constant of the feedback units (seconds).
    learning_rate : float or brian2 rate quantity, default 1.0
        ``eta_fb`` in 1/second.
    weight_decay : float, default 0.0
        ``lambda`` (dimensionless) of the Kolen-Pollack and local rules (not used by Oja's rule for P).

    Raises
    ------
    ValueError
        Unknown wiring / learning, rank < 1, wrong units or signs.
    """

    rank: int
    wiring: str = "direct"
    learning: str = "oja"
    tau: float = 0.005
    learning_rate: float = 1.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_positive_int("feedback rank", self.rank)
        check_choice("feedback wiring", self.wiring, WIRINGS)
        check_choice("feedback learning", self.learning, FEEDBACK_RULES)
        object.__setattr__(self, "tau", to_si("tau of the feedback population", self.tau, "second"))
        object.__setattr__(self, "learning_rate",
                           to_si("feedback learning_rate", self.learning_rate, "1/second", allow_zero=True))
        object.__setattr__(self, "weight_decay",
                           to_si("feedback weight_decay", self.weight_decay, "1", allow_zero=True))


@dataclass(frozen=True)
class Projection:
    """A weight matrix of the network (read-only description; the values live in ``RateNetwork``).

    Attributes
    ----------
    name : str
        Key in :attr:`RateNetwork.weights` (``"W_<post>"``, ``"P"``/``"P_<hidden>"``, ``"Q_<hidden>"``).
    pre, post : str
        Source and target populations. Weights have shape ``(post.size, pre.size)`` for forward weights,
        ``(pre.size, rank)`` for P (the PyTorch/science-notes convention ``z = t P``) and
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
    feedback : FeedbackPopulation
        The feedback pathway.
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
        (biases do not decay). With ``lambda_W`` equal to the feedback ``weight_decay`` and equal rates,
        Kolen-Pollack makes ``Q - P^T W`` decay to zero (Akrout et al. 2019).
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
    >>> net = RateNetwork.from_sizes([784, 256, 10], feedback_rank=10, feedback_learning="oja")
    >>> rec = net.run(x[:100], y[:100], presentation=0.05, dt=0.001)   # doctest: +SKIP
    """

    def __init__(
        self,
        populations: Sequence[Population],
        feedback: FeedbackPopulation,
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
        if not isinstance(feedback, FeedbackPopulation):
            raise ValueError(f"feedback must be a FeedbackPopulation, got {type(feedback).__name__}")
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
        rule = self.feedback.learning
        for g in self.feedback_groups:
            out.append(Projection(g.p_name, g.source, g.name, "feedback_P", rule in ("local", "oja"), "u"))
            for q, t in zip(g.q_names, g.targets):
                out.append(Projection(q, g.name, t, "feedback_Q", rule != "fixed", "apical"))
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
        for g in self.feedback_groups:
            if fb.learning in ("kolen_pollack", "local", "oja"):
                for qn, t in zip(g.q_names, g.targets):
                    rates[qn] = fb.learning_rate / self.size_of(t) if fan else fb.learning_rate
            if fb.learning == "local":
                n = sum(self.size_of(t) for t in g.targets)
                rates[g.p_name] = fb.learning_rate / n if fan else fb.learning_rate
            elif fb.learning == "oja":
                n = self.size_of(g.source)
                rates[g.p_name] = fb.learning_rate / n if fan else fb.learning_rate
        return rates

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
            "feedback": asdict(self.feedback),
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
        fb = fb if isinstance(fb, FeedbackPopulation) else FeedbackPopulation(**fb)
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
        feedback_rank: int = 10,
        wiring: str = "direct",
        feedback_learning: str = "oja",
        feedback_tau: float = 0.005,
        feedback_learning_rate: float = 1.0,
        feedback_weight_decay: float = 0.0,
        **kwargs: Any,
    ) -> RateNetwork:
        """Feedforward network from layer sizes ``[n_in, n_hidden..., d]`` (populations ``input``,
        ``hidden1``..., ``output``). Remaining keyword arguments go to :class:`RateNetwork`.
        """
        sizes = list(sizes)
        if len(sizes) < 3:
            raise ValueError(f"sizes needs input, at least one hidden and output sizes, got {sizes}")
        pops = [Population("input", sizes[0], tau=tau, activation="linear")]
        pops += [Population(f"hidden{i}", n, tau=tau, activation=activation) for i, n in enumerate(sizes[1:-1], 1)]
        pops.append(Population("output", sizes[-1], tau=tau, activation=output_activation))
        fb = FeedbackPopulation(feedback_rank, wiring=wiring, learning=feedback_learning, tau=feedback_tau,
                                learning_rate=feedback_learning_rate, weight_decay=feedback_weight_decay)
        return cls(pops, fb, **kwargs)

    @classmethod
    def from_spec(cls, spec: str | os.PathLike | Mapping[str, Any], **overrides: Any) -> RateNetwork:
        """Build from a declarative spec (``models/rate_*.toml``, read with
        :func:`bioplastic.architectures.load_spec`): keys ``sizes``, ``activation``, ``output_activation``,
        ``tau``, ``tau_error``, ``learning_rate``, ``seed`` and a ``[feedback]`` table (``rank``, ``wiring``,
        ``learning``, ``tau``, ``learning_rate``, ``weight_decay``). ``overrides`` replace top-level keys.

        Raises
        ------
        ValueError
            A spec whose ``architecture`` is not ``"rate_network"`` or with unknown keys.
        """
        from bioplastic.architectures.spec import load_spec

        s = {**load_spec(dict(spec) if isinstance(spec, Mapping) else spec), **overrides}
        if s.get("architecture") != "rate_network":
            raise ValueError(f"spec {s.get('name')!r} has architecture {s.get('architecture')!r}, "
                             "expected 'rate_network'")
        fb = dict(s.get("feedback", {}))
        allowed_fb = {"rank", "wiring", "learning", "tau", "learning_rate", "weight_decay"}
        if set(fb) - allowed_fb:
            raise ValueError(f"unknown [feedback] keys {sorted(set(fb) - allowed_fb)}; allowed: {sorted(allowed_fb)}")
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
        rename = {"rank": "feedback_rank", "wiring": "wiring", "learning": "feedback_learning",
                  "tau": "feedback_tau", "learning_rate": "feedback_learning_rate",
                  "weight_decay": "feedback_weight_decay"}
        kw.update({rename[k]: v for k, v in fb.items()})
        return cls.from_sizes(s["sizes"], **kw)

    def __repr__(self) -> str:
        sizes = "-".join(str(p.size) for p in self.populations)
        fb = self.feedback
        return (f"RateNetwork({sizes}, feedback rank {fb.rank} {fb.wiring}/{fb.learning}, "
                f"eta={self.learning_rate}/s, seed={self.seed}, {str(self.dtype).replace('torch.', '')}, "
                f"{self.device})")

    # ------------------------------------------------------------------ simulation
    def run(self, stimuli: Any, targets: Any = None, *, backend: str = "torch", **options: Any):
        """Present ``stimuli`` one after another and simulate; see :func:`bioplastic.rate.simulate`."""
        from bioplastic.rate.simulate import simulate

        return simulate(self, stimuli, targets, backend=backend, **options)

    def predict(self, stimuli: Any, **options: Any) -> torch.Tensor:
        """Output rates at the end of each presentation, learning off; see :func:`bioplastic.rate.predict`."""
        from bioplastic.rate.simulate import predict

        return predict(self, stimuli, **options)


__all__ = ["Population", "FeedbackPopulation", "Projection", "FeedbackGroup", "RateNetwork", "WIRINGS",
           "FEEDBACK_RULES", "BACKENDS", "ERROR_POPULATION", "LEARNING_RATE_SCALINGS"]
