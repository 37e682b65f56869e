"""The training engine: one model, one learning rule, one seed, from a declarative configuration.

:func:`train` builds the model of a spec (``models/*.toml``), converts it to a learning rule with
:func:`bioplastic.convert` (backprop, feedback alignment, DFA, sign symmetry, Kolen-Pollack, LDFA of
Hanut & Kadmon 2025, arXiv:2502.20580), trains it and returns a :class:`RunResult`. Everything
:func:`bioplastic.compare` runs goes through here.

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

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from bioplastic._progress import progress_bar

from bioplastic._checks import check_choice, check_positive_int
from bioplastic.data.base import ArrayDataset
from bioplastic.training.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from bioplastic.training.schedule import SCHEDULES, make_scheduler

__all__ = [
    "TrainConfig", "RunResult", "train", "evaluate", "conversion_options", "OPTIMIZERS", "RECIPE_DEFAULTS",
    "RULE_TABLE_KEYS", "resolved_config",
]

log = logging.getLogger(__name__)

Optimizer = Literal["adam", "adamw", "sgd"]
OPTIMIZERS = ("adam", "adamw", "sgd")
STATUSES = ("ok", "diverged")
AMP_DTYPES = ("auto", "bfloat16", "float16")

#: Built-in values of the recipe fields, used where neither the config nor the spec's ``[training]``
#: table sets them.
RECIPE_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 128,
    "lr": 1e-3,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "momentum": 0.9,
    "feedback_lr": None,
    "feedback_weight_decay": None,
    "feedback_optimizer": None,
    "schedule": "cosine",
    "warmup_epochs": 0.0,
    "label_smoothing": 0.0,
    "augment": True,
    "grad_clip": None,
}


@dataclass(frozen=True)
class TrainConfig:
    """Configuration of one training run (JSON-able through :meth:`to_dict`).

    *Recipe fields* (``epochs`` ... ``grad_clip``) left at None take their value from the model spec's
    ``[training]`` table (e.g. ``models/mlp_mnist.toml``), else from :data:`RECIPE_DEFAULTS`; the
    resolved values are stored, so ``TrainConfig(model="mlp_mnist").epochs`` is the spec's recipe.

    Parameters
    ----------
    model : str or dict
        Spec name in ``models/`` (``"mlp_mnist"``, ``"cnn_small"`` ...), path to a TOML file, or a spec dict.
    rule : str
        One of :data:`bioplastic.rules.RULE_NAMES`.
    rule_options : dict
        Passed to :func:`bioplastic.rules.make` (e.g. ``{"rank": 10, "feedback_learning": "normative"}``).
        For low-rank rules without ``rank`` / ``rank_fraction``, the spec's ``[rule]`` table supplies them
        (e.g. ``rank_fraction = 0.25`` in ``models/cnn_small.toml``); the resolved options are stored.
    epochs : int
        Passes over the training set.
    batch_size : int
        Global batch size (split across ranks under ``torch.distributed``).
    lr : float
        Base learning rate of the forward weights (peak of the schedule).
    optimizer : {"adam", "adamw", "sgd"}
        Optimiser of the forward weights (``sgd`` uses ``momentum``, Nesterov off).
    weight_decay : float
        Weight decay of the forward optimiser (decoupled for ``adamw``, L2 for ``adam`` / ``sgd``).
    momentum : float
        SGD momentum.
    feedback_lr : float or None
        Learning rate of the separate feedback optimiser. Where None: ``rule_options["feedback_lr"]``, else
        the spec's recipe, else the rule's own ``feedback_lr``, else ``lr``.
    feedback_weight_decay : float or None
        Weight decay of the feedback optimiser, resolved like ``feedback_lr`` (last resort 0).
    feedback_optimizer : {"adam", "adamw", "sgd"} or None
        Optimiser of the feedback weights. None: AdamW (the LDFA authors' choice), except for Kolen-Pollack,
        whose feedback weights get the forward optimiser, learning rate and weight decay (so ``B -> W``).
    schedule : {"constant", "cosine"}
        Learning-rate shape after the warm-up, applied per step to both optimisers
        (:func:`bioplastic.training.schedule.lr_factor`).
    warmup_epochs : float
        Linear warm-up length in epochs (rounded to whole steps).
    label_smoothing : float
        Cross-entropy label smoothing in [0, 1) (Szegedy et al. 2016).
    augment : bool
        Apply the dataset's ``augment`` (if it has one) to training batches.
    grad_clip : float or None
        Clip the global norm of the forward-weight gradients to this value.
    amp : bool
        Mixed precision with :func:`torch.autocast` (losses, evaluation metrics and optimiser states stay
        float32).
    amp_dtype : {"auto", "bfloat16", "float16"}
        Autocast dtype. ``"auto"``: bfloat16 on CPU; on CUDA bfloat16 where the GPU supports it, else
        float16. float16 uses a :class:`torch.amp.GradScaler` (dynamic loss scaling); it is refused for
        LDFA with ``normative`` or ``oja`` feedback learning, whose feedback gradients do not scale with the
        loss (the scaler would unscale them wrongly).
    compile : bool
        ``torch.compile`` the model (falls back to eager mode, with a warning, if compilation fails).
    seed : int
        Seed of the model initialisation, feedback weights, dropout, data order and augmentation.
    device : str
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` ...
    max_train : int or None
        Train on a fixed random subset of this many training samples (the same subset for every seed
        and rule; drawn with seed 0); None uses all.
    exclude : list of str or None
        Module names kept on backprop (``bioplastic.convert(exclude=...)``). None: the spec's
        ``[rule].exclude``, else none.
    ranks : dict of str to int, or None
        Per-layer feedback rank ``{"layer.name": r}`` for low-rank rules (``bioplastic.convert(ranks=...)``).
        None: the spec's ``[rule].ranks``; layers matching the spec's ``[rule].rank_multipliers``
        (``{"qkv": 3}``: every layer whose name ends in ``qkv``) get that multiple of an absolute ``rank``.
    alignment : bool
        After each epoch, :func:`bioplastic.nn.alignment` on a fixed batch of ``alignment_batch`` test
        samples (model in eval mode).
    alignment_batch : int
        Size of that batch.
    eval_batch_size : int
        Batch size of the evaluation passes (no gradients, so large).

    Raises
    ------
    ValueError
        On construction: unknown rule / optimiser / schedule (lists the allowed values), invalid rule
        options, non-positive sizes or rates, unknown keys in the spec's ``[training]`` table.
    """

    model: str | dict = "mlp_mnist"
    rule: str = "bp"
    rule_options: dict = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: Optimizer | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    feedback_lr: float | None = None
    feedback_weight_decay: float | None = None
    feedback_optimizer: Optimizer | None = None
    schedule: Literal["constant", "cosine"] | None = None
    warmup_epochs: float | None = None
    label_smoothing: float | None = None
    augment: bool | None = None
    grad_clip: float | None = None
    amp: bool = False
    amp_dtype: Literal["auto", "bfloat16", "float16"] = "auto"
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    max_train: int | None = None
    exclude: list[str] | None = None
    ranks: dict[str, int] | None = None
    alignment: bool = True
    alignment_batch: int = 512
    eval_batch_size: int = 4096

    def __post_init__(self) -> None:
        from bioplastic import rules
        from bioplastic.architectures.spec import load_spec

        spec = load_spec(self.model)
        recipe = dict(spec.get("training", {}))
        unknown = sorted(set(recipe) - set(RECIPE_DEFAULTS))
        if unknown:
            raise ValueError(
                f"model spec {spec.get('name')!r}: unknown keys {unknown} in its [training] table; "
                f"allowed: {', '.join(RECIPE_DEFAULTS)}"
            )
        for key, default in RECIPE_DEFAULTS.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, recipe.get(key, default))
        options = dict(self.rule_options)
        check_choice("rule", self.rule, rules.RULE_NAMES)
        rule_table = _rule_table(spec)
        accepted = rules.options(self.rule)
        if "rank" in accepted and "rank" not in options and "rank_fraction" not in options:
            for key in ("rank", "rank_fraction"):
                if key in rule_table:
                    options[key] = rule_table[key]
        object.__setattr__(self, "rule_options", options)
        if self.exclude is not None:
            if isinstance(self.exclude, str) or not all(isinstance(n, str) for n in self.exclude):
                raise ValueError(f"exclude must be a list of module names, got {self.exclude!r}")
            object.__setattr__(self, "exclude", list(self.exclude))
        if self.ranks is not None:
            if not isinstance(self.ranks, dict):
                raise ValueError(f"ranks must be a dict {{layer name: rank}}, got {self.ranks!r}")
            object.__setattr__(
                self, "ranks", {str(k): check_positive_int(f"ranks[{k!r}]", v) for k, v in self.ranks.items()}
            )
        rules.make(self.rule, **self.rule_options)  # invalid options fail here, before any training
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.feedback_optimizer is not None:
            check_choice("feedback_optimizer", self.feedback_optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("amp_dtype", self.amp_dtype, AMP_DTYPES)
        for name in ("epochs", "batch_size", "alignment_batch", "eval_batch_size"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        if self.max_train is not None:
            object.__setattr__(self, "max_train", check_positive_int("max_train", self.max_train))
        check_positive_int("seed", self.seed, minimum=0)
        _check_number("lr", self.lr, positive=True)
        for name in ("weight_decay", "momentum", "warmup_epochs"):
            _check_number(name, getattr(self, name))
        for name in ("feedback_lr", "grad_clip"):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), positive=True)
        if self.feedback_weight_decay is not None:
            _check_number("feedback_weight_decay", self.feedback_weight_decay)
        _check_number("label_smoothing", self.label_smoothing)
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) exceeds epochs ({self.epochs})")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary of every field (``TrainConfig(**d)`` rebuilds the same config)."""
        return dataclasses.asdict(self)

    def make_rule(self):
        """The :class:`bioplastic.rules.Rule` of this run (``rules.make(rule, **rule_options)``)."""
        from bioplastic import rules

        return rules.make(self.rule, **self.rule_options)


#: Keys a spec's ``[rule]`` table may hold (conversion suggestions read by :func:`train`).
RULE_TABLE_KEYS = ("rank", "rank_fraction", "exclude", "ranks", "rank_multipliers", "output_layer")


def _rule_table(spec: dict[str, Any]) -> dict[str, Any]:
    table = dict(spec.get("rule", {}) or {})
    unknown = sorted(set(table) - set(RULE_TABLE_KEYS))
    if unknown:
        raise ValueError(
            f"model spec {spec.get('name')!r}: unknown keys {unknown} in its [rule] table; "
            f"allowed: {', '.join(RULE_TABLE_KEYS)}"
        )
    return table


def conversion_options(spec: Mapping[str, Any], model: nn.Module, rule: Any, *,
                       exclude: Sequence[str] | None = None,
                       ranks: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`bioplastic.convert` for a run: ``exclude``, ``ranks``, ``output_layer``.

    The one place where a model spec's ``[rule]`` table becomes conversion options: training
    (:func:`train`), the saved-model store and the FLOP counter (:mod:`bioplastic.training.flops`) call it,
    so FLOPs are counted on the model that is trained.

    Parameters
    ----------
    spec : mapping
        The resolved model spec (:func:`bioplastic.architectures.load_spec`).
    model : torch.nn.Module
        The spec's (plain) model: its module names are matched.
    rule : bioplastic.rules.Rule
        The run's rule.
    exclude : sequence of str, optional
        A run's own exclusions (``TrainConfig.exclude``); None: the spec's ``[rule].exclude`` (for the
        direct rules without the entries that hold the output layer, the source of the output error they
        deliver).
    ranks : mapping of str to int, optional
        A run's own per-layer ranks (``TrainConfig.ranks``), applied last.

    Returns
    -------
    dict
        ``exclude`` (list), and where they apply ``output_layer`` and ``ranks``. ``ranks`` (low-rank rules
        only): the spec's ``[rule].rank_multipliers`` applied to an absolute ``rank`` (``{"qkv": 3}``: each
        weight layer whose module name ends in ``qkv`` gets ``3 * rank``, the fused query-key-value
        projection of a transformer, Hanut & Kadmon 2025), then the spec's ``[rule].ranks``, then ``ranks``
        (later ones win).

    Raises
    ------
    ValueError
        Unknown keys in the spec's ``[rule]`` table; a rank multiplier that is not a positive integer.
    """
    table = _rule_table(spec)
    out: dict[str, Any] = {"exclude": list(exclude if exclude is not None else table.get("exclude", []))}
    if "output_layer" in table:
        out["output_layer"] = table["output_layer"]
    if exclude is None and getattr(rule, "direct", False) and out["exclude"]:
        # The spec's exclusions (e.g. "keep the classifier on backprop") are suggestions for the layer-wise
        # rules; a direct rule (dfa, direct_ldfa) needs its output layer converted, as the source of e.
        weight_layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        output_name = out.get("output_layer") or (weight_layers[-1] if weight_layers else "")
        kept = [e for e in out["exclude"] if not (output_name == e or output_name.startswith(e + "."))]
        if kept != out["exclude"]:
            log.info("%s: the spec's exclude %s holds the output layer %r, the source of the output error; "
                     "converting it", rule.name, sorted(set(out["exclude"]) - set(kept)), output_name)
        out["exclude"] = kept
    if getattr(rule, "feedback", None) not in ("low_rank", "direct_low_rank"):
        return out
    layer_ranks: dict[str, int] = {}
    base = getattr(rule, "rank", None)
    multipliers = dict(table.get("rank_multipliers", {}) or {})
    if base is not None and multipliers:
        for name, module in model.named_modules():
            if not isinstance(module, (nn.Linear, nn.Conv2d)):
                continue
            for suffix, factor in multipliers.items():
                if name.endswith(suffix):
                    layer_ranks[name] = int(base) * check_positive_int(f"rank_multipliers[{suffix!r}]", factor)
    layer_ranks.update(table.get("ranks", {}) or {})
    layer_ranks.update(ranks or {})
    if layer_ranks:
        out["ranks"] = layer_ranks
    return out


def _check_number(name: str, value: Any, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")


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


# --------------------------------------------------------------------------------------------------------
# helpers


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: {exc}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
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
    kp = rule.name == "kolen_pollack" or getattr(rule, "feedback_learning", None) in ("q_only", "oja")
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


def _amp_dtype(device: torch.device, amp_dtype: str) -> torch.dtype:
    if amp_dtype == "bfloat16":
        return torch.bfloat16
    if amp_dtype == "float16":
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` with ``dtype``; a no-op context for ``dtype=None`` (amp off)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _check_model_fits(model: nn.Module, spec_name: str, dataset: ArrayDataset) -> None:
    """Run two training samples through the plain model: the output must be (2, n_classes)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(dataset.transform(dataset.x_train[:2]))
    except Exception as exc:  # any shape error inside the model
        raise ValueError(
            f"model spec {spec_name!r} cannot take inputs of dataset {dataset.name!r} "
            f"(shape {tuple(dataset.input_shape)}): {exc}"
        ) from exc
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, dataset.n_classes):
        raise ValueError(
            f"model spec {spec_name!r} gives outputs of shape {tuple(out.shape[1:])} per sample but dataset "
            f"{dataset.name!r} has {dataset.n_classes} classes"
        )


def _train_subset(dataset: ArrayDataset, max_train: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = dataset.x_train, dataset.y_train
    if max_train is None or max_train >= len(y):
        return x, y
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:max_train].sort().values
    return x[keep], y[keep]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 4096,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and top-1 accuracy of ``model`` on (``x``, ``y``), computed without gradients.

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated in eval mode (restored to its previous mode on return).
    x : torch.Tensor
        Stored inputs (N, ...), on the model's device; ``transform(x[batch])`` gives model inputs.
    y : torch.Tensor
        Labels (N,), int64, same device.
    batch_size : int
        Samples per forward pass.
    amp_dtype : torch.dtype, optional
        Run the forward passes under autocast with this dtype (None: full precision).

    Returns
    -------
    (loss, accuracy) : tuple of 0-d float tensors on the model's device
        Mean cross-entropy in nats and accuracy as a fraction; read them once (no per-batch sync).
    """
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    try:
        for start in range(0, len(y), batch_size):
            xb, yb = transform(x[start : start + batch_size]), y[start : start + batch_size]
            with _autocast(x.device, amp_dtype):
                out = model(xb)
            out = out.float()
            loss += F.cross_entropy(out, yb, reduction="sum")
            correct += (out.argmax(dim=1) == yb).sum()
    finally:
        model.train(was_training)
    n = max(len(y), 1)
    return loss / n, correct.double() / n


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


def resolved_config(config: TrainConfig, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config.to_dict()`` with ``model`` replaced by the resolved spec (the dict of :func:`load_spec`).

    This is what :func:`train` stores in its checkpoints, compares when resuming and returns as
    ``RunResult.config``: a run named by a spec (``model="cnn_small"`` or a TOML path) is identified by the
    spec's content, so editing ``models/cnn_small.toml`` makes it a different run instead of silently
    resuming from checkpoints of the old spec. ``TrainConfig(**resolved_config(c))`` rebuilds the same run.
    The dict is JSON-normalised (tuples become lists), so it compares equal to a stored copy.
    """
    import json

    from bioplastic.architectures.spec import load_spec

    out = config.to_dict()
    out["model"] = json.loads(json.dumps(load_spec(config.model) if spec is None else spec, sort_keys=True,
                                         default=str))
    return out


# Fields that may differ between a checkpoint and the run resuming from it (they do not change the maths).
_RESUMABLE_DIFFERENCES = {"device", "compile", "eval_batch_size"}


def _describe_change(key: str, old: Any, new: Any) -> str:
    """``key: old -> new``; for two dicts (e.g. model specs) only the entries that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        inner = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return ", ".join(_describe_change(f"{key}.{k}", old.get(k), new.get(k)) for k in inner)
    return f"{key}: {old!r} -> {new!r}"


def _check_same_run(saved: dict, current: dict, path: Path) -> None:
    differ = sorted(
        k for k in set(saved) | set(current) if k not in _RESUMABLE_DIFFERENCES and saved.get(k) != current.get(k)
    )
    if differ:
        details = ", ".join(_describe_change(k, saved.get(k), current.get(k)) for k in differ)
        raise ValueError(
            f"checkpoint {path} belongs to a different run ({details}); use another checkpoint_dir or delete it"
        )


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
    from bioplastic.architectures.spec import build_model, load_spec

    t_start = time.perf_counter()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    device = _resolve_device(config.device)
    rank, world = _distributed()
    spec = load_spec(config.model)
    spec_name = str(spec.get("name", "<dict>"))
    rule = config.make_rule()
    config_dict = resolved_config(config, spec)
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
    if use_scaler and getattr(rule, "feedback_learning", None) in ("normative", "oja"):
        raise ValueError(
            f"float16 mixed precision cannot train {rule.name} with feedback_learning="
            f"{rule.feedback_learning!r}: its feedback gradients do not scale with the loss, so the gradient "
            "scaler would unscale them wrongly; use amp_dtype='bfloat16' or amp=False"
        )

    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(config.seed)
        plain = build_model(spec)
        _check_model_fits(plain, spec_name, dataset)
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
            "alignment": {},
            "layers": [],
            "status": "ok",
        }
        start_epoch = 0
        state = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
        if state is not None:
            _check_same_run(state["config"], config_dict, checkpoint_path)
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
        oja_targets = (getattr(rule, "feedback_learning", None) == "oja"
                       and getattr(rule, "oja_covariance", "error") != "error")
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
                t_epoch = time.perf_counter()
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
                if finite:
                    history["train_loss"][epoch], history["test_loss"][epoch] = values[0], values[1]
                    history["test_accuracy"][epoch] = values[2]
                    if config.alignment:
                        _record_alignment(bnn, raw_model, align_x, align_y, loss_fn, history, epoch, epochs)
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
    )


def _record_alignment(bnn, model, x, y, loss_fn, history: dict, epoch: int, epochs: int) -> None:
    """Per-layer alignment with backprop on a fixed batch, model in eval mode (no RNG draws leak out)."""
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            ds = bnn.alignment(model, x, y, loss_fn)
    finally:
        model.train(was_training)
    layers = [str(v) for v in ds["layer"].values]
    if not history["layers"]:
        history["layers"] = layers
    for name in ds.data_vars:
        if "layer" not in ds[name].dims:
            continue
        rows = history["alignment"].setdefault(name, [[math.nan] * len(layers) for _ in range(epochs)])
        rows[epoch] = [float(v) for v in np.asarray(ds[name].values, dtype=float)]
