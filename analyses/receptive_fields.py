"""Retinal receptive fields under low-rank versus full-rank error feedback (retina-VVS net, grayscale CIFAR-10).

Hanut & Kadmon (2025, arXiv:2502.20580) train the retina + ventral-stream CNN of Lindsey, Ocko, Ganguli &
Deny (2019, ICLR) with LDFA and show pictures: low-rank error reaching the retina gives centre-surround
receptive fields (as a narrow forward bottleneck does in Lindsey et al.), full-rank error oriented ones.
This script measures it. For each condition (backprop; LDFA at each ``--ranks`` value, normative feedback
learning by default; the untrained network; and, with ``--bottlenecks``, the positive control of Lindsey et
al. (2019): backprop with a forward bottleneck of that many retina-output channels) it

1. trains ``models/retina_vvs.toml`` (or its CPU-sized variant, see ``--budget``) on grayscale CIFAR-10
   with :func:`bioplastic.training.trainer.train` (LDFA on the VVS convolutions only, as the spec's ``[rule]``
   table says and the authors did: the retina and the classifier stay on backprop);
2. measures the receptive field of the centre unit of every channel of the retina's layers
   (``retina.relu1``, ``retina.relu2``) by white-noise reverse correlation
   (:func:`bioplastic.analysis.receptive_fields.measure_receptive_fields`, forward passes only, so the
   learning rule's backward pass plays no part), on the theoretical RF window (9 and 17 pixels);
3. computes per unit the centre-surround index, the orientation-selectivity index and the circular variance
   (Ringach et al. 2002) (:func:`~bioplastic.analysis.receptive_fields.receptive_field_indices`);
4. compares the distributions between the lowest and the highest LDFA rank (two-sided Mann-Whitney U test,
   scipy), per layer; units whose RF is zero (never driven by the noise) are left out.

Budgets (``--budget``; ``BIOPLASTIC_NOTEBOOK_BUDGET`` sets the default): ``small`` (seconds; a smoke run),
``cpu`` (all 50,000 images area-averaged to 24x24 pixels; retina 16 channels with an output of 8, two VVS
layers of 8 channels, FC 128, no batch norm, no dropout; Adam lr 1e-3, 3 epochs; about 5-15 minutes per
condition on one core), ``paper`` (the spec as shipped: 32 channels, three VVS layers, FC 1024, all 50,000 images,
20 epochs: for a GPU).

Usage::

    python analyses/receptive_fields.py --out results/rf --budget cpu --ranks 1,8 --bottlenecks 1
    python analyses/receptive_fields.py --out DIR --budget paper --device cuda --ranks 1,2,4,32

Writes ``OUT/receptive_fields.nc`` and ``OUT/receptive_fields.png``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bioplastic import io

log = logging.getLogger("bioplastic.analyses.receptive_fields")

LAYERS = ("retina.relu1", "retina.relu2")
INDICES = ("centre_surround_index", "orientation_selectivity_index", "circular_variance", "rotational_symmetry",
           "surround_antagonism", "preferred_orientation", "preferred_frequency", "rf_energy")
BUDGETS: dict[str, dict[str, Any]] = {
    "small": {"spec": {"channels": 8, "bottleneck": 8, "vvs_depth": 1, "fc_width": 32}, "epochs": 1,
              "max_train": 256, "n_test": 256, "n_images": 512},
    # The smallest set-up found (docs/reproduce.md, "The receptive-field experiment") in which the positive
    # control of Lindsey et al. (2019) showed centre-surround fields on a shared CPU: all 50,000 grayscale
    # images area-averaged to 24x24 pixels (at 16x16 the one-channel bottleneck stayed oriented), 16 channels
    # in the retina's first layer, a retina output of 8 channels (as wide as the VVS: no forward bottleneck),
    # two VVS layers of 8 channels, FC 128, no batch norm and no dropout (Lindsey et al.'s network), Adam at
    # lr 1e-3 after a warm-up of a quarter epoch (without it the one-channel bottleneck's ReLU died in 2 of 8
    # exploratory runs), 3 epochs.
    "cpu": {"spec": {"channels": 16, "bottleneck": 8, "vvs_channels": 8, "vvs_depth": 2, "fc_width": 128,
                     "image_size": 24, "batch_norm": False, "dropout": 0.0,
                     "training": {"lr": 1e-3, "warmup_epochs": 0.25}},
            "epochs": 3, "max_train": None, "n_test": 2000, "n_images": 8192},
    "paper": {"spec": {}, "epochs": 20, "max_train": None, "n_test": None, "n_images": 8192},
}


def setup(budget: str, *, epochs: int | None = None, max_train: int | None = None,
          n_images: int | None = None) -> dict[str, Any]:
    """The resolved set-up of ``budget``: everything :func:`run` trains and measures with, as plain values.

    Returns
    -------
    dict
        ``spec`` (``models/retina_vvs.toml`` with the budget's overrides, its ``[training]`` recipe included),
        ``epochs``, ``max_train`` (None: all images), ``n_test`` (None: all), ``n_images`` (white-noise
        images per measurement); images are area-averaged to the spec's ``image_size``. The budget's
        ``spec`` entries replace the file's; its ``training`` and ``rule`` tables are merged into the file's
        key by key. ``bioplastic reproduce`` stores the set-up with every result, so a result measured with
        another set-up is never reused.

    Raises
    ------
    ValueError
        Unknown budget (the message lists the valid ones).
    """
    from bioplastic._checks import check_choice
    from bioplastic.architectures import load_spec

    check_choice("budget", budget, tuple(BUDGETS))
    cfg = BUDGETS[budget]
    base = load_spec("retina_vvs")
    spec = {**base, **cfg["spec"]}
    for table in ("training", "rule"):
        if table in cfg["spec"]:
            spec[table] = {**base.get(table, {}), **cfg["spec"][table]}
    return {"spec": spec,
            "epochs": int(epochs or cfg["epochs"]),
            "max_train": max_train if max_train is not None else cfg["max_train"],
            "n_test": cfg["n_test"], "n_images": int(n_images or cfg["n_images"])}


def _default_data() -> Path:
    shared = os.environ.get("BIOPLASTIC_SHARED_DATA")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return base / "cifar10"


def conditions(ranks: Sequence[int], include_bp: bool = True, include_untrained: bool = True,
               bottlenecks: Sequence[int] = ()) -> list[dict]:
    """The conditions: label, rule, rank (-1 for none), bottleneck (retina-output channels; None: the spec's).

    ``bottlenecks`` adds the positive control of Lindsey et al. (2019): backprop on the network whose retina
    output has only that many channels (a forward bottleneck), labelled ``bp_bottleneck{n}``."""
    out = []
    if include_untrained:
        out.append({"label": "untrained", "rule": None, "rank": -1, "bottleneck": None})
    if include_bp:
        out.append({"label": "bp", "rule": "bp", "rank": -1, "bottleneck": None})
    out += [{"label": f"ldfa_r{r}", "rule": "ldfa", "rank": int(r), "bottleneck": None} for r in ranks]
    out += [{"label": f"bp_bottleneck{n}", "rule": "bp", "rank": -1, "bottleneck": int(n)} for n in bottlenecks]
    return out


def measure(model, layers: Sequence[str], *, n_images: int, seed: int, window: int) -> dict[str, xr.Dataset]:
    """RFs (cropped to ``window``) and indices (on each layer's theoretical RF size) per layer."""
    from bioplastic.analysis.receptive_fields import (
        measure_receptive_fields,
        receptive_field_indices,
        theoretical_rf_size,
    )

    out = {}
    for layer in layers:
        size = theoretical_rf_size(model, layer)
        rf = measure_receptive_fields(model, layer, (1, window, window), n_images=n_images, seed=seed,
                                      size=window, batch_size=512)
        lo = (window - size) // 2
        core = rf["receptive_field"].isel(y=slice(lo, lo + size), x=slice(lo, lo + size))
        ind = receptive_field_indices(core)
        ind["receptive_field"] = rf["receptive_field"].isel(channel=0, drop=True)
        ind["mean_response"] = rf["mean_response"]
        ind.attrs["rf_size"] = size
        out[layer] = ind
    return out


def compare_distributions(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Two samples of an index compared: (median(a) - median(b), two-sided Mann-Whitney U p-value,
    rank-biserial correlation) over the finite values; NaN if either side has fewer than 2 values.

    The rank-biserial correlation ``2 U_a / (n_a n_b) - 1`` (Kerby 2014, Compr Psychol 3:11) is the
    probability that a value of ``a`` exceeds one of ``b`` minus the reverse (ties count half): +1 when every
    ``a`` is larger, 0 for no difference, -1 when every ``a`` is smaller. ``U_a`` is scipy's statistic of
    ``a`` (:func:`scipy.stats.mannwhitneyu`)."""
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return float("nan"), float("nan"), float("nan")
    test = mannwhitneyu(a, b, alternative="two-sided")
    return (float(np.median(a) - np.median(b)), float(test.pvalue),
            float(2 * test.statistic / (len(a) * len(b)) - 1))


def run(*, out: Path, data: Path, ranks: Sequence[int], budget: str, feedback_learning: str, seed: int,
        device: str, cache_dir: str | None, epochs: int | None = None, max_train: int | None = None,
        n_images: int | None = None, include_bp: bool = True, bottlenecks: Sequence[int] = (),
        include_untrained: bool = True, progress: bool = True) -> xr.Dataset:
    """Train every condition (:func:`conditions`) on grayscale CIFAR-10 and measure the retina's receptive fields.

    ``bottlenecks`` adds Lindsey et al.'s (2019) positive control: backprop with only that many retina-output
    channels. Images are area-averaged to the spec's ``image_size`` where it is smaller than theirs (train and
    test; e.g. 32 -> 16 pixels: the means of 2 x 2 blocks).
    """
    import torch
    import torch.nn.functional as F

    from bioplastic.architectures import build_model
    from bioplastic.architectures.retina import RETINA_LAYERS
    from bioplastic.data.cifar10 import load_cifar10
    from bioplastic.training import TrainConfig, train

    cfg_b = setup(budget, epochs=epochs, max_train=max_train, n_images=n_images)
    epochs, max_train, n_images, spec = cfg_b["epochs"], cfg_b["max_train"], cfg_b["n_images"], cfg_b["spec"]
    dataset = load_cifar10(data, grayscale=True, augment="none", cache_dir=cache_dir)
    if cfg_b["n_test"] is not None:
        dataset.x_test, dataset.y_test = dataset.x_test[: cfg_b["n_test"]], dataset.y_test[: cfg_b["n_test"]]
    size = int(spec["image_size"])
    if dataset.x_train.shape[-1] != size:
        # area-averaged to the spec's image size (block means for an integer factor, e.g. 32 -> 16 pixels), kept
        # uint8: the dataset's transform normalises them with the full-size images' statistics
        if size > dataset.x_train.shape[-1]:
            raise ValueError(f"images are {dataset.x_train.shape[-1]} pixels wide, smaller than the spec's "
                             f"image_size {size}")
        for name in ("x_train", "x_test"):
            x = getattr(dataset, name)
            setattr(dataset, name, F.interpolate(x.float(), size=(size, size), mode="area").round().to(torch.uint8))
    layers = list(RETINA_LAYERS)
    torch.manual_seed(seed)
    window = 0
    conds = conditions(ranks, include_bp=include_bp, include_untrained=include_untrained, bottlenecks=bottlenecks)
    per_cond: list[dict[str, xr.Dataset]] = []
    accuracy = np.full((len(conds), epochs), np.nan)
    status = []
    for i, cond in enumerate(conds):
        cond_spec = spec if cond["bottleneck"] is None else {**spec, "bottleneck": cond["bottleneck"]}
        if cond["rule"] is None:
            torch.manual_seed(seed)
            model = build_model(cond_spec)
            status.append("untrained")
        else:
            options = {"rank": cond["rank"], "feedback_learning": feedback_learning} if cond["rule"] == "ldfa" else {}
            config = TrainConfig(model=cond_spec, rule=cond["rule"], rule_options=options, epochs=epochs,
                                 max_train=max_train, seed=seed, device=device, alignment=False)
            result = train(config, dataset, checkpoint_dir=out / "checkpoints" / cond["label"], progress=progress)
            model = result.model
            accuracy[i] = result.test_accuracy
            status.append(result.status)
            log.info("%s: %s, test accuracy %s", cond["label"], result.status,
                     np.round(100 * result.test_accuracy, 2).tolist())
        window = window or max(_rf_size(model, layer) for layer in layers)
        per_cond.append(measure(model.cpu().eval(), layers, n_images=n_images, seed=seed, window=window))
    ds = _assemble(conds, layers, per_cond, accuracy, status)
    low = [c["label"] for c in conds if c["rule"] == "ldfa"]
    if len(low) >= 2:
        lo, hi = low[0], low[-1]
        for var, short in (("centre_surround_index", "csi"), ("circular_variance", "cv"),
                           ("orientation_selectivity_index", "osi")):
            diff, p, _ = zip(*(compare_distributions(ds[var].sel(rule=lo, layer=la).values,
                                                     ds[var].sel(rule=hi, layer=la).values) for la in layers))
            ds[f"{short}_median_difference"] = (("layer",), np.array(diff),
                                                {"long_name": f"median {var}: {lo} minus {hi}"})
            ds[f"{short}_p_value"] = (("layer",), np.array(p),
                                      {"long_name": f"two-sided Mann-Whitney U test, {lo} versus {hi}"})
    ds.attrs.update({"budget": budget, "feedback_learning": feedback_learning, "seed": int(seed),
                     "n_images": int(n_images), "epochs": int(epochs), "max_train": int(max_train or 0),
                     "image_size": int(spec["image_size"]), "model_spec": str(spec)})
    return io.stamp(ds, {"ranks": list(ranks), "bottlenecks": list(bottlenecks), "budget": budget,
                         "feedback_learning": feedback_learning, "seed": seed, "spec": spec, "epochs": epochs,
                         "max_train": max_train, "n_images": n_images, "data": str(data)})


def _rf_size(model, layer: str) -> int:
    from bioplastic.analysis.receptive_fields import theoretical_rf_size

    return theoretical_rf_size(model, layer)


def _assemble(conds, layers, per_cond, accuracy, status) -> xr.Dataset:
    labels = [c["label"] for c in conds]
    n_neurons = max(res[la].sizes["neuron"] for res in per_cond for la in layers)
    data: dict[str, Any] = {}
    for var in INDICES:
        arr = np.full((len(conds), len(layers), n_neurons), np.nan)
        for i, res in enumerate(per_cond):
            for j, la in enumerate(layers):
                v = res[la][var].values
                arr[i, j, : len(v)] = v
        data[var] = (("rule", "layer", "neuron"), arr, dict(per_cond[0][layers[0]][var].attrs))
    win = per_cond[0][layers[0]]["receptive_field"]
    rf = np.full((len(conds), len(layers), n_neurons, win.sizes["y"], win.sizes["x"]), np.nan)
    for i, res in enumerate(per_cond):
        for j, la in enumerate(layers):
            v = res[la]["receptive_field"].values
            rf[i, j, : v.shape[0]] = v
    data["receptive_field"] = (("rule", "layer", "neuron", "y", "x"), rf,
                               {"long_name": "reverse-correlation receptive field", "method": "reverse_correlation"})
    data["test_accuracy"] = (("rule", "epoch"), accuracy, {"units": "1"})
    data["status"] = (("rule",), np.array(status, dtype=str))
    data["rf_size"] = (("layer",), np.array([per_cond[0][la].attrs["rf_size"] for la in layers]), {"units": "pixel"})
    driven = np.array([[np.sum(res[la]["rf_energy"].values > 0) for la in layers] for res in per_cond])
    data["n_driven_units"] = (("rule", "layer"), driven)
    return xr.Dataset(
        data,
        coords={"rule": labels, "rank": ("rule", [int(c["rank"]) for c in conds]),
                "bottleneck": ("rule", [-1 if c.get("bottleneck") is None else int(c["bottleneck"]) for c in conds],
                               {"long_name": "retina-output channels of a forward-bottleneck control (-1: none)"}),
                "layer": list(layers),
                "neuron": np.arange(n_neurons), "epoch": np.arange(1, accuracy.shape[1] + 1),
                "y": ("y", win["y"].values, {"units": "pixel"}), "x": ("x", win["x"].values, {"units": "pixel"})},
        attrs={"source": "Hanut & Kadmon (2025) arXiv:2502.20580; Lindsey et al. (2019) ICLR; indices: "
                         "bioplastic.analysis.receptive_fields"},
    )


def _ringach_cv(shared: Path | None) -> np.ndarray | None:
    """Circular variance of the 308 macaque V1 cells of Ringach et al. (2002), if the file is available."""
    if shared is None or not (shared / "ringach2002").exists():
        return None
    try:
        from bioplastic.data import load_ringach2002

        cv = load_ringach2002(shared / "ringach2002")["circular_variance"].values
        return cv[np.isfinite(cv)]
    except (ImportError, ValueError, FileNotFoundError) as exc:  # a reference only; the analysis does not need it
        log.warning("no V1 reference from %s (%s)", shared / "ringach2002", exc)
        return None


def plot(ds: xr.Dataset, path: Path, ringach_cv: np.ndarray | None = None, layer: str = "retina.relu2",
         n_show: int = 8) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(v) for v in ds["rule"].values]
    fig = plt.figure(figsize=(max(10, 1.3 * n_show + 4), 2.0 * len(labels) + 3.6), constrained_layout=True)
    grid = fig.add_gridspec(len(labels) + 2, n_show)
    for i, label in enumerate(labels):
        rf = ds["receptive_field"].sel(rule=label, layer=layer).values
        energy = ds["rf_energy"].sel(rule=label, layer=layer).values
        order = [u for u in np.argsort(-np.nan_to_num(energy, nan=-1.0)) if np.isfinite(energy[u])][:n_show]
        for k, unit in enumerate(order):
            ax = fig.add_subplot(grid[i, k])
            im = rf[unit]
            lim = np.nanmax(np.abs(im)) or 1.0
            ax.imshow(im, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(label, fontsize=8)
            csi = float(ds["centre_surround_index"].sel(rule=label, layer=layer, neuron=unit))
            cv = float(ds["circular_variance"].sel(rule=label, layer=layer, neuron=unit))
            ax.set_title(f"CSI {csi:.2f} CV {cv:.2f}", fontsize=6)
    specs = [("centre_surround_index", "centre-surround index"), ("circular_variance", "circular variance"),
             ("orientation_selectivity_index", "orientation selectivity index")]
    span = max(1, n_show // 3)
    for j, (var, title) in enumerate(specs):
        ax = fig.add_subplot(grid[len(labels):, j * span:(j + 1) * span if j < 2 else n_show])
        values = [v[np.isfinite(v)] for v in (ds[var].sel(rule=la, layer=layer).values for la in labels)]
        names = list(labels)
        if var == "circular_variance" and ringach_cv is not None:
            values.append(ringach_cv)
            names.append("V1 (Ringach 2002)")
        ax.boxplot(values, showfliers=False)
        for k, v in enumerate(values):
            ax.plot(np.full(len(v), k + 1) + np.linspace(-0.15, 0.15, len(v)), v, ".", ms=3, alpha=0.5)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"{title} ({layer})", fontsize=9)
    fig.suptitle("retina-VVS receptive fields (reverse correlation), strongest units per condition")
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> xr.Dataset:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default ../shared/data/cifar10)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--ranks", default="1,32", help="LDFA ranks (lowest versus highest are compared)")
    parser.add_argument("--feedback-learning", default="normative")
    parser.add_argument("--no-bp", action="store_true", help="skip the backprop condition")
    parser.add_argument("--bottlenecks", default="",
                        help="retina-output channels of Lindsey et al.'s (2019) positive control, trained with BP "
                             "(e.g. 1,2,4; default none)")
    parser.add_argument("--budget", default=os.environ.get("BIOPLASTIC_NOTEBOOK_BUDGET", "cpu"),
                        choices=tuple(BUDGETS))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--n-images", type=int, default=None, help="white-noise images per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bioplastic.nn.convert").setLevel(logging.WARNING)

    from bioplastic._checks import check_choice
    from bioplastic.rules import FEEDBACK_LEARNING

    check_choice("feedback_learning", args.feedback_learning, FEEDBACK_LEARNING)
    try:
        ranks = sorted({int(r) for r in args.ranks.split(",") if r})
    except ValueError as exc:
        raise SystemExit(f"--ranks must be comma-separated integers, got {args.ranks!r}") from exc
    if not ranks or ranks[0] < 1:
        raise SystemExit(f"--ranks must be positive, got {args.ranks!r}")
    try:
        bottlenecks = sorted({int(n) for n in args.bottlenecks.split(",") if n})
    except ValueError as exc:
        raise SystemExit(f"--bottlenecks must be comma-separated integers, got {args.bottlenecks!r}") from exc
    if bottlenecks and bottlenecks[0] < 1:
        raise SystemExit(f"--bottlenecks must be positive, got {args.bottlenecks!r}")
    out = Path(args.out)
    data = Path(args.data) if args.data else _default_data()
    ds = run(out=out, data=data, ranks=ranks, budget=args.budget, feedback_learning=args.feedback_learning,
             seed=args.seed, device=args.device, cache_dir=args.cache_dir, epochs=args.epochs,
             max_train=args.max_train, n_images=args.n_images, include_bp=not args.no_bp,
             bottlenecks=bottlenecks, progress=not args.no_progress)
    io.save(ds, out / "receptive_fields.nc")
    plot(ds, out / "receptive_fields.png", _ringach_cv(data.parent if data.parent.name == "data" else None))
    lines = ["condition   layer          driven  CSI median  OSI median  CV median"]
    for label in ds["rule"].values:
        for layer in ds["layer"].values:
            sel = dict(rule=label, layer=layer)
            med = [np.nanmedian(ds[v].sel(**sel).values) for v in
                   ("centre_surround_index", "orientation_selectivity_index", "circular_variance")]
            lines.append(f"{label:11s} {layer:14s} {int(ds['n_driven_units'].sel(**sel)):6d}  "
                         f"{med[0]:10.3f}  {med[1]:10.3f}  {med[2]:9.3f}")
    log.info("receptive-field indices (medians over units):\n%s", "\n".join(lines))
    return ds


if __name__ == "__main__":
    main(sys.argv[1:])
