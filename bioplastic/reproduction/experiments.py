"""The experiments behind the claims of ``bioplastic reproduce``, with their settings per budget.

An :class:`Experiment` is run once per budget and its result (an ``xarray.Dataset``) is shared by every claim
that reads it (e.g. one MNIST comparison answers two claims). Each runner uses the package's own machinery:
:func:`bioplastic.compare` (whose ``out`` folder makes a stopped run resume), :func:`bioplastic.theory.simulate`
and the functions of the analysis scripts in ``analyses/`` (loaded from the repository checkout; a claim that
needs one is reported ``not run`` where the folder is absent, e.g. in an installed wheel).

Budgets: ``smoke`` (tiny sizes, tests the plumbing in a few minutes of CPU time; its numbers mean nothing), ``cpu`` (what 2
CPU cores can do in a few hours; at least 3 seeds where a run takes under 10 minutes), ``gpu`` (the paper's
recipes where the package has them).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bioplastic import io

__all__ = ["BUDGETS", "Experiment", "Context", "NotAvailable", "EXPERIMENTS", "analysis_module", "ANALYSES_DIR"]

log = logging.getLogger(__name__)

BUDGETS = ("smoke", "cpu", "gpu")
"""Budgets of ``bioplastic reproduce``, smallest first."""

ANALYSES_DIR = Path(__file__).resolve().parents[2] / "analyses"
"""The repository's ``analyses/`` folder (present in a checkout, absent from an installed wheel)."""


class NotAvailable(RuntimeError):
    """An experiment cannot run here (missing data, missing analysis, not built yet); the message says why."""


