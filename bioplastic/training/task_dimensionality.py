"""Task dimensionality: does the feedback rank a network needs track the task's dimensionality, not its width?

The central claim of Hanut & Kadmon (2025, arXiv:2502.20580) is that low-dimensional feedback alignment
(LDFA) matches backprop once the feedback rank r reaches the dimensionality of the task (the number of
classes K, the rank of the output space), whatever the network's width; and that constraining the
feedback to rank r costs far less than narrowing the network itself to width r (their MLP figure 3b).
This module measures that claim through :func:`bioplastic.compare` (so every part resumes):

1. accuracy against feedback rank r for several task dimensionalities K, for backprop (``bp``), adaptive
   LDFA (``ldfa_normative``, and the synapse-local ``ldfa_local``) and fixed low-rank feedback
   (``ldfa_fixed``), over several seeds;
2. the minimal sufficient rank r*(K) (:func:`minimal_sufficient_rank`) with its seed uncertainty;
3. r* at several network widths at a fixed K;
4. the narrow-network control: backprop on a network whose hidden width equals r;
5. one layer's feedback constrained at a time, the other layers' at full rank.

The r* criterion (:data:`R_STAR_CRITERION`) was fixed before any result was looked at.

Public entry points: :func:`run_task_dimensionality` (the whole experiment, one call; what
``analyses/task_dimensionality.py`` and ``bioplastic reproduce`` run), :func:`minimal_sufficient_rank`
(the r* estimate for any accuracy table), :func:`plot_task_dimensionality` and :data:`BUDGETS`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from bioplastic._checks import check_choice

log = logging.getLogger(__name__)

RESULTS_FILE = "task_dimensionality.nc"
FIGURE_FILE = "task_dimensionality.png"
DATASETS = ("teacher", "mnist", "cifar10")
ADAPTIVE_RULES = ("normative", "local")
"""LDFA feedback-learning modes measured as adaptive feedback; ``fixed`` is the non-adaptive control."""
FEEDBACK_MODES = ADAPTIVE_RULES + ("fixed",)

DEFAULT_TOLERANCE = 0.01
R_STAR_CRITERION = (
    "r* is the smallest tested feedback rank r whose seed-mean final test accuracy is at least "
    "mean_BP - max(tolerance, sd_BP), where mean_BP and sd_BP (ddof=1) are the seed mean and standard "
    "deviation of backprop's final test accuracy on the same task and network, and tolerance = 0.01 "
    "(1 percentage point). r* = inf when no tested rank reaches it. Uncertainty: paired bootstrap over "
    "seeds (the same resampled seeds for the rule and for BP), 16th-84th percentiles; r* of each seed alone "
    "against the same threshold as the seed spread.")
"""The minimal-sufficient-rank criterion, fixed before the experiment was run (see docs/task_dimensionality.md)."""

Budget = Literal["smoke", "cpu", "paper"]


@dataclasses.dataclass(frozen=True)
class TaskDimensionalityBudget:
    """The grid of one budget of :func:`run_task_dimensionality` for one dataset.

    Attributes
    ----------
    task_dims : tuple of int
        Task dimensionalities K (teacher: ``n_classes``; mnist / cifar10: the first K classes).
    ranks : tuple of int
        Feedback ranks r of the LDFA runs (ranks above a network's largest layer are skipped).
    width : int
        Hidden width of the network of parts 1, 4, 5 (MLP: every hidden layer; CNN: the widest conv layer).
    widths : tuple of int
        Widths of part 3 (r* against width), at K = ``width_task_dim``.
    width_task_dim : int
        K of parts 3 and 4 (the narrow-network control).
    layer_task_dim : int
        K of part 5 (one layer constrained at a time).
    layer_modes : tuple of str
        Feedback-learning modes of part 5.
    seeds : tuple of int
    epochs : int
    dataset_options : dict
        Loader options (teacher: ``input_dim``, ``n_train``, ``n_test``, ``seed``).
    max_train, max_test : int or None
        Subsets of the real datasets (``compare``'s options).
    """

    task_dims: tuple[int, ...]
    ranks: tuple[int, ...]
    width: int
    widths: tuple[int, ...]
    width_task_dim: int
    layer_task_dim: int
    layer_modes: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: int
    dataset_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    max_train: int | None = None
    max_test: int | None = None


_TEACHER_SMALL = {"input_dim": 10, "n_train": 300, "n_test": 300, "seed": 0, "balance_samples": 5000}
_TEACHER_CPU = {"input_dim": 10, "n_train": 4000, "n_test": 2000, "seed": 0}
_TEACHER_PAPER = {"input_dim": 50, "n_train": 50_000, "n_test": 10_000, "seed": 0}

BUDGETS: dict[str, dict[str, TaskDimensionalityBudget]] = {
    "smoke": {
        "teacher": TaskDimensionalityBudget(task_dims=(3, 6), ranks=(1, 4), width=16, widths=(32,),
                                            width_task_dim=3, layer_task_dim=3, layer_modes=("normative",),
                                            seeds=(0, 1), epochs=1, dataset_options=_TEACHER_SMALL),
        "mnist": TaskDimensionalityBudget(task_dims=(2, 4), ranks=(1, 4), width=16, widths=(32,),
                                          width_task_dim=2, layer_task_dim=2, layer_modes=("normative",),
                                          seeds=(0, 1), epochs=1, max_train=300, max_test=300),
        "cifar10": TaskDimensionalityBudget(task_dims=(2, 4), ranks=(1, 4), width=32, widths=(64,),
                                            width_task_dim=2, layer_task_dim=2, layer_modes=("normative",),
                                            seeds=(0, 1), epochs=1, max_train=200, max_test=200),
    },
    "cpu": {
        "teacher": TaskDimensionalityBudget(task_dims=(5, 10, 20, 40), ranks=(1, 2, 4, 8, 16, 32, 64),
                                            width=128, widths=(32, 64, 128), width_task_dim=20,
                                            layer_task_dim=20, layer_modes=("normative", "fixed"),
                                            seeds=(0, 1, 2), epochs=10, dataset_options=_TEACHER_CPU),
        "mnist": TaskDimensionalityBudget(task_dims=(2, 4, 6, 8, 10), ranks=(1, 2, 4, 8, 16),
                                          width=128, widths=(32, 64, 128), width_task_dim=10,
                                          layer_task_dim=10, layer_modes=("normative", "fixed"),
                                          seeds=(0, 1, 2), epochs=3, max_test=2000),
        "cifar10": TaskDimensionalityBudget(task_dims=(2, 6, 10), ranks=(1, 2, 4, 8, 16), width=128,
                                            widths=(64, 128, 256), width_task_dim=10, layer_task_dim=10,
                                            layer_modes=("normative",), seeds=(0, 1, 2), epochs=3,
                                            max_train=10_000),
    },
    "paper": {
        "teacher": TaskDimensionalityBudget(task_dims=(5, 10, 20, 50, 100), ranks=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                                            width=1024, widths=(256, 512, 1024, 2048), width_task_dim=20,
                                            layer_task_dim=20, layer_modes=FEEDBACK_MODES,
                                            seeds=(0, 1, 2, 3, 4), epochs=50, dataset_options=_TEACHER_PAPER),
        "mnist": TaskDimensionalityBudget(task_dims=(2, 4, 6, 8, 10), ranks=(1, 2, 4, 8, 16, 32, 64, 128),
                                          width=1024, widths=(256, 1024, 4096), width_task_dim=10,
                                          layer_task_dim=10, layer_modes=FEEDBACK_MODES,
                                          seeds=(0, 1, 2, 3, 4), epochs=30),
        "cifar10": TaskDimensionalityBudget(task_dims=(2, 4, 6, 8, 10), ranks=(1, 2, 4, 8, 16, 32, 64), width=256,
                                            widths=(128, 256, 512, 1024), width_task_dim=10, layer_task_dim=10,
                                            layer_modes=FEEDBACK_MODES, seeds=(0, 1, 2, 3, 4), epochs=50),
    },
}
"""Grids per budget and dataset. ``smoke``: under a minute (tests); ``cpu``: the teacher grid runs in about
45 minutes on one core (``threads=1``); ``paper``: the full grid, for a GPU."""


# ----------------------------------------------------------------------------------------------- r*
def minimal_sufficient_rank(accuracy: xr.DataArray, reference: xr.DataArray, *,
                            tolerance: float = DEFAULT_TOLERANCE, use_reference_sd: bool = True,
                            n_bootstrap: int = 2000, rank_dim: str = "rank", seed_dim: str = "seed",
                            random_state: int = 0) -> xr.Dataset:
    """The minimal sufficient feedback rank r*: the smallest rank that matches a reference (backprop).

    Criterion (:data:`R_STAR_CRITERION`): r* is the smallest rank r (of those with at least one finite
    accuracy) whose seed-mean accuracy is at least ``mean(reference) - max(tolerance, sd(reference))``
    (``sd`` over seeds, ddof=1; ``tolerance`` alone when ``use_reference_sd`` is False or there is one
    seed). ``inf`` when no tested rank reaches it.

    Parameters
    ----------
    accuracy : xarray.DataArray
        Accuracy (fraction) with dims ``rank_dim`` and ``seed_dim`` and any others (e.g. ``rule``, ``K``,
        ``width``), which are kept. NaN entries (runs not made, e.g. r above a layer's width) are ignored.
    reference : xarray.DataArray
        Reference accuracy (BP) with dim ``seed_dim`` (the same seed labels, paired with ``accuracy``'s)
        and optionally some of ``accuracy``'s other dims.
    tolerance : float
        Allowed shortfall below the reference mean, in accuracy units (0.01 = 1 point); >= 0.
    use_reference_sd : bool
        Widen the tolerance to the reference's seed s.d. where that is larger.
    n_bootstrap : int
        Bootstrap resamples of the seeds (0: no bootstrap, the interval is NaN).
    rank_dim, seed_dim : str
        Names of the rank and seed dims.
    random_state : int
        Seed of the bootstrap.

    Returns
    -------
    xarray.Dataset
        Over the other dims of ``accuracy``: ``r_star`` (float; inf: not reached), ``r_star_low`` /
        ``r_star_high`` (16th / 84th bootstrap percentiles, about +-1 s.d.), ``r_star_not_reached``
        (fraction of bootstrap resamples without a sufficient rank), ``threshold`` (the accuracy r* must
        reach), ``r_star_per_seed`` (dim ``seed_dim``: r* of each seed's accuracy against the same
        threshold). attrs ``criterion``, ``tolerance``, ``n_bootstrap``, ``n_seeds``.

    Raises
    ------
    ValueError
        Missing dims, seeds of ``reference`` that differ from ``accuracy``'s, a negative tolerance or
        ``n_bootstrap``.

    Notes
    -----
    With few seeds the bootstrap takes few distinct values (3 seeds: 10 distinct resamples): read the
    interval as a spread, not a calibrated confidence interval. The paired resampling keeps the seed
    shared by a rule and backprop (same initial weights and data order) together.
    """
    for name, da in (("accuracy", accuracy), ("reference", reference)):
        if not isinstance(da, xr.DataArray):
            raise TypeError(f"{name} must be an xarray.DataArray, got {type(da).__name__}")
    missing = [d for d in (rank_dim, seed_dim) if d not in accuracy.dims]
    if missing or seed_dim not in reference.dims:
        raise ValueError(f"accuracy needs dims {rank_dim!r} and {seed_dim!r} (has {accuracy.dims}), reference "
                         f"needs {seed_dim!r} (has {reference.dims})")
    extra = [d for d in reference.dims if d != seed_dim and d not in accuracy.dims]
    if extra:
        raise ValueError(f"reference has dims {extra} that accuracy lacks")
    if not np.array_equal(np.asarray(accuracy[seed_dim]), np.asarray(reference[seed_dim])):
        raise ValueError(f"reference seeds {list(np.asarray(reference[seed_dim]))} differ from accuracy seeds "
                         f"{list(np.asarray(accuracy[seed_dim]))}")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")

    others = [d for d in accuracy.dims if d not in (rank_dim, seed_dim)]
    acc = accuracy.transpose(*others, rank_dim, seed_dim)
    ref = reference.broadcast_like(acc.isel({rank_dim: 0}, drop=True)).transpose(*others, seed_dim)
    ranks = np.asarray(acc[rank_dim], dtype=float)
    order = np.argsort(ranks)
    a = np.asarray(acc.values, dtype=float)[..., order, :]  # (..., rank, seed)
    b = np.asarray(ref.values, dtype=float)  # (..., seed)
    ranks = ranks[order]
    n_seeds = a.shape[-1]
    rng = np.random.default_rng(random_state)

    def threshold_of(ref_seeds: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"), _quiet():
            mean = np.nanmean(ref_seeds, axis=-1)
            n_ok = np.sum(np.isfinite(ref_seeds), axis=-1)
            sd = np.nanstd(ref_seeds, axis=-1, ddof=1) if use_reference_sd else np.zeros_like(mean)
        sd = np.where(n_ok > 1, sd, 0.0)
        return mean - np.maximum(tolerance, sd)

    def r_star_of(mean_acc: np.ndarray, thr: np.ndarray) -> np.ndarray:
        """mean_acc (..., rank), thr (...) -> smallest rank with mean_acc >= thr (inf if none; NaN if thr NaN)."""
        ok = mean_acc >= thr[..., None]  # NaN compares False
        first = np.argmax(ok, axis=-1)
        out = np.where(ok.any(axis=-1), ranks[first], np.inf)
        return np.where(np.isfinite(thr), out, np.nan)

    thr = threshold_of(b)
    with _quiet():
        mean = np.nanmean(a, axis=-1)
    r_star = r_star_of(mean, thr)
    per_seed = np.stack([r_star_of(a[..., s], thr) for s in range(n_seeds)], axis=-1)
    low = np.full(r_star.shape, np.nan)
    high = np.full(r_star.shape, np.nan)
    not_reached = np.full(r_star.shape, np.nan)
    if n_bootstrap > 0:
        boots = np.empty((n_bootstrap,) + r_star.shape)
        for i in range(n_bootstrap):
            idx = rng.integers(0, n_seeds, n_seeds)
            with _quiet():
                boots[i] = r_star_of(np.nanmean(a[..., idx], axis=-1), threshold_of(b[..., idx]))
        finite_thr = np.isfinite(thr)
        # percentiles of a distribution that may hold inf: inf sorts last, so a high percentile may be inf
        low = np.where(finite_thr, np.percentile(np.where(np.isnan(boots), np.inf, boots), 16, axis=0,
                                                 method="lower"), np.nan)
        high = np.where(finite_thr, np.percentile(np.where(np.isnan(boots), np.inf, boots), 84, axis=0,
                                                  method="higher"), np.nan)
        not_reached = np.where(finite_thr, np.mean(np.isinf(boots), axis=0), np.nan)
    coords = {d: acc[d] for d in others}
    out = xr.Dataset(
        {
            "r_star": (others, r_star, {"long_name": "minimal sufficient feedback rank r*", "units": "1"}),
            "r_star_low": (others, low, {"long_name": "r*: 16th percentile over seed bootstrap"}),
            "r_star_high": (others, high, {"long_name": "r*: 84th percentile over seed bootstrap"}),
            "r_star_not_reached": (others, not_reached,
                                   {"long_name": "fraction of bootstrap resamples with no sufficient rank"}),
            "threshold": (others, thr, {"long_name": "accuracy r* must reach", "units": "1"}),
            "r_star_per_seed": (others + [seed_dim], per_seed, {"long_name": "r* of each seed alone"}),
        },
        coords={**coords, seed_dim: acc[seed_dim]},
    )
    out.attrs.update(criterion=R_STAR_CRITERION, tolerance=float(tolerance), n_bootstrap=int(n_bootstrap),
                     n_seeds=int(n_seeds), use_reference_sd=int(bool(use_reference_sd)))
    return out


@contextlib.contextmanager
def _quiet():
    """Silence numpy's "mean of empty slice" warnings (all-NaN slices are expected: runs not made)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def summarize(ds: xr.Dataset, mode: str = "normative") -> dict[str, float]:
    """The experiment's headline numbers, for reports (e.g. ``bioplastic reproduce``).

    Parameters
    ----------
    ds : xarray.Dataset
        The result of :func:`run_task_dimensionality`.
    mode : str
        LDFA feedback-learning mode (a value of ``ds["mode"]``).

    Returns
    -------
    dict
        ``r_star_slope``: least-squares slope of r* against K at the base width (K with a finite r* only;
        NaN with fewer than 2); ``r_star_loglog_slope``: the same in log2-log2 (1: r* proportional to K);
        ``r_star_width_ratio``: largest over smallest finite r* across widths at ``width_task_dim`` (1: flat;
        NaN when fewer than 2 are finite); ``narrow_gap_pp``: mean over the ranks r run in both of LDFA
        (``mode``, base width, rank r) minus BP at hidden width r, at ``width_task_dim``, in percentage points
        (seed means); ``n_seeds``.

    Raises
    ------
    ValueError
        ``mode`` not in the Dataset (the message lists its modes).
    """
    check_choice("mode", mode, tuple(str(m) for m in ds["mode"].values))
    base_w = int(ds.attrs["base_width"])
    kw = int(ds.attrs["width_task_dim"])
    rs = ds["r_star"].sel(mode=mode, width=base_w)
    ks = np.asarray(ds["K"].values, dtype=float)
    y = np.asarray(rs.values, dtype=float)
    ok = np.isfinite(y)
    slope = loglog = np.nan
    if ok.sum() >= 2:
        slope = float(np.polyfit(ks[ok], y[ok], 1)[0])
        loglog = float(np.polyfit(np.log2(ks[ok]), np.log2(y[ok]), 1)[0])
    rw = np.asarray(ds["r_star"].sel(mode=mode, K=kw).values, dtype=float)
    rw = rw[np.isfinite(rw)]
    ratio = float(rw.max() / rw.min()) if rw.size >= 2 else np.nan
    with _quiet():
        ldfa = ds["accuracy"].sel(mode=mode, K=kw, width=base_w).mean("seed")
        narrow = ds["narrow_bp_accuracy"].sel(K=kw).mean("seed")
        gap = float(np.nanmean(100 * (ldfa - narrow).values))
    return {"r_star_slope": slope, "r_star_loglog_slope": loglog, "r_star_width_ratio": ratio,
            "narrow_gap_pp": gap, "n_seeds": int(ds.sizes["seed"])}


# ----------------------------------------------------------------------------------------------- runs
def _task_kwargs(dataset: str, budget: TaskDimensionalityBudget, k: int) -> dict[str, Any]:
    if dataset == "teacher":
        return {"dataset_options": {**budget.dataset_options, "n_classes": int(k)}}
    return {"classes": int(k)}


def _width_options(dataset: str, width: int, *, narrow: bool = False) -> dict[str, Any]:
    """model_options giving a network of ``width``: MLP hidden layers; CNN: widths scaled so the widest
    conv layer has ``width`` channels (``narrow``: every conv layer has ``width`` channels)."""
    if dataset == "cifar10":
        if narrow:
            return {"widths": [int(width)] * 4}
        return {"widths": [max(1, int(width) // f) for f in (8, 4, 2, 1)]}
    return {"hidden": [int(width), int(width)]}


def _weight_layers(dataset: str, budget: TaskDimensionalityBudget, k: int, width: int) -> list[tuple[str, int]]:
    """(name, full rank min(out, in)) of the weight layers whose feedback is used (all but the first)."""
    import torch

    from bioplastic.architectures.spec import build_model, load_spec
    from bioplastic.training.comparison import DEFAULT_MODELS

    spec = dict(load_spec(DEFAULT_MODELS[dataset]))
    spec.update(_width_options(dataset, width), n_classes=int(k))
    if dataset == "teacher" and "input_dim" in budget.dataset_options:
        spec["in_features"] = budget.dataset_options["input_dim"]
    exclude = set((spec.get("rule") or {}).get("exclude", []))
    with torch.random.fork_rng(devices=[]):
        model = build_model(spec)
    layers = [(n, min(m.weight.shape[0], m.weight[0].numel())) for n, m in model.named_modules()
              if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    return [(n, r) for n, r in layers[1:] if not any(n == e or n.startswith(e + ".") for e in exclude)]


def _final_accuracy(ds: xr.Dataset) -> xr.DataArray:
    """Final-epoch test accuracy per (rule, rank, seed); NaN for runs that did not finish."""
    acc = ds["test_accuracy"].isel(epoch=-1)
    from bioplastic.training.results import FINISHED_STATUSES

    return acc.where(ds["status"].isin(list(FINISHED_STATUSES)))


def check_budget(budget: str, dataset: str) -> TaskDimensionalityBudget:
    """The :data:`BUDGETS` entry; a ValueError listing the allowed budgets / datasets otherwise."""
    check_choice("budget", budget, tuple(BUDGETS))
    check_choice("dataset", dataset, DATASETS)
    return BUDGETS[budget][dataset]


def run_task_dimensionality(out: str | os.PathLike, budget: Budget = "cpu", dataset: str = "teacher", *,
                            seeds: Sequence[int] | None = None, threads: int | None = None,
                            data_path: str | os.PathLike | None = None, device: str = "cpu",
                            tolerance: float = DEFAULT_TOLERANCE, progress: bool = False,
                            figure: bool = True) -> xr.Dataset:
    """Run the task-dimensionality experiment (module docstring) and write ``out/task_dimensionality.nc``.

    Every part is a :func:`bioplastic.compare` call with its own folder under ``out/compare/``, so an
    interrupted experiment resumes where it stopped when called again with the same arguments.

    Parameters
    ----------
    out : path-like
        Output folder: ``task_dimensionality.nc``, ``task_dimensionality.png``, ``compare/<part>/``.
    budget : {"smoke", "cpu", "paper"}
        Grid size (:data:`BUDGETS`).
    dataset : {"teacher", "mnist", "cifar10"}
        ``teacher``: the random-teacher task (:func:`bioplastic.data.teacher.load_teacher`), K = its
        ``n_classes``; ``mnist`` / ``cifar10``: the first K classes.
    seeds : sequence of int, optional
        Seeds of every run (default: the budget's).
    threads : int, optional
        ``torch.set_num_threads`` during the experiment (e.g. 1 on a shared machine); restored afterwards.
    data_path : path-like, optional
        CIFAR-10 files (see :func:`bioplastic.compare`).
    device : str
        Torch device of every run.
    tolerance : float
        r* tolerance (see :func:`minimal_sufficient_rank`), fixed before the run: 0.01.
    progress : bool
        Progress bars of the compare calls.
    figure : bool
        Write ``out/task_dimensionality.png``.

    Returns
    -------
    xarray.Dataset
        ``accuracy`` (mode, K, width, rank, seed): final test accuracy of LDFA with feedback learning
        ``mode`` (``normative``, ``local``, ``fixed``); ``bp_accuracy`` (K, width, seed);
        ``narrow_bp_accuracy`` (K, rank, seed): BP on a network of hidden width r;
        ``layer_accuracy`` (layer_mode, layer, rank, seed): one layer's feedback at rank r, the others at
        full rank (K = ``layer_task_dim``); ``r_star`` etc. of :func:`minimal_sufficient_rank` over
        (mode, K, width) and ``layer_r_star`` over (layer_mode, layer); NaN where a combination was not
        run. attrs: ``criterion``, ``budget``, ``dataset``, ``grid`` (JSON).

    Raises
    ------
    ValueError
        Unknown budget or dataset, a bad seed or thread count, before any training.
    """
    import torch

    plan = check_budget(budget, dataset)
    if seeds is not None:
        from bioplastic.training.comparison import _int, _split_list

        seeds = tuple(_split_list("seeds", seeds, _int))
        if not seeds or any(s < 0 for s in seeds):
            raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {list(seeds)}")
        plan = dataclasses.replace(plan, seeds=seeds)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(Path(out), plan, budget, dataset, data_path=data_path, device=device, tolerance=tolerance,
                    progress=progress, figure=figure)
    finally:
        torch.set_num_threads(previous_threads)


def _run(out: Path, plan: TaskDimensionalityBudget, budget: str, dataset: str, *, data_path: Any, device: str,
         tolerance: float, progress: bool, figure: bool) -> xr.Dataset:
    """The body of :func:`run_task_dimensionality` (arguments validated)."""
    from bioplastic import io
    from bioplastic.training.comparison import compare

    seeds = list(plan.seeds)
    common = dict(seeds=seeds, epochs=plan.epochs, dataset=dataset, device=device, alignment=False,
                  keep_models=False, figure=False, progress=progress, data_path=data_path)
    if plan.max_train is not None:
        common["max_train"] = plan.max_train
    if plan.max_test is not None:
        common["max_test"] = plan.max_test

    def run(part: str, **kwargs: Any) -> xr.Dataset:
        log.info("task dimensionality: %s", part)
        return compare(out=out / "compare" / part, **common, **kwargs)

    def ranks_for(width: int) -> list[int]:
        return [r for r in plan.ranks if r <= width]

    modes = list(FEEDBACK_MODES)
    task_dims = sorted(set(plan.task_dims) | {plan.width_task_dim, plan.layer_task_dim})
    widths = sorted(set(plan.widths) | {plan.width})
    ranks = sorted(plan.ranks)
    nan = np.nan
    acc = np.full((len(modes), len(task_dims), len(widths), len(ranks), len(seeds)), nan)
    bp = np.full((len(task_dims), len(widths), len(seeds)), nan)
    narrow = np.full((len(task_dims), len(ranks), len(seeds)), nan)

    # Parts 1-3: accuracy against rank for every K at the base width, and every width at width_task_dim.
    cells = [(k, plan.width) for k in plan.task_dims]
    cells += [(plan.width_task_dim, w) for w in plan.widths if (plan.width_task_dim, w) not in cells]
    if (plan.layer_task_dim, plan.width) not in cells:
        cells.append((plan.layer_task_dim, plan.width))
    for k, w in cells:
        ds = run(f"rank-K{k}-w{w}", rules=["bp", "ldfa"], feedback_learning=modes, ranks=ranks_for(w),
                 model_options=_width_options(dataset, w), **_task_kwargs(dataset, plan, k))
        final = _final_accuracy(ds)
        ki, wi = task_dims.index(k), widths.index(w)
        bp[ki, wi] = final.sel(rule="bp").isel(rank=0).values
        for mi, mode in enumerate(modes):
            for r in ranks_for(w):
                acc[mi, ki, wi, ranks.index(r)] = final.sel(rule=f"ldfa_{mode}", rank=r).values

    # Part 4: backprop on a network of hidden width r (the narrow-network control), at width_task_dim.
    k = plan.width_task_dim
    for r in ranks:
        if r > plan.width:
            continue
        ds = run(f"narrow-K{k}-w{r}", rules=["bp"], model_options=_width_options(dataset, r, narrow=True),
                 **_task_kwargs(dataset, plan, k))
        narrow[task_dims.index(k), ranks.index(r)] = _final_accuracy(ds).sel(rule="bp").isel(rank=0).values

    # Part 5: one layer's feedback at rank r, the others at full rank, at layer_task_dim and the base width.
    k = plan.layer_task_dim
    layers = _weight_layers(dataset, plan, k, plan.width)
    layer_names = [n for n, _ in layers]
    layer_acc = np.full((len(plan.layer_modes), len(layer_names), len(ranks), len(seeds)), nan)
    for li, (name, _) in enumerate(layers):
        full = {n: full_rank for n, full_rank in layers if n != name}
        ds = run(f"layer-K{k}-w{plan.width}-{name}", rules=["ldfa"], feedback_learning=list(plan.layer_modes),
                 ranks=ranks_for(plan.width), train_options={"ranks": full},
                 model_options=_width_options(dataset, plan.width), **_task_kwargs(dataset, plan, k))
        final = _final_accuracy(ds)
        for mi, mode in enumerate(plan.layer_modes):
            for r in ranks_for(plan.width):
                layer_acc[mi, li, ranks.index(r)] = final.sel(rule=f"ldfa_{mode}", rank=r).values

    result = xr.Dataset(
        {
            "accuracy": (("mode", "K", "width", "rank", "seed"), acc,
                         {"long_name": "final test accuracy of LDFA", "units": "1"}),
            "bp_accuracy": (("K", "width", "seed"), bp, {"long_name": "final test accuracy of backprop",
                                                         "units": "1"}),
            "narrow_bp_accuracy": (("K", "rank", "seed"), narrow,
                                   {"long_name": "backprop on a network of hidden width r", "units": "1"}),
            "layer_accuracy": (("layer_mode", "layer", "rank", "seed"), layer_acc,
                               {"long_name": "LDFA with only this layer's feedback at rank r", "units": "1"}),
        },
        coords={"mode": modes, "K": task_dims, "width": widths, "rank": ranks, "seed": seeds,
                "layer_mode": list(plan.layer_modes), "layer": layer_names},
    )
    rs = minimal_sufficient_rank(result["accuracy"], result["bp_accuracy"], tolerance=tolerance)
    for name in rs.data_vars:
        result[name] = rs[name]
    ref = result["bp_accuracy"].sel(K=plan.layer_task_dim, width=plan.width, drop=True)
    lrs = minimal_sufficient_rank(result["layer_accuracy"], ref, tolerance=tolerance)
    for name in ("r_star", "r_star_low", "r_star_high", "r_star_per_seed"):
        result[f"layer_{name}"] = lrs[name]
    result.attrs.update(
        title="bioplastic task dimensionality: minimal sufficient feedback rank against K and width",
        source="Hanut & Kadmon (2025) arXiv:2502.20580, low-dimensional feedback alignment",
        criterion=R_STAR_CRITERION, tolerance=float(tolerance), budget=budget, dataset=dataset,
        grid=json.dumps(dataclasses.asdict(plan), sort_keys=True, default=list),
        width_task_dim=int(plan.width_task_dim), layer_task_dim=int(plan.layer_task_dim),
        base_width=int(plan.width),
    )
    result = io.stamp(result)
    io.save(result, out / RESULTS_FILE)
    if figure:
        plot_task_dimensionality(result, out / FIGURE_FILE)
    return result


# ----------------------------------------------------------------------------------------------- figure
def plot_task_dimensionality(ds: xr.Dataset, path: str | os.PathLike | None = None):
    """The experiment's figure: accuracy against rank per K, r* against K (with r = K), r* against width,
    the narrow-network control and the single-layer sweep.

    Parameters
    ----------
    ds : xarray.Dataset
        The result of :func:`run_task_dimensionality`.
    path : path-like, optional
        Where to save a PNG (atomic write); None: only return the figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    base_w = int(ds.attrs.get("base_width", int(ds["width"][len(ds["width"]) // 2])))
    kw = int(ds.attrs.get("width_task_dim", int(ds["K"][0])))
    styles = {"normative": "-", "local": "--", "fixed": ":"}
    markers = {"normative": "o", "local": "s", "fixed": "^"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    cmap = plt.get_cmap("viridis")
    ks = [int(k) for k in ds["K"].values if np.isfinite(ds.bp_accuracy.sel(K=k, width=base_w)).any()]

    ax = axes[0, 0]
    for i, k in enumerate(ks):
        color = cmap(i / max(1, len(ks) - 1))
        for mode in ds["mode"].values:
            a = ds.accuracy.sel(mode=mode, K=k, width=base_w)
            m = a.mean("seed")
            ok = np.isfinite(m.values)
            if ok.any():
                ax.errorbar(ds["rank"].values[ok], 100 * m.values[ok], yerr=100 * a.std("seed").values[ok],
                            ls=styles.get(str(mode), "-"), marker=markers.get(str(mode), "o"), ms=3, color=color,
                            capsize=2, label=f"K={k} {mode}" if mode == "normative" else None)
        b = ds.bp_accuracy.sel(K=k, width=base_w)
        ax.axhline(100 * float(b.mean("seed")), color=color, lw=0.8, alpha=0.7)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("feedback rank r")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"accuracy vs rank (width {base_w}); thin lines: BP;\n- normative, -- local, : fixed")
    ax.legend(fontsize=7)

    def r_star_plot(ax, x, sel, xlabel, title, diagonal, hline=None):
        for j, mode in enumerate(ds["mode"].values):
            rs = ds.r_star.sel(mode=mode, **sel)
            lo, hi = ds.r_star_low.sel(mode=mode, **sel), ds.r_star_high.sel(mode=mode, **sel)
            top = 2 * float(ds["rank"].max())
            y = np.where(np.isinf(rs.values), top, rs.values)
            ylo = np.where(np.isinf(lo.values), top, lo.values)
            yhi = np.where(np.isinf(hi.values), top, hi.values)
            shift = 1 + 0.04 * (j - 1)
            ax.errorbar(np.asarray(x) * shift, y, yerr=[np.clip(y - ylo, 0, None), np.clip(yhi - y, 0, None)],
                        marker=markers.get(str(mode), "o"), ls=styles.get(str(mode), "-"), capsize=3,
                        label=str(mode))
        if diagonal:
            ax.plot(x, x, color="k", lw=0.8, label="r = K")
        if hline is not None:
            ax.axhline(hline, color="k", lw=0.8, label=f"r = K = {hline}")
        ax.axhline(2 * float(ds["rank"].max()), color="grey", lw=0.5, ls="--")
        ax.text(x[0], 2 * float(ds["rank"].max()) * 1.05, "not reached", fontsize=7, color="grey")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("r* (minimal sufficient rank)")
        ax.set_title(title)
        ax.legend(fontsize=7)

    r_star_plot(axes[0, 1], ks, {"K": ks, "width": base_w}, "task dimensionality K",
                f"r*(K), width {base_w}; bars: 16-84% seed bootstrap", True)
    ws = [int(w) for w in ds["width"].values if np.isfinite(ds.bp_accuracy.sel(K=kw, width=w)).any()]
    r_star_plot(axes[0, 2], ws, {"K": kw, "width": ws}, "network width", f"r*(width), K = {kw}", False, hline=kw)

    ax = axes[1, 0]
    nb = ds.narrow_bp_accuracy.sel(K=kw)
    ok = np.isfinite(nb.mean("seed").values)
    ax.errorbar(ds["rank"].values[ok], 100 * nb.mean("seed").values[ok], yerr=100 * nb.std("seed").values[ok],
                marker="D", color="C3", capsize=2, label="BP, hidden width = r")
    for mode in ds["mode"].values:
        a = ds.accuracy.sel(mode=mode, K=kw, width=base_w)
        m = a.mean("seed")
        ok = np.isfinite(m.values)
        ax.errorbar(ds["rank"].values[ok], 100 * m.values[ok], yerr=100 * a.std("seed").values[ok],
                    ls=styles.get(str(mode), "-"), marker=markers.get(str(mode), "o"), capsize=2,
                    label=f"LDFA {mode}, width {base_w}, rank r")
    ax.axhline(100 * float(ds.bp_accuracy.sel(K=kw, width=base_w).mean("seed")), color="k", lw=0.8,
               label=f"BP, width {base_w}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("r (feedback rank, or hidden width for narrow BP)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"narrow network vs low-rank feedback, K = {kw}")
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    kl = int(ds.attrs.get("layer_task_dim", kw))
    for mode in ds["layer_mode"].values:
        for li, layer in enumerate(ds["layer"].values):
            a = ds.layer_accuracy.sel(layer_mode=mode, layer=layer)
            m = a.mean("seed")
            ok = np.isfinite(m.values)
            ax.errorbar(ds["rank"].values[ok], 100 * m.values[ok], yerr=100 * a.std("seed").values[ok],
                        ls=styles.get(str(mode), "-"), marker="o", color=f"C{li}", capsize=2,
                        label=f"{layer} only, {mode}")
    ax.axhline(100 * float(ds.bp_accuracy.sel(K=kl, width=base_w).mean("seed")), color="k", lw=0.8, label="BP")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("feedback rank r of the one constrained layer")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"one layer constrained at a time, K = {kl}, width {base_w}")
    ax.legend(fontsize=7)

    ax = axes[1, 2]
    ax.axis("off")
    lines = [f"dataset {ds.attrs.get('dataset')}, budget {ds.attrs.get('budget')}, seeds {[int(s) for s in ds['seed'].values]}",
             "r* criterion: smallest r with seed-mean acc >=", "mean_BP - max(1 pt, sd_BP)", ""]
    for mode in ds["mode"].values:
        vals = [_fmt_r(ds.r_star.sel(mode=mode, K=k, width=base_w)) for k in ks]
        lines.append(f"{mode}: r*(K={ks}) = {vals}")
    ax.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=7)
    fig.tight_layout()
    if path is not None:
        from bioplastic import io

        io.atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
    return fig


def _fmt_r(v: xr.DataArray) -> str:
    x = float(v)
    return "nan" if np.isnan(x) else ">max" if np.isinf(x) else str(int(x))


def summary_table(ds: xr.Dataset) -> str:
    """A markdown table of r* (with bootstrap range and per-seed values) for every mode, K and width run.

    Parameters
    ----------
    ds : xarray.Dataset
        The result of :func:`run_task_dimensionality`.

    Returns
    -------
    str
        Markdown: one row per (mode, K, width) with BP's accuracy (mean +- s.d.), the threshold, r*, its
        16-84 % bootstrap range and the per-seed r*; then the single-layer r*.
    """
    rows = ["| mode | K | width | BP acc % (mean +- sd) | threshold % | r* | r* 16-84 % | r* per seed |",
            "|---|---|---|---|---|---|---|---|"]
    for mode in ds["mode"].values:
        for k in ds["K"].values:
            for w in ds["width"].values:
                b = ds.bp_accuracy.sel(K=k, width=w)
                if not np.isfinite(b).any():
                    continue
                sel = dict(mode=mode, K=k, width=w)
                per_seed = ", ".join(_fmt_r(ds.r_star_per_seed.sel(**sel, seed=s)) for s in ds["seed"].values)
                rows.append(f"| {mode} | {int(k)} | {int(w)} | {100 * float(b.mean()):.2f} +- "
                            f"{100 * float(b.std(ddof=1)):.2f} | {100 * float(ds.threshold.sel(**sel)):.2f} | "
                            f"{_fmt_r(ds.r_star.sel(**sel))} | {_fmt_r(ds.r_star_low.sel(**sel))}-"
                            f"{_fmt_r(ds.r_star_high.sel(**sel))} | {per_seed} |")
    rows += ["", "| layer mode | constrained layer | r* | r* 16-84 % | r* per seed |", "|---|---|---|---|---|"]
    for mode in ds["layer_mode"].values:
        for layer in ds["layer"].values:
            sel = dict(layer_mode=mode, layer=layer)
            per_seed = ", ".join(_fmt_r(ds.layer_r_star_per_seed.sel(**sel, seed=s)) for s in ds["seed"].values)
            rows.append(f"| {mode} | {layer} | {_fmt_r(ds.layer_r_star.sel(**sel))} | "
                        f"{_fmt_r(ds.layer_r_star_low.sel(**sel))}-{_fmt_r(ds.layer_r_star_high.sel(**sel))} | "
                        f"{per_seed} |")
    return "\n".join(rows)


def accuracy_table(ds: xr.Dataset) -> str:
    """A markdown table of mean +- s.d. accuracy (%) over seeds against rank, per mode, K and width."""
    ranks = [int(r) for r in ds["rank"].values]
    rows = ["| mode | K | width | " + " | ".join(f"r={r}" for r in ranks) + " |",
            "|---|---|---|" + "---|" * len(ranks)]

    def cell(a: xr.DataArray) -> str:
        if not np.isfinite(a).any():
            return "-"
        return f"{100 * float(a.mean()):.1f}+-{100 * float(a.std(ddof=1)) if a.count() > 1 else 0:.1f}"

    for k in ds["K"].values:
        for w in ds["width"].values:
            if not np.isfinite(ds.bp_accuracy.sel(K=k, width=w)).any():
                continue
            rows.append(f"| bp | {int(k)} | {int(w)} | " + " | ".join(
                [cell(ds.bp_accuracy.sel(K=k, width=w))] * len(ranks)) + " |")
            for mode in ds["mode"].values:
                rows.append(f"| {mode} | {int(k)} | {int(w)} | " + " | ".join(
                    cell(ds.accuracy.sel(mode=mode, K=k, width=w, rank=r)) for r in ranks) + " |")
    for k in ds["K"].values:
        nb = ds.narrow_bp_accuracy.sel(K=k)
        if np.isfinite(nb).any():
            rows.append(f"| bp, hidden width = r | {int(k)} | r | " + " | ".join(
                cell(nb.sel(rank=r)) for r in ranks) + " |")
    return "\n".join(rows)


__all__ = ["run_task_dimensionality", "minimal_sufficient_rank", "summarize", "plot_task_dimensionality", "summary_table",
           "accuracy_table", "check_budget", "BUDGETS", "TaskDimensionalityBudget", "R_STAR_CRITERION",
           "DEFAULT_TOLERANCE", "RESULTS_FILE", "FIGURE_FILE"]
