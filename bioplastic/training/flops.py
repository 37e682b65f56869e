"""Training compute: FLOPs of one training step, BP versus the feedback rules, and FLOPs to a target accuracy.

Hanut & Kadmon (2025, arXiv:2502.20580) replace each weight layer's backward input-gradient matmul (a third
of its training FLOPs: forward ``h W^T``, weight gradient ``delta^T h``, input gradient ``delta W``) by two
thin matmuls ``(delta P) Q`` of cost ``r (in + out)`` per token, so the weight-layer FLOP ratio LDFA / BP
falls towards 2/3 as the rank r shrinks; they report over 20% less training compute for the ViT, measured
as FLOPs to reach 90% of the final accuracy.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`, which sees the aten ops run inside
the custom autograd Functions' backward of :func:`bioplastic.convert` (``tests/training/test_flops.py``
checks the counts against the closed forms of Linear, Conv2d and attention). CPU attention
(``_scaled_dot_product_flash_attention_for_cpu``) is not in torch's FLOP registry; it is counted here with
torch's own SDPA formulas. Models are converted with the same options as in training
(:func:`bioplastic.training.config.conversion_options`), so the FLOPs are those of the model trained.

Names
-----
count_step_flops   FLOPs of one forward + backward pass of a model on a batch
convert_like_training   a model spec's model converted to a rule exactly as :func:`bioplastic.compare` does
step_flops         FLOPs per training step of BP and LDFA at several ranks, per model spec (xarray Dataset)
epochs_to_target   fractional epoch at which an accuracy curve first reaches a target
time_to_target     seconds to a fractional epoch, from per-epoch times (interpolated like the FLOPs)
flops_to_target    FLOPs (and wall / CPU seconds) to reach a fraction of the final accuracy, per run of a
                   comparison result

``analyses/compute_savings.py`` adds measured step times and the figure.
"""
from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import xarray as xr
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

__all__ = ["count_step_flops", "convert_like_training", "step_flops", "epochs_to_target", "time_to_target",
           "flops_to_target", "input_shape"]

