"""The presentation protocol shared by both backends, the dispatcher and the recording format."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import xarray as xr

from bioplastic._checks import check_choice, check_finite, check_positive_int
from bioplastic.rate.model import BACKENDS, ERROR_POPULATION
from bioplastic.rate.units import to_si

if TYPE_CHECKING:
    from bioplastic.rate.model import RateNetwork

Method = Literal["exponential", "euler"]
METHODS: tuple[str, ...] = ("exponential", "euler")
RECORDABLE: tuple[str, ...] = ("rate", "apical")
CodegenTarget = Literal["numpy", "cython"]
CODEGEN_TARGETS: tuple[str, ...] = ("numpy", "cython")


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


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a bad input
        raise ValueError(f"{name} must be an array of numbers, got {type(value).__name__}") from exc
    return t.detach().cpu()


def make_protocol(
    net: RateNetwork,
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
    x = _as_tensor("stimuli", stimuli)
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
        y = _as_tensor("targets", targets)
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


def _is_plastic(net: RateNetwork, key: str) -> bool:
    if key.startswith("W_"):
        return True
    if key.startswith("b_"):
        return net.learn_biases
    for proj in net.projections:
        if proj.name == key:
            return proj.plastic
    return False


def simulate(
    net: RateNetwork,
    stimuli: Any,
    targets: Any = None,
    *,
    backend: str = "torch",
    presentation: float = 0.05,
    dt: float = 0.001,
    method: str = "exponential",
    learn: bool | None = None,
    plasticity_delay: float = 0.0,
    batch_size: int = 1,
    record: Sequence[str] = ("rate",),
    record_every: int = 1,
    record_weights: bool | Sequence[str] = False,
    codegen_target: str = "numpy",
    progress: bool = False,
) -> xr.Dataset:
    """Present stimuli one after another to a rate network and simulate it (learning if targets are given).

    Each stimulus is shown for ``presentation`` seconds (the input population is clamped to it) while the
    target drives the error population; the network is not reset between stimuli (continuous time), and
    starts at rest (all rates 0). Plasticity is on from ``plasticity_delay`` seconds after each stimulus
    onset to its end. With learning, the network's weights are updated in place.

    Parameters
    ----------
    net : RateNetwork
    stimuli : array_like, shape (n_presentations, n_in)
        Input rates (dimensionless).
    targets : array_like, shape (n_presentations,) int or (n_presentations, d) float, optional
        Class labels (one-hot targets) or target output rates. Without targets the error population
        receives ``y = 0`` and nothing learns.
    backend : {"torch", "brian2"}
        ``torch``: batched over parallel trials, on the network's device and dtype. ``brian2``:
        NeuronGroup / Synapses equations with units, float64, one trial.
    presentation, dt : float (seconds) or brian2 time quantity
        Presentation time and integration step; ``presentation`` must be a multiple of ``dt``.
    method : {"exponential", "euler"}
        Integration of the leaky rate equations: exact for inputs constant over a step
        (brian2 ``exponential_euler``) or forward Euler. Weights always use forward Euler.
    learn : bool, optional
        Default: learn when targets are given.
    plasticity_delay : float (seconds), default 0
        Plasticity is off for this long after each stimulus onset (lets the dynamics settle).
    batch_size : int, default 1
        Parallel trials (torch only): presentation ``p`` shows stimuli ``p*B ... p*B+B-1`` at once and the
        weight change is the trial mean (``batch_size=1`` is online learning).
    record : sequence of {"rate", "apical"}
        Variables recorded every ``record_every`` steps.
    record_weights : bool or sequence of str
        ``True`` records every plastic weight (use on small networks), or give weight names.
    codegen_target : {"numpy", "cython"}
        brian2 code generation target (used only by the brian2 backend; set for this run, then restored).
    progress : bool
        Show a tqdm progress bar (torch backend).

    Returns
    -------
    xarray.Dataset
        ``rate`` and ``apical`` (time, neuron) (plus a leading ``trial`` dim when ``batch_size > 1``);
        coordinates ``time`` (s), ``neuron`` with ``population`` and ``unit`` (index within the population);
        ``apical`` is NaN outside hidden populations. ``weight_change`` (time, synapse): each recorded
        weight minus its value at the start of the run, with synapse coordinates ``projection``, ``row``,
        ``column`` (indices into the weight matrix). ``stimulus_index`` (time,): presentation shown
        (trial 0). Attributes: backend, method, dt, presentation, config (JSON).

    Raises
    ------
    ValueError
        Wrong stimulus / target shapes, NaN/Inf, labels out of range, unknown options (the message lists the
        allowed values), presentation not a multiple of dt, wrong units of brian2 quantities, an unstable
        Euler step, ``batch_size > 1`` with brian2.
    """
    check_choice("backend", backend, BACKENDS)
    check_choice("codegen_target", codegen_target, CODEGEN_TARGETS)
    proto = make_protocol(net, stimuli, targets, presentation=presentation, dt=dt, method=method, learn=learn,
                          plasticity_delay=plasticity_delay, batch_size=batch_size, record=record,
                          record_every=record_every, record_weights=record_weights, progress=progress)
    if backend == "torch":
        from bioplastic.rate.torch_backend import run_torch

        result = run_torch(net, proto)
    else:
        if proto.batch_size != 1:
            raise ValueError("the brian2 backend simulates one trial at a time: batch_size must be 1")
        from bioplastic.rate.brian2_backend import run_brian2

        result = run_brian2(net, proto, codegen_target=codegen_target)
    return recording_dataset(net, proto, result, backend=backend,
                             codegen_target=codegen_target if backend == "brian2" else "")


def predict(net: RateNetwork, stimuli: Any, *, presentation: float = 0.05, dt: float = 0.001,
            method: str = "exponential", batch_size: int = 1000) -> torch.Tensor:
    """Output rates at the end of a presentation (learning off, each batch from rest), torch backend.

    Parameters
    ----------
    stimuli : array_like, shape (n, n_in)
    presentation, dt : float (seconds)
    batch_size : int
        Trials simulated in parallel (the last batch may be smaller).

    Returns
    -------
    torch.Tensor, shape (n, d)
        On the network's device; ``argmax(-1)`` is the predicted class.
    """
    from bioplastic.rate.torch_backend import run_torch

    x = _as_tensor("stimuli", stimuli)
    batch_size = check_positive_int("batch_size", batch_size)
    outs = []
    for start in range(0, max(1, x.shape[0]), batch_size):
        chunk = x[start:start + batch_size]
        proto = make_protocol(net, chunk, None, presentation=presentation, dt=dt, method=method, learn=False,
                              batch_size=chunk.shape[0] if chunk.ndim == 2 else 1, record=())
        outs.append(run_torch(net, proto)["final_output"])
    return torch.cat(outs)


def recording_dataset(net: RateNetwork, proto: Protocol, result: dict[str, Any], *, backend: str,
                      codegen_target: str = "") -> xr.Dataset:
    """Assemble the backend's arrays into the documented Dataset (see :func:`simulate`)."""
    pops = net.recorded_populations
    sizes = [net.size_of(p) for p in pops]
    population = np.concatenate([np.full(n, p, dtype=object) for p, n in zip(pops, sizes)]).astype(str)
    unit = np.concatenate([np.arange(n) for n in sizes])
    steps = proto.recorded_steps
    coords: dict[str, Any] = {
        "time": ("time", steps * proto.dt, {"units": "s", "long_name": "time since run start"}),
        "neuron": ("neuron", np.arange(len(population))),
        "population": ("neuron", population),
        "unit": ("neuron", unit),
    }
    data_vars: dict[str, Any] = {}
    trial_dims = ("trial",) if proto.batch_size > 1 else ()
    for var in proto.record:
        arr = result[var]  # (time, trial, neuron)
        if not trial_dims:
            arr = arr[:, 0]
        else:
            arr = np.moveaxis(arr, 1, 0)
        data_vars[var] = (trial_dims + ("time", "neuron"), arr,
                          {"units": "1", "long_name": {"rate": "firing rate (dimensionless)",
                                                      "apical": "apical (dendritic) error compartment"}[var]})
    if proto.record_weights:
        proj, rows, cols = [], [], []
        for k in proto.record_weights:
            shape = net.weight_shapes()[k]
            rr, cc = np.meshgrid(np.arange(shape[0]), np.arange(shape[1] if len(shape) > 1 else 1), indexing="ij")
            proj.append(np.full(rr.size, k, dtype=object))
            rows.append(rr.ravel())
            cols.append(cc.ravel())
        coords["synapse"] = ("synapse", np.arange(sum(len(p) for p in proj)))
        coords["projection"] = ("synapse", np.concatenate(proj).astype(str))
        coords["row"] = ("synapse", np.concatenate(rows))
        coords["column"] = ("synapse", np.concatenate(cols))
        data_vars["weight_change"] = (("time", "synapse"), result["weight_change"],
                                      {"units": "1", "long_name": "weight minus its value at the run start"})
    block = steps // proto.steps_per_presentation
    data_vars["stimulus_index"] = ("time", block * proto.batch_size,
                                   {"long_name": "index of the stimulus shown (trial 0)"})
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({
        "backend": backend, "codegen_target": codegen_target, "method": proto.method, "dt": proto.dt,
        "presentation": proto.presentation, "plasticity_delay": proto.plasticity_delay_steps * proto.dt,
        "learn": int(proto.learn), "batch_size": proto.batch_size, "n_presentations": proto.n_blocks,
        "rate_units": "dimensionless (rate / reference rate)",
        "model": "LDFA rate network (Hanut & Kadmon 2025, arXiv:2502.20580)",
    })
    from bioplastic.io import stamp

    return stamp(ds, {"network": net.to_dict(), "backend": backend, "method": proto.method, "dt": proto.dt,
                      "presentation": proto.presentation, "learn": proto.learn})

