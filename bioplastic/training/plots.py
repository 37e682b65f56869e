"""The figure of a comparison: accuracy per epoch per rule, accuracy against feedback rank, and the final
alignment of each rule's weight updates with backprop, per layer."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from bioplastic import io
from bioplastic.rules import RULE_NAMES, rule_class
from bioplastic.training.results import NO_RANK, flagged_runs, split_label, upgrade_results, weight_transport


ALIGNMENT_LABELS = {
    "update_cosine": "cosine(update, backprop gradient)",
    "feedback_angle": "angle(W^T, feedback matrix) (deg)",
    "subspace_angle": "angle(feedback subspace, top-r error subspace) (deg)",
    "feedback_rank": "feedback rank (units)",
}
"""Axis labels of panel (c) for the alignment variables (others: the name with spaces)."""


RULE_DISPLAY_NAMES = {name: rule_class(name).display_name for name in RULE_NAMES}
"""Legend names of the rules (``Rule.display_name``); a label with a feedback-learning mode adds the mode's name."""

FEEDBACK_LEARNING_DISPLAY_NAMES = {
    "normative": "adaptive (normative)", "local": "adaptive (local)", "oja": "adaptive (Oja)",
    "q_only": "adaptive Q only", "fixed": "fixed",
}
"""Legend names of LDFA's feedback-learning modes."""

_TRANSPORT_NOTE = {"yes": "reads W", "sign": "reads sign W"}


def display_name(label: str, rank: str | None = None) -> str:
    """Legend name of a ``rule`` label (and rank text), with its weight transport.

    ``"ldfa_normative"`` -> ``"LDFA adaptive (normative), reads W"``; with ``rank="10"``: ``"LDFA adaptive
    (normative) r=10, reads W"``; ``"ldfa_local"`` -> ``"LDFA adaptive (local)"``; ``"ldfa_fixed"`` -> ``"LDFA
    fixed"``; ``"bp"`` -> ``"backprop, reads W"``; ``"sign_symmetry"`` -> ``"sign symmetry, reads sign W"``
    (:func:`~bioplastic.training.results.weight_transport`). Unknown labels are kept as they are."""
    label = str(label)
    name = RULE_DISPLAY_NAMES.get(label, label)
    rule, mode = split_label(label)
    if mode in FEEDBACK_LEARNING_DISPLAY_NAMES:
        name = f"{RULE_DISPLAY_NAMES[rule]} {FEEDBACK_LEARNING_DISPLAY_NAMES[mode]}"
    if rank is not None:
        name = f"{name} r={rank}"
    note = _TRANSPORT_NOTE.get(weight_transport(label))
    return f"{name}, {note}" if note else name


