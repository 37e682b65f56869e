"""Online learning with a rate network: stimulus after stimulus, learning curve as an xarray Dataset."""
from __future__ import annotations

import dataclasses
import logging
import math
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
import xarray as xr

from bioplastic._checks import check_positive_int
from bioplastic._progress import progress_bar
from bioplastic.io import stamp
from bioplastic.rate.dispatch import predict, simulate
from bioplastic.rate.network import RateNetwork
from bioplastic.rate.protocol import as_tensor
from bioplastic.rate.units import to_si

log = logging.getLogger(__name__)

#: Learning-rate schedules of :func:`train_online` (see :func:`learning_rate_scale`).
LEARNING_RATE_SCHEDULES = ("constant", "exponential", "cosine")


def learning_rate_scale(epoch: int, epochs: int, schedule: str | None = None, decay: float | None = None) -> float:
    """Factor multiplying the forward and feedback learning rates during epoch ``epoch`` (0-based) of ``epochs``.

    ``schedule``:

    - ``None`` / ``"constant"``: 1 (``decay`` must be None or 0).
    - ``"exponential"``: ``(1 - decay) ** epoch`` -- the rates shrink by the fraction ``decay`` (in [0, 1))
      after every epoch; ``decay`` None or 0 is the constant schedule.
    - ``"cosine"``: ``(1 + cos(pi * epoch / epochs)) / 2`` -- 1 in the first epoch, ``(1 + cos(pi (E-1)/E)) / 2``
      in the last one, never 0 (``decay`` must be None or 0).

    The factor is per pass through the training set, piecewise constant in time, so it does not depend on
    ``dt`` or on the presentation time (the rates themselves are per second).

    Raises
    ------
    ValueError
        Unknown schedule, ``decay`` outside [0, 1), a ``decay`` with a schedule that has none, ``epoch``
        outside [0, epochs).
    """
    if schedule is None:
        schedule = "exponential" if decay else "constant"
    if schedule not in LEARNING_RATE_SCHEDULES:
        raise ValueError(f"learning_rate_schedule must be one of {LEARNING_RATE_SCHEDULES} or None, got {schedule!r}")
    d = 0.0 if decay is None else float(decay)
    if not (0.0 <= d < 1.0) or not math.isfinite(d):
        raise ValueError(f"learning_rate_decay must lie in [0, 1), got {decay!r}")
    if d and schedule != "exponential":
        raise ValueError(f"learning_rate_decay={decay!r} applies to the exponential schedule, not {schedule!r}")
    epochs = check_positive_int("epochs", epochs)
    epoch = check_positive_int("epoch", epoch, minimum=0)
    if epoch >= epochs:
        raise ValueError(f"epoch {epoch} outside [0, {epochs})")
    if schedule == "exponential":
        return (1.0 - d) ** epoch
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    return 1.0


@contextmanager
def _scaled_learning_rates(net: RateNetwork, scale: float) -> Iterator[None]:
    """Multiply ``net``'s forward and feedback learning rates by ``scale`` inside the block, then restore them
    (also on errors). ``scale == 1`` leaves the network untouched."""
    if scale == 1.0:
        yield
        return
    eta, fb = net.learning_rate, net.feedback
    eta_b = getattr(net, "bias_learning_rate", None)
    net.learning_rate = eta * scale
    net.feedback = dataclasses.replace(fb, learning_rate=fb.learning_rate * scale)
    if eta_b is not None:
        net.bias_learning_rate = eta_b * scale
    try:
        yield
    finally:
        net.learning_rate, net.feedback = eta, fb
        if eta_b is not None:
            net.bias_learning_rate = eta_b


