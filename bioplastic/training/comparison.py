"""The comparison grid: :func:`compare` trains several learning rules side by side and collects the results
as an xarray Dataset.

The main job of bioplastic (``bioplastic compare`` on the command line): backprop, feedback alignment,
direct feedback alignment, sign symmetry and LDFA (Hanut & Kadmon 2025, arXiv:2502.20580) at several
feedback ranks, with adaptive feedback that reads the forward weights (``normative``: weight transport, the
reference), the synapse-local adaptive rule (``local``: no weight transport) and fixed random feedback
(``fixed``), on real MNIST embedded in the package.

Layout of the output folder ``out``::

    out/results.nc            the comparison (see bioplastic.training.results), rewritten after every run
    out/figure.png            accuracy per epoch per rule; accuracy against rank; alignment per layer
    out/runs/<run>.nc         one finished run (the source of truth for resuming)
    out/models/<run>.pt       the trained, converted model (bioplastic.training.store: load_model)
    out/checkpoints/<run>/    the trainer's per-epoch checkpoints of the run in progress

``<run>`` is ``<rule label>-r<rank>-s<seed>`` (``<rule label>-f<fraction>-s<seed>`` for a relative rank,
``<rule label>-s<seed>`` for rules without a rank), e.g. ``ldfa_normative-r10-s0``,
``ldfa_normative-f0.25-s0``, ``bp-s0``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import numbers
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import xarray as xr

from bioplastic import io
from bioplastic._checks import check_choice, check_device, check_positive_int
from bioplastic.training import results as _results
from bioplastic.training.results import (LOW_RANK_RULES, NO_RANK, check_rank_fraction, fraction_rank,
                                         rank_fraction_of, run_id, run_label)
from bioplastic.training.evaluation import check_model_fits
from bioplastic.training.store import list_models, load_model, save_model

log = logging.getLogger(__name__)

DEFAULT_RULES = ("bp", "fa", "dfa", "sign_symmetry", "ldfa")
DEFAULT_RANKS = (1, 3, 10)
DEFAULT_FEEDBACK_LEARNING = ("normative", "local", "fixed")
"""LDFA's feedback-learning modes in the default comparison: adaptive with weight transport (``normative``, the
reference), adaptive and synapse-local (``local``), fixed random (``fixed``); see
:data:`bioplastic.training.results.WEIGHT_TRANSPORT`."""
DEFAULT_SEEDS = (0,)
SHARED_DATA_VARIABLE = "BIOPLASTIC_SHARED_DATA"
"""Environment variable naming the shared data folder: cifar10 without ``data_path`` reads its ``cifar10``
folder (as :func:`bioplastic.data.cifar10.load_cifar10` does)."""
DEFAULT_MODELS = {"mnist": "mlp_mnist", "digits": "mlp_digits", "cifar10": "cnn_small", "teacher": "mlp_teacher"}
"""Model spec used for each dataset when ``model`` is not given."""

# TrainConfig fields set by compare itself per run, not by the user.
_PER_RUN_FIELDS = ("model", "rule", "rule_options", "seed")


def _trainer():
    """The training engine (imported lazily: a light ``import bioplastic.training``)."""
    from bioplastic.training import trainer

    return trainer


def _split_list(name: str, values: Any, cast=str) -> list:
    """Accept a sequence or a comma-separated string; reject duplicates."""
    if values is None:
        return []
    if isinstance(values, (str, int)) and not isinstance(values, bool):
        values = [v for v in str(values).split(",") if v.strip()] if isinstance(values, str) else [values]
    out = []
    for v in values:
        try:
            out.append(cast(v.strip()) if isinstance(v, str) else cast(v))
        except (TypeError, ValueError):
            raise ValueError(f"{name}: cannot read {v!r} as {cast.__name__}") from None
    dupes = sorted({str(v) for v in out if out.count(v) > 1})
    if dupes:
        raise ValueError(f"{name}: duplicate values {', '.join(dupes)}")
    return out


def _int(v: Any) -> int:
    """int() that refuses bools and non-integral floats (a rank of 2.5 is an error, not 2)."""
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(v)
    return int(v)


_int.__name__ = "int"


def _float(v: Any) -> float:
    """float() that refuses bools."""
    if isinstance(v, bool):
        raise ValueError(v)
    return float(v)


_float.__name__ = "float"


def _max_rank(model: torch.nn.Module) -> int:
    """Largest meaningful feedback rank: max over weight layers of min(out, in) (effective rank bound)."""
    best = 0
    for mod in model.modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
            w = mod.weight
            best = max(best, min(w.shape[0], w[0].numel()))
    return best


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


@dataclasses.dataclass(frozen=True)
class _Run:
    rule: str
    feedback_learning: str | None
    rank: int
    seed: int

    @property
    def label(self) -> str:
        return run_label(self.rule, self.feedback_learning)

    @property
    def id(self) -> str:
        return run_id(self.label, self.rank, self.seed)


def compare(
    rules: Sequence[str] | str | None = None,
    ranks: Sequence[int] | str | None = None,
    seeds: Sequence[int] | str | None = None,
    epochs: int | None = None,
    dataset: str = "mnist",
    out: str | os.PathLike | None = None,
    *,
    rank_fractions: Sequence[float] | str | None = None,
    feedback_learning: Sequence[str] | str | None = None,
    model: str | os.PathLike | Mapping[str, Any] | None = None,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    max_test: int | None = None,
    rule_options: Mapping[str, Any] | None = None,
    train_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    keep_models: bool = True,
    figure: bool = True,
    classes: int | Sequence[int] | str | None = None,
    model_options: Mapping[str, Any] | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    **config_options: Any,
) -> xr.Dataset:
    """Train learning rules side by side on one task and return the results as an xarray Dataset.

    Every combination of rule, rank (low-rank rules only), feedback learning (low-rank rules only) and
    seed is one training run of :func:`bioplastic.training.train` with the same model, data and recipe.
    Adaptive and fixed LDFA are separate runs with separate ``rule`` labels (``"ldfa_normative"``,
    ``"ldfa_fixed"``); rules without a rank are stored at ``rank = -1`` (see
    :mod:`bioplastic.training.results`). The output layer always receives its exact error.

    With ``out`` given, each finished run is written at once (``out/runs``, ``out/models``) and
    ``out/results.nc`` is rewritten after every run, so an interrupted comparison (Ctrl-C, crash) keeps
    its finished runs in a valid file. Calling ``compare`` again with the same arguments and ``out``
    skips the finished runs, continues an unfinished one from its last per-epoch checkpoint, and gives a
    file equal to an uninterrupted run's, except the machine-dependent ``wall_time``. Every file is written
    atomically, so this holds even after SIGKILL. A finished run whose loss became non-finite has status
    ``"diverged"``, one whose final test accuracy is at chance level ``"at_chance"``
    (:func:`~bioplastic.training.results.chance_threshold`).

    Parameters
    ----------
    rules : sequence of str or comma-separated str, optional
        Names from :data:`bioplastic.rules.RULE_NAMES`. Default :data:`DEFAULT_RULES`
        (``bp, fa, dfa, sign_symmetry, ldfa``).
    ranks : sequence of int or comma-separated str, optional
        Feedback ranks r for ``ldfa`` / ``direct_ldfa`` (absolute, 1 <= r <= the widest layer's
        min(out, in)). Default :data:`DEFAULT_RANKS` (1, 3, 10), or none when ``rank_fractions`` is given.
    rank_fractions : sequence of float or comma-separated str, optional
        Relative feedback ranks for ``ldfa`` / ``direct_ldfa``: each layer gets ``ceil(fraction * width)``
        (its output width, ``C_out`` for a convolution; ``rule_options={"rank_fraction": f}`` of the rule
        core), e.g. ``[0.25]`` for the paper's width/4. Each fraction in (0, 1], at most four decimals.
        One run per fraction, besides the absolute ``ranks``; stored in the ``rank`` dim at the code
        :func:`~bioplastic.training.results.fraction_rank` (``-12500`` for 0.25), with the fraction in the
        ``rank_fraction`` coordinate; run files ``<label>-f0.25-s<seed>``.
    seeds : sequence of int or comma-separated str, optional
        One run per seed (weights, data order, augmentation, random feedback). Default ``(0,)``.
    epochs : int, optional
        Training epochs; default from the model spec's ``[training]`` table.
    dataset : {"mnist", "digits", "cifar10", "teacher"}
        ``mnist``: the 5,000/10,000 MNIST digits embedded in the package; ``digits``: scikit-learn's
        8x8 digits; ``cifar10``: the CIFAR-10 files at ``data_path``; ``teacher``: the synthetic task of
        any number of classes (:func:`bioplastic.data.teacher.load_teacher`, see ``dataset_options``).
    out : path-like, optional
        Output folder (created). None: nothing is written, no resume, no saved models.
    feedback_learning : sequence of str or comma-separated str, optional
        How LDFA's feedback weights learn, from :data:`bioplastic.rules.FEEDBACK_LEARNING`; one run per
        mode. Default :data:`DEFAULT_FEEDBACK_LEARNING`, ``("normative", "local", "fixed")``: adaptive feedback
        that reads ``W`` (weight transport), adaptive synapse-local feedback, fixed random feedback.
    model : str, path-like or dict, optional
        Model spec (name in ``models/``, TOML path or dict). Default per dataset: :data:`DEFAULT_MODELS`.
    data_path : path-like, optional
        Folder or zip files of a dataset that is not embedded (``cifar10``).
    cache_dir : path-like, optional
        Where ``cifar10`` caches its decoded images (default :func:`bioplastic.data.cifar10.default_cache_dir`).
    max_train : int, optional
        Train on a fixed random subset of ``max_train`` training examples (the same for every run).
    max_test : int, optional
        Evaluate on the first ``max_test`` test examples (the loaders' fixed order holds every class in
        any prefix); part of each run's identity when resuming.
    rule_options : mapping, optional
        Extra options for :func:`bioplastic.rules.make` applied to every low-rank run (e.g.
        ``{"reinit_every": 100, "error_clamp": 1.0}``).
    train_options : mapping, optional
        :class:`~bioplastic.training.config.TrainConfig` fields, as a mapping (the same as keywords).
    progress : bool
        One tqdm progress bar over the epochs of all runs (a widget in Jupyter with ``ipywidgets``).
    keep_models : bool
        Save every trained model to ``out/models`` (see :func:`load_model`).
    figure : bool
        Write ``out/figure.png`` at the end (see :func:`bioplastic.training.plots.plot_comparison`).
    classes : int, sequence of int or comma-separated str, optional
        Train and test on a subset of the dataset's classes: an int K takes the first K classes
        (0..K-1, as Hanut & Kadmon 2025 did with CIFAR-100 subsets), a list takes those classes in the
        given order. Labels are re-indexed 0..K-1 in that order, the test set is filtered the same way,
        and the model's output layer is sized to K (the spec's ``n_classes``). Part of each run's
        identity (resuming with another subset is refused); recorded in ``attrs["classes"]`` (the
        dataset's original class indices) of the results. None: every class.
    model_options : mapping, optional
        Overrides of top-level keys of the model spec, e.g. ``{"hidden": [512, 512]}``,
        ``{"widths": [64, 128]}``, ``{"width_multiplier": 2.0}``, ``{"dropout": 0.0}``. The resolved spec
        is part of each run's identity.
    dataset_options : mapping, optional
        Keyword options of the dataset's loader (:func:`bioplastic.data.load_dataset`), e.g.
        ``{"n_classes": 40}`` for ``dataset="teacher"``; the model's output layer follows the loaded
        dataset's number of classes and, for flat inputs, its input layer the input size (unless
        ``model_options`` sets them). Part of each run's identity.
    **config_options
        Any field of :class:`~bioplastic.training.config.TrainConfig` other than ``model``, ``rule``,
        ``rule_options`` and ``seed`` (which compare sets per run): the recipe (``batch_size``, ``lr``,
        ``optimizer``, ``weight_decay``, ``feedback_lr``, ``feedback_weight_decay``, ``feedback_optimizer``,
        ``schedule``, ``warmup_epochs``, ``label_smoothing``, ``augment``, ``grad_clip``, ``momentum``;
        unset: the model spec's ``[training]`` value, else the built-in default), ``amp``, ``amp_dtype``,
        ``compile``, ``max_train``, ``alignment`` (per-layer alignment with backprop after every epoch,
        :func:`bioplastic.nn.alignment`; default True), ``eval_batch_size``, ``alignment_batch`` and
        ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``; ``"auto"``, the default: CUDA where available, else
        CPU, resolved here and stored, so a resumed comparison must run on the same kind of device).

    Returns
    -------
    xarray.Dataset
        Dims ``rule``, ``rank``, ``seed``, ``epoch``, ``layer``; variables ``train_loss``,
        ``test_loss``, ``test_accuracy`` (fraction), per-layer alignment (``update_cosine``,
        ``feedback_angle``, ``subspace_angle``), ``status``, ``epochs_completed``, ``wall_time`` (s),
        ``run_config``; per epoch ``train_wall_time`` and ``train_cpu_time`` (s: wall-clock and process CPU
        time of the epoch's training steps, evaluation excluded); attrs ``config`` (JSON), ``classes`` (the dataset's class indices trained on,
        in label order) and ``bioplastic_version``.

    Raises
    ------
    ValueError
        Before any training: unknown rule, feedback learning, dataset, model spec or device (the
        message lists the valid ones); a rank outside 1..max; a rank fraction outside (0, 1]; duplicates; a model whose input or
        output does not fit the dataset; ``out`` holding runs made with a different configuration;
        ``classes`` with fewer than 2 classes, more than the dataset has or labels it lacks; an unknown
        model option (the message lists the spec's keys) or dataset option (it lists the loader's).
    FileNotFoundError
        A missing data file (the message names it).
    bioplastic.io.FolderInUseError
        Another process (another ``compare``) is writing to ``out`` now: the message names the folder and
        that process's pid. ``compare`` holds a lock on ``out`` (:func:`bioplastic.io.lock_folder`) until it
        returns; the operating system releases it when the process ends, also after SIGKILL.
    bioplastic.io.WriteError
        A file could not be written (no space left, quota): one line naming the file; no partial file is
        left, finished runs are kept, and the same call resumes once there is space.
    KeyboardInterrupt
        Re-raised after the finished runs are saved.

    Examples
    --------
    A small comparison on scikit-learn's digits (seconds; nothing written without ``out``):

    >>> import bioplastic
    >>> ds = bioplastic.compare(rules=["bp", "ldfa"], ranks=[2], feedback_learning=["fixed"], epochs=1,
    ...                         dataset="digits", max_train=300, device="cpu", progress=False)
    >>> [str(r) for r in ds["rule"].values], [str(r) for r in ds["rank_label"].values]
    (['bp', 'ldfa_fixed'], ['-', '2'])
    >>> ds.test_accuracy.isel(epoch=-1).mean("seed").dims
    ('rule', 'rank')
    """
    from bioplastic import rules as rules_mod
    from bioplastic.architectures.spec import build_model, load_spec
    from bioplastic.data import DATASETS, load_dataset, select_classes

    # ---------------------------------------------------------------- validation (before any training)
    rule_names = _split_list("rules", DEFAULT_RULES if rules is None else rules)
    if not rule_names:
        raise ValueError("rules is empty; give at least one of " + ", ".join(rules_mod.RULE_NAMES))
    for name in rule_names:
        check_choice("rule", name, rules_mod.RULE_NAMES)
    fl_names = _split_list("feedback_learning",
                           DEFAULT_FEEDBACK_LEARNING if feedback_learning is None else feedback_learning)
    for name in fl_names:
        check_choice("feedback learning", name, rules_mod.FEEDBACK_LEARNING)
    fraction_values = [check_rank_fraction(f) for f in _split_list("rank_fractions", rank_fractions, _float)]
    if len(set(fraction_values)) != len(fraction_values):
        raise ValueError(f"rank_fractions: duplicate values in {fraction_values}")
    fraction_values.sort()
    default_ranks = DEFAULT_RANKS if not fraction_values else ()
    rank_values = _split_list("ranks", default_ranks if ranks is None else ranks, _int)
    seed_values = _split_list("seeds", DEFAULT_SEEDS if seeds is None else seeds, _int)
    if not seed_values:
        raise ValueError("seeds is empty; give at least one seed")
    for s in seed_values:
        check_positive_int("seed", s, minimum=0)
    low_rank = [r for r in rule_names if r in LOW_RANK_RULES]
    if low_rank and not rank_values and not fraction_values:
        raise ValueError(f"rules {low_rank} need at least one rank (ranks and rank_fractions are empty)")
    if low_rank and not fl_names:
        raise ValueError(f"rules {low_rank} need at least one feedback learning mode; allowed: "
                         + ", ".join(rules_mod.FEEDBACK_LEARNING))
    check_choice("dataset", dataset, DATASETS)
    if max_test is not None:
        check_positive_int("max_test", max_test)
    spec = _jsonable(load_spec(DEFAULT_MODELS[dataset] if model is None else model))
    class_request = _check_classes_request(classes)
    dataset_kwargs = _check_dataset_options(dataset, dataset_options)
    spec = _apply_model_options(spec, model_options, class_request, dataset_kwargs)

    trainer = _trainer()
    field_names = {f.name for f in dataclasses.fields(trainer.TrainConfig)}
    explicit = {"epochs": epochs}
    for key, value in [*config_options.items(), *dict(train_options or {}).items()]:
        if key in _PER_RUN_FIELDS:
            raise ValueError(f"train_options may not set {key!r}; compare sets it per run")
        explicit[key] = value
    unknown = sorted(k for k, v in explicit.items() if v is not None and k not in field_names)
    if unknown:
        raise ValueError(f"unknown training options {unknown}; TrainConfig fields: {sorted(field_names)}")
    if epochs is not None:
        check_positive_int("epochs", epochs)
    if explicit.get("max_train") is not None:
        check_positive_int("max_train", explicit["max_train"])
    explicit["device"] = check_device(explicit.get("device") or "auto")  # "auto" resolved once, for every run
    # None: TrainConfig takes the spec's [training] recipe, else its own defaults.
    base = {k: v for k, v in explicit.items() if v is not None}
    if dataset == "cifar10" and data_path is None:
        shared = os.environ.get(SHARED_DATA_VARIABLE)
        if not shared:
            raise ValueError("dataset 'cifar10' is not embedded: give data_path (a folder, or the folder of the "
                             "zip files cifar10-jpeg-train.zip / cifar10-jpeg-test.zip) or set "
                             f"{SHARED_DATA_VARIABLE} (its cifar10 folder is used)")
        # the loader's default (load_cifar10(path=None)), resolved here so that the run config records it
        data_path = Path(shared) / "cifar10"
    extra_rule_options = dict(rule_options or {})
    for key in ("rank", "rank_fraction", "feedback_learning"):
        if key in extra_rule_options:
            raise ValueError(f"rule_options may not set {key!r}; use the ranks / feedback_learning arguments")

    runs: list[_Run] = []
    grid_rules: list[tuple[str, str | None]] = []
    for name in rule_names:
        if name in LOW_RANK_RULES:
            grid_rules += [(name, fl) for fl in fl_names]
        else:
            grid_rules.append((name, None))
    # Absolute ranks, then relative ranks (their fraction_rank codes), smallest first.
    low_ranks = sorted(rank_values) + [fraction_rank(f) for f in fraction_values]
    grid_ranks = ([NO_RANK] if any(r not in LOW_RANK_RULES for r in rule_names) else []) + (
        low_ranks if low_rank else [])
    for seed in seed_values:  # seed outermost: an interrupted comparison has whole seeds first
        for name, fl in grid_rules:
            for rank in (low_ranks if name in LOW_RANK_RULES else [NO_RANK]):
                runs.append(_Run(name, fl, rank, seed))

    try:
        probe = build_model(spec)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model spec {spec.get('name', '?')!r} with model_options {dict(model_options or {})} "
                         f"cannot be built: {exc}") from None
    if low_rank:
        top = _max_rank(probe)
        bad = [r for r in rank_values if not 1 <= r <= top]
        if bad:
            raise ValueError(f"rank {bad} out of range for model {spec.get('name', '?')!r}: valid ranks are "
                             f"1..{top} (the largest min(out, in) of its weight layers)")

    # Rule options are validated by building every rule once (cheap, no training).
    def options_of(run: _Run) -> dict[str, Any]:
        if run.rule in LOW_RANK_RULES:
            fraction = rank_fraction_of(run.rank)
            size = {"rank": run.rank} if fraction is None else {"rank_fraction": fraction}
            return {**size, "feedback_learning": run.feedback_learning, **extra_rule_options}
        return {}

    for run in runs:
        try:
            rules_mod.make(run.rule, **options_of(run))
        except (TypeError, ValueError) as exc:
            hint = ""
            if extra_rule_options and run.feedback_learning is not None and len(fl_names) > 1:
                others = [fl for fl in fl_names if fl != run.feedback_learning]
                hint = (f"; rule_options apply to every low-rank run, here feedback_learning {fl_names}: "
                        f"restrict feedback_learning (--feedback-learning) to the modes the options fit, "
                        f"e.g. without {run.feedback_learning!r} ({', '.join(others)})")
            raise ValueError(f"invalid options for run {run.id} (rule {run.rule!r}, feedback_learning "
                             f"{run.feedback_learning!r}; options {options_of(run)}): {exc}{hint}") from exc

    # The data: a missing or corrupt file fails here, before any training.
    data = load_dataset(dataset, path=data_path, **({"cache_dir": cache_dir} if cache_dir is not None else {}),
                        **dataset_kwargs)
    class_list = None
    if class_request is not None:
        class_list = _resolve_classes(class_request, data)
        data = select_classes(data, class_list)
    if max_test is not None and max_test < len(data.y_test):
        data = dataclasses.replace(data, x_test=data.x_test[:max_test], y_test=data.y_test[:max_test])
    check_model_fits(probe, str(spec.get("name", "?")), data)  # before any training
    del probe

    def config_of(run: _Run):
        return trainer.TrainConfig(model=spec, rule=run.rule, rule_options=options_of(run), seed=run.seed,
                                   **base)

    configs = {run: config_of(run) for run in runs}  # TrainConfig validates its own fields here
    n_epochs = configs[runs[0]].epochs
    compare_config = {
        "rules": rule_names, "ranks": sorted(rank_values) if low_rank else [],
        "rank_fractions": fraction_values if low_rank else [],
        "feedback_learning": fl_names if low_rank else [], "seeds": seed_values, "dataset": dataset,
        "data_path": None if data_path is None else str(data_path), "model": spec,
        "train": _jsonable({k: v for k, v in configs[runs[0]].to_dict().items() if k not in _PER_RUN_FIELDS}),
        "rule_options": _jsonable(extra_rule_options), "n_train": int(data.x_train.shape[0]),
        "n_test": int(data.x_test.shape[0]),
    }
    # A finished run at chance level is flagged "at_chance" (criterion fixed here, before any run).
    chance = _results.chance_accuracy(data.y_test)
    chance = (chance, _results.chance_threshold(chance, len(data.y_test)))
    if class_list is not None:
        compare_config["classes"] = class_list
    if dataset_kwargs:
        compare_config["dataset_options"] = _jsonable(dataset_kwargs)
    grid = {"rules": grid_rules, "ranks": grid_ranks, "seeds": seed_values, "epochs": n_epochs,
            "requested": {(r.label, r.rank, r.seed) for r in runs}, "config": compare_config, "chance": chance}

    def requested_config(run: _Run) -> str:
        """A run's identity for resuming: its TrainConfig (model = the resolved spec), plus the test subset."""
        wanted = configs[run].to_dict()
        if max_test is not None:
            wanted["max_test"] = int(max_test)  # not a TrainConfig field, but it changes the test curves
        if class_list is not None:
            wanted["classes"] = class_list  # the data the run saw: its class subset ...
        if dataset_kwargs:
            wanted["dataset_options"] = dataset_kwargs  # ... and the dataset's options (teacher's d)
        return json.dumps(_jsonable(wanted), sort_keys=True)

    # ---------------------------------------------------------------- resume
    writer = _is_main_process() and out is not None
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"out {out_dir} exists and is not a folder")
        if writer:
            _check_writable(out_dir)  # before any training: read-only, permission or space failures in one line
    # One comparison per out folder at a time (a second one refuses, naming the first's pid); released on exit,
    # also after a crash or SIGKILL (flock).
    lock = io.lock_folder(out_dir, 'bioplastic compare') if writer else contextlib.nullcontext()
    with lock:
        finished: dict[_Run, xr.Dataset] = {}
        if out_dir is not None:
            if writer:
                io.remove_temporaries(out_dir)  # left by a process killed mid-write; we hold the lock
            for run in runs:
                path = out_dir / "runs" / f"{run.id}.nc"
                if path.exists():
                    ds = io.load(path)
                    wanted = requested_config(run)
                    if ds.attrs.get("requested_config") != wanted:
                        raise ValueError(
                            f"{path} was made with a different configuration than requested now "
                            f"({_diff(ds.attrs.get('requested_config'), wanted)}); use another out folder or "
                            f"delete that file to retrain the run")
                    finished[run] = ds
                    stale = out_dir / "checkpoints" / run.id
                    if writer and stale.exists():  # killed between saving the run and removing its checkpoint
                        shutil.rmtree(stale)
            _check_results_superset(out_dir / _results.RESULTS_FILE, {r.id for r in runs})  # refuse before "resuming"
            if finished:
                log.info("resuming in %s: %d of %d run%s already finished", out_dir, len(finished), len(runs),
                         "" if len(runs) == 1 else "s")

        trained_classes = class_list if class_list is not None else list(range(data.n_classes))

        def merged() -> xr.Dataset:
            ds = _results.merge_runs([finished[r] for r in runs if r in finished], **grid)
            ds.attrs["classes"] = [int(c) for c in trained_classes]  # the dataset's class indices, in label order
            return ds

        saved = [0]  # runs in the results.nc last written

        def write() -> xr.Dataset:
            ds = merged()
            if writer:
                io.save(ds, out_dir / _results.RESULTS_FILE)
                saved[0] = len(finished)
            return ds

        # ---------------------------------------------------------------- training
        todo = [r for r in runs if r not in finished]
        from bioplastic._progress import progress_bar

        # One bar over the epochs of all runs (a widget in Jupyter): no per-run bars piling up in a notebook.
        bar = progress_bar(total=len(runs) * n_epochs, initial=len(finished) * n_epochs, desc="compare",
                           unit="epoch", disable=not progress or not _is_main_process())
        run_now = [""]

        def advance(epoch: int, record: dict) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{run_now[0]}: epoch {epoch}, test accuracy {100 * record['test_accuracy']:.1f}%")

        try:
            if writer:
                write()
            for run in todo:
                run_now[0] = run.id
                bar.set_postfix_str(run.id)
                ckpt = out_dir / "checkpoints" / run.id if out_dir is not None else None
                t0 = time.perf_counter()
                result = trainer.train(configs[run], data, checkpoint_dir=ckpt, progress=False,
                                       callbacks=[advance] if progress else ())
                seconds = float(getattr(result, "seconds", time.perf_counter() - t0))
                ds = _results.run_to_dataset(result, rule=run.rule, feedback_learning=run.feedback_learning,
                                             rank=run.rank, seed=run.seed, epochs=n_epochs, wall_time=seconds,
                                             chance_level=chance[1])
                ds.attrs["requested_config"] = requested_config(run)
                acc = ds["test_accuracy"].values
                n_done = int(result.epochs_completed)
                status = str(ds["status"].values)
                log.info("%s: %s after %d epoch%s, test accuracy %.2f%% (%.1f s)", run.id, status,
                         n_done, "" if n_done == 1 else "s", 100 * acc[-1], seconds)
                if status == "at_chance":
                    log.warning("%s did not learn: final test accuracy %.2f%% is at chance level (<= %.2f%%: the "
                                "most common test class, %.2f%%, + %g standard errors)", run.id, 100 * acc[-1],
                                100 * chance[1], 100 * chance[0], _results.CHANCE_STANDARD_ERRORS)
                if writer:
                    if keep_models:
                        save_model(out_dir, result, configs[run], rule=run.rule,
                                   feedback_learning=run.feedback_learning, rank=run.rank, seed=run.seed,
                                   input_shape=data.input_shape, status=status)
                    io.save(ds, out_dir / "runs" / f"{run.id}.nc")
                    if ckpt is not None and ckpt.exists():
                        shutil.rmtree(ckpt)
                finished[run] = ds
                write()
                bar.n = len(finished) * n_epochs  # a resumed or stopped (diverged) run: count it whole
                bar.refresh()
        except BaseException as exc:  # Ctrl-C or a crash: the finished runs are already on disk
            what = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"stopped by {type(exc).__name__}"
            where = ""
            if writer and finished:  # never claim "saved" for runs the results file does not hold
                where = (f" and saved in {out_dir / _results.RESULTS_FILE}" if saved[0] == len(finished) else
                         f" and kept in {out_dir / 'runs'} ({saved[0]} in {out_dir / _results.RESULTS_FILE})")
            log.warning("%s: %d of %d runs finished%s; run the same command again to resume", what,
                        len(finished), len(runs), where)
            raise
        finally:
            bar.close()

        ds = write()
        if writer and figure:
            from bioplastic.training.plots import plot_comparison

            plot_comparison(ds, out_dir / "figure.png")
        return ds


