"""Online learning with a rate network: stimulus after stimulus, learning curve as an xarray Dataset."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from bioplastic._checks import check_positive_int
from bioplastic.rate.simulate import _as_tensor, predict, simulate
from bioplastic.rate.units import to_si

if TYPE_CHECKING:
    from bioplastic.rate.model import RateNetwork

log = logging.getLogger(__name__)


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
    y = _as_tensor("labels", labels).long()
    if y.ndim != 1 or y.shape[0] != _as_tensor("stimuli", stimuli).reshape(-1, net.input.size).shape[0]:
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

    Returns
    -------
    xarray.Dataset
        Dim ``step`` (stimuli presented so far, starting at 0); variables ``test_accuracy``,
        ``train_accuracy`` and ``epoch`` (fractional epoch). Attributes: backend, network config.

    Raises
    ------
    ValueError
        Bad shapes or options (see :func:`bioplastic.rate.simulate`).
    """
    xtr = _as_tensor("x_train", x_train).reshape(-1, net.input.size).to(torch.float64)
    ytr = _as_tensor("y_train", y_train).long()
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
    log.info("rate network %r: step 0 test accuracy %.4f", net, test_acc[-1])
    done = 0
    with tqdm(total=total, disable=not progress, desc=f"online learning ({backend})") as bar:
        while done < total:
            n = min(eval_every, total - done)
            idx = order[done:done + n]
            simulate(net, xtr[idx], ytr[idx], backend=backend, presentation=presentation, dt=dt, method=method,
                     plasticity_delay=plasticity_delay, batch_size=batch_size, record=(),
                     codegen_target=codegen_target)
            done += n
            bar.update(n)
            steps.append(done)
            test_acc.append(evaluate(net, x_test, y_test, **ev))
            train_acc.append(evaluate(net, x_eval, y_eval, **ev))
            log.info("step %d: test accuracy %.4f, train accuracy %.4f", done, test_acc[-1], train_acc[-1])
    steps_arr = np.asarray(steps)
    ds = xr.Dataset(
        {"test_accuracy": ("step", np.asarray(test_acc)), "train_accuracy": ("step", np.asarray(train_acc)),
         "epoch": ("step", steps_arr / xtr.shape[0])},
        coords={"step": ("step", steps_arr, {"long_name": "stimuli presented"})},
    )
    ds.attrs.update({"backend": backend, "presentation": presentation_s, "dt": dt_s, "method": method,
                     "batch_size": batch_size})
    from bioplastic.io import stamp

    return stamp(ds, {"network": net.to_dict(), "backend": backend, "presentation": presentation_s, "dt": dt_s,
                      "method": method, "batch_size": batch_size, "seed": seed,
                      "plasticity_delay": to_si("plasticity_delay", plasticity_delay, "second", allow_zero=True)})