@dataclasses.dataclass
class Context:
    """Where and how an experiment runs.

    Attributes
    ----------
    out : pathlib.Path
        The experiment's own folder (``DIR/experiments/<budget>/<name>``); runners keep resumable state here.
    budget : str
    device : str
        Torch device for training (``"auto"``: CUDA where available).
    data_root : pathlib.Path or None
        The shared data folder (``cifar10/``, ``kriegeskorte2008/``, ``ringach2002/``), if known.
    cifar10 : pathlib.Path or None
        The CIFAR-10 folder (zip files or ``cifar-10-batches-py``), if found.
    progress : bool
        Progress bars.
    """

    out: Path
    budget: str
    device: str = "auto"
    data_root: Path | None = None
    cifar10: Path | None = None
    progress: bool = False


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One experiment: what it runs, per budget, and what it needs.

    Attributes
    ----------
    name : str
    description : str
        One sentence for the report.
    settings : mapping
        Budget -> settings dict passed to ``run`` (``seeds`` among them for seeded experiments), or a string:
        the reason the experiment is not run at that budget.
    run : callable
        ``run(ctx, settings) -> xarray.Dataset``; raises :class:`NotAvailable` when it cannot run here.
    needs : tuple of str
        Requirements checked before running: ``"cifar10"``, ``"kriegeskorte2008"``, ``"analyses/<file>.py"``,
        ``"rate_twin"`` (:func:`bioplastic.rate.compare_with_twin`), ``"task_dimensionality"``
        (:mod:`bioplastic.training.task_dimensionality`).
    plot : callable, optional
        ``plot(ds, path)`` writes the experiment's figure (PNG).
    table : callable, optional
        ``table(ds) -> list of dict`` rows for the report (our numbers per condition, published ones beside).
    seeded : bool
        Whether ``--seeds`` applies.
    setup : callable, optional
        ``setup(settings) -> dict``: the set-up that the settings name only indirectly (e.g. an analysis
        script's budget, whose model, epochs and data sizes live in that script), resolved to plain values.
        :meth:`settings_for` adds it to the settings as ``"setup"``, and the settings decide whether a stored
        result is reused (``bioplastic reproduce``), so a result measured with another set-up is never taken
        for this one. Raising :class:`NotAvailable` (e.g. the analysis script absent) leaves it out.
    """

    name: str
    description: str
    settings: Mapping[str, Mapping[str, Any] | str]
    run: Callable[[Context, dict], xr.Dataset]
    needs: tuple[str, ...] = ()
    plot: Callable[[xr.Dataset, Path], Any] | None = None
    table: Callable[[xr.Dataset], list[dict[str, Any]]] | None = None
    seeded: bool = True
    setup: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def settings_for(self, budget: str, seeds: list[int] | None = None) -> dict[str, Any] | str:
        """Settings at ``budget`` (``seeds`` overriding the budget's, for seeded experiments), or the reason
        the experiment is not run at that budget."""
        s = self.settings.get(budget, f"not defined for budget {budget!r}")
        if isinstance(s, str):
            return s
        s = json.loads(json.dumps(dict(s)))  # a deep, JSON-clean copy
        if self.seeded and seeds is not None:
            s["seeds"] = [int(x) for x in seeds]
        if self.setup is not None:
            try:
                s["setup"] = json.loads(json.dumps(dict(self.setup(s)), sort_keys=True))
            except NotAvailable:  # the experiment cannot run here; missing() says why
                pass
        return s

    def missing(self, ctx: Context) -> str | None:
        """Why the experiment cannot run in ``ctx`` (a missing data folder or analysis script), or None."""
        for need in self.needs:
            if need == "cifar10":
                if ctx.cifar10 is None:
                    where = ("no data folder was given" if ctx.data_root is None
                             else f"no CIFAR-10 (cifar-10-batches-py) under {ctx.data_root}")
                    return (f"CIFAR-10 not found ({where}): give --data-path (the shared data folder or a CIFAR-10 "
                            "folder) or set BIOPLASTIC_SHARED_DATA")
            elif need == "kriegeskorte2008":
                f = None if ctx.data_root is None else (
                    ctx.data_root / "kriegeskorte2008" / "Kriegeskorte_Neuron2008_supplementalData.mat")
                if f is None or not f.exists():
                    where = "no data folder was given" if f is None else f"looked for {f}"
                    return ("the IT data (kriegeskorte2008/Kriegeskorte_Neuron2008_supplementalData.mat) were not "
                            f"found ({where}): give --data-path (the shared data folder) or set "
                            "BIOPLASTIC_SHARED_DATA")
            elif need == "rate_twin":
                if _twin_function() is None:
                    return ("needs the autograd twin of the rate network (bioplastic.rate.compare_with_twin: the "
                            "same 784-256-10 network, digits and online order trained by bioplastic.convert with "
                            "batch size 1), which this version of bioplastic does not have")
            elif need == "task_dimensionality":
                if importlib.util.find_spec("bioplastic.training.task_dimensionality") is None:
                    return ("needs the task-dimensionality experiment of issue 12 "
                            "(bioplastic.training.task_dimensionality), which this version of bioplastic does not "
                            "have")
            elif need.startswith("analyses/"):
                if not (ANALYSES_DIR / need[len("analyses/"):]).exists():
                    return f"needs {need} of a repository checkout (not part of an installed package)"
            else:  # pragma: no cover - a programming error in the registry
                raise ValueError(f"unknown requirement {need!r}")
        return None


def analysis_module(filename: str):
    """Import ``analyses/<filename>`` of the repository checkout as a module (cached in ``sys.modules``).

    Raises
    ------
    NotAvailable
        The file does not exist (e.g. an installed wheel has no ``analyses/`` folder).
    """
    path = ANALYSES_DIR / filename
    name = f"bioplastic_analyses_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    if not path.exists():
        raise NotAvailable(f"needs analyses/{filename} of a repository checkout")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


# ------------------------------------------------------------------------------------------------ helpers
def _compare(ctx: Context, s: Mapping[str, Any], **fixed: Any) -> xr.Dataset:
    """:func:`bioplastic.compare` into ``ctx.out/compare`` (resumable) with ``fixed`` and the budget's settings."""
    import bioplastic

    kwargs = dict(fixed)
    for key in ("rules", "ranks", "rank_fractions", "feedback_learning", "model", "epochs", "max_train", "max_test",
                "batch_size", "alignment", "warmup_epochs"):
        if key in s:
            kwargs[key] = s[key]
    return bioplastic.compare(seeds=s["seeds"], out=ctx.out / "compare", device=ctx.device, progress=ctx.progress,
                              keep_models=False, **kwargs)


def _plot_compare(ds: xr.Dataset, path: Path) -> None:
    from bioplastic.training.plots import plot_comparison

    plot_comparison(ds, path)


def _accuracy_table(ds: xr.Dataset, published: Mapping[tuple[str, int], float] | None = None) -> list[dict]:
    """Final test accuracy (%) per run label and rank that was run: mean, s.d., n over seeds; with ``published``
    ((label, rank) -> %), that column beside ours, and the published conditions we did not run as extra rows."""
    from bioplastic.training.results import NO_RANK, upgrade_results

    ds = upgrade_results(ds)
    acc = 100 * ds["test_accuracy"].isel(epoch=-1)
    rows, seen = [], set()
    for label in ds["rule"].values:
        for rank, rank_label in zip(ds["rank"].values, ds["rank_label"].values):
            ran = ds["status"].sel(rule=label, rank=rank).values != "not_applicable"
            if not ran.any():
                continue
            v = acc.sel(rule=label, rank=rank).values[ran]
            seen.add((str(label), int(rank)))
            row = {"condition": str(label) + ("" if int(rank) == NO_RANK else f" r={rank_label}"),
                   "final test accuracy (%)": float(np.mean(v)),
                   "s.d.": float(np.std(v, ddof=1)) if v.size > 1 else float("nan"), "n": int(v.size)}
            if published is not None:
                row["published (%)"] = published.get((str(label), int(rank)), float("nan"))
            rows.append(row)
    for (label, rank), value in (published or {}).items():
        if (label, rank) not in seen:
            rows.append({"condition": label + ("" if rank == NO_RANK else f" r={rank}") + " (published only)",
                         "final test accuracy (%)": float("nan"), "s.d.": float("nan"), "n": 0,
                         "published (%)": value})
    return rows


# ------------------------------------------------------------------------------------------- linear theory
LINEAR_RULES = ("bp", "ldfa_fixed", "ldfa_q_only", "ldfa_normative")


def _run_linear_theory(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    """Gradient descent of the two-layer linear student (:func:`bioplastic.theory.simulate`), every rule of
    :data:`LINEAR_RULES` at each rank, one run per seed (initial weights, random feedback, training set)."""
    from bioplastic import theory
    from bioplastic.architectures import load_spec

    spec = load_spec("linear_teacher_student")
    over = dict(s.get("spec", {}))
    spec = {**spec, **{k: v for k, v in over.items() if k != "training"},
            "training": {**spec["training"], **over.get("training", {})}}
    teacher = theory.teacher_from_spec(spec)
    tr = spec["training"]
    steps = int(tr["steps"])
    per_seed = []
    for seed in s["seeds"]:
        per_rank = []
        for rank in s["ranks"]:
            ds = theory.compare_rules(
                list(LINEAR_RULES), teacher, executor="simulate", rank=int(rank), n_hidden=int(spec["n_hidden"]),
                steps=steps, lr=float(tr["lr"]), feedback_lr=float(tr["feedback_lr"]), init=tr.get("init", "random"),
                init_scale=float(tr["init_scale"]), feedback_init_scale=float(tr.get("feedback_init_scale", 1.0)),
                n_samples=tr.get("n_samples"), record_every=max(1, steps // 100), seed=int(seed))
            keep = ds[["loss", "mode_strength"]]
            keep["initial_loss_zero_map"] = ds["initial_loss_zero_map"]
            per_rank.append(keep)
        per_seed.append(xr.concat(per_rank, dim="rank", coords="minimal", compat="override", combine_attrs="drop"))
    out = xr.concat(per_seed, dim="seed", coords="minimal", compat="override", combine_attrs="drop")
    out = out.assign_coords(seed=np.asarray(s["seeds"], dtype=np.int64), rank=np.asarray(s["ranks"], dtype=np.int64))
    out["teacher_rank"] = ((), int(teacher.rank))
    out.attrs["teacher"] = str(teacher)
    return out


def _plot_linear_theory(ds: xr.Dataset, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = [int(r) for r in ds["rank"].values]
    fig, axes = plt.subplots(1, len(ranks), figsize=(4.2 * len(ranks), 3.2), squeeze=False)
    colors = dict(zip(ds["rule"].values, plt.cm.tab10.colors))
    for ax, r in zip(axes[0], ranks):
        for rule in ds["rule"].values:
            for k, seed in enumerate(ds["seed"].values):
                loss = ds["loss"].sel(rank=r, rule=rule, seed=seed)
                ax.plot(ds["step"], loss / ds["loss"].sel(rank=r, rule=rule, seed=seed).isel(step=0),
                        color=colors[rule], lw=1.2 if k == 0 else 0.6, alpha=1 if k == 0 else 0.5,
                        label=str(rule) if k == 0 else None)
        ax.set_yscale("log")
        ax.set_title(f"feedback rank r = {r} (teacher rank {int(ds['teacher_rank'])})", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss / initial loss")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("linear teacher-student: loss per rule, every seed", fontsize=10)
    fig.tight_layout()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90))
    plt.close(fig)


def _linear_table(ds: xr.Dataset) -> list[dict]:
    rows = []
    fraction = ds["loss"].isel(step=-1) / ds["loss"].isel(step=0)
    for r in ds["rank"].values:
        for rule in ds["rule"].values:
            v = fraction.sel(rank=r, rule=rule).values
            rows.append({"condition": f"{rule} r={int(r)}", "final loss / initial loss": float(np.mean(v)),
                         "s.d.": float(np.std(v, ddof=1)) if v.size > 1 else float("nan"), "n": int(v.size)})
    return rows


_SMALL_LINEAR = {"n_inputs": 32, "n_outputs": 16, "n_hidden": 16,
                 "teacher": {"construction": "random", "singular_values": [5.0, 4.8, 4.5, 4.2], "seed": 0},
                 "training": {"steps": 600, "lr": 0.015, "feedback_lr": 0.006, "init_scale": 0.05, "n_samples": 2000}}

LINEAR_THEORY = Experiment(
    name="linear_theory",
    description="two-layer linear student learning a rank-4 linear teacher (models/linear_teacher_student.toml: "
                "n=128, k=64, m=64, 5,000 steps of full-batch gradient descent on 100,000 samples) with BP and "
                "LDFA (fixed, q_only, normative feedback) at r = 2 < 4 and r = 4; seeds vary the initial weights, "
                "the random feedback and the training set, the teacher is the paper's",
    settings={
        "smoke": {"seeds": [0, 1, 2], "ranks": [2, 4], "spec": _SMALL_LINEAR},
        "cpu": {"seeds": [0, 1, 2], "ranks": [2, 4]},
        "gpu": {"seeds": [0, 1, 2, 3, 4], "ranks": [2, 4]},
    },
    run=_run_linear_theory, plot=_plot_linear_theory, table=_linear_table)


# ---------------------------------------------------------------------------------------------- MNIST MLP
def _run_mnist(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    return _compare(ctx, s, rules=["bp", "ldfa"], feedback_learning=["normative", "fixed"], dataset="mnist")


MNIST_MLP = Experiment(
    name="mnist_mlp",
    description="bioplastic compare on the embedded MNIST digits (5,000 train / 10,000 test; 784-256-256-10 MLP "
                "of models/mlp_mnist.toml and its recipe): BP and LDFA with adaptive (normative) and fixed random "
                "feedback",
    settings={
        "smoke": {"seeds": [0, 1], "ranks": [3, 10], "epochs": 1, "max_train": 300, "max_test": 500,
                  "alignment": False},
        "cpu": {"seeds": [0, 1, 2], "ranks": [1, 3, 10]},
        "gpu": {"seeds": [0, 1, 2, 3, 4], "ranks": [1, 3, 10]},
    },
    run=_run_mnist, plot=_plot_compare, table=_accuracy_table)


# ------------------------------------------------------------------------------------ task dimensionality
def _run_task_dimensionality(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    """:func:`bioplastic.training.task_dimensionality.run_task_dimensionality` (issue 12) into ``ctx.out``."""
    try:
        from bioplastic.training.task_dimensionality import run_task_dimensionality
    except ImportError:
        raise NotAvailable("needs the task-dimensionality experiment of issue 12 "
                           "(bioplastic.training.task_dimensionality), which this version of bioplastic does not "
                           "have") from None
    device = "cuda" if ctx.device == "auto" and _cuda() else ("cpu" if ctx.device == "auto" else ctx.device)
    return run_task_dimensionality(ctx.out, budget=s["budget"], dataset=s["dataset"], seeds=s["seeds"],
                                   device=device, progress=ctx.progress, figure=False,
                                   data_path=ctx.cifar10 if s["dataset"] == "cifar10" else None)


def _plot_task_dimensionality(ds: xr.Dataset, path: Path) -> None:
    from bioplastic.training.task_dimensionality import plot_task_dimensionality

    plot_task_dimensionality(ds, path)


def _task_dimensionality_table(ds: xr.Dataset) -> list[dict]:
    rows = []
    base = int(ds.attrs.get("base_width", ds["width"].values[-1]))
    for mode in ds["mode"].values:
        for k in ds["K"].values:
            for w in ds["width"].values:
                r = ds["r_star_per_seed"].sel(mode=mode, K=k, width=w).values
                if np.isnan(r).all():
                    continue
                rows.append({"condition": f"ldfa_{mode} K={int(k)} width={int(w)}" + (" (base)" if w == base else ""),
                             "r* (seed mean)": float(np.mean(r)),
                             "r* per seed": ", ".join(f"{x:g}" for x in r), "n": int(r.size)})
    return rows


TASK_DIMENSIONALITY = Experiment(
    name="task_dimensionality",
    description="the minimal feedback rank r* at which adaptive LDFA reaches BP (criterion of "
                "bioplastic.training.task_dimensionality, issue 12) against the number of classes K and the "
                "width, and BP on a network narrowed to width r, on the random-teacher task",
    settings={
        "smoke": {"seeds": [0, 1], "budget": "smoke", "dataset": "teacher"},
        "cpu": {"seeds": [0, 1, 2], "budget": "cpu", "dataset": "teacher"},
        "gpu": {"seeds": [0, 1, 2, 3, 4], "budget": "paper", "dataset": "teacher"},
    },
    run=_run_task_dimensionality, needs=("task_dimensionality",), plot=_plot_task_dimensionality,
    table=_task_dimensionality_table)


# -------------------------------------------------------------------------------------------- CNN CIFAR-10
def _run_cnn(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    return _compare(ctx, s, rules=["bp", "fa", "dfa", "ldfa"], ranks=[], rank_fractions=[0.25],
                    feedback_learning=["normative"], dataset="cifar10", data_path=ctx.cifar10)


CNN_CIFAR = Experiment(
    name="cnn_cifar",
    description="bioplastic compare on CIFAR-10 (JPEG re-encodings): BP, FA, DFA and LDFA with every layer's "
                "rank at width/4 (normative feedback), cnn_small on CPU, the paper's vgg_cifar on GPU",
    settings={
        "smoke": {"seeds": [0, 1], "model": "cnn_small", "epochs": 1, "max_train": 256, "max_test": 256,
                  "alignment": False},
        "cpu": {"seeds": [0, 1, 2], "model": "cnn_small", "epochs": 4, "max_train": 5000, "max_test": 2000,
                "alignment": False},
        "gpu": {"seeds": [0, 1, 2], "model": "vgg_cifar"},
    },
    run=_run_cnn, needs=("cifar10",), plot=_plot_compare, table=_accuracy_table)


# -------------------------------------------------------------------------------------------- ViT CIFAR-10
VIT_PUBLISHED = {("bp", -1): 91.34, ("ldfa_normative", 48): 91.26, ("ldfa_normative", 32): 90.77,
                 ("ldfa_normative", 24): 90.23, ("ldfa_normative", 16): 89.40}
"""The authors' CIFAR-10 ViT top-1 (%): patch 4, width 384, depth 8, 250 epochs, mean of 5 seeds
(Hanut & Kadmon 2025; their repository)."""


def _run_vit(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    return _compare(ctx, s, rules=["bp", "ldfa"], feedback_learning=["normative"], dataset="cifar10",
                    data_path=ctx.cifar10)


VIT_CIFAR = Experiment(
    name="vit_cifar",
    description="bioplastic compare on CIFAR-10: BP and LDFA (normative feedback) at several ranks with the "
                "ViT (vit_small on CPU; the paper's vit_cifar recipe on GPU)",
    settings={
        "smoke": {"seeds": [0, 1], "model": "vit_small", "ranks": [4, 32], "epochs": 2, "warmup_epochs": 0,
                  "max_train": 128, "max_test": 256, "alignment": False},
        "cpu": {"seeds": [0, 1, 2], "model": "vit_small", "ranks": [4, 10, 32], "epochs": 4, "warmup_epochs": 0.5,
                "max_train": 2000, "max_test": 1000, "alignment": False},
        "gpu": {"seeds": [0, 1, 2], "model": "vit_cifar", "ranks": [16, 24, 32, 48], "alignment": False},
    },
    run=_run_vit, needs=("cifar10",), plot=_plot_compare,
    table=lambda ds: _accuracy_table(ds, VIT_PUBLISHED))


# ---------------------------------------------------------------------------------------------- FLOP ratio
def _run_flops(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    from bioplastic.training.flops import step_flops

    return step_flops([s["model"]], s["ranks"], ["normative"], batch_size=int(s["batch_size"]), device="cpu")


def _plot_flops(ds: xr.Dataset, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for m in ds["model"].values:
        ratio = ds["weight_flop_ratio"].sel(model=m).isel(feedback_learning=0)
        ax.plot(ds["rank"], ratio, "o-", label=f"{m}: LDFA / BP")
        ax.axhline(float(ds["flop_ratio_limit"].sel(model=m)), color="0.5", ls=":", label="r -> 0 limit")
    ax.axhline(2 / 3, color="k", ls="--", lw=0.8, label="2/3")
    ax.set_xscale("log")
    ax.set_xlabel("feedback rank r")
    ax.set_ylabel("weight-layer FLOPs per step, LDFA / BP")
    ax.legend(fontsize=7)
    fig.tight_layout()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90))
    plt.close(fig)


def _flops_table(ds: xr.Dataset) -> list[dict]:
    rows = []
    for m in ds["model"].values:
        for r in ds["rank"].values:
            rows.append({"condition": f"{m} r={int(r)}",
                         "weight-layer FLOP ratio LDFA / BP": float(ds["weight_flop_ratio"].sel(model=m, rank=r)
                                                                    .isel(feedback_learning=0)),
                         "r -> 0 limit": float(ds["flop_ratio_limit"].sel(model=m))})
    return rows


FLOPS = Experiment(
    name="flops",
    description="FLOPs of one training step counted by torch.utils.flop_counter (bioplastic.training.flops), "
                "BP versus LDFA at several ranks, on the ViT",
    settings={
        "smoke": {"model": "vit_small", "ranks": [1, 32], "batch_size": 2},
        "cpu": {"model": "vit_small", "ranks": [1, 2, 4, 8, 16, 32], "batch_size": 16},
        "gpu": {"model": "vit_cifar", "ranks": [1, 4, 16, 48, 128], "batch_size": 16},
    },
    run=_run_flops, plot=_plot_flops, table=_flops_table, seeded=False)


# ------------------------------------------------------------------------------- compute to reach a target
def result_of(name: str, ctx: Context, seeds: list[int] | None = None) -> xr.Dataset:
    """The result of experiment ``name`` at ``ctx.budget`` (``seeds`` replacing the budget's): its saved
    ``result.nc`` beside ``ctx.out`` if made with the same settings, else the experiment run into its own folder
    (a comparison resumes from what it saved there) and saved as the runner saves it.

    Raises
    ------
    NotAvailable
        The experiment is not run at this budget or cannot run here (the reason is given).
    """
    exp = EXPERIMENTS[name]
    settings = exp.settings_for(ctx.budget, seeds)
    if isinstance(settings, str):
        raise NotAvailable(f"needs experiment {name}, which is not run at budget {ctx.budget!r}: {settings}")
    sub = dataclasses.replace(ctx, out=ctx.out.parent / name)
    missing = exp.missing(sub)
    if missing:
        raise NotAvailable(f"needs experiment {name}: {missing}")
    path, key = sub.out / "result.nc", json.dumps(settings, sort_keys=True)
    if path.exists():
        ds = io.load(path)
        if ds.attrs.get("reproduce_settings") == key:
            return ds
    ds = exp.run(sub, settings).copy()
    ds.attrs["reproduce_settings"] = key
    io.save(ds, path)
    return io.load(path)


COMPUTE_MODELS = (("mnist_mlp", "mlp_mnist", ("ldfa_normative", 10)),
                  ("cnn_cifar", "cnn_small", ("ldfa_normative", None)))
"""(experiment, model, (LDFA run label, rank; None: the rank-fraction run)) of the compute-to-target
measurement: adaptive LDFA at r = d on the MNIST MLP, at every layer's width / 4 on the CNN."""


def _run_compute_to_target(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    """FLOPs, CPU time and wall time for BP and LDFA to reach ``fraction`` of BP's final test accuracy (seed
    mean), per seed, from the accuracy curves of the MNIST-MLP and CNN comparisons
    (:func:`bioplastic.training.flops.flops_to_target`: FLOPs of one training step counted by
    ``torch.utils.flop_counter`` times the steps, epochs interpolated linearly between epoch ends). The times
    are the runs' per-epoch ``train_cpu_time`` and ``train_wall_time`` (training steps only, evaluation
    excluded) read at the same fractional epoch (:func:`bioplastic.training.flops.time_to_target`); NaN for
    curves saved before bioplastic recorded per-epoch times."""
    from bioplastic.training.results import NO_RANK, rank_text

    from bioplastic.training.flops import flops_to_target

    fraction = float(s["fraction"])
    parts = []
    all_curves = [result_of(name, ctx, s["seeds"]) for name, _, _ in COMPUTE_MODELS]
    max_epochs = max(c.sizes["epoch"] for c in all_curves)
    for (name, model, (label, rank)), curves in zip(COMPUTE_MODELS, all_curves):
        if rank is None:  # the rank-fraction run: the one rank of that label that ran
            ran = [int(r) for r in curves["rank"].values if int(r) != NO_RANK
                   and (curves["status"].sel(rule=label, rank=r).values != "not_applicable").any()]
            rank = ran[0]
        curves = curves.sel(rule=["bp", label])
        res = flops_to_target(curves, target="bp", fraction=fraction)
        cells = [("bp", NO_RANK), (label, rank)]
        epochs = curves.sizes["epoch"]
        rows = {k: [] for k in ("flops_per_step", "epochs_to_target", "flops_to_target", "cpu_time_to_target",
                                "wall_time_to_target", "target_accuracy", "wall_time", "test_accuracy",
                                "train_cpu_time")}
        for lab, r in cells:
            rows["flops_per_step"].append(float(res["flops_per_step"].sel(rule=lab, rank=r)))
            ep = res["epochs_to_target"].sel(rule=lab, rank=r).values
            rows["epochs_to_target"].append(ep)
            rows["flops_to_target"].append(res["flops_to_target"].sel(rule=lab, rank=r).values)
            rows["target_accuracy"].append(res["target_accuracy"].sel(rule=lab, rank=r).values)
            for name in ("cpu_time_to_target", "wall_time_to_target"):
                rows[name].append(res[name].sel(rule=lab, rank=r).values)
            rows["wall_time"].append(curves["wall_time"].sel(rule=lab, rank=r).values.astype(float))
            acc = np.full((curves.sizes["seed"], max_epochs), np.nan)
            acc[:, :epochs] = curves["test_accuracy"].sel(rule=lab, rank=r).values
            rows["test_accuracy"].append(acc)
            cpu = np.full((curves.sizes["seed"], max_epochs), np.nan)
            cpu[:, :epochs] = curves["train_cpu_time"].sel(rule=lab, rank=r).values
            rows["train_cpu_time"].append(cpu)
        seeds = curves["seed"].values
        parts.append(xr.Dataset(
            {"flops_per_step": (("rule",), np.array(rows["flops_per_step"]),
                                {"units": "FLOP", "batch_size": int(res.attrs["batch_size"])}),
             "steps_per_epoch": ((), int(res.attrs["steps_per_epoch"])),
             "epochs_to_target": (("rule", "seed"), np.array(rows["epochs_to_target"])),
             "flops_to_target": (("rule", "seed"), np.array(rows["flops_to_target"]), {"units": "FLOP"}),
             "cpu_time_to_target": (("rule", "seed"), np.array(rows["cpu_time_to_target"]), {
                 "units": "s", "long_name": "CPU time (time.process_time) of the training steps to the target"}),
             "wall_time_to_target": (("rule", "seed"), np.array(rows["wall_time_to_target"]), {
                 "units": "s", "long_name": "wall-clock time of the training steps to the target"}),
             "wall_time": (("rule", "seed"), np.array(rows["wall_time"]), {
                 "units": "s", "long_name": "wall-clock time of the whole run (setup and evaluation included)"}),
             "target_accuracy": (("rule", "seed"), np.array(rows["target_accuracy"])),
             "test_accuracy": (("rule", "seed", "epoch"), np.array(rows["test_accuracy"])),
             "train_cpu_time": (("rule", "seed", "epoch"), np.array(rows["train_cpu_time"]), {
                 "units": "s", "long_name": "CPU time of each epoch's training steps"})},
            coords={"rule": ["bp", "ldfa"], "seed": seeds, "epoch": np.arange(1, max_epochs + 1)},
            attrs={}).assign(ldfa_rank=((), rank_text(int(rank)))))
    out = xr.concat(parts, dim="model", coords="minimal", compat="override", combine_attrs="drop")
    out = out.assign_coords(model=[m for _, m, _ in COMPUTE_MODELS])
    for name, var in parts[0].data_vars.items():  # concat's combine_attrs="drop" dropped the units
        out[name].attrs.update({k: v for k, v in var.attrs.items() if k in ("units", "long_name")})
    out.attrs.update({"fraction": fraction, "target": "fraction of BP's final test accuracy (seed mean)",
                      "source": "FLOPs: torch.utils.flop_counter via bioplastic.training.flops"})
    return out


def _plot_compute(ds: xr.Dataset, path: Path) -> None:
    """Test accuracy of every seed against the cumulative training FLOPs (top) and, where the curves recorded
    it, the cumulative training CPU time (bottom), per model; the target line at ``fraction`` of BP's final."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    models = [str(m) for m in ds["model"].values]
    has_cpu = "train_cpu_time" in ds and bool(np.isfinite(ds["train_cpu_time"].values).any())
    n_rows = 2 if has_cpu else 1
    fig, axes = plt.subplots(n_rows, len(models), figsize=(4.6 * len(models), 3.4 * n_rows), squeeze=False)
    colors = {"bp": "k", "ldfa": "tab:red"}
    for col, m in enumerate(models):
        d = ds.sel(model=m)
        steps = int(d["steps_per_epoch"])
        for row in range(n_rows):
            ax = axes[row, col]
            for rule in d["rule"].values:
                per_epoch = float(d["flops_per_step"].sel(rule=rule)) * steps
                for k, seed in enumerate(d["seed"].values):
                    acc = 100 * d["test_accuracy"].sel(rule=rule, seed=seed).values
                    if row == 0:
                        x = per_epoch * np.arange(1, len(acc) + 1)
                    else:
                        x = np.cumsum(d["train_cpu_time"].sel(rule=rule, seed=seed).values)
                    ok = np.isfinite(acc) & np.isfinite(x)
                    ax.plot(x[ok], acc[ok], "o-", ms=2.5, lw=1, color=colors.get(str(rule), None), alpha=0.8,
                            label=(f"{rule}" + (f" r={d['ldfa_rank'].item()}" if rule == "ldfa" else ""))
                            if k == 0 else None)
            ax.axhline(100 * float(np.nanmean(d["target_accuracy"].sel(rule="bp"))), color="0.5", ls=":",
                       label=f"{100 * float(ds.attrs.get('fraction', 0.9)):.0f} % of BP's final")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on short ranges
            ax.set_xlabel("training FLOPs (cumulative, per epoch end)" if row == 0 else
                          "training CPU time, s (cumulative, per epoch end)")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(m, fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90))
    plt.close(fig)


COMPUTE_COLUMNS = (("epochs_to_target", "epochs to 90 %"), ("flops_to_target", "FLOPs to 90 %"),
                   ("cpu_time_to_target", "CPU s to 90 %"), ("wall_time_to_target", "wall s to 90 %"))
"""(variable of the compute-to-target result, column of its table): mean and s.d. over seeds of each."""


def _compute_table(ds: xr.Dataset) -> list[dict]:
    rows = []
    for m in ds["model"].values:
        d = ds.sel(model=m)
        for rule in d["rule"].values:
            row = {"condition": f"{m} {rule}" + (f" r={d['ldfa_rank'].item()}" if rule == "ldfa" else ""),
                   "FLOPs / step": float(d["flops_per_step"].sel(rule=rule))}
            for var, text in COMPUTE_COLUMNS:
                # a result saved before CPU time was recorded (or with wall_to_target, its old name): NaN
                v = d[var].sel(rule=rule).values if var in d else np.full(d.sizes["seed"], np.nan)
                row[text] = float(np.mean(v))
                row[f"{text} s.d."] = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
            row["n"] = int(np.isfinite(d["flops_to_target"].sel(rule=rule).values).sum())
            row["n (times)"] = int(np.isfinite(d["cpu_time_to_target"].sel(rule=rule).values).sum()
                                   if "cpu_time_to_target" in d else 0)
            rows.append(row)
    return rows


COMPUTE_TO_TARGET = Experiment(
    name="compute_to_target",
    description="training FLOPs (torch.utils.flop_counter, bioplastic.training.flops), CPU time and wall time "
                "for BP and adaptive LDFA to reach 90 % of BP's final test accuracy, from the accuracy curves of "
                "the MNIST-MLP comparison (LDFA r = 10) and the CNN comparison (cnn_small, LDFA at width / 4), per "
                "seed; times of the training steps only (evaluation excluded), read at the same fractional epoch "
                "as the FLOPs, on the machine and threads of the run (one thread on a shared CPU for cpu: its CPU "
                "time does not count waiting for a core, its wall time does)",
    settings={
        "smoke": {"seeds": [0, 1], "fraction": 0.9},
        "cpu": {"seeds": [0, 1, 2], "fraction": 0.9},
        "gpu": {"seeds": [0, 1, 2], "fraction": 0.9},
    },
    run=_run_compute_to_target, needs=("cifar10",), plot=_plot_compute,
    table=_compute_table)


# ------------------------------------------------------------------------------------- receptive fields
RF_LAYER = "retina.relu2"
"""The retina's output layer, whose units' receptive fields the receptive-field claims compare."""


def _rf_setup(s: Mapping[str, Any]) -> dict[str, Any]:
    """The analysis budget's resolved set-up (model spec, epochs, data sizes; ``analyses/receptive_fields.py``
    ``setup``): part of the settings, so that changing the budget there is never answered by a stored result."""
    return analysis_module("receptive_fields.py").setup(s["analysis_budget"])


def _run_receptive_fields(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    """``analyses/receptive_fields.py``'s ``run`` once per seed (each seed saved as soon as it is done, so a
    stopped run resumes with the next seed, and a run with other seeds reuses the seeds it shares, e.g. seeds run
    in parallel by separate processes with ``--seeds``), concatenated over ``seed``; the V1 data of Ringach et al. (2002)
    beside them where ``ringach2002/`` is in the shared data folder."""
    mod = analysis_module("receptive_fields.py")
    # the training checkpoints of one set-up live in their own folder, so that a changed set-up starts afresh
    # (the trainer refuses a checkpoint of another configuration) and nothing of the old one is overwritten
    identity = {"setup": s.get("setup") or mod.setup(s["analysis_budget"]),
                "feedback_learning": s.get("feedback_learning", "normative")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    parts = []
    for seed in s["seeds"]:
        folder = ctx.out / f"setup-{digest}" / f"seed{seed}"
        path = folder / "receptive_fields.nc"
        # one seed's result does not depend on the other seeds run: any run of the same settings reuses it
        key = json.dumps({**{k: v for k, v in s.items() if k != "seeds"}, "seed": int(seed)}, sort_keys=True)
        ds = io.load(path) if path.exists() else None
        if ds is None or ds.attrs.get("reproduce_settings") != key:
            ds = mod.run(out=folder, data=ctx.cifar10, ranks=s["ranks"],
                         bottlenecks=s.get("bottlenecks", ()), budget=s["analysis_budget"],
                         feedback_learning=s.get("feedback_learning", "normative"), seed=int(seed),
                         device=ctx.device, cache_dir=None, progress=ctx.progress)
            ds.attrs["reproduce_settings"] = key
            io.save(ds, path)
        keep = [v for v in ("centre_surround_index", "orientation_selectivity_index", "circular_variance",
                            "rf_energy", "receptive_field", "test_accuracy", "n_driven_units", "status") if v in ds]
        parts.append(ds[keep].drop_attrs() if hasattr(ds, "drop_attrs") else ds[keep])
    out = xr.concat(parts, dim="seed", coords="minimal", compat="override", combine_attrs="drop")
    out = out.assign_coords(seed=np.asarray(s["seeds"], dtype=np.int64))
    v1 = _ringach(ctx)
    if v1 is not None:
        out["v1_circular_variance"] = (("v1_neuron",), v1[0],
                                       {"source": "Ringach, Shapley & Hawken (2002) J Neurosci 22:5639 (orivar)"})
        out["v1_orientation_selectivity_index"] = (
            ("v1_neuron",), v1[1],
            {"long_name": "(1 - po) / (1 + po), po = orthogonal / preferred response",
             "source": "Ringach, Shapley & Hawken (2002) J Neurosci 22:5639 (po)"})
    return out


def _ringach(ctx: Context) -> tuple[np.ndarray, np.ndarray] | None:
    """(circular variance, orientation selectivity index) of the V1 cells of Ringach et al. (2002), or None."""
    if ctx.data_root is None or not (ctx.data_root / "ringach2002").exists():
        return None
    from bioplastic.data import load_ringach2002

    try:
        db = load_ringach2002(ctx.data_root / "ringach2002")
    except (ValueError, FileNotFoundError, OSError) as exc:  # a reference only; the claims do not need it
        log.warning("no V1 reference from %s: %s", ctx.data_root / "ringach2002", exc)
        return None
    cv = db["circular_variance"].values.astype(float)
    po = db["orthogonal_preferred_ratio"].values.astype(float)
    ok = np.isfinite(cv) & np.isfinite(po)
    # OSI = (r_pref - r_orth) / (r_pref + r_orth) = (1 - po) / (1 + po)
    return cv[ok], (1 - po[ok]) / (1 + po[ok])


RF_INDICES = (("centre_surround_index", "CSI"), ("orientation_selectivity_index", "OSI"),
              ("circular_variance", "CV"))


def rf_units(ds: xr.Dataset, var: str, label: str, layer: str = RF_LAYER) -> np.ndarray:
    """The finite values of index ``var`` of every driven unit of ``layer`` in condition ``label``, pooled over
    seeds (each channel's centre unit is one unit; units the noise never drives have NaN indices)."""
    v = ds[var].sel(rule=label, layer=layer).values.ravel()
    return v[np.isfinite(v)]


def rf_statistics(ds: xr.Dataset, reference: str = "bp", layer: str = RF_LAYER) -> list[dict]:
    """Per condition and index (CSI, OSI, CV) of ``layer``'s units pooled over seeds: median, n, and against
    ``reference`` (BP with full feedback) the median difference, the two-sided Mann-Whitney U p-value and the
    rank-biserial correlation (positive: larger than the reference); the V1 cells of Ringach et al. (2002)
    as a row where present (OSI and CV only)."""
    mod = analysis_module("receptive_fields.py")
    rows = []
    labels = [str(x) for x in ds["rule"].values]
    groups = [(label, {var: rf_units(ds, var, label, layer) for var, _ in RF_INDICES}) for label in labels]
    if "v1_circular_variance" in ds:
        groups.append(("V1 (Ringach 2002)", {"centre_surround_index": np.array([]),
                                              "orientation_selectivity_index":
                                                  ds["v1_orientation_selectivity_index"].values,
                                              "circular_variance": ds["v1_circular_variance"].values}))
    ref = dict(groups)[reference]
    v1_cv = ds["v1_circular_variance"].values if "v1_circular_variance" in ds else None
    for label, values in groups:
        is_v1 = label.startswith("V1")
        row: dict[str, Any] = {"condition": label if is_v1 else f"{label} {layer}",
                               "units": int(max(len(v) for v in values.values()))}
        for var, short in RF_INDICES:
            v = values[var]
            row[f"median {short}"] = float(np.median(v)) if v.size else float("nan")
            if var != "circular_variance":
                _, p, rb = ((np.nan,) * 3 if label == reference
                            else mod.compare_distributions(v, ref[var]))
                row[f"{short} p vs {reference}"] = p
                row[f"{short} effect vs {reference}"] = rb
        if v1_cv is not None:
            _, p, rb = (np.nan,) * 3 if is_v1 else mod.compare_distributions(values["circular_variance"], v1_cv)
            row["CV p vs V1"] = p
            row["CV effect vs V1"] = rb
        rows.append(row)
    return rows


def _rf_table(ds: xr.Dataset) -> list[dict]:
    rows = rf_statistics(ds)
    acc = 100 * ds["test_accuracy"].isel(epoch=-1)
    for row in rows:
        label = row["condition"].split(" ")[0]
        row["final test accuracy (%)"] = float("nan")
        if label in ds["rule"].values and label != "untrained":
            row["final test accuracy (%)"] = float(np.mean(acc.sel(rule=label).values))
    return rows


def _plot_receptive_fields(ds: xr.Dataset, path: Path) -> None:
    """The analysis script's figure on the units pooled over seeds (strongest RFs per condition, index
    distributions, V1 beside them)."""
    mod = analysis_module("receptive_fields.py")
    n_seed, n_neuron = ds.sizes["seed"], ds.sizes["neuron"]
    pooled = {}
    for var in ("centre_surround_index", "orientation_selectivity_index", "circular_variance", "rf_energy",
                "receptive_field"):
        da = ds[var].transpose("rule", "layer", "seed", "neuron", ...)
        shape = da.shape[:2] + (n_seed * n_neuron,) + da.shape[4:]
        pooled[var] = (("rule", "layer", "neuron") + da.dims[4:], da.values.reshape(shape))
    flat = xr.Dataset(pooled, coords={"rule": ds["rule"].values, "layer": ds["layer"].values,
                                      "neuron": np.arange(n_seed * n_neuron)})
    v1 = ds["v1_circular_variance"].values if "v1_circular_variance" in ds else None
    mod.plot(flat, path, v1, layer=RF_LAYER)


RECEPTIVE_FIELDS = Experiment(
    name="receptive_fields",
    description="retina + ventral-stream CNN (Lindsey et al. 2019; models/retina_vvs.toml, LDFA on the VVS "
                "convolutions only, the retina and the classifier on backprop) on grayscale CIFAR-10 "
                "(analyses/receptive_fields.py), trained with backprop, with LDFA at a low rank (the error "
                "reaching the retina passes through rank-r feedback), and, as the positive control of Lindsey "
                "et al., with backprop through a forward bottleneck of few retina-output channels; "
                "white-noise reverse-correlation receptive fields of the retina's output units and their "
                "centre-surround and orientation indices, pooled over seeds and compared by Mann-Whitney U "
                "tests (rank-biserial effect sizes), next to the V1 cells of Ringach et al. (2002). cpu: all "
                "50,000 images area-averaged to 24x24 pixels, retina 16 channels with an output of 8 (1 for the "
                "control), two VVS layers of 8 channels, FC 128, no batch norm, Adam lr 1e-3, 3 epochs, LDFA r = 1 "
                "and 4, bottlenecks of 1 and 2 channels, 3 seeds",
    settings={
        "smoke": {"seeds": [0, 1], "ranks": [1], "bottlenecks": [2], "analysis_budget": "small"},
        "cpu": {"seeds": [0, 1, 2], "ranks": [1, 4], "bottlenecks": [1, 2], "analysis_budget": "cpu"},
        "gpu": {"seeds": [0, 1, 2], "ranks": [1, 2, 4, 32], "bottlenecks": [1, 2, 4], "analysis_budget": "paper"},
    },
    run=_run_receptive_fields, needs=("cifar10", "analyses/receptive_fields.py"), plot=_plot_receptive_fields,
    table=_rf_table, setup=_rf_setup)


# -------------------------------------------------------------------------------------------- rate network
def _twin_function():
    """``compare_with_twin`` of :mod:`bioplastic.rate` (issue 13's autograd twin), or None where this version of
    bioplastic does not have it."""
    try:
        import bioplastic.rate as rate
    except ImportError:  # pragma: no cover - the rate extra absent
        return None
    fn = getattr(rate, "compare_with_twin", None)
    if fn is None:
        try:
            from bioplastic.rate.twin import compare_with_twin as fn
        except ImportError:
            return None
    return fn


def _run_rate(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    """:func:`bioplastic.rate.twin.compare_with_twin` (docs/rate.md, "The rate network against its autograd twin")."""
    from bioplastic.rate.twin import compare_with_twin

    return compare_with_twin("rate_mnist", seeds=s["seeds"], epochs=s.get("epochs"), n_train=s.get("n_train"),
                             n_test=s.get("n_test"), bp_step_scales=s.get("bp_step_scales", [1.0]),
                             progress=ctx.progress)


def _plot_rate(ds: xr.Dataset, path: Path) -> None:
    from bioplastic.rate.twin import plot_twin

    plot_twin(ds, path)


def _rate_table(ds: xr.Dataset) -> list[dict]:
    from bioplastic.rate.twin import twin_table

    return twin_table(ds)


RATE_NETWORK = Experiment(
    name="rate_network",
    description="the rate network of bioplastic.rate (models/rate_mnist.toml: 784-256-10, direct_ldfa rank 10, Oja) "
                "trained online on the embedded MNIST next to its autograd twin (bioplastic.convert, the same rule, "
                "initial weights, digits, order and step sizes, batch size 1) and the backprop twin",
    settings={"smoke": {"seeds": [0], "epochs": 1, "n_train": 300, "n_test": 500},
              "cpu": {"seeds": [0, 1, 2], "epochs": 3, "bp_step_scales": [1.0, 4.0, 16.0]},
              "gpu": {"seeds": [0, 1, 2], "epochs": 10, "bp_step_scales": [1.0, 4.0, 16.0]}},
    run=_run_rate, needs=("rate_twin",), plot=_plot_rate, table=_rate_table)


# ------------------------------------------------------------------------------------------ IT similarity
def _rsa_setup(s: Mapping[str, Any]) -> dict[str, Any]:
    """``analyses/rsa_it.py``'s resolved set-up (dataset, model spec, epochs, training-set size): part of the
    settings, so that an edited analysis budget or model spec is never answered by a stored result."""
    return analysis_module("rsa_it.py").setup(s["analysis_budget"], epochs=s.get("epochs"),
                                              max_train=s.get("max_train"))


def _run_rsa_it(ctx: Context, s: Mapping[str, Any]) -> xr.Dataset:
    mod = analysis_module("rsa_it.py")
    argv = ["--out", str(ctx.out), "--data", str(ctx.data_root), "--budget", s["analysis_budget"],
            "--rules", "bp,ldfa", "--ranks", str(s["rank"]), "--feedback-learning", "normative",
            "--seeds", ",".join(str(x) for x in s["seeds"]),
            "--device", "cuda" if ctx.device == "auto" and _cuda() else ("cpu" if ctx.device == "auto" else ctx.device)]
    for key in ("epochs", "max_train"):
        if key in s:
            argv += [f"--{key.replace('_', '-')}", str(s[key])]
    status = mod.main(argv)
    if status:
        raise RuntimeError(f"analyses/rsa_it.py {' '.join(argv)} exited with status {status}")
    return io.load(ctx.out / "rsa_it.nc")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _rsa_table(ds: xr.Dataset) -> list[dict]:
    rows = []
    best = ds["similarity_human_it"].max("layer")
    for label in ds["rule"].values:
        for rank in ds["rank"].values:
            v = best.sel(rule=label, rank=rank).values
            v = v[np.isfinite(v)]
            if v.size:
                rows.append({"condition": f"{label}" + ("" if int(rank) < 0 else f" r={int(rank)}"),
                             "best-layer similarity to human IT": float(np.mean(v)),
                             "s.d.": float(np.std(v, ddof=1)) if v.size > 1 else float("nan"), "n": int(v.size)})
    for bound in ("lower", "upper"):
        rows.append({"condition": f"human IT noise ceiling, {bound} bound",
                     "best-layer similarity to human IT": float(ds[f"noise_ceiling_{bound}"]), "s.d.": float("nan"),
                     "n": 0})
    return rows


RSA_IT = Experiment(
    name="rsa_it",
    description="networks trained on CIFAR-10 with BP and LDFA (cnn_small, analyses/rsa_it.py) shown the 92 images "
                "of Kriegeskorte et al. (2008); each layer's RDM compared with the human IT RDMs (Spearman)",
    settings={
        "smoke": {"seeds": [0], "rank": 4, "analysis_budget": "small", "epochs": 1, "max_train": 128},
        "cpu": {"seeds": [0, 1, 2], "rank": 8, "analysis_budget": "full", "epochs": 4, "max_train": 5000},
        "gpu": {"seeds": [0, 1, 2], "rank": 8, "analysis_budget": "full"},
    },
    run=_run_rsa_it, needs=("cifar10", "kriegeskorte2008", "analyses/rsa_it.py"), table=_rsa_table,
    setup=_rsa_setup)


EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    LINEAR_THEORY, MNIST_MLP, TASK_DIMENSIONALITY, CNN_CIFAR, VIT_CIFAR, FLOPS, COMPUTE_TO_TARGET,
    RECEPTIVE_FIELDS, RATE_NETWORK, RSA_IT)}
"""Every experiment by name."""


def find_data(data_path: str | os.PathLike | None) -> tuple[Path | None, Path | None]:
    """(shared data folder, CIFAR-10 folder) from ``data_path`` or ``$BIOPLASTIC_SHARED_DATA``.

    ``data_path`` may be the shared data folder (holding ``cifar10/``, ``kriegeskorte2008/``, ...) or a CIFAR-10
    folder itself (zip files ``cifar10-jpeg-*.zip`` or ``cifar-10-batches-py/``); then its parent is taken as the
    shared folder. Nothing found gives None (the claims needing it are reported ``not run``).

    Raises
    ------
    FileNotFoundError
        ``data_path`` is given but does not exist.
    """
    from bioplastic.training.comparison import SHARED_DATA_VARIABLE

    if data_path is None:
        env = os.environ.get(SHARED_DATA_VARIABLE)
        if not env:
            return None, None
        root = Path(env)
        if not root.is_dir():
            return None, None
    else:
        root = Path(data_path)
        if not root.exists():
            raise FileNotFoundError(f"data path {root} does not exist")

    def is_cifar(p: Path) -> bool:
        return p.is_dir() and (any(p.glob("cifar10-jpeg-*.zip")) or (p / "cifar-10-batches-py").is_dir())

    if is_cifar(root):
        return root.parent, root
    return root, (root / "cifar10") if is_cifar(root / "cifar10") else None