def _seed_text(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _colours(labels: list[str]) -> dict[str, tuple]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _mean_sd(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (ddof 1) over the finite values along ``axis``; s.d. 0 where fewer
    than two values (no error bar)."""
    finite = np.isfinite(values)
    n = finite.sum(axis)
    with np.errstate(all="ignore"):
        mean = np.where(n > 0, np.nansum(values, axis) / np.maximum(n, 1), np.nan)
        var = np.nansum((values - np.expand_dims(mean, axis)) ** 2, axis) / np.maximum(n - 1, 1)
        sd = np.where(n > 1, np.sqrt(var), 0.0)
    return mean, sd


def plot_comparison(ds: xr.Dataset, path: str | os.PathLike | None = None, *,
                    alignment: str = "update_cosine"):
    """Plot a comparison from :func:`bioplastic.compare`.

    Panels: (a) test accuracy per epoch, one line per rule and rank (mean over seeds; low-rank rules
    lighter for lower ranks); (b) final test accuracy against feedback rank r for the low-rank rules,
    mean +- s.d. over seeds (no error bars for one seed; the title says which), with the rules without a
    rank (backprop, FA, DFA, sign symmetry) as
    horizontal lines (relative ranks, ``compare(rank_fractions=...)``, are dotted horizontal lines beside
    absolute ones, or the x axis, as the fraction of each layer's width, when there are no absolute ones); (c) final ``alignment`` per layer (default: cosine between each rule's weight
    update and the backprop gradient; 1 for backprop) for every rule at its highest rank, mean +- s.d.
    over seeds. Legends name the rules as in :func:`display_name` ("LDFA adaptive (normative), reads W",
    "LDFA adaptive (local)", "LDFA fixed", ...: which ones read the forward weights W, i.e. transport
    weights); the title gives the dataset, model and number of seeds.

    Parameters
    ----------
    ds : xarray.Dataset
        Results (dims ``rule``, ``rank``, ``seed``, ``epoch``, ``layer``).
    path : path-like, optional
        Where to save the PNG (matplotlib Agg; folders are created).
    alignment : str
        The per-layer variable for panel (c); panel (c) is left out if it is absent.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot (no global state); Jupyter displays it as a PNG picture when it is a
        cell's last value (``_repr_png_``, :mod:`bioplastic._figures`), whether or not pyplot was imported.
    """
    from matplotlib.ticker import MaxNLocator, NullFormatter

    ds = upgrade_results(ds)
    labels = [str(x) for x in ds["rule"].values]
    ranks = [int(r) for r in ds["rank"].values]
    # what each rank key means, from the coordinates: its text and, for a relative rank, its fraction
    rank_text = dict(zip(ranks, (str(t) for t in ds["rank_label"].values)))
    fraction = {r: (float(f) if np.isfinite(f) else None) for r, f in zip(ranks, ds["rank_fraction"].values)}
    n_seeds = int(ds.sizes.get("seed", 1))
    colours = _colours(labels)
    acc = ds["test_accuracy"].values * 100.0  # (rule, rank, seed, epoch)
    epochs = ds["epoch"].values
    has_align = alignment in ds and ds.sizes.get("layer", 0) > 0
    low = [i for i, lab in enumerate(labels)
           if any(r != NO_RANK and np.isfinite(acc[i, j]).any() for j, r in enumerate(ranks))]
    from bioplastic._figures import new_figure

    # A bare Figure (no pyplot): no global backend state, saved with the Agg canvas; it has _repr_png_, so
    # Jupyter shows it as a picture when it is a cell's last value, with or without pyplot imported.
    fig = new_figure(figsize=(15 if has_align else 10, 4.2), layout="constrained")
    axes = fig.subplots(1, 3 if has_align else 2)
    ax = axes[0]
    # Absolute ranks (r >= 1) and relative ranks (fraction of each layer's width, negative rank codes).
    absolute = [r for r in ranks if r != NO_RANK and fraction[r] is None]
    relative = [r for r in ranks if fraction[r] is not None]
    true_ranks = sorted(absolute) + sorted(relative, key=fraction.get)
    for i, lab in enumerate(labels):
        for j, r in enumerate(ranks):
            if not np.isfinite(acc[i, j]).any():
                continue
            mean, _ = _mean_sd(acc[i, j], 0)
            if r == NO_RANK:
                ax.plot(epochs, mean, color=colours[lab], lw=2, marker="o", ms=3, label=display_name(lab))
            else:
                k = true_ranks.index(r)
                alpha = 0.35 + 0.65 * (k + 1) / len(true_ranks)
                # ranks differ by line style as well as shade: the largest solid, smaller ones dotted/dashed
                style = "-" if k == len(true_ranks) - 1 else (":", "--", "-.")[k % 3]
                ax.plot(epochs, mean, color=colours[lab], lw=1.5, alpha=alpha, marker=".", ls=style,
                        label=display_name(lab, rank_text[r]))
    ax.set(xlabel="epoch", ylabel="test accuracy (%)",
           title=f"(a) test accuracy per epoch\n(mean over {_seed_text(n_seeds)})")
    # integer epochs; min_n_ticks=1 keeps them integer when the axis spans a single epoch
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if len(epochs) == 1:
        ax.set_xlim(float(epochs[0]) - 0.5, float(epochs[0]) + 0.5)
    # lower right: below the late-epoch curves, right of the low first-epoch points
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.grid(alpha=0.3)

    ax = axes[1]
    final = acc[..., -1]  # (rule, rank, seed)
    # x axis: the absolute rank r; with relative ranks only, the fraction of each layer's width. Relative
    # ranks beside absolute ones are dotted horizontal lines.
    on_axis = absolute if absolute else relative
    for i, lab in enumerate(labels):
        if i in low:
            xs = [r for r in on_axis if np.isfinite(acc[i, ranks.index(r)]).any()]
            idx = [ranks.index(r) for r in xs]
            if xs:
                mean, sd = _mean_sd(final[i, idx], 1)
                xv = xs if absolute else [fraction[r] for r in xs]
                ax.errorbar(xv, mean, yerr=sd if n_seeds > 1 else None, color=colours[lab], marker="o", capsize=3,
                            label=display_name(lab))
            if absolute:
                for r in relative:
                    if np.isfinite(acc[i, ranks.index(r)]).any():
                        mean, _ = _mean_sd(final[i, ranks.index(r)][None], 1)
                        ax.axhline(mean[0], color=colours[lab], ls=":", lw=1.2,
                                   label=display_name(lab, rank_text[r]))
        elif NO_RANK in ranks and np.isfinite(acc[i, ranks.index(NO_RANK)]).any():
            mean, sd = _mean_sd(final[i, ranks.index(NO_RANK)][None], 1)
            ax.axhline(mean[0], color=colours[lab], ls="--", lw=1.2, label=display_name(lab))
            if sd[0] > 0:
                ax.axhspan(mean[0] - sd[0], mean[0] + sd[0], color=colours[lab], alpha=0.12)
    if on_axis:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # no stray "2x10^0" labels between the ranks
        ax.set_xticks(on_axis if absolute else [fraction[r] for r in on_axis])
        ax.set_xticklabels([str(r) for r in on_axis] if absolute else [f"{fraction[r]:g}" for r in on_axis])
    bars = f"mean \u00b1 s.d. over {_seed_text(n_seeds)}" if n_seeds > 1 else "1 seed, no error bars"
    ax.set(xlabel="feedback rank r" if absolute or not relative else "feedback rank / layer width",
           ylabel="final test accuracy (%)", title=f"(b) accuracy against rank\n({bars})")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)

    if has_align:
        ax = axes[2]
        layers = [str(x) for x in ds["layer"].values]
        values = ds[alignment].values[:, :, :, -1, :]  # (rule, rank, seed, layer)
        x = np.arange(len(layers))
        for i, lab in enumerate(labels):
            done = [j for j in range(len(ranks)) if np.isfinite(values[i, j]).any()]
            if not done:
                continue
            # highest absolute rank, else the largest fraction of the width
            j = max(done, key=lambda j: (fraction[ranks[j]] is None, fraction[ranks[j]] or ranks[j]))
            mean, sd = _mean_sd(values[i, j], 0)
            name = display_name(lab) if ranks[j] == NO_RANK else display_name(lab, rank_text[ranks[j]])
            ax.errorbar(x, mean, yerr=sd if n_seeds > 1 else None, color=colours[lab], marker="o", capsize=2,
                        label=name)
        ax.set_xticks(x)
        ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=8)
        ax.set(xlabel="layer", ylabel=ALIGNMENT_LABELS.get(alignment, alignment.replace("_", " ")),
               title=f"(c) alignment with backprop, final epoch\n({bars})")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)

    cfg = ds.attrs.get("config")
    if cfg:
        import json

        c = json.loads(cfg)
        model = c.get("model", {}).get("name", "?") if isinstance(c.get("model"), dict) else c.get("model")
        fig.suptitle(f"{c.get('dataset', '?')}, model {model}, {_seed_text(n_seeds)}; "
                     f"reads W = the feedback reads the forward weights (weight transport)", fontsize=10)
    else:
        fig.suptitle(f"{_seed_text(n_seeds)}; reads W = the feedback reads the forward weights (weight transport)",
                     fontsize=10)
    flagged = flagged_runs(ds) if "status" in ds else []
    if flagged:  # runs that did not learn (results.FLAGGED_STATUSES) are named under the panels
        meaning = {"diverged": "diverged: loss became NaN/Inf", "at_chance": "at_chance: final accuracy at chance level"}
        fig.supxlabel("(!) did not learn: " + ", ".join(f"{rid} ({st})" for rid, st in flagged) + " -- "
                      + "; ".join(meaning[k] for k in meaning if any(st == k for _, st in flagged)),
                      fontsize=8, color="crimson")
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    return fig
