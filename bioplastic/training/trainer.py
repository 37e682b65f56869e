"""The training loop: one model, one learning rule, one seed, from a :class:`~bioplastic.training.config.TrainConfig`.

:func:`train` builds the model of the configuration's resolved spec, converts it to a learning rule with
:func:`bioplastic.convert` (backprop, feedback alignment, DFA, sign symmetry, Kolen-Pollack, LDFA of
Hanut & Kadmon 2025, arXiv:2502.20580), trains it and returns a :class:`RunResult`. Everything
:func:`bioplastic.compare` runs goes through here. The configuration and a run's identity live in
:mod:`bioplastic.training.config`, evaluation and the alignment record in :mod:`bioplastic.training.evaluation`,
mixed precision in :mod:`bioplastic.training.amp`.

What a step does (in this order)::

    x = dataset.transform(x_uint8[batch])            # on the training device
    x = dataset.augment(x, generator)                # training batches only, explicit torch.Generator
    with autocast:                                   # amp=True: bf16 on CPU, fp16 + GradScaler on CUDA
        loss = cross_entropy(model(x), y, label_smoothing)
    loss.backward()                                  # rule's weight updates and feedback updates as .grad
    optimizer.step(); feedback_optimizer.step()      # separate optimisers for forward / feedback weights
    scheduler.step()                                 # linear warm-up then cosine, per step
    bioplastic.nn.feedback_step(model)               # periodic feedback actions (normative SVD re-init)

No ``.item()`` or ``.cpu()`` inside a step: losses are summed on the device and read once per epoch.
Evaluation runs under ``torch.no_grad()`` in large batches. Divergence (non-finite training or test loss)
stops the run with ``status == "diverged"`` and NaN for the remaining epochs; no exception.

Randomness (same configuration -> same result, nothing global changed on return): the global torch RNG is
forked for the duration of :func:`train` and seeded with ``seed`` (model initialisation, random feedback
weights, dropout); the order of training samples comes from a CPU ``torch.Generator`` seeded with ``seed``,
the augmentation from a generator on the training device seeded with ``seed + 1``. All their states go into
the checkpoints, so an interrupted run resumed from its checkpoint ends with exactly the weights of an
uninterrupted one.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bioplastic._progress import progress_bar
from bioplastic.data.base import ArrayDataset
from bioplastic.training.amp import amp_dtype as _amp_dtype
from bioplastic.training.amp import autocast as _autocast
from bioplastic.training.amp import check_scaler_fits
from bioplastic.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from bioplastic.training.config import (OPTIMIZERS, RECIPE_DEFAULTS, RULE_TABLE_KEYS, TrainConfig, check_same_run,
                                        conversion_options, resolved_config)
from bioplastic.training.evaluation import check_model_fits, evaluate, record_alignment
from bioplastic.training.schedule import make_scheduler

# TrainConfig, evaluate, conversion_options ... are re-exported: the loop's public neighbours.
__all__ = [
    "TrainConfig", "RunResult", "train", "evaluate", "conversion_options", "OPTIMIZERS", "RECIPE_DEFAULTS",
    "RULE_TABLE_KEYS", "resolved_config",
]

log = logging.getLogger(__name__)

STATUSES = ("ok", "diverged")
HISTORY_TIMES = ("train_wall_time", "train_cpu_time")
"""Per-epoch times in the history (seconds of the epoch's training steps, evaluation excluded): wall-clock
(:func:`time.perf_counter`) and process CPU time (:func:`time.process_time`)."""


@dataclass
class RunResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    config : dict
        ``TrainConfig.to_dict()`` of the run with ``model`` resolved to the spec dict
        (:func:`resolved_config`), so the record says which architecture was trained even after the spec
        file changes.
    status : {"ok", "diverged"}
        ``"diverged"`` if the training or test loss became NaN/Inf; training stopped there.
    epochs_completed : int
        Epochs finished with finite losses.
    train_loss, test_loss, test_accuracy : numpy.ndarray
        Shape (epochs,): mean training loss over each epoch (with label smoothing, on augmented batches),
        test cross-entropy (nats) and top-1 test accuracy (fraction in [0, 1]) after each epoch; NaN from
        the diverging epoch on.
    layers : list of str
        Module names of the converted weight layers, forward order (the ``layer`` coordinate of
        :func:`bioplastic.nn.alignment`); empty if ``alignment`` was off.
    alignment : dict of str to numpy.ndarray
        Each variable of :func:`bioplastic.nn.alignment` (``update_cosine``, ``feedback_angle``,
        ``subspace_angle``), shape (epochs, len(layers)); NaN for epochs not run.
    model : torch.nn.Module
        The trained (converted) model, on CPU, in eval mode.
    seconds : float
        Wall-clock time of the whole call.
    epoch_seconds : numpy.ndarray
        Shape (epochs,): wall-clock seconds of each epoch's training steps (without evaluation); NaN for
        epochs not run in this call (e.g. restored from a checkpoint).
    device : str
        The device the run used.
    train_wall_time, train_cpu_time : numpy.ndarray
        Shape (epochs,), seconds: wall-clock time and CPU time (:func:`time.process_time`: user + system time
        of every thread of the process) of each epoch's training steps, without evaluation; from the
        history, so epochs restored from a checkpoint keep the times recorded when they ran. NaN for epochs
        not run (and for epochs of a checkpoint written before bioplastic recorded them). On a shared machine
        the CPU time of a one-thread run does not count the time spent waiting for a core; with several
        threads it is their sum (core-seconds). On a GPU it is the host's time only.
    """

    config: dict
    status: str
    epochs_completed: int
    train_loss: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    layers: list[str]
    alignment: dict[str, np.ndarray]
    model: nn.Module
    seconds: float
    epoch_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    device: str = "cpu"
    train_wall_time: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_cpu_time: np.ndarray = field(default_factory=lambda: np.zeros(0))


# --------------------------------------------------------------------------------------------------------
# helpers


def _torch_device(name: str) -> torch.device:
    """The torch device of a validated device string (``TrainConfig`` checked it): ``"auto"`` is CUDA where
    available, else CPU; a bare ``"cuda"`` takes the process's ``LOCAL_RANK`` (torchrun) or the current GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        local = os.environ.get("LOCAL_RANK")
        device = torch.device("cuda", int(local) if local is not None else torch.cuda.current_device())
    return device


def _distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised ``torch.distributed`` process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _make_optimizer(kind: str, params: list[nn.Parameter], lr: float, weight_decay: float, momentum: float):
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


def _feedback_hyper(config: TrainConfig, rule: Any) -> tuple[str, float, float]:
    """(optimiser kind, lr, weight decay) of the feedback optimiser.

    Precedence: ``rule_options`` > the config (explicit or the spec's recipe) > the rule's own default >
    the forward optimiser's value. Kolen-Pollack's fallback is the forward optimiser itself (same kind, lr and
    weight decay), so that ``B`` receives exactly ``W``'s update and converges to it (Akrout et al. 2019).
    """
    # Kolen-Pollack, and LDFA's q_only / oja whose Q learns by Kolen-Pollack: the feedback decays like W
    kp = rule.feedback_decay_follows_forward
    values = []
    for name, fallback in (("feedback_lr", config.lr), ("feedback_weight_decay", config.weight_decay if kp else 0.0)):
        value = config.rule_options.get(name)
        if value is None:
            value = getattr(config, name)
        if value is None:
            value = getattr(rule, name, None)
        values.append(float(fallback if value is None else value))
    kind = config.feedback_optimizer or (config.optimizer if kp else "adamw")
    return kind, values[0], values[1]


def _train_subset(dataset: ArrayDataset, max_train: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = dataset.x_train, dataset.y_train
    if max_train is None or max_train >= len(y):
        return x, y
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:max_train].sort().values
    return x[keep], y[keep]


def _rng_state(order_gen: torch.Generator, aug_gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "order": order_gen.get_state(), "augment": aug_gen.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], order_gen, aug_gen, device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    order_gen.set_state(state["order"].cpu())
    aug_gen.set_state(state["augment"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


# --------------------------------------------------------------------------------------------------------
# the loop


def train(
    config: TrainConfig,
    dataset: ArrayDataset,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    callbacks: Sequence[Callable[[int, dict[str, Any]], None]] = (),
) -> RunResult:
    """Train one model with one learning rule; resume from ``checkpoint_dir`` if it holds a checkpoint.

    Parameters
    ----------
    config : TrainConfig
        What to train and how.
    dataset : ArrayDataset
        From :func:`bioplastic.data.load_dataset`; not modified. Its tensors are copied to the device once.
    checkpoint_dir : path-like, optional
        Folder of ``checkpoint.pt``, written atomically after every epoch (model, both optimisers, schedulers,
        gradient scaler, RNG states, history). If it already holds a checkpoint of the same configuration
        (the model compared by the resolved spec's content, not its name: see :func:`resolved_config`),
        training continues from it (a finished or diverged run returns at once); the final weights equal
        those of an uninterrupted run.
    progress : bool
        Show a tqdm progress bar over epochs (rank 0 only).
    callbacks : sequence of callables
        ``callback(epoch, record)`` after each epoch's checkpoint, ``epoch`` counted from 1, ``record`` a
        dict with ``train_loss``, ``test_loss``, ``test_accuracy`` (floats) and ``status``. An exception
        raised here propagates (the checkpoint of that epoch is already written).

    Returns
    -------
    RunResult

    Raises
    ------
    ValueError
        Model spec incompatible with the dataset (input shape or number of classes), a checkpoint of a
        different configuration or a corrupt checkpoint (the message names the file), an unavailable
        device.

    Notes
    -----
    Under ``torch.distributed`` (process group initialised, e.g. by ``torchrun``) the model is wrapped in
    :class:`~torch.nn.parallel.DistributedDataParallel`. Every rank draws the same global batch, transforms
    and augments it with the same generator state, and takes its contiguous share
    (``torch.tensor_split``); each rank's loss is ``sum over its samples / global batch * world size``, so
    DDP's gradient average equals the single-process gradient of the mean loss even when the batch does not
    divide evenly. BatchNorm statistics and dropout masks are per rank. Only rank 0 writes checkpoints.
    """
    from bioplastic import nn as bnn
    from bioplastic.architectures.spec import build_model

    t_start = time.perf_counter()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    device = _torch_device(config.device)  # validated by TrainConfig
    rank, world = _distributed()
    spec, spec_name = config.model, config.spec_name  # resolved once, by TrainConfig
    rule = config.make_rule()
    config_dict = resolved_config(config)
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None

    x_train, y_train = _train_subset(dataset, config.max_train)
    n_train = len(y_train)
    if n_train == 0:
        raise ValueError(f"dataset {dataset.name!r} has no training samples")
    batch_size = config.batch_size
    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(total_steps, round(config.warmup_epochs * steps_per_epoch))
    amp = _amp_dtype(device, config.amp_dtype) if config.amp else None
    use_scaler = amp == torch.float16
    check_scaler_fits(rule, amp)

    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(config.seed)
        plain = build_model(spec)
        check_model_fits(plain, spec_name, dataset)
        model = bnn.convert(
            plain,
            rule,
            example_input=dataset.transform(dataset.x_train[:2]),
            **conversion_options(spec, plain, rule, exclude=config.exclude, ranks=config.ranks),
        ).to(device)
        del plain
        forward_params, feedback_params = bnn.split_parameters(model)
        optimizer = _make_optimizer(
            config.optimizer, forward_params, config.lr, config.weight_decay, config.momentum
        )
        feedback_optimizer = None
        if feedback_params:
            fb_kind, fb_lr, fb_wd = _feedback_hyper(config, rule)
            feedback_optimizer = _make_optimizer(fb_kind, feedback_params, fb_lr, fb_wd, config.momentum)
        optimizers = [o for o in (optimizer, feedback_optimizer) if o is not None]
        schedulers = make_scheduler(
            optimizers, total_steps, warmup_steps=warmup_steps, schedule=config.schedule
        )
        scaler = torch.amp.GradScaler(device.type) if use_scaler else None
        order_gen = torch.Generator().manual_seed(config.seed)
        aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)

        epochs = config.epochs
        history: dict[str, Any] = {
            "train_loss": [math.nan] * epochs,
            "test_loss": [math.nan] * epochs,
            "test_accuracy": [math.nan] * epochs,
            "train_wall_time": [math.nan] * epochs,  # s, the epoch's training steps (no evaluation)
            "train_cpu_time": [math.nan] * epochs,  # s, time.process_time() over the same steps
            "alignment": {},
            "layers": [],
            "status": "ok",
        }
        start_epoch = 0
        state = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
        if state is not None:
            check_same_run(state["config"], config_dict, checkpoint_path)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if feedback_optimizer is not None:
                feedback_optimizer.load_state_dict(state["feedback_optimizer"])
            for sched, sd in zip(schedulers, state["schedulers"]):
                sched.load_state_dict(sd)
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"], order_gen, aug_gen, device)
            history = state["history"]
            for name in HISTORY_TIMES:  # a checkpoint written before the times were recorded: NaN
                history.setdefault(name, [math.nan] * epochs)
            start_epoch = int(state["epoch"])
            log.info("resuming %s/%s from %s after epoch %d", config.rule, spec_name, checkpoint_path, start_epoch)

        raw_model = model
        if world > 1:
            ddp_kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
            model = torch.nn.parallel.DistributedDataParallel(raw_model, **ddp_kwargs)
        step_model: nn.Module = model
        compiled = False
        if config.compile:
            step_model = torch.compile(model)
            compiled = True

        x_train_dev, y_train_dev = x_train.to(device), y_train.to(device)
        x_test_dev, y_test_dev = dataset.x_test.to(device), dataset.y_test.to(device)
        n_align = min(config.alignment_batch, len(dataset.y_test))
        align_x = dataset.transform(x_test_dev[:n_align])
        align_y = y_test_dev[:n_align]
        loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        oja_targets = rule.reads_targets
        use_augment = bool(config.augment) and dataset.augment is not None
        epoch_seconds = np.full(epochs, np.nan)

        bar = progress_bar(
            total=epochs,
            initial=start_epoch,
            desc=f"{config.rule} {spec_name}",
            disable=not progress or rank != 0,
            leave=False,
        )

        def forward_backward(m, xb, yb, n_global):
            """Zero the gradients, run ``m`` on ``xb`` and backpropagate the rule's errors; returns this rank's
            summed loss. The loss is scaled so that the gradient is the mean over the global batch."""
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                out = m(xb)
            if oja_targets:  # Oja's rule on the label covariance (LDFA oja_covariance "targets" / "auto")
                bnn.set_targets(model, yb)
            loss_rank = F.cross_entropy(out.float(), yb, reduction="sum", label_smoothing=config.label_smoothing)
            loss = loss_rank * (world / n_global)
            (scaler.scale(loss) if scaler is not None else loss).backward()
            return loss_rank

        try:
            for epoch in range(start_epoch, epochs):
                if history["status"] != "ok":
                    break
                t_epoch, cpu_epoch = time.perf_counter(), time.process_time()
                model.train()
                perm = torch.randperm(n_train, generator=order_gen).to(device)
                loss_sum = torch.zeros((), device=device)
                for step in range(steps_per_epoch):
                    idx = perm[step * batch_size : (step + 1) * batch_size]
                    n_global = len(idx)
                    xb = dataset.transform(x_train_dev[idx])
                    if use_augment:
                        xb = dataset.augment(xb, aug_gen)
                    yb = y_train_dev[idx]
                    if world > 1:
                        xb = torch.tensor_split(xb, world)[rank]
                        yb = torch.tensor_split(yb, world)[rank]
                    try:
                        loss_rank = forward_backward(step_model, xb, yb, n_global)
                    except Exception as exc:
                        if not compiled:
                            raise
                        # torch.compile failed on this machine / model: fall back to eager mode once.
                        log.warning("torch.compile failed (%s: %s); continuing in eager mode", type(exc).__name__, exc)
                        step_model, compiled = model, False
                        loss_rank = forward_backward(step_model, xb, yb, n_global)
                    if scaler is not None:
                        if config.grad_clip is not None:
                            scaler.unscale_(optimizer)
                            torch.nn.utils.clip_grad_norm_(forward_params, config.grad_clip)
                        for opt in optimizers:
                            scaler.step(opt)
                        scaler.update()
                    else:
                        if config.grad_clip is not None:
                            torch.nn.utils.clip_grad_norm_(forward_params, config.grad_clip)
                        for opt in optimizers:
                            opt.step()
                    for sched in schedulers:
                        sched.step()
                    bnn.feedback_step(raw_model)
                    loss_sum += loss_rank.detach()
                if world > 1:
                    torch.distributed.all_reduce(loss_sum)
                train_loss = loss_sum / n_train
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                epoch_seconds[epoch] = time.perf_counter() - t_epoch
                cpu_seconds = time.process_time() - cpu_epoch

                test_loss, test_acc = evaluate(
                    raw_model,
                    x_test_dev,
                    y_test_dev,
                    dataset.transform,
                    batch_size=config.eval_batch_size,
                    amp_dtype=amp,
                )
                values = torch.stack([train_loss.float(), test_loss.float(), test_acc.float()]).cpu().tolist()
                finite = all(math.isfinite(v) for v in values)
                history["train_wall_time"][epoch] = float(epoch_seconds[epoch])  # also for a diverging epoch
                history["train_cpu_time"][epoch] = float(cpu_seconds)
                if finite:
                    history["train_loss"][epoch], history["test_loss"][epoch] = values[0], values[1]
                    history["test_accuracy"][epoch] = values[2]
                    if config.alignment:
                        record_alignment(raw_model, align_x, align_y, loss_fn, history, epoch, epochs)
                else:
                    history["status"] = "diverged"
                    log.warning(
                        "run %s/%s seed %d diverged in epoch %d (train loss %s, test loss %s); stopping it",
                        config.rule, spec_name, config.seed, epoch + 1, values[0], values[1],
                    )
                log.info(
                    "%s %s seed %d epoch %d/%d: train loss %.4f, test loss %.4f, test accuracy %.4f (%.1f s)",
                    config.rule, spec_name, config.seed, epoch + 1, epochs, values[0], values[1], values[2],
                    epoch_seconds[epoch],
                )
                if checkpoint_path is not None and rank == 0:
                    save_checkpoint(
                        {
                            "epoch": epoch + 1,
                            "config": config_dict,
                            "model": raw_model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "feedback_optimizer": feedback_optimizer.state_dict() if feedback_optimizer else None,
                            "schedulers": [s.state_dict() for s in schedulers],
                            "scaler": scaler.state_dict() if scaler is not None else None,
                            "rng": _rng_state(order_gen, aug_gen, device),
                            "history": history,
                        },
                        checkpoint_path,
                    )
                if world > 1 and checkpoint_path is not None:
                    torch.distributed.barrier()
                bar.update(1)
                bar.set_postfix(loss=f"{values[0]:.3f}", acc=f"{values[2]:.3f}")
                record = {
                    "train_loss": values[0], "test_loss": values[1], "test_accuracy": values[2],
                    "status": history["status"],
                }
                for callback in callbacks:
                    callback(epoch + 1, record)
        finally:
            bar.close()

    completed = sum(1 for v in history["train_loss"] if math.isfinite(v))
    raw_model.eval()
    return RunResult(
        config=config_dict,
        status=history["status"],
        epochs_completed=completed,
        train_loss=np.asarray(history["train_loss"], dtype=float),
        test_loss=np.asarray(history["test_loss"], dtype=float),
        test_accuracy=np.asarray(history["test_accuracy"], dtype=float),
        layers=list(history["layers"]),
        alignment={k: np.asarray(v, dtype=float) for k, v in history["alignment"].items()},
        model=raw_model.cpu(),
        seconds=time.perf_counter() - t_start,
        epoch_seconds=epoch_seconds,
        device=str(device),
        train_wall_time=np.asarray(history["train_wall_time"], dtype=float),
        train_cpu_time=np.asarray(history["train_cpu_time"], dtype=float),
    )