_aten = torch.ops.aten
_ATTENTION_OPS: dict[Any, Any] = {}
if hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu"):
    def _cpu_sdpa(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                           **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    _ATTENTION_OPS = {
        _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa,
        _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
    }


def _is_attention(op_name: str) -> bool:
    return "attention" in op_name


def count_step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """FLOPs of one forward + backward pass of cross-entropy training (optimiser excluded).

    Parameters
    ----------
    model : torch.nn.Module
        Plain or converted (:func:`bioplastic.convert`); put in training mode; its ``.grad`` fields are reset
        to None afterwards.
    x : torch.Tensor
        A batch, shape (N, ...) as the model takes it.
    y : torch.Tensor
        Its integer labels, shape (N,).

    Returns
    -------
    dict
        ``total`` (int), ``attention`` (the SDPA ops) and ``weight_layers`` (= total - attention) FLOPs,
        ``forward_weight_layers`` (the forward pass alone, attention excluded), and ``by_op`` (aten op name
        to FLOPs). One multiply-add counts as 2 FLOPs (torch's convention).

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from bioplastic.training.flops import count_step_flops
    >>> x, y = torch.randn(4, 3, requires_grad=True), torch.tensor([0, 1, 0, 1])
    >>> count_step_flops(nn.Linear(3, 2), x, y)["weight_layers"]  # 3 x 2 N in out: forward, weight, input grad
    144
    """
    model.train()
    with FlopCounterMode(display=False, custom_mapping=_ATTENTION_OPS) as counter:
        F.cross_entropy(model(x), y)
    forward_counts = {str(k): int(v) for k, v in counter.get_flop_counts()["Global"].items()}
    with FlopCounterMode(display=False, custom_mapping=_ATTENTION_OPS) as counter:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    counts = {str(k): int(v) for k, v in counter.get_flop_counts()["Global"].items()}
    model.zero_grad(set_to_none=True)
    total = sum(counts.values())
    attention = sum(v for k, v in counts.items() if _is_attention(k))
    return {
        "total": total,
        "attention": attention,
        "weight_layers": total - attention,
        "forward_weight_layers": sum(v for k, v in forward_counts.items() if not _is_attention(k)),
        "by_op": counts,
    }


def input_shape(spec: Mapping[str, Any]) -> tuple[int, ...]:
    """Shape of one input of a model spec: ``(in_features,)`` for an MLP spec (flat inputs), else
    (channels, height, width) of an image model (``in_channels``, ``image_size``; defaults 3 and 32)."""
    if "in_features" in spec:
        return (int(spec["in_features"]),)
    c = int(spec.get("in_channels", 3))
    s = int(spec.get("image_size", 32))
    return (c, s, s)


def convert_like_training(spec: Mapping[str, Any], plain: nn.Module, rule: Any, *, example_input: Any = None,
                          seed: int = 0, **rule_options: Any) -> nn.Module:
    """``plain`` (not modified) converted to ``rule`` with the options training uses for ``spec``.

    Parameters
    ----------
    spec : mapping
        The model spec (:func:`bioplastic.architectures.load_spec`) whose ``[rule]`` table gives ``exclude``,
        ``ranks``, ``rank_multipliers`` and ``output_layer``
        (:func:`bioplastic.training.config.conversion_options`).
    plain : torch.nn.Module
        The spec's model, unconverted.
    rule : str or bioplastic.rules.Rule
        A rule name (with ``rule_options`` passed to :func:`bioplastic.rules.make`) or a rule object.
    example_input : torch.Tensor, optional
        One input batch (needed by direct rules on convolutional models); default: two random inputs of the
        spec's :func:`input_shape` where the model has a Conv2d layer.
    seed : int
        Seed of the random feedback weights.

    Returns
    -------
    torch.nn.Module
        The converted copy. Rank clipping warnings (rank above a layer's maximum) are silenced; the clipped
        rank is used, as in training.
    """
    from bioplastic import rules
    from bioplastic.nn import convert
    from bioplastic.training.config import conversion_options

    rule_obj = rules.make(rule, **rule_options) if isinstance(rule, str) else rule
    if example_input is None and any(isinstance(m, nn.Conv2d) for m in plain.modules()):
        device = next(plain.parameters()).device
        example_input = torch.randn(2, *input_shape(spec), generator=torch.Generator().manual_seed(0)).to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return convert(plain, rule_obj, seed=seed, example_input=example_input,
                       **conversion_options(dict(spec), plain, rule_obj))


def step_flops(models: Sequence[str | Mapping[str, Any]], ranks: Sequence[int],
               feedback_learning: Sequence[str] = ("normative",), *, batch_size: int = 16, device: str = "cpu",
               seed: int = 0) -> xr.Dataset:
    """FLOPs of one training step of BP and of LDFA (``feedback_learning`` modes x ``ranks``), per model.

    Parameters
    ----------
    models : sequence of str or dict
        Model specs (names in ``models/``, TOML paths or spec dicts).
    ranks : sequence of int
        Absolute feedback ranks of LDFA (the spec's ``rank_multipliers`` apply, e.g. 3 r for a fused qkv).
    feedback_learning : sequence of str
        LDFA feedback-learning modes (``docs/rules.md``).
    batch_size : int
        Inputs per step (random images of the spec's :func:`input_shape`).
    device : str
        Where the models run.
    seed : int
        Seed of the models' initialisation and the random batch.

    Returns
    -------
    xarray.Dataset
        Dims ``model``, ``feedback_learning``, ``rank``. ``bp_flops``, ``bp_weight_flops``,
        ``bp_attention_flops``, ``forward_weight_flops`` (model); ``ldfa_flops``, ``ldfa_weight_flops``,
        ``flop_ratio`` (all counted ops) and ``weight_flop_ratio`` (weight layers: attention excluded), LDFA /
        BP (model, feedback_learning, rank); ``flop_ratio_limit`` = 2 F / BP with F the forward weight FLOPs,
        the r -> 0 limit of ``weight_flop_ratio`` (model); ``n_parameters`` (model).

    Raises
    ------
    ValueError
        Unknown model spec or feedback-learning mode, a rank below 1.
    """
    from bioplastic._checks import check_choice
    from bioplastic.architectures import build_model, load_spec
    from bioplastic.rules import FEEDBACK_LEARNING

    for fl in feedback_learning:
        check_choice("feedback_learning", fl, FEEDBACK_LEARNING)
    if not len(ranks) or min(int(r) for r in ranks) < 1:
        raise ValueError(f"ranks must be positive integers, got {list(ranks)}")
    dev = torch.device(device)
    names, n_f, n_r = [], len(feedback_learning), len(ranks)
    bp = {k: np.full(len(models), np.nan) for k in ("total", "weight_layers", "attention", "forward_weight_layers")}
    ld = {k: np.full((len(models), n_f, n_r), np.nan) for k in ("total", "weight_layers")}
    n_params = np.zeros(len(models), dtype=np.int64)
    for m, model_name in enumerate(models):
        spec = load_spec(model_name)
        names.append(str(spec.get("name", model_name)))
        torch.manual_seed(seed)
        plain = build_model(spec).to(dev)
        n_params[m] = sum(p.numel() for p in plain.parameters())
        x, y = random_batch(spec, batch_size, seed=seed, device=dev)
        counts = count_step_flops(convert_like_training(spec, plain, "bp"), x, y)
        for k in bp:
            bp[k][m] = counts[k]
        for f, fl in enumerate(feedback_learning):
            for r, rank in enumerate(ranks):
                variant = convert_like_training(spec, plain, "ldfa", rank=int(rank), feedback_learning=fl)
                c = count_step_flops(variant, x, y)
                ld["total"][m, f, r], ld["weight_layers"][m, f, r] = c["total"], c["weight_layers"]
    dims3 = ("model", "feedback_learning", "rank")
    return xr.Dataset(
        {
            "bp_flops": (("model",), bp["total"], {"units": "FLOP", "long_name": "BP training-step FLOPs"}),
            "bp_weight_flops": (("model",), bp["weight_layers"], {"units": "FLOP"}),
            "bp_attention_flops": (("model",), bp["attention"], {"units": "FLOP"}),
            "forward_weight_flops": (("model",), bp["forward_weight_layers"], {"units": "FLOP"}),
            "ldfa_flops": (dims3, ld["total"], {"units": "FLOP"}),
            "ldfa_weight_flops": (dims3, ld["weight_layers"], {"units": "FLOP"}),
            "flop_ratio": (dims3, ld["total"] / bp["total"][:, None, None],
                           {"long_name": "LDFA / BP training-step FLOPs (all counted ops)"}),
            "weight_flop_ratio": (dims3, ld["weight_layers"] / bp["weight_layers"][:, None, None],
                                  {"long_name": "LDFA / BP FLOPs of the weight layers"}),
            "flop_ratio_limit": (("model",), 2 * bp["forward_weight_layers"] / bp["weight_layers"],
                                 {"long_name": "r -> 0 limit of weight_flop_ratio: (forward + weight grad) / BP"}),
            "n_parameters": (("model",), n_params),
        },
        coords={"model": names, "feedback_learning": list(feedback_learning), "rank": [int(r) for r in ranks]},
        attrs={"batch_size": int(batch_size), "device": str(dev), "torch_version": str(torch.__version__),
               "source": "Hanut & Kadmon (2025) arXiv:2502.20580; FLOPs by torch.utils.flop_counter"},
    )


def random_batch(spec: Mapping[str, Any], batch_size: int, *, seed: int = 0,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A reproducible random batch for a model spec: inputs (batch_size, C, H, W) of :func:`input_shape`,
    standard normal, and labels in ``range(n_classes)``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, *input_shape(spec), generator=gen)
    y = torch.randint(0, int(spec.get("n_classes", 10)), (batch_size,), generator=gen)
    return x.to(device), y.to(device)


def epochs_to_target(accuracy: Any, target: float) -> float:
    """Fractional number of epochs at which an accuracy curve first reaches ``target``.

    Linear interpolation between epochs; before epoch 1 the accuracy is taken as 0 (so a target already
    passed at epoch 1 gives a fraction of epoch 1).

    Parameters
    ----------
    accuracy : array-like
        Accuracy after each epoch, epoch 1 first (NaN for epochs not run).
    target : float
        The accuracy to reach.

    Returns
    -------
    float
        Epochs (e.g. 2.5: half-way through the third epoch); NaN if never reached.

    Examples
    --------
    >>> epochs_to_target([0.2, 0.5, 0.8, 0.9], 0.65)
    2.5
    """
    acc = np.asarray(accuracy, dtype=float)
    hit = np.flatnonzero(np.isfinite(acc) & (acc >= target))
    if len(hit) == 0:
        return math.nan
    i = int(hit[0])
    prev = acc[i - 1] if i > 0 else 0.0
    if not np.isfinite(prev) or acc[i] == prev:
        return float(i + 1)
    return float(i + (target - prev) / (acc[i] - prev))


def time_to_target(epoch_times: Any, epochs: float) -> float:
    """Seconds of training to reach a fractional number of epochs, from each epoch's time.

    The cumulative time is interpolated linearly within an epoch, exactly as :func:`flops_to_target` reads
    FLOPs (every step of an epoch is taken to cost the same): with ``epochs = k + f`` (``k`` whole epochs,
    ``0 <= f < 1``) the time is ``t_1 + ... + t_k + f * t_(k+1)``. Paired with :func:`epochs_to_target`, it
    gives the wall-clock or CPU time to a target accuracy from the ``train_wall_time`` / ``train_cpu_time``
    curves of :func:`bioplastic.compare` (evaluation excluded).

    Parameters
    ----------
    epoch_times : array-like, shape (epochs,)
        Seconds of each epoch's training, epoch 1 first (NaN for epochs whose time was not recorded).
    epochs : float
        Fractional epochs, e.g. from :func:`epochs_to_target`; NaN gives NaN.

    Returns
    -------
    float
        Seconds; NaN if ``epochs`` is NaN or an epoch it needs has no recorded time.

    Raises
    ------
    ValueError
        ``epoch_times`` not 1-D, or ``epochs`` negative or beyond the epochs given.

    Examples
    --------
    >>> time_to_target([10.0, 20.0, 30.0], 2.5)
    45.0
    """
    t = np.asarray(epoch_times, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"epoch_times must be 1-D (one time per epoch), got shape {t.shape}")
    e = float(epochs)
    if math.isnan(e):
        return math.nan
    if not 0 <= e <= len(t):
        raise ValueError(f"epochs={e!r} lies outside the {len(t)} epochs whose times are given")
    whole = int(math.floor(e))
    part = e - whole
    total = float(t[:whole].sum())
    if part > 0:
        total += part * float(t[whole])
    return total  # NaN propagates from any epoch needed


def flops_to_target(curves: xr.Dataset, *, target: str = "bp", fraction: float = 0.9,
                    batch_size: int | None = None, device: str = "cpu") -> xr.Dataset:
    """FLOPs to reach ``fraction`` of the final accuracy, for each run of a comparison result.

    Parameters
    ----------
    curves : xarray.Dataset
        ``test_accuracy`` (rule, rank, seed, epoch) with ``base_rule`` / ``feedback_learning`` along
        ``rule`` and attrs ``config`` holding ``model`` (spec), ``train.batch_size``, ``train.max_train``
        and ``n_train`` (as written by :func:`bioplastic.compare`). Each cell's ``run_config`` (JSON of the
        run's TrainConfig), where present, gives the exact rule options (e.g. ``rank_fraction``) whose FLOPs
        are counted; otherwise they are rebuilt from ``base_rule``, ``feedback_learning`` and ``rank``.
    target : {"bp", "own"}
        ``fraction`` of BP's final accuracy (seed mean; the same target for every rule) or of each run's own.
    fraction : float
        0.9 in the paper.
    batch_size : int, optional
        Batch size of a step; default: the comparison's.
    device : str
        Where the FLOPs are counted.

    Returns
    -------
    xarray.Dataset
        ``flops_per_step`` (rule, rank), ``epochs_to_target`` and ``flops_to_target`` (rule, rank, seed),
        ``target_accuracy`` (rule, rank, seed), ``saving_vs_bp`` (rule, rank): 1 - seed-mean FLOPs / BP's;
        ``wall_time_to_target`` and ``cpu_time_to_target`` (rule, rank, seed; s): the run's
        ``train_wall_time`` / ``train_cpu_time`` read at the fractional epoch to target by
        :func:`time_to_target` (training steps only, evaluation excluded; NaN where the curves have no
        per-epoch times, e.g. results written before bioplastic recorded them).

    Raises
    ------
    ValueError
        Unknown ``target``; a file without the comparison's config (model spec, ``n_train``); ``target="bp"``
        without a ``bp`` run.
    """
    from bioplastic import io
    from bioplastic.architectures import build_model, load_spec
    from bioplastic.training.results import LOW_RANK_RULES, upgrade_results

    if target not in ("bp", "own"):
        raise ValueError(f"unknown target {target!r}; allowed: 'bp', 'own'")
    cfg = io.config_of(curves)
    if "model" not in cfg:
        raise ValueError("the curves file has no model spec in its config attrs (not a compare result?)")
    spec = load_spec(cfg["model"])
    train_cfg = cfg.get("train", {})
    batch = int(batch_size or train_cfg.get("batch_size") or 128)
    n_train = int(cfg.get("n_train", 0)) or None
    if n_train is None:
        raise ValueError("the curves file's config has no n_train")
    if train_cfg.get("max_train"):
        n_train = min(n_train, int(train_cfg["max_train"]))
    steps_per_epoch = math.ceil(n_train / batch)
    curves = upgrade_results(curves)  # per-epoch times as NaN where an old file lacks them
    acc = curves["test_accuracy"]
    final = acc.isel(epoch=-1)
    labels = [str(v) for v in curves["rule"].values]
    base_rules = [str(v) for v in curves["base_rule"].values] if "base_rule" in curves else labels
    fls = [str(v) for v in curves["feedback_learning"].values] if "feedback_learning" in curves else [""] * len(labels)
    ranks = [int(r) for r in curves["rank"].values]
    fractions = curves["rank_fraction"].values
    if target == "bp":
        if "bp" not in labels:
            raise ValueError("target 'bp' needs a 'bp' run in the curves file")
        bp_final = float(final.sel(rule="bp").mean(skipna=True))
    torch.manual_seed(0)
    plain = build_model(spec).to(device)
    x, y = random_batch(spec, batch, device=device)
    flops = np.full((len(labels), len(ranks)), np.nan)
    for i, (base, fl) in enumerate(zip(base_rules, fls)):
        for j, r in enumerate(ranks):
            if not np.isfinite(acc.isel(rule=i, rank=j).values).any():
                continue
            run_cfg = _run_config(curves, i, j)
            if run_cfg is not None:  # the run's own rule and options (e.g. rank_fraction)
                model = convert_like_training(spec, plain, run_cfg["rule"], **(run_cfg.get("rule_options") or {}))
            elif base in LOW_RANK_RULES and (r > 0 or np.isfinite(fractions[j])):
                size = {"rank": r} if r > 0 else {"rank_fraction": float(fractions[j])}
                model = convert_like_training(spec, plain, base, **size, **({"feedback_learning": fl} if fl else {}))
            else:
                model = convert_like_training(spec, plain, base)
            flops[i, j] = count_step_flops(model, x, y)["total"]
    n_seed = curves.sizes["seed"]
    ep = np.full((len(labels), len(ranks), n_seed), np.nan)
    tgt = np.full_like(ep, np.nan)
    for i in range(len(labels)):
        for j in range(len(ranks)):
            for s in range(n_seed):
                curve = acc.isel(rule=i, rank=j, seed=s).values
                if not np.isfinite(curve).any():
                    continue
                t = fraction * (bp_final if target == "bp" else float(curve[np.isfinite(curve)][-1]))
                tgt[i, j, s] = t
                ep[i, j, s] = epochs_to_target(curve, t)
    times = {}
    for name, var in (("wall_time_to_target", "train_wall_time"), ("cpu_time_to_target", "train_cpu_time")):
        per_epoch = curves[var].transpose("rule", "rank", "seed", "epoch").values
        times[name] = np.array([[[time_to_target(per_epoch[i, j, s], ep[i, j, s]) for s in range(n_seed)]
                                 for j in range(len(ranks))] for i in range(len(labels))]).reshape(ep.shape)
    to_target = ep * steps_per_epoch * flops[:, :, None]
    finite = np.isfinite(to_target)
    mean = np.where(finite.any(axis=2), np.where(finite, to_target, 0).sum(axis=2) / np.maximum(finite.sum(axis=2), 1),
                    np.nan)
    bp_cost = np.nanmean(mean[labels.index("bp")]) if "bp" in labels else np.nan
    coords = {"rule": labels, "rank": curves["rank"].values, "seed": curves["seed"].values}
    return xr.Dataset(
        {
            "flops_per_step": (("rule", "rank"), flops, {"units": "FLOP", "batch_size": batch}),
            "epochs_to_target": (("rule", "rank", "seed"), ep),
            "target_accuracy": (("rule", "rank", "seed"), tgt),
            "flops_to_target": (("rule", "rank", "seed"), to_target, {"units": "FLOP"}),
            "saving_vs_bp": (("rule", "rank"), 1 - mean / bp_cost),
            "wall_time_to_target": (("rule", "rank", "seed"), times["wall_time_to_target"], {
                "units": "s", "long_name": "wall-clock time of the training steps to the target (train_wall_time "
                                           "interpolated within the epoch)"}),
            "cpu_time_to_target": (("rule", "rank", "seed"), times["cpu_time_to_target"], {
                "units": "s", "long_name": "CPU time of the training steps to the target (train_cpu_time "
                                           "interpolated within the epoch)"}),
        },
        coords=coords,
        attrs={"target": target, "fraction": float(fraction), "steps_per_epoch": int(steps_per_epoch),
               "model": str(spec.get("name", "")), "batch_size": batch},
    )


def _run_config(curves: xr.Dataset, i: int, j: int) -> dict | None:
    """The TrainConfig (dict) of the first run stored in cell (rule i, rank j), if the file has them."""
    if "run_config" not in curves:
        return None
    for text in np.atleast_1d(curves["run_config"].isel(rule=i, rank=j).values):
        if isinstance(text, (str, bytes)) and text:
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return None
    return None
