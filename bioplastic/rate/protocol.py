"""The presentation protocol: a validated schedule of stimuli, targets and plasticity, read by every backend.

Like the device-independent part of a brian2 run: :func:`make_protocol` checks a simulation request against a
network (shapes, units, NaN/Inf, options) and returns a :class:`Protocol` that the backends
(:mod:`bioplastic.rate.torch_backend`, :mod:`bioplastic.rate.brian2_backend`) execute. It reads the network only
through its public attributes and imports no other module of :mod:`bioplastic.rate` but the leaves (units,
populations).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bioplastic._checks import check_choice, check_finite, check_positive_int
from bioplastic.rate.populations import ERROR_POPULATION
from bioplastic.rate.units import to_si

__all__ = ["Protocol", "make_protocol", "as_tensor", "METHODS", "RECORDABLE"]

Method = Literal["exponential", "euler"]
METHODS: tuple[str, ...] = ("exponential", "euler")
RECORDABLE: tuple[str, ...] = ("rate", "apical")


@dataclass(frozen=True)
class Protocol:
    """A validated simulation request (built by :func:`make_protocol`; backends read only this).

    ``stimuli`` (n_presentations, n_in) and ``targets`` (n_presentations, d) are float64 CPU tensors;
    presentation ``p`` of parallel trial ``k`` shows stimulus ``p * batch_size + k``. ``gate`` (n_steps,) is
    True on the steps where plasticity is on.
    """

    stimuli: torch.Tensor
    targets: torch.Tensor
    presentation: float
    dt: float
    steps_per_presentation: int
    plasticity_delay_steps: int
    learn: bool
    method: str
    batch_size: int
    record: tuple[str, ...]
    record_every: int
    record_weights: tuple[str, ...]
    progress: bool

    @property
    def n_blocks(self) -> int:
        return self.stimuli.shape[0] // self.batch_size

    @property
    def n_steps(self) -> int:
        return self.n_blocks * self.steps_per_presentation

    @property
    def gate(self) -> np.ndarray:
        within = np.arange(self.n_steps) % self.steps_per_presentation
        return (within >= self.plasticity_delay_steps) & self.learn

    @property
    def recorded_steps(self) -> np.ndarray:
        return np.arange(0, self.n_steps, self.record_every)

    def alpha(self, tau: float) -> float:
        """Relaxation factor per step: ``dt/tau`` (Euler) or ``1 - exp(-dt/tau)`` (exponential)."""
        return self.dt / tau if self.method == "euler" else -math.expm1(-self.dt / tau)


def as_tensor(name: str, value: Any) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a bad input
        raise ValueError(f"{name} must be an array of numbers, got {type(value).__name__}") from exc
    return t.detach().cpu()


def make_protocol(
    net,
    stimuli: Any,
    targets: Any = None,
    *,
    presentation: float = 0.05,
    dt: float = 0.001,
    method: str = "exponential",
    learn: bool | None = None,
    plasticity_delay: float = 0.0,
    batch_size: int = 1,
    record: Sequence[str] = ("rate",),
    record_every: int = 1,
    record_weights: bool | Sequence[str] = False,
    progress: bool = False,
) -> Protocol:
    """Validate a simulation request; see :func:`simulate` for the parameters."""
    x = as_tensor("stimuli", stimuli)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != net.input.size:
        raise ValueError(f"stimuli must have shape (n_presentations, {net.input.size}) for input population "
                         f"{net.input.name!r}, got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("stimuli is empty")
    if not (x.dtype.is_floating_point or x.dtype in (torch.uint8, torch.int16, torch.int32, torch.int64)):
        raise ValueError(f"stimuli must be numeric, got dtype {x.dtype}")
    x = x.to(torch.float64)
    check_finite("stimuli", x)
    d = net.output.size
    if targets is None:
        y = torch.zeros(x.shape[0], d, dtype=torch.float64)
    else:
        y = as_tensor("targets", targets)
        if y.ndim == 1:  # class labels
            if y.dtype.is_floating_point and not torch.equal(y, y.round()):
                raise ValueError("1-d targets are class labels and must be integers")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= d):
                raise ValueError(f"class labels must lie in [0, {d}), got range [{int(y.min())}, {int(y.max())}]")
            y = torch.nn.functional.one_hot(y.long(), d).to(torch.float64)
        if y.ndim != 2 or y.shape[1] != d or y.shape[0] != x.shape[0]:
            raise ValueError(f"targets must be class labels of shape ({x.shape[0]},) or rates of shape "
                             f"({x.shape[0]}, {d}), got {tuple(y.shape)}")
        y = y.to(torch.float64)
        check_finite("targets", y)
    if learn is None:
        learn = targets is not None
    if learn and targets is None:
        raise ValueError("learning needs targets (class labels or target rates of the output population)")
    presentation = to_si("presentation", presentation, "second")
    dt = to_si("dt", dt, "second")
    steps = presentation / dt
    if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or round(steps) < 1:
        raise ValueError(f"presentation ({presentation} s) must be a whole number of time steps dt ({dt} s)")
    steps = int(round(steps))
    delay = to_si("plasticity_delay", plasticity_delay, "second", allow_zero=True)
    delay_steps = int(math.ceil(delay / dt - 1e-9))
    if delay_steps >= steps:
        raise ValueError(f"plasticity_delay ({delay} s) must be shorter than the presentation ({presentation} s)")
    check_choice("integration method", method, METHODS)
    batch_size = check_positive_int("batch_size", batch_size)
    if x.shape[0] % batch_size:
        raise ValueError(f"the number of stimuli ({x.shape[0]}) must be a multiple of batch_size ({batch_size})")
    record = tuple(record)
    for v in record:
        check_choice("recorded variable", v, RECORDABLE)
    record_every = check_positive_int("record_every", record_every)
    if record_weights is True:
        rw = tuple(k for k in net.weight_shapes() if _is_plastic(net, k))
    elif record_weights is False or record_weights is None:
        rw = ()
    else:
        rw = tuple(record_weights)
        for k in rw:
            check_choice("recorded weight", k, sorted(net.weight_shapes()))
    for name, tau in [(p.name, p.tau) for p in net.populations[1:]] + [(ERROR_POPULATION, net.tau_error),
                                                                         ("feedback", net.feedback.tau)]:
        if method == "euler" and dt >= 2 * tau:
            raise ValueError(f"dt ({dt} s) >= 2 tau of population {name!r} ({tau} s): forward Euler is unstable")
    return Protocol(x, y, presentation, dt, steps, delay_steps, bool(learn), method, batch_size, record,
                    record_every, rw, bool(progress))


def _is_plastic(net, key: str) -> bool:
    if key.startswith("W_"):
        return True
    if key.startswith("b_"):
        return net.learn_biases
    for proj in net.projections:
        if proj.name == key:
            return proj.plastic
    return False


