"""CNN on CIFAR-10: backprop versus LDFA (rank = width / 4) versus feedback alignment, per epoch.

The paper's convnet claim (Hanut & Kadmon 2025, arXiv:2502.20580): LDFA with every conv layer's feedback
rank at a fraction of its width (width/2, /4, /8) trains a VGG-like CNN on CIFAR-10 to backprop level, where
feedback alignment (Lillicrap et al. 2016) and its relatives are known to fail on convnets (BioTorch,
Sanfiz & Akrout 2021: ResNet-20 on CIFAR-10, BP 8.6% error, FA 32%, DFA 46%). This script runs the short CPU
version of that experiment through :func:`bioplastic.compare` (one run per rule and seed, the same
recipe for all: the spec's ``[training]`` table, crop + flip augmentation on the device, warm-up then
cosine schedule), on the CIFAR-10 files (``../shared/data/cifar10`` zip files or a ``cifar-10-batches-py``
folder; decoded once and cached, see :func:`bioplastic.data.cifar10.load_cifar10`).

The result is :func:`bioplastic.compare`'s Dataset (dims ``rule``, ``rank``, ``seed``, ``epoch``,
``layer``): BP and FA at ``rank = -1``; LDFA at the relative rank ``--rank-fraction`` (``compare``'s
``rank_fractions``), i.e. at ``rank_label = "0.25w"`` (width/4) with ``rank_fraction = 0.25`` along ``rank``
(also ``attrs["rank_fraction"]``) and the per-layer ``feedback_rank``; ``analyses/compute_savings.py
--curves`` reads it. Finished runs are kept in ``OUT/runs`` (``ldfa_normative-f0.25-s0.nc`` ...), trained
models in ``OUT/models``, and each run checkpoints every epoch in ``OUT/checkpoints``: running the same
command again resumes.

Usage::

    python analyses/cnn_cifar.py --out results/cnn_cifar                    # cnn_small, 10k images, 4 epochs
    python analyses/cnn_cifar.py --out DIR --epochs 10 --max-train 50000 --seeds 0,1,2
    python analyses/cnn_cifar.py --out DIR --model vgg_cifar --device cuda  # the paper's network

Writes ``OUT/results.nc`` and ``OUT/cnn_cifar.png`` (test accuracy per epoch per rule; alignment with
backprop per layer).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from bioplastic import io

log = logging.getLogger("bioplastic.analyses.cnn_cifar")

# (label, rule, feedback_learning or None): LDFA's rank is set by --rank-fraction
DEFAULT_RULES = ("bp", "ldfa", "fa")
BUDGETS = {
    "small": {"epochs": 1, "max_train": 512, "test": 512},
    "default": {"epochs": 4, "max_train": 10000, "test": None},
}


def _default_data() -> Path:
    shared = os.environ.get("BIOPLASTIC_SHARED_DATA")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return base / "cifar10"


def run(*, out: Path, data: Path, model: str, rules: Sequence[str], rank_fraction: float,
        feedback_learning: str, epochs: int, reinit_every: int | None = None, max_train: int | None,
        n_test: int | None, seeds: Sequence[int], batch_size: int | None, lr: float | None, device: str,
        cache_dir: str | None, progress: bool = True) -> xr.Dataset:
    """Train each rule x seed through :func:`bioplastic.compare` and return its Dataset (``out/results.nc``).

    LDFA runs at the relative rank ``rank_fraction`` (``compare(rank_fractions=[rank_fraction])``: each
    layer's rank is ``ceil(rank_fraction * width)``), read from the ``rank_fraction`` and ``rank_label``
    coordinates (``"0.25w"`` for width/4); BP and FA at ``rank = -1``.
    """
    import torch

    import bioplastic

    low_rank = [r for r in rules if r in ("ldfa", "direct_ldfa")]
    rule_options = {"reinit_every": int(reinit_every)} if low_rank and feedback_learning == "normative" \
        and reinit_every else None
    ds = bioplastic.compare(
        rules=list(rules), ranks=[], rank_fractions=[rank_fraction] if low_rank else None, seeds=list(seeds),
        epochs=epochs, dataset="cifar10", out=out, feedback_learning=[feedback_learning], model=model,
        data_path=data, cache_dir=cache_dir, batch_size=batch_size, lr=lr, device=device, max_train=max_train,
        max_test=n_test, rule_options=rule_options, progress=progress, figure=False)
    ds.attrs["rank_fraction"] = float(rank_fraction)
    ds.attrs["torch_threads"] = int(torch.get_num_threads())
    ds.attrs["data_note"] = "CIFAR-10 JPEG re-encodings (quality ~75): compare rules, not absolute accuracies"
    io.save(ds, out / "results.nc")
    return ds


def _run_cells(ds: xr.Dataset) -> list[tuple[int, int]]:
    """(rule index, rank index) of the cells that were run: one per rule here (its only rank)."""
    status = ds["status"].values  # (rule, rank, seed)
    return [(i, j) for i in range(ds.sizes["rule"]) for j in range(ds.sizes["rank"])
            if (status[i, j] != "not_applicable").any()]


def plot(ds: xr.Dataset, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_align = "update_cosine" in ds and ds.sizes.get("layer", 0) > 0
    fig, axes = plt.subplots(1, 1 + has_align, figsize=(5.5 * (1 + has_align), 4), constrained_layout=True,
                             squeeze=False)
    ax = axes[0, 0]
    epochs = ds["epoch"].values
    for i, j in _run_cells(ds):
        label = ds["rule"].values[i]
        acc = 100 * ds["test_accuracy"].isel(rule=i, rank=j).values  # (seed, epoch)
        mean = np.nanmean(acc, axis=0)
        ax.plot(epochs, mean, marker="o", label=str(label), color=f"C{i}")
        if acc.shape[0] > 1:
            sd = np.nanstd(acc, axis=0)
            ax.fill_between(epochs, mean - sd, mean + sd, alpha=0.2, color=f"C{i}")
    ax.set_xticks(epochs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{ds.attrs.get('model_name', '')} CIFAR-10; LDFA rank = {ds.attrs.get('rank_fraction')} x width")
    ax.legend()
    if has_align:
        ax = axes[0, 1]
        layers = [str(v) for v in ds["layer"].values]
        for i, j in _run_cells(ds):
            label = ds["rule"].values[i]
            if str(label) == "bp":
                continue
            cos = ds["update_cosine"].isel(rule=i, rank=j, epoch=-1).values  # (seed, layer); NaN: on backprop
            finite = np.isfinite(cos)
            mean = np.where(finite.any(0), np.where(finite, cos, 0).sum(0) / np.maximum(finite.sum(0), 1), np.nan)
            ax.plot(range(len(layers)), mean, marker="o", label=str(label), color=f"C{i}")
        ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("cosine(rule update, backprop gradient)")
        ax.set_title("alignment with backprop after the last epoch")
        ax.axhline(0, color="grey", lw=0.8)
        ax.legend()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> xr.Dataset:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default ../shared/data/cifar10)")
    parser.add_argument("--cache-dir", default=None, help="decoded-image cache (default ~/.cache/bioplastic)")
    parser.add_argument("--model", default="cnn_small")
    parser.add_argument("--rules", default=",".join(DEFAULT_RULES))
    parser.add_argument("--rank-fraction", type=float, default=0.25, help="LDFA rank per layer / its width")
    parser.add_argument("--feedback-learning", default="normative")
    parser.add_argument("--reinit-every", type=int, default=None,
                        help="normative LDFA: SVD re-initialisation period in steps (authors: half an epoch)")
    parser.add_argument("--budget", default=os.environ.get("BIOPLASTIC_NOTEBOOK_BUDGET", "default"),
                        choices=tuple(BUDGETS))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None, help="evaluate on a fixed subset of the test set")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from bioplastic._checks import check_choice
    from bioplastic.rules import FEEDBACK_LEARNING, RULE_NAMES

    rules = [r for r in args.rules.split(",") if r]
    for r in rules:
        check_choice("rule", r, RULE_NAMES)
    check_choice("feedback_learning", args.feedback_learning, FEEDBACK_LEARNING)
    budget = BUDGETS[args.budget]
    out = Path(args.out)
    data = Path(args.data) if args.data else _default_data()
    ds = run(out=out, data=data, model=args.model, rules=rules, rank_fraction=args.rank_fraction,
             feedback_learning=args.feedback_learning, reinit_every=args.reinit_every, epochs=args.epochs or budget["epochs"],
             max_train=args.max_train if args.max_train is not None else budget["max_train"],
             n_test=args.n_test if args.n_test is not None else budget["test"], seeds=[int(s) for s in args.seeds.split(",") if s],
             batch_size=args.batch_size, lr=args.lr, device=args.device, cache_dir=args.cache_dir,
             progress=not args.no_progress)
    ds.attrs["model_name"] = args.model
    plot(ds, out / "cnn_cifar.png")
    from bioplastic.training.results import format_table

    log.info("final test accuracy:\n%s", format_table(ds))
    return ds


if __name__ == "__main__":
    main(sys.argv[1:])
