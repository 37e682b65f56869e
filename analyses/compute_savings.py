"""Compute saving of LDFA: FLOPs per training step and measured step time, BP versus LDFA at several ranks.

Hanut & Kadmon (2025, arXiv:2502.20580) replace each weight layer's backward input-gradient matmul (a third
of its training FLOPs: forward ``h W^T``, weight gradient ``delta^T h``, input gradient ``delta W``) by two
thin matmuls ``(delta P) Q`` of cost ``r (in + out)`` per token, so the weight-layer FLOP ratio LDFA / BP
falls towards 2/3 as the rank r shrinks; they report over 20% less training compute for the ViT, measured
as FLOPs to reach 90% of the final accuracy.

What this script measures, for each model spec (default ``cnn_small`` and ``vit_small``; the paper's
``vgg_cifar`` and ``vit_cifar`` can be added) at one batch size:

* FLOPs of one training step (forward + backward) counted by :mod:`bioplastic.training.flops`
  (:class:`torch.utils.flop_counter.FlopCounterMode`, which sees the aten ops run inside the custom autograd
  Functions' backward of ``bioplastic.convert``; CPU attention counted with torch's SDPA formulas).
  ``weight_flops`` excludes attention (softmax(QK^T)V is not a weight layer); ``flop_ratio_limit`` =
  ``2 F / BP`` with F the forward weight FLOPs is the r -> 0 limit.
* The measured wall-clock time of one full step (forward, backward, AdamW step of forward and feedback
  weights, ``feedback_step``), BP and every LDFA variant interleaved in each repeat so that machine load
  affects all alike; ratios of medians are reported.
* With ``--curves results.nc`` (from ``bioplastic compare`` or ``analyses/cnn_cifar.py``): FLOPs to reach
  90% of the final accuracy of BP (``--target bp``, one common target) or of each run itself (``--target
  own``), epochs interpolated linearly; with them the CPU and wall seconds of the training steps to the same
  fractional epoch (``curves_cpu_time_to_target``, ``curves_wall_time_to_target``; NaN for curves saved
  before bioplastic recorded per-epoch times).

Models are converted exactly as in training (:func:`bioplastic.training.config.conversion_options`): the
spec's ``[rule]`` table gives ``exclude`` (e.g. the ViT's patch embedding on backprop), ``output_layer`` and
``rank_multipliers`` (the fused qkv Linear gets rank 3 r).

Usage::

    python analyses/compute_savings.py --out results/compute            # CPU: cnn_small, vit_small
    python analyses/compute_savings.py --out DIR --models cnn_small,vit_small,vgg_cifar,vit_cifar \\
        --time-models cnn_small,vit_small --ranks 1,2,4,8,16,32,64 --batch-size 64 --repeats 15
    python analyses/compute_savings.py --out DIR --curves results/cnn_cifar/results.nc

Writes ``DIR/compute_savings.nc`` and ``DIR/compute_savings.png``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import xarray as xr

from bioplastic import io
from bioplastic.architectures import build_model, load_spec
from bioplastic.training.flops import convert_like_training, flops_to_target, random_batch, step_flops

log = logging.getLogger("bioplastic.analyses.compute_savings")

DEFAULT_MODELS = ("cnn_small", "vit_small")
DEFAULT_RANKS = (1, 2, 4, 8, 16, 32)
DEFAULT_FEEDBACK = ("fixed", "local", "normative")

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


# --------------------------------------------------------------------------------------------- analysis
def run(models: Sequence[str], ranks: Sequence[int], feedback: Sequence[str], *, batch_size: int, repeats: int,
        time_models: Sequence[str] | None, device: str = "cpu", seed: int = 0) -> xr.Dataset:
    """FLOP counts (:func:`bioplastic.training.flops.step_flops`) and measured step times of BP and LDFA
    (``feedback`` learning modes x ``ranks``) per model."""
    dev = torch.device(device)
    ds = step_flops(models, ranks, feedback, batch_size=batch_size, device=device, seed=seed)
    time_models = list(models if time_models is None else time_models)
    n_m, n_f, n_r = len(models), len(feedback), len(ranks)
    bp_time = np.full((n_m, repeats), np.nan)
    ld_time = np.full((n_m, n_f, n_r, repeats), np.nan)
    for m, name in enumerate(models):
        log.info("%s: BP step %.3g FLOPs (weight layers %.3g, attention %.3g)", name, float(ds["bp_flops"][m]),
                 float(ds["bp_weight_flops"][m]), float(ds["bp_attention_flops"][m]))
        if name not in time_models or repeats <= 0:
            continue
        spec = load_spec(name)
        torch.manual_seed(seed)
        plain = build_model(spec).to(dev)
        x, y = random_batch(spec, batch_size, seed=seed, device=dev)
        variants = {"bp": convert_like_training(spec, plain, "bp")}
        for fl in feedback:
            for rank in ranks:
                variants[f"{fl}/{rank}"] = convert_like_training(spec, plain, "ldfa", rank=int(rank),
                                                                 feedback_learning=fl)
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
    ds = ds.assign(
        bp_step_seconds=(("model", "repeat"), bp_time, {"units": "s"}),
        ldfa_step_seconds=(dims3 + ("repeat",), ld_time, {"units": "s"}),
        time_ratio=(dims3, med_ld / med_bp[:, None, None],
                    {"long_name": "median LDFA step time / median BP step time (same run, interleaved)"}),
    ).assign_coords(repeat=np.arange(repeats))
    ds.attrs["threads"] = int(torch.get_num_threads())
    return ds


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