def evaluate(net: RateNetwork, stimuli: Any, labels: Any, *, presentation: float = 0.05, dt: float = 0.001,
             method: str = "exponential", batch_size: int = 1000) -> float:
    """Classification accuracy: the most active output unit at the end of a presentation (learning off).

    Parameters
    ----------
    stimuli : array_like, shape (n, n_in)
    labels : array_like of int, shape (n,)

    Returns
    -------
    float
        Fraction of stimuli whose label is the argmax of the output rates.

    Raises
    ------
    ValueError
        Shapes that do not match.
    """
    y = as_tensor("labels", labels).long()
    if y.ndim != 1 or y.shape[0] != as_tensor("stimuli", stimuli).reshape(-1, net.input.size).shape[0]:
        raise ValueError(f"labels must have shape (n_stimuli,), got {tuple(y.shape)}")
    out = predict(net, stimuli, presentation=presentation, dt=dt, method=method, batch_size=batch_size)
    return float((out.argmax(-1).cpu() == y).double().mean())


def train_online(
    net: RateNetwork,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    epochs: int = 1,
    presentations: int | None = None,
    eval_every: int = 500,
    presentation: float = 0.05,
    dt: float = 0.001,
    method: str = "exponential",
    plasticity_delay: float = 0.0,
    batch_size: int = 1,
    backend: str = "torch",
    codegen_target: str = "numpy",
    seed: int = 0,
    n_train_eval: int = 1000,
    progress: bool = False,
    learning_rate_schedule: str | None = None,
    learning_rate_decay: float | None = None,
) -> xr.Dataset:
    """Train ``net`` online (one stimulus per presentation, in shuffled order) and record a learning curve.

    Parameters
    ----------
    net : RateNetwork
        Trained in place.
    x_train, x_test : array_like, shape (n, n_in)
    y_train, y_test : array_like of int, shape (n,)
        Class labels (one-hot targets for the error population).
    epochs : int
        Passes through the training set (each in a fresh random order drawn from ``seed``).
    presentations : int, optional
        Stop after this many presentations (overrides ``epochs``: as many shuffled passes as needed).
    eval_every : int
        Presentations between evaluations (test accuracy on all of ``x_test``, train accuracy on a fixed
        random subset of ``n_train_eval`` training stimuli), evaluated with the torch backend.
    presentation, dt, method, plasticity_delay, batch_size, backend, codegen_target
        As in :func:`bioplastic.rate.simulate` (``batch_size > 1``: parallel trials, mean update).
    seed : int
        Seed of the presentation order.
    learning_rate_schedule : {None, "constant", "exponential", "cosine"}
        Per-epoch schedule of the learning rates: during epoch ``k`` (0-based; presentations
        ``k n_train .. (k+1) n_train - 1``) the forward rate ``net.learning_rate`` and the feedback rate
        ``net.feedback.learning_rate`` (hence every synaptic rate, and the Kolen-Pollack / local weight decay,
        which acts at the learning rate) are multiplied by :func:`learning_rate_scale` ``(k, E, schedule,
        decay)``, with ``E`` the number of epochs run (``epochs``, or ``ceil(presentations / n_train)``).
        Piecewise constant per epoch, so independent of ``dt``. The network's own rates are changed only
        during each simulation call and restored afterwards (also on errors): ``net.to_dict()`` after training
        equals the config before. ``None`` with ``learning_rate_decay`` None / 0: constant rates (the previous
        behaviour, bit for bit); ``None`` with a non-zero decay: ``"exponential"``.
    learning_rate_decay : float, optional
        Fraction in [0, 1) by which the exponential schedule shrinks the rates after every epoch.

    Returns
    -------
    xarray.Dataset
        Dim ``step`` (stimuli presented so far, starting at 0); variables ``test_accuracy``,
        ``train_accuracy``, ``epoch`` (fractional epoch) and ``learning_rate_scale`` (the factor in force during
        the presentations before each step; 1 at step 0). Attributes: backend, network config, schedule.

    Raises
    ------
    ValueError
        Bad shapes or options (see :func:`bioplastic.rate.simulate`).
    """
    xtr = as_tensor("x_train", x_train).reshape(-1, net.input.size).to(torch.float64)
    ytr = as_tensor("y_train", y_train).long()
    if ytr.shape != (xtr.shape[0],):
        raise ValueError(f"y_train must have shape ({xtr.shape[0]},), got {tuple(ytr.shape)}")
    epochs = check_positive_int("epochs", epochs)
    eval_every = check_positive_int("eval_every", eval_every)
    batch_size = check_positive_int("batch_size", batch_size)
    if eval_every % batch_size:
        raise ValueError(f"eval_every ({eval_every}) must be a multiple of batch_size ({batch_size})")
    gen = torch.Generator().manual_seed(check_positive_int("seed", seed, minimum=0))
    if presentations is not None:
        presentations = check_positive_int("presentations", presentations)
        epochs = -(-presentations // xtr.shape[0])
    n_train = xtr.shape[0]
    if learning_rate_schedule is None and not learning_rate_decay:
        learning_rate_schedule = "constant"
    learning_rate_scale(0, epochs, learning_rate_schedule, learning_rate_decay)  # validates the options
    schedule = learning_rate_schedule or "exponential"
    decay = float(learning_rate_decay or 0.0)
    order = torch.cat([torch.randperm(xtr.shape[0], generator=gen) for _ in range(epochs)])
    total = len(order) if presentations is None else presentations
    total -= total % batch_size
    n_eval = min(n_train_eval, xtr.shape[0])
    # a fixed random subset (training sets may be sorted by class)
    eval_idx = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(seed + 1))[:n_eval]
    x_eval, y_eval = xtr[eval_idx], ytr[eval_idx]
    presentation_s = to_si("presentation", presentation, "second")
    dt_s = to_si("dt", dt, "second")
    ev = dict(presentation=presentation, dt=dt, method=method)

    steps, test_acc, train_acc = [0], [evaluate(net, x_test, y_test, **ev)], [evaluate(net, x_eval, y_eval, **ev)]
    scales = [1.0]
    log.info("rate network %r: step 0 test accuracy %.4f", net, test_acc[-1])
    done = 0
    with progress_bar(total=total, disable=not progress, desc=f"online learning ({backend})") as bar:
        while done < total:
            n = min(eval_every - done % eval_every, total - done)
            scale = 1.0
            if schedule != "constant":
                # one simulate call never crosses an epoch boundary (rounded up to whole batches)
                epoch = done // n_train
                boundary = -(-((epoch + 1) * n_train) // batch_size) * batch_size
                n = min(n, boundary - done)
                scale = learning_rate_scale(epoch, epochs, schedule, decay)
            idx = order[done:done + n]
            with _scaled_learning_rates(net, scale):
                simulate(net, xtr[idx], ytr[idx], backend=backend, presentation=presentation, dt=dt,
                         method=method, plasticity_delay=plasticity_delay, batch_size=batch_size, record=(),
                         codegen_target=codegen_target)
            done += n
            bar.update(n)
            if done % eval_every and done < total:
                continue
            scales.append(scale)
            steps.append(done)
            test_acc.append(evaluate(net, x_test, y_test, **ev))
            train_acc.append(evaluate(net, x_eval, y_eval, **ev))
            log.info("step %d: test accuracy %.4f, train accuracy %.4f", done, test_acc[-1], train_acc[-1])
    steps_arr = np.asarray(steps)
    ds = xr.Dataset(
        {"test_accuracy": ("step", np.asarray(test_acc)), "train_accuracy": ("step", np.asarray(train_acc)),
         "epoch": ("step", steps_arr / xtr.shape[0]), "learning_rate_scale": ("step", np.asarray(scales))},
        coords={"step": ("step", steps_arr, {"long_name": "stimuli presented"})},
    )
    ds.attrs.update({"backend": backend, "presentation": presentation_s, "dt": dt_s, "method": method,
                     "batch_size": batch_size, "learning_rate_schedule": schedule,
                     "learning_rate_decay": decay})
    return stamp(ds, {"network": net.to_dict(), "backend": backend, "presentation": presentation_s, "dt": dt_s,
                      "method": method, "batch_size": batch_size, "seed": seed,
                      "learning_rate_schedule": schedule, "learning_rate_decay": decay,
                      "plasticity_delay": to_si("plasticity_delay", plasticity_delay, "second", allow_zero=True)})
