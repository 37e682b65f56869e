"""Do networks trained with each learning rule represent objects like monkey and human IT?

Networks are trained side by side with backprop, feedback alignment, DFA, sign symmetry and LDFA (Hanut &
Kadmon 2025, arXiv:2502.20580) through ``bioplastic.compare`` (a small VGG-like CNN on CIFAR-10 by
default). Each trained network, and an untrained one of the same architecture as a control, is shown
the 92 object images of Kriegeskorte et al. (2008, Neuron 60:1126), resized to the network's input.
For every representation layer an RDM (1 - Pearson r) is compared with

- the monkey IT RDM (674 neurons; Kiani et al. 2007), and
- each of the 4 human subjects' IT RDMs (316 voxels, 2 sessions averaged), against the human noise
  ceiling (Nili et al. 2014): the lower bound is how well the other subjects' mean predicts a subject.

Outputs in ``--out``: ``rsa_it.nc`` (similarities per rule, rank, seed and layer; the RDMs; the noise
ceiling; the test accuracy of each network) and ``rsa_it.png``. Training runs go to
``<out>/training`` and are resumed if the script is run again.

Usage::

    python analyses/rsa_it.py --out results/rsa_it                      # full budget (CPU: hours)
    python analyses/rsa_it.py --out /tmp/rsa_it --budget small           # smoke run, about a minute
    python analyses/rsa_it.py --out results/rsa_it --rules bp,fa,ldfa --ranks 4,16 --epochs 20 --device cuda
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

import bioplastic
from bioplastic import analysis as A
from bioplastic.data import load_dataset, load_kriegeskorte2008, resize_images
from bioplastic.io import atomic_write, save, stamp

log = logging.getLogger("rsa_it")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("BIOPLASTIC_SHARED_DATA", REPO.parent / "shared" / "data"))

BUDGETS: dict[str, dict[str, Any]] = {
    # A few epochs of the small CNN on all of CIFAR-10; every rule of the paper's comparison.
    "full": {"dataset": "cifar10", "model": "cnn_small", "rules": "bp,fa,dfa,sign_symmetry,ldfa",
             "ranks": "8", "feedback_learning": "normative,fixed", "seeds": "0", "epochs": 10, "max_train": None},
    # Smoke run: checks the pipeline end to end; the networks are barely trained.
    "small": {"dataset": "cifar10", "model": "cnn_small", "rules": "bp,fa,ldfa", "ranks": "4",
              "feedback_learning": "normative", "seeds": "0", "epochs": 1, "max_train": 512},
}
def setup(budget: str, *, epochs: int | None = None, max_train: int | None = None) -> dict[str, Any]:
    """The resolved set-up of ``budget`` that the options given explicitly do not fix: the dataset, the model
    and its spec (``models/<model>.toml``, its ``[training]`` recipe included), epochs and training-set size.

    ``bioplastic reproduce`` stores it with its result, so that a result measured with another set-up (an edited
    budget or model spec) is never reused.

    Raises
    ------
    ValueError
        Unknown budget (the message lists the valid ones).
    """
    from bioplastic._checks import check_choice
    from bioplastic.architectures import load_spec

    check_choice("budget", budget, tuple(BUDGETS))
    cfg = BUDGETS[budget]
    return {"dataset": cfg["dataset"], "model": cfg["model"], "spec": dict(load_spec(cfg["model"])),
            "epochs": cfg["epochs"] if epochs is None else epochs,
            "max_train": cfg["max_train"] if max_train is None else max_train}


# Raw pixel range of each training set's stored images (the 92 images are 0-255 uint8).
_RAW_MAX = {"digits": 16}
UNTRAINED = "untrained"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="folder with kriegeskorte2008/ and cifar10/ (default ../shared/data)")
    p.add_argument("--budget", choices=sorted(BUDGETS), default="full", help="defaults for the options below")
    for name in ("dataset", "model", "rules", "ranks", "feedback_learning", "seeds"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-train", dest="max_train", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--distance", choices=A.rsa.DISTANCES[:-1], default="correlation",
                   help="RDM distance (default 1 - Pearson r, as for the IT RDMs)")
    p.add_argument("--method", choices=A.rsa.COMPARE_METHODS, default="spearman",
                   help="RDM comparison (default Spearman, Kriegeskorte et al. 2008)")
    p.add_argument("--no-untrained", dest="untrained", action="store_false",
                   help="skip the untrained-network control")
    args = p.parse_args(argv)
    for key, value in BUDGETS[args.budget].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# ------------------------------------------------------------------------------------------ training
def train_networks(args: argparse.Namespace, train_dir: Path) -> xr.Dataset:
    """TRAINING STEP: train the networks with every rule through ``bioplastic.compare`` (issue 3).

    Resumable: finished runs in ``train_dir`` are reused. Returns compare's results Dataset.
    """
    data_path = args.data / "cifar10" if args.dataset == "cifar10" else None
    return bioplastic.compare(
        rules=args.rules, ranks=args.ranks, seeds=args.seeds, epochs=args.epochs, dataset=args.dataset,
        data_path=data_path, model=args.model, max_train=args.max_train, feedback_learning=args.feedback_learning,
        device=args.device, out=train_dir, progress=sys.stderr.isatty(), figure=False,
    )


def untrained_network(model: str, seed: int) -> torch.nn.Module:
    """The architecture at its random initialisation (seeded without touching the global generator)."""
    from bioplastic.architectures.spec import build_model, load_spec

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_model(load_spec(model))
    return net.eval()


# ------------------------------------------------------------------------------------------- stimuli
def network_stimuli(images: xr.DataArray, dataset: str, data_path: Path | None) -> torch.Tensor:
    """The 92 images as a float input batch for a network trained on ``dataset``.

    Resized (antialiased) to the training images' size and channels, mapped to their stored pixel range
    and passed through the dataset's own ``transform`` (e.g. CIFAR-10 per-channel normalisation).
    """
    kwargs = {"augment": "none"} if dataset == "cifar10" else {}
    ds = load_dataset(dataset, data_path, **kwargs)
    shape = tuple(ds.x_train.shape[1:])
    if len(shape) != 3:
        raise ValueError(f"dataset {dataset!r} has inputs of shape {shape}; the 92 images need (C, H, W) inputs")
    channels, height, width = shape
    x = resize_images(images, (height, width), channels=channels)
    raw_max = _RAW_MAX.get(dataset, 255)
    if raw_max != 255:
        x = torch.round(x.to(torch.float32) * (raw_max / 255.0)).to(ds.x_train.dtype)
    return ds.transform(x)


# ------------------------------------------------------------------------------------------ analysis
def layer_rdms(net: torch.nn.Module, stimuli: torch.Tensor, layers: list[str], distance: str,
               device: str, labels: Any = None) -> xr.DataArray:
    """RDMs of ``layers`` of ``net`` for ``stimuli``, stacked along ``layer``.

    ``labels``: the stimuli's labels (the IT RDMs' ``stimulus`` coordinate), so that ``compare_rdms`` matches
    the network's RDMs with the IT RDMs stimulus by stimulus (default: positions 0..n-1).
    """
    coords = None if labels is None else {"stimulus": np.asarray(labels)}
    acts = A.record_activations(net.to(device), stimuli, layers, device=device, coords=coords)
    return A.rdm_stack({name: A.rdm(acts[name], distance) for name in layers}, "layer")


def analyse(args: argparse.Namespace, results: xr.Dataset, train_dir: Path, neural: xr.Dataset) -> xr.Dataset:
    """Per-layer RDMs of every trained (and an untrained) network compared with monkey and human IT."""
    from bioplastic.training import list_models, load_model

    data_path = args.data / "cifar10" if args.dataset == "cifar10" else None
    stimuli = network_stimuli(neural["image"], args.dataset, data_path)
    human = neural["human_it_subjects"].mean("session")  # one RDM per subject
    ceiling = A.noise_ceiling(human, method=args.method)

    runs = [(label, rank, seed) for label, rank, seed in list_models(train_dir)
            if label in results["rule"].values and rank in results["rank"].values and seed in results["seed"].values]
    if not runs:
        raise RuntimeError(f"no trained models in {train_dir}/models matching the results; did training fail?")
    entries: list[tuple[str, int, int, torch.nn.Module]] = []
    for label, rank, seed in runs:
        entries.append((label, rank, seed, load_model(train_dir, rule=label, rank=None if rank < 0 else rank,
                                                      seed=seed)))
    seeds = sorted({s for _, _, s, _ in entries})
    if args.untrained:
        entries += [(UNTRAINED, -1, s, untrained_network(args.model, s)) for s in seeds]
    layers = A.representation_layers(entries[0][3])
    log.info("comparing %d networks x %d layers with IT: %s", len(entries), len(layers), ", ".join(layers))

    rules = list(dict.fromkeys([e[0] for e in entries]))
    ranks = sorted({e[1] for e in entries})
    shape = (len(rules), len(ranks), len(seeds), len(layers))
    monkey = np.full(shape, np.nan)
    human_mean = np.full(shape, np.nan)
    human_subject = np.full(shape + (human.sizes["subject"],), np.nan)
    rdms = np.full(shape + (92, 92), np.nan)
    for label, rank, seed, net in entries:
        idx = (rules.index(label), ranks.index(rank), seeds.index(seed))
        stack = layer_rdms(net, stimuli, layers, args.distance, args.device, labels=neural["stimulus"].values)
        rdms[idx] = stack.values
        monkey[idx] = A.compare_rdms(stack, neural["monkey_it"], args.method).values
        per_subject = A.compare_rdms(stack, human, args.method).transpose("layer", "subject").values
        human_subject[idx] = per_subject
        human_mean[idx] = per_subject.mean(axis=1)

    reference = A.compare_rdms(neural["model_rdms"], human, args.method).mean("subject")
    reference_monkey = A.compare_rdms(neural["model_rdms"], neural["monkey_it"], args.method)
    dims = ("rule", "rank", "seed", "layer")
    accuracy = np.full(shape[:3], np.nan)
    final = results["test_accuracy"].isel(epoch=-1)
    for i, rule in enumerate(rules):
        for j, rank in enumerate(ranks):
            for k, seed in enumerate(seeds):
                if rule in final["rule"].values and rank in final["rank"].values:
                    accuracy[i, j, k] = float(final.sel(rule=rule, rank=rank, seed=seed))
    sim_attrs = {"method": args.method, "units": "1"}
    out = xr.Dataset(
        {
            "similarity_monkey_it": (dims, monkey, {**sim_attrs, "long_name": "RDM similarity to monkey IT"}),
            "similarity_human_it": (dims, human_mean, {**sim_attrs, "long_name": "RDM similarity to human IT, "
                                                       "mean over subjects"}),
            "similarity_human_it_subject": (dims + ("subject",), human_subject, sim_attrs),
            "noise_ceiling_lower": ((), float(ceiling["lower_bound"]), {"long_name": "human IT noise ceiling, "
                                                                        "lower bound (leave one subject out)"}),
            "noise_ceiling_upper": ((), float(ceiling["upper_bound"]), {"long_name": "human IT noise ceiling, "
                                                                        "upper bound"}),
            "reference_similarity_human_it": (("model",), reference.values,
                                              {**sim_attrs, "long_name": "similarity of the paper's model RDMs "
                                                                         "to human IT (mean over subjects)"}),
            "reference_similarity_monkey_it": (("model",), reference_monkey.values, sim_attrs),
            "test_accuracy": (dims[:3], accuracy, {"units": "1", "long_name": "final test accuracy (NaN: untrained)"}),
            "rdm": (dims + ("stimulus_i", "stimulus_j"), rdms, {"distance": args.distance}),
            "monkey_it": neural["monkey_it"],
            "human_it": neural["human_it"],
        },
        coords={"rule": rules, "rank": ranks, "seed": seeds, "layer": layers, "subject": human["subject"].values,
                "model": neural["model"].values, "category": ("stimulus_i", neural["category"].values)},
        attrs={"title": "network representations vs monkey and human IT (Kriegeskorte et al. 2008)",
               "rank_note": "rank -1: rule without a feedback rank",
               "reference": "Kriegeskorte et al. (2008) Neuron 60:1126; Nili et al. (2014) PLoS Comput Biol "
                            "10:e1003553; Hanut & Kadmon (2025) arXiv:2502.20580"},
    )
    return stamp(out, {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()})


# -------------------------------------------------------------------------------------------- figure
def plot(ds: xr.Dataset, path: Path) -> Path:
    """RDMs of the last hidden layer next to IT; similarity per layer against the human noise ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(r, k) for r in ds["rule"].values for k in ds["rank"].values
            if np.isfinite(ds["similarity_human_it"].sel(rule=r, rank=k)).any()]
    labels = [r if k < 0 else f"{r} r={k}" for r, k in runs]
    layers = list(ds["layer"].values)
    hidden = layers[-2] if len(layers) > 1 else layers[-1]
    n_rdm = 2 + len(runs)
    fig = plt.figure(figsize=(max(12, 2.1 * n_rdm), 8.5), constrained_layout=True)
    grid = fig.add_gridspec(2, n_rdm)
    from scipy.stats import rankdata

    def show(ax, mat, title):
        ranks = rankdata(mat[np.triu_indices(mat.shape[0], 1)])  # percentile display, as in the paper
        img = np.zeros_like(mat)
        img[np.triu_indices(mat.shape[0], 1)] = ranks / ranks.max()
        img = img + img.T
        ax.imshow(img, cmap="viridis", interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])

    show(fig.add_subplot(grid[0, 0]), ds["monkey_it"].values, "monkey IT")
    show(fig.add_subplot(grid[0, 1]), ds["human_it"].values, "human IT")
    for i, ((rule, rank), label) in enumerate(zip(runs, labels)):
        show(fig.add_subplot(grid[0, 2 + i]), ds["rdm"].sel(rule=rule, rank=rank, layer=hidden).mean("seed").values,
             f"{label}\n{hidden}")
    x = np.arange(len(layers))
    for col, (var, title) in enumerate([("similarity_human_it", "human IT"), ("similarity_monkey_it", "monkey IT")]):
        span = n_rdm // 2
        ax = fig.add_subplot(grid[1, col * span:(col + 1) * span if col == 0 else n_rdm])
        if var == "similarity_human_it":
            ax.axhspan(float(ds["noise_ceiling_lower"]), float(ds["noise_ceiling_upper"]), color="0.85",
                       label="noise ceiling")
        for (rule, rank), label in zip(runs, labels):
            vals = ds[var].sel(rule=rule, rank=rank)
            mean = vals.mean("seed").values
            ax.plot(x, mean, marker="o", label=label, linestyle="--" if rule == UNTRAINED else "-")
            if vals.sizes["seed"] > 1:
                sd = vals.std("seed").values
                ax.fill_between(x, mean - sd, mean + sd, alpha=0.2)
        ax.set_xticks(x, layers, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"RDM similarity ({ds[var].attrs['method']})")
        ax.set_title(f"similarity to {title}")
        ax.axhline(0, color="k", lw=0.5)
        if col == 0:
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Representations of networks trained with each rule vs IT (92 images, Kriegeskorte et al. 2008)")
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    kriegeskorte = args.data / "kriegeskorte2008"
    neural = load_kriegeskorte2008(kriegeskorte)  # fail early, before any training, if the data are missing
    args.out.mkdir(parents=True, exist_ok=True)
    train_dir = args.out / "training"
    results = train_networks(args, train_dir)
    ds = analyse(args, results, train_dir, neural)
    nc = save(ds, args.out / "rsa_it.nc")
    png = plot(ds, args.out / "rsa_it.png")
    summary = ds["similarity_human_it"].max("layer").mean("seed")
    log.info("best layer's similarity to human IT (noise ceiling %.3f-%.3f):\n%s",
             float(ds["noise_ceiling_lower"]), float(ds["noise_ceiling_upper"]),
             json.dumps({f"{r}" + ("" if k < 0 else f" r={k}"): round(float(summary.sel(rule=r, rank=k)), 4)
                         for r in ds["rule"].values for k in ds["rank"].values
                         if np.isfinite(summary.sel(rule=r, rank=k))}, indent=1))
    log.info("wrote %s and %s", nc, png)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
