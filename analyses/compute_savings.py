"""Compute saving of LDFA: FLOPs per training step and measured step time, BP versus LDFA at several ranks.

Hanut & Kadmon (2025, arXiv:2502.20580) replace each weight layer's backward input-gradient matmul (a third
of its training FLOPs: forward ``h W^T``, weight gradient ``delta^T h``, input gradient ``delta W``) by two
thin matmuls ``(delta P) Q`` of cost ``r (in + out)`` per token, so the weight-layer FLOP ratio LDFA / BP
falls towards 2/3 as the rank r shrinks; they report over 20% less training compute for the ViT, measured
as FLOPs to reach 90% of the final accuracy.

What this script measures, for each model spec (default ``cnn_small`` and ``vit_small``; the paper's
``vgg_cifar`` and ``vit_cifar`` can be added) at one batch size:

* FLOPs of one training step (forward + backward) counted by :class:`torch.utils.flop_counter.FlopCounterMode`,
  which sees the aten ops run inside the custom autograd Functions' backward of ``bioplastic.convert``
  (checked in ``tests/architectures/test_compute_savings.py``). CPU attention
  (``_scaled_dot_product_flash_attention_for_cpu``) is not in torch's FLOP registry; it is counted here
  with torch's own SDPA formulas. ``weight_flops`` excludes attention (softmax(QK^T)V is not a weight
  layer); ``flop_ratio_limit`` = ``2 F / BP`` with F the forward weight FLOPs is the r -> 0 limit.
* The measured wall-clock time of one full step (forward, backward, AdamW step of forward and feedback
  weights, ``feedback_step``), BP and every LDFA variant interleaved in each repeat so that machine load
  affects all alike; ratios of medians are reported.
* With ``--curves results.nc`` (from ``bioplastic compare`` or ``analyses/cnn_cifar.py``): FLOPs to reach
  90% of the final accuracy of BP (``--target bp``, one common target) or of each run itself (``--target
  own``), epochs interpolated linearly.

Conversion options come from each spec's ``[rule]`` table: ``exclude`` (e.g. the ViT's patch embedding on
backprop) and ``rank_multipliers`` (the fused qkv Linear gets rank 3 r).

Usage::

    python analyses/compute_savings.py --out results/compute            # CPU: cnn_small, vit_small
    python analyses/compute_savings.py --out DIR --models cnn_small,vit_small,vgg_cifar,vit_cifar \\
        --time-models cnn_small,vit_small --ranks 1,2,4,8,16,32,64 --batch-size 64 --repeats 15
    python analyses/compute_savings.py --out DIR --curves results/cnn_cifar/results.nc

Writes ``DIR/compute_savings.nc`` and ``DIR/compute_savings.png``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import xarray as xr
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

import bioplastic
from bioplastic import io
from bioplastic.architectures import build_model, load_spec

log = logging.getLogger("bioplastic.analyses.compute_savings")

DEFAULT_MODELS = ("cnn_small", "vit_small")
DEFAULT_RANKS = (1, 2, 4, 8, 16, 32)
DEFAULT_FEEDBACK = ("fixed", "local", "normative")

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


# ------------------------------------------------------------------------------------------- conversion
def convert_options(spec: Mapping[str, Any], rank: int | None) -> dict[str, Any]:
    """``bioplastic.convert`` keyword arguments from a spec's ``[rule]`` table.

    ``exclude`` is passed on; ``rank_multipliers = {suffix = k}`` gives every weight layer whose module name
    ends with ``suffix`` the rank ``k * rank`` (the ViT's fused qkv: 3 r). ``rank`` None (full-feedback
    rules) gives no rank overrides.
    """
    table = dict(spec.get("rule", {}))
    out: dict[str, Any] = {"exclude": list(table.get("exclude", []))}
    multipliers = dict(table.get("rank_multipliers", {}))
    if rank is not None and multipliers:
        model = build_model(spec)
        ranks = {}
        for name, m in model.named_modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                for suffix, k in multipliers.items():
                    if name.split(".")[-1] == suffix or name.endswith("." + suffix):
                        ranks[name] = int(k) * int(rank)
        out["ranks"] = ranks
    return out


def make_variant(spec: Mapping[str, Any], plain: nn.Module, rule: str, rank: int | None = None,
                 feedback_learning: str | None = None, *, options: Mapping[str, Any] | None = None) -> nn.Module:
    """Convert ``plain`` (not modified) to ``rule`` with the spec's conversion options.

    ``options`` (e.g. a run's ``rule_options``) are passed to :func:`bioplastic.rules.make`; ``rank`` and
    ``feedback_learning`` are shortcuts added to them. Rank clipping warnings (rank above a layer's
    maximum) are silenced; the clipped rank is used.
    """
    opts: dict[str, Any] = dict(options or {})
    if rank is not None:
        opts["rank"] = int(rank)
    if feedback_learning is not None:
        opts["feedback_learning"] = feedback_learning
    rule_obj = bioplastic.rules.make(rule, **opts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return bioplastic.convert(plain, rule_obj, seed=0, **convert_options(spec, opts.get("rank")))


# ------------------------------------------------------------------------------------------------- FLOPs
def count_step_flops(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward + backward pass of cross-entropy training (optimiser excluded).

    Parameters
    ----------
    model : nn.Module
        Plain or converted; its ``.grad`` fields are reset to None afterwards.
    x, y : torch.Tensor
        A batch (N, ...) and its labels (N,).

    Returns
    -------
    dict
        ``total``, ``attention`` (SDPA ops) and ``weight_layers`` (= total - attention) FLOPs, plus
        ``forward_weight_layers`` (the forward pass alone, attention excluded), and ``by_op``.
    """
    model.train()
    with FlopCounterMode(display=False, custom_mapping=_ATTENTION_OPS) as counter:
        loss = F.cross_entropy(model(x), y)
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


# ------------------------------------------------------------------------------------------------ timing
def time_steps(variants: Mapping[str, nn.Module], x: torch.Tensor, y: torch.Tensor, *, repeats: int,
               warmup: int = 2, lr: float = 1e-4) -> dict[str, np.ndarray]:
    """Seconds of one full training step (forward, backward, AdamW on forward and feedback weights,
    ``feedback_step``) for each model, interleaved: every repeat times every variant once, in an order
    rotated from repeat to repeat, so that drifting machine load affects all variants alike."""
    from bioplastic.nn import feedback_step, split_parameters

    names = list(variants)
    state = {}
    for name, model in variants.items():
        forward, feedback = split_parameters(model)
        opts = [torch.optim.AdamW(forward, lr=lr)] + ([torch.optim.AdamW(feedback, lr=lr)] if feedback else [])
        state[name] = (model.train(), opts)

    def step(name: str) -> float:
        model, opts = state[name]
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        t0 = time.perf_counter()
        for o in opts:
            o.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        for o in opts:
            o.step()
        feedback_step(model)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - t0

    for name in names:
        for _ in range(warmup):
            step(name)
    out = {name: np.empty(repeats) for name in names}
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            out[name][rep] = step(name)
    return out


# ------------------------------------------------------------------------------------ FLOPs to target
def epochs_to_target(accuracy: np.ndarray, target: float) -> float:
    """Fractional number of epochs at which ``accuracy`` (per epoch, epoch 1 first) first reaches ``target``,
    by linear interpolation between epochs (accuracy 0 is taken before epoch 1 only if epoch 1 is already
    above target: then the answer is epoch 1's fraction). NaN if never reached."""
    acc = np.asarray(accuracy, dtype=float)
    hit = np.flatnonzero(np.isfinite(acc) & (acc >= target))
    if len(hit) == 0:
        return math.nan
    i = int(hit[0])
    prev = acc[i - 1] if i > 0 else 0.0
    if not np.isfinite(prev) or acc[i] == prev:
        return float(i + 1)
    return float(i + (target - prev) / (acc[i] - prev))


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

    Returns
    -------
    xarray.Dataset
        ``flops_per_step`` (rule, rank), ``epochs_to_target`` and ``flops_to_target`` (rule, rank, seed),
        ``target_accuracy`` (rule, rank, seed), ``saving_vs_bp`` (rule, rank): 1 - seed-mean FLOPs / BP's.
    """
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
    acc = curves["test_accuracy"]
    final = acc.isel(epoch=-1)
    labels = [str(v) for v in curves["rule"].values]
    base_rules = [str(v) for v in curves["base_rule"].values] if "base_rule" in curves else labels
    fls = [str(v) for v in curves["feedback_learning"].values] if "feedback_learning" in curves else [""] * len(labels)
    ranks = [int(r) for r in curves["rank"].values]
    if target == "bp":
        if "bp" not in labels:
            raise ValueError("target 'bp' needs a 'bp' run in the curves file")
        bp_final = float(final.sel(rule="bp").mean(skipna=True))
    torch.manual_seed(0)
    plain = build_model(spec).to(device)
    in_shape = _input_shape(spec)
    x = torch.randn(batch, *in_shape, device=device)
    y = torch.randint(0, int(spec.get("n_classes", 10)), (batch,), device=device)
    flops = np.full((len(labels), len(ranks)), np.nan)
    for i, (label, base, fl) in enumerate(zip(labels, base_rules, fls)):
        for j, r in enumerate(ranks):
            if not np.isfinite(acc.isel(rule=i, rank=j).values).any():
                continue
            run_cfg = _run_config(curves, i, j)
            if run_cfg is not None:  # the run's own rule and options (e.g. rank_fraction)
                model = make_variant(spec, plain, run_cfg["rule"], options=run_cfg.get("rule_options") or {})
            else:
                low_rank = base in ("ldfa", "direct_ldfa")
                model = make_variant(spec, plain, base, rank=r if low_rank and r > 0 else None,
                                     feedback_learning=(fl or None) if low_rank else None)
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
    to_target = ep * steps_per_epoch * flops[:, :, None]
    finite = np.isfinite(to_target)
    mean = np.where(finite.any(axis=2), np.where(finite, to_target, 0).sum(axis=2) / np.maximum(finite.sum(axis=2), 1),
                    np.nan)
    bp_cost = np.nanmean(mean[labels.index("bp")]) if "bp" in labels else np.nan
    coords = {"rule": labels, "rank": ranks, "seed": curves["seed"].values}
    return xr.Dataset(
        {
            "flops_per_step": (("rule", "rank"), flops, {"units": "FLOP", "batch_size": batch}),
            "epochs_to_target": (("rule", "rank", "seed"), ep),
            "target_accuracy": (("rule", "rank", "seed"), tgt),
            "flops_to_target": (("rule", "rank", "seed"), to_target, {"units": "FLOP"}),
            "saving_vs_bp": (("rule", "rank"), 1 - mean / bp_cost),
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


def _input_shape(spec: Mapping[str, Any]) -> tuple[int, ...]:
    if "in_features" in spec:  # an MLP: flat inputs
        return (int(spec["in_features"]),)
    c = int(spec.get("in_channels", 3))
    s = int(spec.get("image_size", 32))
    return (c, s, s)


# --------------------------------------------------------------------------------------------- analysis
def run(models: Sequence[str], ranks: Sequence[int], feedback: Sequence[str], *, batch_size: int, repeats: int,
        time_models: Sequence[str] | None, device: str = "cpu", seed: int = 0) -> xr.Dataset:
    """FLOP counts and step times of BP and LDFA (``feedback`` learning modes x ``ranks``) per model."""
    dev = torch.device(device)
    time_models = list(models if time_models is None else time_models)
    n_m, n_f, n_r = len(models), len(feedback), len(ranks)
    bp = {k: np.full(n_m, np.nan) for k in ("total", "weight_layers", "attention", "forward_weight_layers")}
    ld = {k: np.full((n_m, n_f, n_r), np.nan) for k in ("total", "weight_layers")}
    bp_time = np.full((n_m, repeats), np.nan)
    ld_time = np.full((n_m, n_f, n_r, repeats), np.nan)
    n_params = np.zeros(n_m, dtype=np.int64)
    for m, name in enumerate(models):
        spec = load_spec(name)
        torch.manual_seed(seed)
        plain = build_model(spec).to(dev)
        n_params[m] = sum(p.numel() for p in plain.parameters())
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch_size, *_input_shape(spec), generator=gen).to(dev)
        y = torch.randint(0, int(spec.get("n_classes", 10)), (batch_size,), generator=gen).to(dev)
        variants = {"bp": make_variant(spec, plain, "bp")}
        for f, fl in enumerate(feedback):
            for r, rank in enumerate(ranks):
                variants[f"{fl}/{rank}"] = make_variant(spec, plain, "ldfa", rank=rank, feedback_learning=fl)
        counts = count_step_flops(variants["bp"], x, y)
        for k in bp:
            bp[k][m] = counts[k]
        for f, fl in enumerate(feedback):
            for r, rank in enumerate(ranks):
                c = count_step_flops(variants[f"{fl}/{rank}"], x, y)
                ld["total"][m, f, r], ld["weight_layers"][m, f, r] = c["total"], c["weight_layers"]
        log.info("%s: BP step %.3g FLOPs (weight layers %.3g, attention %.3g)", name, bp["total"][m],
                 bp["weight_layers"][m], bp["attention"][m])
        if name in time_models and repeats > 0:
            times = time_steps(variants, x, y, repeats=repeats)
            bp_time[m] = times["bp"]
            for f, fl in enumerate(feedback):
                for r, rank in enumerate(ranks):
                    ld_time[m, f, r] = times[f"{fl}/{rank}"]
            log.info("%s: BP step %.1f ms (median of %d)", name, 1e3 * np.median(times["bp"]), repeats)
    dims3 = ("model", "feedback_learning", "rank")
    if repeats > 0:
        med_bp, med_ld = np.median(bp_time, axis=1), np.median(ld_time, axis=3)
    else:  # FLOPs only
        med_bp, med_ld = np.full(n_m, np.nan), np.full((n_m, n_f, n_r), np.nan)
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
            "bp_step_seconds": (("model", "repeat"), bp_time, {"units": "s"}),
            "ldfa_step_seconds": (dims3 + ("repeat",), ld_time, {"units": "s"}),
            "time_ratio": (dims3, med_ld / med_bp[:, None, None],
                           {"long_name": "median LDFA step time / median BP step time (same run, interleaved)"}),
            "n_parameters": (("model",), n_params),
        },
        coords={"model": list(models), "feedback_learning": list(feedback), "rank": list(ranks),
                "repeat": np.arange(repeats)},
        attrs={"batch_size": int(batch_size), "device": str(dev), "torch_version": str(torch.__version__),
               "threads": int(torch.get_num_threads()),
               "source": "Hanut & Kadmon (2025) arXiv:2502.20580; FLOPs by torch.utils.flop_counter"},
    )


def plot(ds: xr.Dataset, path: Path, savings: xr.Dataset | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_panels = 2 + (savings is not None)
    fig, axes = plt.subplots(1, n_panels, figsize=(5 * n_panels, 4), constrained_layout=True)
    ranks = ds["rank"].values
    styles = {"fixed": ":", "local": "-", "normative": "--"}
    for m, model in enumerate(ds["model"].values):
        colour = f"C{m}"
        for fl in ds["feedback_learning"].values:
            ls = styles.get(str(fl), "-.")
            axes[0].plot(ranks, ds["weight_flop_ratio"].sel(model=model, feedback_learning=fl), ls, marker="o",
                         color=colour, label=f"{model} {fl}")
            tr = ds["time_ratio"].sel(model=model, feedback_learning=fl)
            if np.isfinite(tr).any():
                axes[1].plot(ranks, tr, ls, marker="o", color=colour, label=f"{model} {fl}")
        axes[0].axhline(float(ds["flop_ratio_limit"].sel(model=model)), color=colour, lw=0.8, alpha=0.6)
    for ax in axes[:2]:
        ax.axhline(2 / 3, color="k", lw=0.8, ls="--")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("feedback rank r")
    axes[0].set_ylabel("FLOPs LDFA / BP (weight layers)")
    axes[0].set_title("counted FLOPs per training step")
    axes[1].set_ylabel("step time LDFA / BP")
    axes[1].set_title(f"measured step time ({ds.attrs.get('device')}, batch {ds.attrs.get('batch_size')})")
    axes[0].legend(fontsize=7)
    if savings is not None:
        ax = axes[2]
        labels = [f"{r}" + (f" r={k}" if k > 0 else "") for r in savings["rule"].values for k in savings["rank"].values]
        vals = savings["flops_to_target"].mean("seed").values.ravel()
        keep = np.isfinite(vals)
        ax.barh(np.array(labels)[keep], vals[keep])
        ax.set_xlabel(f"FLOPs to {savings.attrs['fraction']:.0%} of final accuracy ({savings.attrs['target']})")
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return path


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise SystemExit(f"expected comma-separated integers, got {text!r}") from exc


def main(argv: Sequence[str] | None = None) -> xr.Dataset:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="model specs (comma-separated)")
    parser.add_argument("--time-models", default=None,
                        help="models whose step time is measured (default: all of --models)")
    parser.add_argument("--ranks", default=",".join(map(str, DEFAULT_RANKS)))
    parser.add_argument("--feedback-learning", default=",".join(DEFAULT_FEEDBACK))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per variant (0: FLOPs only)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curves", default=None, help="results.nc of a comparison: FLOPs to 90%% accuracy")
    parser.add_argument("--target", default="bp", choices=("bp", "own"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bioplastic.nn.convert").setLevel(logging.WARNING)  # one conversion report per variant

    from bioplastic._checks import check_choice
    from bioplastic.architectures import available_specs
    from bioplastic.rules import FEEDBACK_LEARNING

    models = [m for m in args.models.split(",") if m]
    for m in models:
        check_choice("model spec", m, available_specs())
    feedback = [f for f in args.feedback_learning.split(",") if f]
    for f in feedback:
        check_choice("feedback_learning", f, FEEDBACK_LEARNING)
    ranks = _int_list(args.ranks)
    if not ranks or min(ranks) < 1:
        raise SystemExit(f"ranks must be positive integers, got {args.ranks!r}")
    time_models = None if args.time_models is None else [m for m in args.time_models.split(",") if m]
    out = Path(args.out)
    ds = run(models, ranks, feedback, batch_size=args.batch_size, repeats=args.repeats, time_models=time_models,
             device=args.device, seed=args.seed)
    savings = None
    if args.curves:
        savings = flops_to_target(io.load(args.curves), target=args.target)
        for name, var in savings.data_vars.items():
            ds[f"curves_{name}"] = var.rename({"rule": "curve_rule", "rank": "curve_rank"})
        ds.attrs["curves"] = str(args.curves)
    config = {k: (v if not isinstance(v, Path) else str(v)) for k, v in vars(args).items()}
    ds = io.stamp(ds, config)
    io.save(ds, out / "compute_savings.nc")
    plot(ds, out / "compute_savings.png", savings)
    _log_table(ds)
    return ds


def _log_table(ds: xr.Dataset) -> None:
    lines = ["model        feedback   rank  FLOPs(weights)  FLOPs(all)  time ratio"]
    for model in ds["model"].values:
        lines.append(f"{model:12s} {'bp':10s} {'-':>4s}  {1:14.3f}  {1:10.3f}  {1:10.3f}   "
                     f"(limit {float(ds['flop_ratio_limit'].sel(model=model)):.3f})")
        for fl in ds["feedback_learning"].values:
            for r in ds["rank"].values:
                sel = dict(model=model, feedback_learning=fl, rank=r)
                lines.append(f"{model:12s} {fl:10s} {r:4d}  {float(ds['weight_flop_ratio'].sel(**sel)):14.3f}  "
                             f"{float(ds['flop_ratio'].sel(**sel)):10.3f}  {float(ds['time_ratio'].sel(**sel)):10.3f}")
    log.info("LDFA / BP per training step:\n%s", "\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
