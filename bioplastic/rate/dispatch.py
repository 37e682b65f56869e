"""The dispatcher: :func:`simulate` runs a network under a protocol on the chosen backend; :func:`predict`.

The layout follows brian2's devices: the network description (:mod:`bioplastic.rate.network`), the protocol
(:mod:`bioplastic.rate.protocol`), one module per backend (:mod:`bioplastic.rate.torch_backend`,
:mod:`bioplastic.rate.brian2_backend`) and this dispatcher, which imports the protocol, the backends and the
recording format and is imported by the network (``RateNetwork.run``), never the other way round.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import xarray as xr

from bioplastic._checks import check_choice, check_positive_int
from bioplastic.rate.brian2_backend import CODEGEN_TARGETS, run_brian2
from bioplastic.rate.protocol import as_tensor, make_protocol
from bioplastic.rate.recording import recording_dataset
from bioplastic.rate.torch_backend import run_torch

__all__ = ["simulate", "predict", "BACKENDS", "CODEGEN_TARGETS"]

Backend = Literal["torch", "brian2"]
BACKENDS: tuple[str, ...] = ("torch", "brian2")


def simulate(
    net,
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
        result = run_torch(net, proto)
    else:
        if proto.batch_size != 1:
            raise ValueError("the brian2 backend simulates one trial at a time: batch_size must be 1")
        result = run_brian2(net, proto, codegen_target=codegen_target)
    return recording_dataset(net, proto, result, backend=backend,
                             codegen_target=codegen_target if backend == "brian2" else "")


def predict(net, stimuli: Any, *, presentation: float = 0.05, dt: float = 0.001,
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
    x = as_tensor("stimuli", stimuli)
    batch_size = check_positive_int("batch_size", batch_size)
    outs = []
    for start in range(0, max(1, x.shape[0]), batch_size):
        chunk = x[start:start + batch_size]
        proto = make_protocol(net, chunk, None, presentation=presentation, dt=dt, method=method, learn=False,
                              batch_size=chunk.shape[0] if chunk.ndim == 2 else 1, record=())
        outs.append(run_torch(net, proto)["final_output"])
    return torch.cat(outs)