def _check_classes_request(classes: Any) -> int | list[int] | None:
    """``classes`` as given: None, K (the first K classes) or a list of class indices (validated here,
    against the dataset's classes in :func:`_resolve_classes` once it is loaded)."""
    if classes is None:
        return None
    if isinstance(classes, str) and "," not in classes:
        try:
            classes = _int(classes.strip())
        except ValueError:
            raise ValueError(f"classes: cannot read {classes!r} as a number of classes K or a list "
                             f"like '3,7,9'") from None
    if isinstance(classes, (bool, float)):
        raise ValueError(f"classes must be an int K >= 2 or a list of >= 2 class indices, got {classes!r}")
    if isinstance(classes, numbers.Integral):
        if classes < 2:
            raise ValueError(f"classes={classes}: a classification task needs at least 2 classes (K >= 2)")
        return int(classes)
    values = _split_list("classes", classes, _int)
    if len(values) < 2:
        raise ValueError(f"classes={values}: a classification task needs at least 2 classes")
    negative = [c for c in values if c < 0]
    if negative:
        raise ValueError(f"classes {negative} out of range: class indices are >= 0")
    return values


def _resolve_classes(request: int | list[int], data: Any) -> list[int]:
    """The list of class indices of ``data`` to train on; a K or index beyond the dataset is a ValueError."""
    n = int(data.n_classes)
    if isinstance(request, int):
        if request > n:
            raise ValueError(f"classes={request}: dataset {data.name!r} has {n} classes; K must be in 2..{n}")
        return list(range(request))
    missing = [c for c in request if c >= n]
    if missing:
        raise ValueError(f"classes {missing} not in dataset {data.name!r}: its class indices are 0..{n - 1}")
    return list(request)


def _check_dataset_options(dataset: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Refuse options the dataset's loader does not take (the message lists the ones it does)."""
    import inspect

    from bioplastic.data.base import loader_of

    options = dict(options or {})
    if not options:
        return {}
    params = inspect.signature(loader_of(dataset)).parameters
    separate = {"path": "data_path", "cache_dir": "cache_dir"}
    allowed = sorted(k for k, p in params.items() if k not in separate
                     and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    for key in options:
        if key in separate:
            raise ValueError(f"dataset option {key!r}: give it as compare's {separate[key]} argument")
        if key not in allowed:
            raise ValueError(f"unknown dataset option {key!r} for dataset {dataset!r}; its options: "
                             + (", ".join(allowed) or "none"))
    return _jsonable(options)


# Spec keys that model_options may not set: identity and the tables other arguments own.
_SPEC_TABLES = {"name": None, "architecture": None, "training": "the training arguments / train_options",
                "rule": "rule_options"}


def _apply_model_options(spec: dict[str, Any], model_options: Mapping[str, Any] | None,
                         class_request: int | list[int] | None, dataset_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved spec: output (and flat input) size from the task, then the user's ``model_options``."""
    spec = dict(spec)
    n_out = None
    if class_request is not None:
        n_out = class_request if isinstance(class_request, int) else len(class_request)
    elif "n_classes" in dataset_kwargs:
        n_out = dataset_kwargs["n_classes"]
    if n_out is not None and "n_classes" in spec:
        spec["n_classes"] = int(n_out)
    if "input_dim" in dataset_kwargs and "in_features" in spec:
        spec["in_features"] = dataset_kwargs["input_dim"]
    keys = sorted(k for k in spec if k not in _SPEC_TABLES)
    for key, value in dict(model_options or {}).items():
        if key in _SPEC_TABLES:
            where = _SPEC_TABLES[key]
            raise ValueError(f"model option {key!r} cannot be overridden" + (f"; use {where}" if where else "")
                             + f"; the spec's keys: {', '.join(keys)}")
        if key not in spec:
            raise ValueError(f"unknown model option {key!r} for model spec {spec.get('name', '?')!r}; "
                             f"its keys: {', '.join(keys)}")
        if isinstance(spec[key], list) and not isinstance(value, (list, tuple)):
            value = [value]  # --model-option hidden=512 for a list-valued key
        spec[key] = _jsonable(value)
    return spec


def _check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` and write a small probe file in it; an OSError becomes one ValueError line."""
    import tempfile

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(f"out folder {out_dir} is not writable: {reason}") from None


def _check_results_superset(path: Path, requested: set[str]) -> None:
    """Refuse to replace a results file whose finished runs the new comparison would drop."""
    if not path.exists():
        return
    try:
        old = io.load(path)
    except ValueError:
        log.warning("%s is unreadable; it is rebuilt from the finished runs in %s", path, path.parent / "runs")
        return
    dropped = sorted(
        run_id(str(label), int(rank), int(seed))
        for i, label in enumerate(old["rule"].values) for j, rank in enumerate(old["rank"].values)
        for k, seed in enumerate(old["seed"].values)
        if old["status"].values[i, j, k] in _results.FINISHED_STATUSES
        and run_id(str(label), int(rank), int(seed)) not in requested)
    if dropped:
        raise ValueError(
            f"{path} holds finished runs that this comparison does not include ({', '.join(dropped)}); "
            f"include them (they are resumed, not retrained) or use another out folder")


def _diff(old: str | None, new: str) -> str:
    if not old:
        return "no stored configuration"
    a, b = json.loads(old), json.loads(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "differs in " + ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys)


__all__ = ["compare", "load_model", "list_models", "LOW_RANK_RULES", "DEFAULT_RULES", "DEFAULT_RANKS",
           "DEFAULT_FEEDBACK_LEARNING", "DEFAULT_MODELS"]
