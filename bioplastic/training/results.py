"""Results of :func:`bioplastic.compare` as an :class:`xarray.Dataset`.

One training run (a :class:`~bioplastic.training.trainer.RunResult`) becomes a small Dataset with dims
``epoch`` and ``layer`` (:func:`run_to_dataset`); the runs of a comparison are merged into one dense grid
with dims ``rule``, ``rank``, ``seed``, ``epoch`` and ``layer`` (:func:`merge_runs`).

Conventions of the grid
-----------------------
``rule``
    A *run label*. Rules without feedback learning keep their name (``"bp"``, ``"fa"``, ``"dfa"``,
    ``"sign_symmetry"``, ``"kolen_pollack"``). Rules whose feedback weights learn in several ways
    (``"ldfa"``, ``"direct_ldfa"``) get one label per way, ``"<rule>_<feedback_learning>"``, e.g.
    ``"ldfa_normative"`` (adaptive) and ``"ldfa_fixed"`` (fixed random feedback): adaptive and fixed
    LDFA are separate runs and separate rows. The non-index coordinates ``base_rule`` and
    ``feedback_learning`` (``""`` where not applicable) along ``rule`` give the two parts.
``rank``
    The feedback rank r of low-rank rules. Rules without a rank (full feedback) are stored at
    ``rank = -1`` (:data:`NO_RANK`); cells of the grid that are not run (e.g. ``bp`` at rank 10, or
    ``ldfa`` at rank -1) hold NaN and have ``status == "not_applicable"``.
    *Relative ranks* (``compare(rank_fractions=[0.25])``: every layer's rank is ``ceil(fraction * width)``,
    the paper's "width / 4") are read from two coordinates along ``rank``: ``rank_fraction`` (the fraction,
    NaN for absolute ranks and ``-1``) and ``rank_label`` (text: ``"-"`` for no rank, ``"10"``, ``"0.25w"``
    for a quarter of each layer's width), so ``ds.where(ds.rank_fraction == 0.25, drop=True)``,
    ``ds.swap_dims(rank="rank_label").sel(rank_label="0.25w")`` or ``ds.sel(rank=fraction_rank(0.25))`` select
    them. Their ``rank`` index value is a key, not a quantity: a negative number below
    :data:`RELATIVE_RANK_OFFSET` unique to the fraction (:func:`fraction_rank`), so that runs made at
    different times merge into one grid; read the fraction from the coordinates, never from the key. The
    grid keeps its five dims and an int64 ``rank`` index (no MultiIndex; netCDF round-trips).
``status``
    ``"ok"``, ``"diverged"`` (non-finite loss: values after the divergence are NaN), ``"at_chance"``
    (finished with finite losses, but the final test accuracy is at chance level, :func:`chance_threshold`:
    the rule learned nothing, e.g. a far too large learning rate), ``"pending"`` (requested but not finished
    yet: a comparison interrupted mid-way) or ``"not_applicable"``. ``"diverged"`` and ``"at_chance"`` runs are
    finished (resuming does not retrain them) but flagged in the table and the figure.

The only fields that differ between two runs of the same command are the times (seconds): ``wall_time`` of
the run and, per epoch, ``train_wall_time`` and ``train_cpu_time`` of its training steps (:data:`EPOCH_TIMES`);
compare results with :func:`bioplastic.testing.assert_results_equal` (it leaves out
:data:`WALL_CLOCK_VARIABLES`).

Format versions (``attrs["results_format"]``, :data:`RESULTS_FORMAT`): 1 (no such attribute; files written
before it was introduced): no ``rank_label``; :func:`load_results` converts it. 2: ``rank_label``. A file of a newer
format than this version reads is refused with an error naming the file and both versions.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bioplastic import io
from bioplastic.rules import FEEDBACK_LEARNING, LDFA, RULE_NAMES, rule_class

log = logging.getLogger(__name__)

LOW_RANK_RULES = ("ldfa", "direct_ldfa")
"""Rules that take a feedback ``rank`` and a ``feedback_learning`` mode (one ``rule`` label per mode)."""

NO_RANK = -1
"""Value of the ``rank`` coordinate for rules that have no feedback rank (full feedback)."""

RELATIVE_RANK_OFFSET = -10000
"""Relative ranks (fraction f of each layer's width) are stored at ``rank = RELATIVE_RANK_OFFSET -
round(RANK_FRACTION_RESOLUTION * f)``; every such code is below this value."""
RANK_FRACTION_RESOLUTION = 10000
"""Rank fractions are resolved to ``1 / RANK_FRACTION_RESOLUTION`` (four decimals)."""

STATUSES = ("ok", "diverged", "at_chance", "pending", "not_applicable")
FINISHED_STATUSES = ("ok", "diverged", "at_chance")
"""Statuses of a run that finished (its file exists; resuming skips it)."""
FLAGGED_STATUSES = ("diverged", "at_chance")
"""Statuses of finished runs that failed to learn: flagged in :func:`format_table` and the figure."""
CHANCE_STANDARD_ERRORS = 3.0
"""A finished run is ``"at_chance"`` when its final test accuracy is at most the chance level plus this many
binomial standard errors of a chance-level classifier on the test set (:func:`chance_threshold`)."""
EPOCH_TIMES = {
    "train_wall_time": "wall-clock time of the epoch's training steps, evaluation excluded (machine-dependent)",
    "train_cpu_time": "CPU time (time.process_time: user + system, every thread of the process) of the epoch's "
                      "training steps, evaluation excluded; with one thread it does not count waiting for a core "
                      "(machine-dependent)",
}
"""Per-epoch times of a run (dims ... ``epoch``, units s), beside the run's total ``wall_time``. Results written
before bioplastic recorded them read as NaN (:func:`upgrade_results`)."""
WALL_CLOCK_VARIABLES = ("wall_time", *EPOCH_TIMES)
"""Variables that depend on the machine's speed, not on the computation (exclude them to compare)."""

RESULTS_FILE = "results.nc"

RESULTS_FORMAT = 2
"""Format version of comparison results written now (``attrs["results_format"]``); see the module notes."""

_CURVES = {
    "train_loss": ("mean training loss over the epoch", "nats"),
    "test_loss": ("test loss after the epoch", "nats"),
    "test_accuracy": ("top-1 accuracy on the test set after the epoch", "1"),
}
_ALIGNMENT_DOC = {
    "update_cosine": ("cosine similarity between the rule's weight update and the backprop gradient", "1"),
    "feedback_angle": ("angle between W^T and the effective feedback matrix", "degree"),
    "subspace_angle": ("largest principal angle between the feedback subspace and the top-r error subspace",
                       "degree"),
    "feedback_rank": ("number of feedback units of the layer (effective rank; NaN where not low-rank)", "1"),
}


def _transport_table() -> dict[str, str]:
    table = {name: cls.transport_of() for name, cls in _rules_by_name().items() if not cls.low_rank}
    table.update({mode: LDFA.transport_of(mode) for mode in FEEDBACK_LEARNING})
    return table


def _rules_by_name() -> dict[str, type]:
    return {name: rule_class(name) for name in RULE_NAMES}


WEIGHT_TRANSPORT = _transport_table()
"""Whether a rule's feedback reads the forward weights ``W`` (weight transport), by rule name or LDFA
feedback-learning mode: ``"yes"`` (backprop's ``delta W``; ``normative`` LDFA fits ``P Q`` to ``W``),
``"sign"`` (sign symmetry reads ``sign(W)``) or ``"no"`` (FA, DFA, DRTP: fixed random feedback; Kolen-Pollack:
``B`` gets ``W``'s own local update; the other LDFA modes learn from signals at their own synapses). Read from
the rules themselves (``Rule.transport_of``), so a new rule needs no entry here. What each LDFA mode learns:
the table in ``docs/rules.md`` ("LDFA feedback learning"). Hanut & Kadmon (2025, arXiv:2502.20580)."""


def split_label(label: str) -> tuple[str | None, str | None]:
    """``(rule name, feedback-learning mode or None)`` of a ``rule`` label such as ``"direct_ldfa_local"``;
    ``(None, None)`` for a label that names no registered rule."""
    label = str(label)
    for name in sorted(RULE_NAMES, key=len, reverse=True):  # "direct_ldfa" before "ldfa" and "dfa"
        if label == name:
            return name, None
        if label.startswith(name + "_") and rule_class(name).low_rank and label[len(name) + 1:] in FEEDBACK_LEARNING:
            return name, label[len(name) + 1:]
    return None, None


def weight_transport(label: str) -> str:
    """``"yes"``, ``"sign"``, ``"no"`` or ``"?"`` (unknown) for a ``rule`` label such as ``"ldfa_local"``
    (asks the rule: :meth:`bioplastic.rules.Rule.transport_of`; see :data:`WEIGHT_TRANSPORT`)."""
    label = str(label)
    if label in WEIGHT_TRANSPORT:
        return WEIGHT_TRANSPORT[label]
    name, mode = split_label(label)
    return "?" if name is None else rule_class(name).transport_of(mode)


def transport_footnote() -> str:
    """The table's footnote on weight transport, listing every registered rule under its answer."""
    groups: dict[str, list[str]] = {"yes": [], "sign": [], "no": []}
    for name, cls in _rules_by_name().items():
        if cls.low_rank:
            for mode in cls.feedback_learning_modes:
                groups.setdefault(cls.transport_of(mode), []).append(f"{name}_{mode}")
        else:
            groups.setdefault(cls.transport_of(), []).append(name)
    what = {"yes": "yes", "sign": "sign (reads sign(W))", "no": "no"}
    parts = [f"{what.get(k, k)}: {', '.join(v)}" for k, v in groups.items() if v]
    return "reads W = weight transport: the feedback reads the forward weights W (" + "; ".join(parts) + ")"


def run_label(rule: str, feedback_learning: str | None = None) -> str:
    """The ``rule`` coordinate of a run: ``rule`` or ``"<rule>_<feedback_learning>"``."""
    return f"{rule}_{feedback_learning}" if feedback_learning else rule


def check_rank_fraction(fraction: Any) -> float:
    """``fraction`` as a float in (0, 1] with at most four decimals, else a ``ValueError`` naming it."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not np.isfinite(fraction) \
            or not 0 < fraction <= 1:
        raise ValueError(f"rank fraction must be a number in (0, 1] (a fraction of each layer's width, "
                         f"e.g. 0.25 for width/4), got {fraction!r}")
    scaled = float(fraction) * RANK_FRACTION_RESOLUTION
    if abs(scaled - round(scaled)) > 1e-6:
        raise ValueError(f"rank fraction {fraction!r} has more than four decimals; rank fractions are resolved "
                         f"to 1/{RANK_FRACTION_RESOLUTION}")
    return round(scaled) / RANK_FRACTION_RESOLUTION


def fraction_rank(fraction: float) -> int:
    """The ``rank`` code of a relative rank: ``-10000 - round(10000 * fraction)`` (``-12500`` for 0.25)."""
    return RELATIVE_RANK_OFFSET - round(check_rank_fraction(fraction) * RANK_FRACTION_RESOLUTION)


def rank_fraction_of(rank: int) -> float | None:
    """The fraction of a relative-rank code (:func:`fraction_rank`), None for an absolute rank or -1."""
    rank = int(rank)
    if rank >= RELATIVE_RANK_OFFSET:
        return None
    return (RELATIVE_RANK_OFFSET - rank) / RANK_FRACTION_RESOLUTION


def rank_text(rank: int) -> str:
    """Human-readable rank: ``"-"`` (no rank), ``"10"`` or ``"0.25w"`` (a quarter of each layer's width)."""
    fraction = rank_fraction_of(rank)
    if fraction is not None:
        return f"{fraction:g}w"
    return "-" if int(rank) == NO_RANK else str(int(rank))


def run_id(label: str, rank: int, seed: int) -> str:
    """File-name stem of a run, e.g. ``"ldfa_normative-r10-s0"``, ``"ldfa_normative-f0.25-s0"`` (relative
    rank, :func:`fraction_rank`) or ``"bp-s0"``."""
    if rank == NO_RANK:
        return f"{label}-s{seed}"
    fraction = rank_fraction_of(rank)
    if fraction is not None:
        return f"{label}-f{fraction:g}-s{seed}"
    return f"{label}-r{rank}-s{seed}"


def chance_accuracy(labels: Any) -> float:
    """The chance level of a test set: the frequency of its most common class (the accuracy of always
    guessing that class; ``1 / n_classes`` for a balanced set).

    Parameters
    ----------
    labels : array-like of int, shape (n_test,)
        The test labels.

    Returns
    -------
    float
        In (0, 1].

    Raises
    ------
    ValueError
        If ``labels`` is empty.
    """
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        raise ValueError("no test labels: the chance level is undefined")
    return float(np.unique(labels, return_counts=True)[1].max() / labels.size)


def chance_threshold(chance: float, n_test: int, standard_errors: float = CHANCE_STANDARD_ERRORS) -> float:
    """Highest test accuracy still counted as chance level: ``p0 + k * sqrt(p0 (1 - p0) / n_test)``.

    ``p0`` is :func:`chance_accuracy`; ``k`` standard errors of the accuracy of a chance-level classifier on
    ``n_test`` examples (binomial), :data:`CHANCE_STANDARD_ERRORS` = 3 by default (one-sided, about 0.1 %
    of chance-level runs land above it). The criterion is fixed before any run. E.g. the embedded MNIST test
    set (10,000 digits, most common class 11.35 %) gives 12.30 %.

    Parameters
    ----------
    chance : float
        ``p0`` in (0, 1].
    n_test : int
        Number of test examples (> 0).
    standard_errors : float
        ``k``.

    Returns
    -------
    float
        The threshold (a fraction, like ``test_accuracy``).
    """
    if not 0 < chance <= 1 or n_test < 1:
        raise ValueError(f"chance level must be in (0, 1] and n_test >= 1, got {chance!r} and {n_test!r}")
    return float(chance + standard_errors * np.sqrt(chance * (1 - chance) / n_test))


def _as_float_array(values: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"RunResult.{name} has shape {arr.shape}, expected ({n},) (one value per epoch)")
    return arr


def run_to_dataset(result: Any, *, rule: str, feedback_learning: str | None, rank: int, seed: int,
                   epochs: int, wall_time: float | None = None,
                   chance_level: float | None = None) -> xr.Dataset:
    """Convert one :class:`~bioplastic.training.trainer.RunResult` to a Dataset.

    Parameters
    ----------
    result : RunResult
        Needs ``status``, ``epochs_completed``, ``train_loss``, ``test_loss``, ``test_accuracy``
        (arrays of shape (epochs,), NaN after a divergence), ``layers`` (list of str) and
        ``alignment`` (dict name -> array (epochs, layers)), ``config`` (dict) and ``seconds``.
    rule : str
        The rule name (one of :data:`bioplastic.rules.RULE_NAMES`).
    feedback_learning : str or None
        How the feedback weights learn (low-rank rules), else None.
    rank : int
        The feedback rank, :data:`NO_RANK`, or a relative-rank code (:func:`fraction_rank`).
    seed : int
        The run's seed.
    epochs : int
        Number of epochs requested; curves shorter than this (a diverged run) are padded with NaN.
    wall_time : float, optional
        Seconds spent; defaults to ``result.seconds``.
    chance_level : float, optional
        :func:`chance_threshold` of the test set: an ``"ok"`` run whose final test accuracy is at or below
        it gets status ``"at_chance"``. None: no check.

    Returns
    -------
    xarray.Dataset
        Dims ``epoch`` (1..epochs) and ``layer``; scalar coords ``rule``, ``rank``, ``seed``,
        ``base_rule``, ``feedback_learning``; variables as in :func:`merge_runs` without the grid dims.

    Raises
    ------
    ValueError
        If the arrays of ``result`` do not have one value per epoch (and per layer).
    """
    def pad(values: Any, name: str) -> np.ndarray:
        arr = np.asarray(values, dtype=float)
        if arr.ndim == 0 or arr.shape[0] > epochs:
            raise ValueError(f"RunResult.{name} has shape {arr.shape}, expected ({epochs}, ...)")
        out = np.full((epochs, *arr.shape[1:]), np.nan)
        out[: arr.shape[0]] = arr
        return out

    layers = [str(name) for name in result.layers]
    data_vars: dict[str, Any] = {}
    for name in _CURVES:
        data_vars[name] = ("epoch", _as_float_array(pad(getattr(result, name), name), epochs, name))
    for name, values in sorted(result.alignment.items()):
        arr = pad(values, f"alignment[{name!r}]")
        if arr.ndim != 2 or arr.shape[1] != len(layers):
            raise ValueError(
                f"RunResult.alignment[{name!r}] has shape {arr.shape}, expected ({epochs}, {len(layers)}) "
                f"(epochs, layers {layers})")
        data_vars[name] = (("epoch", "layer"), arr)
    status = str(result.status)
    if status not in ("ok", "diverged"):
        raise ValueError(f"RunResult.status {status!r} is not 'ok' or 'diverged'")
    final_accuracy = data_vars["test_accuracy"][1][-1]
    if status == "ok" and chance_level is not None and final_accuracy <= chance_level:
        status = "at_chance"
    data_vars["status"] = ((), status)
    data_vars["epochs_completed"] = ((), int(result.epochs_completed))
    data_vars["wall_time"] = ((), float(result.seconds if wall_time is None else wall_time))
    for name in EPOCH_TIMES:  # a RunResult without them (made before they were recorded): NaN
        values = getattr(result, name, None)
        values = np.full(epochs, np.nan) if values is None or np.size(values) == 0 else pad(values, name)
        data_vars[name] = ("epoch", _as_float_array(values, epochs, name), {"units": "s"})
    data_vars["run_config"] = ((), json.dumps(result.config, sort_keys=True, default=str))
    coords = {
        "epoch": np.arange(1, epochs + 1), "layer": np.array(layers, dtype=str),
        "rule": run_label(rule, feedback_learning), "rank": int(rank), "seed": int(seed),
        "base_rule": rule, "feedback_learning": feedback_learning or "",
    }
    return xr.Dataset(data_vars, coords=coords)


def _ordered_union(lists: Sequence[Sequence[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for names in lists:
        for name in names:
            seen.setdefault(name, None)
    return list(seen)


def merge_runs(runs: Sequence[xr.Dataset], *, rules: Sequence[tuple[str, str | None]],
               ranks: Sequence[int], seeds: Sequence[int], epochs: int,
               requested: set[tuple[str, int, int]] | None = None,
               config: Mapping[str, Any] | None = None,
               chance: tuple[float, float] | None = None) -> xr.Dataset:
    """Merge single-run Datasets (from :func:`run_to_dataset`) into the comparison grid.

    Parameters
    ----------
    runs : sequence of xarray.Dataset
        Finished runs.
    rules : sequence of (rule, feedback_learning)
        The rows of the grid, in order (``feedback_learning`` None for rules without one).
    ranks : sequence of int
        The rank coordinate (:data:`NO_RANK` for rules without a rank, :func:`fraction_rank` codes for
        relative ranks; their fractions become the ``rank_fraction`` coordinate).
    seeds : sequence of int
        The seed coordinate.
    epochs : int
        Number of epochs.
    requested : set of (label, rank, seed), optional
        The cells that the comparison runs; those without a finished run get status ``"pending"``,
        all other empty cells ``"not_applicable"``. Default: the cells of ``runs``.
    config : mapping, optional
        The comparison's configuration, stored as JSON in ``attrs["config"]``.
    chance : (float, float), optional
        The test set's :func:`chance_accuracy` and :func:`chance_threshold`, stored as the attrs
        ``chance_accuracy`` and ``chance_threshold`` of ``test_accuracy`` (the criterion of ``"at_chance"``).

    Returns
    -------
    xarray.Dataset
        Dims ``rule``, ``rank``, ``seed``, ``epoch``, ``layer``; coordinates ``rank_fraction`` (NaN except
        for relative ranks) and ``rank_label`` (text) along ``rank``. Variables ``train_loss``, ``test_loss``,
        ``test_accuracy`` (rule, rank, seed, epoch); the per-layer alignment measures of
        :func:`bioplastic.nn.alignment` (``update_cosine``, ``feedback_angle``, ``subspace_angle``;
        rule, rank, seed, epoch, layer); ``status`` (str), ``epochs_completed`` (int), ``wall_time``
        (s) and ``run_config`` (JSON of the run's ``TrainConfig``) per (rule, rank, seed);
        ``train_wall_time`` and ``train_cpu_time`` (rule, rank, seed, epoch; s): wall-clock and CPU time of
        each epoch's training steps (:data:`EPOCH_TIMES`). NaN where nothing was run (the times also where a
        run was saved before bioplastic recorded them).

    Raises
    ------
    ValueError
        If a run lies outside the grid or two runs fill the same cell.
    """
    labels = [run_label(r, fl) for r, fl in rules]
    ranks = [int(r) for r in ranks]
    seeds = [int(s) for s in seeds]
    shape = (len(labels), len(ranks), len(seeds))
    layers = _ordered_union([[str(x) for x in ds["layer"].values] for ds in runs])
    align_names = sorted({name for ds in runs for name in ds.data_vars if "layer" in ds[name].dims})

    curves = {name: np.full((*shape, epochs), np.nan) for name in _CURVES}
    align = {name: np.full((*shape, epochs, len(layers)), np.nan) for name in align_names}
    status = np.full(shape, "not_applicable", dtype=object)
    done = np.zeros(shape, dtype=np.int64)
    wall = np.full(shape, np.nan)
    times = {name: np.full((*shape, epochs), np.nan) for name in EPOCH_TIMES}
    run_config = np.full(shape, "", dtype=object)
    if requested is None:
        requested = {(str(ds["rule"].values), int(ds["rank"]), int(ds["seed"])) for ds in runs}

    def index(key: tuple[str, int, int]) -> tuple[int, int, int]:
        try:
            return labels.index(key[0]), ranks.index(key[1]), seeds.index(key[2])
        except ValueError:
            raise ValueError(f"run {key} lies outside the grid rules={labels}, ranks={ranks}, "
                             f"seeds={seeds}") from None

    for key in requested:
        status[index(key)] = "pending"

    filled: set[tuple[int, int, int]] = set()
    for ds in runs:
        key = (str(ds["rule"].values), int(ds["rank"]), int(ds["seed"]))
        idx = index(key)
        if idx in filled:
            raise ValueError(f"two runs for the same cell {key}")
        filled.add(idx)
        if ds.sizes["epoch"] != epochs:
            raise ValueError(f"run {key} has {ds.sizes['epoch']} epochs, expected {epochs}")
        for name in _CURVES:
            curves[name][idx] = ds[name].values
        run_layers = [layers.index(str(x)) for x in ds["layer"].values]
        for name in align_names:
            if name in ds:
                align[name][idx][:, run_layers] = ds[name].values
        status[idx] = str(ds["status"].values)
        done[idx] = int(ds["epochs_completed"])
        wall[idx] = float(ds["wall_time"])
        for name in EPOCH_TIMES:  # absent from runs saved before they were recorded: NaN
            if name in ds:
                times[name][idx] = ds[name].values
        run_config[idx] = str(ds["run_config"].values)

    grid = ("rule", "rank", "seed")
    data_vars: dict[str, Any] = {}
    for name, (long_name, units) in _CURVES.items():
        data_vars[name] = xr.Variable((*grid, "epoch"), curves[name],
                                      attrs={"long_name": long_name, "units": units})
    for name in align_names:
        long_name, units = _ALIGNMENT_DOC.get(name, (name, "1"))
        data_vars[name] = xr.Variable((*grid, "epoch", "layer"), align[name],
                                      attrs={"long_name": long_name, "units": units})
    data_vars["status"] = xr.Variable(grid, status.astype(str), attrs={"long_name": "run status; one of " + ", ".join(STATUSES)})
    data_vars["epochs_completed"] = xr.Variable(grid, done, attrs={"long_name": "epochs trained"})
    data_vars["wall_time"] = xr.Variable(grid, wall, attrs={
        "long_name": "wall-clock training time of the run (machine-dependent)", "units": "s"})
    for name, long_name in EPOCH_TIMES.items():
        data_vars[name] = xr.Variable((*grid, "epoch"), times[name], attrs={"long_name": long_name, "units": "s"})
    data_vars["run_config"] = xr.Variable(grid, run_config.astype(str), attrs={
        "long_name": "the run's TrainConfig as JSON (empty where not run)"})
    coords = {
        # text as fixed-width unicode (not object): xarray plots against it, also after a netCDF round trip
        "rule": ("rule", np.array(labels, dtype=str)),
        "base_rule": ("rule", np.array([r for r, _ in rules], dtype=str)),
        "feedback_learning": ("rule", np.array([fl or "" for _, fl in rules], dtype=str),
                              {"long_name": "how the feedback weights learn ('' where not applicable)"}),
        "rank": ("rank", np.array(ranks, dtype=np.int64),
                 {"long_name": "feedback rank r",
                  "description": f"{NO_RANK}: rule without a feedback rank; below {RELATIVE_RANK_OFFSET}: "
                                 f"a rank relative to each layer's width, see rank_fraction"}),
        **_rank_coordinates(ranks),
        "seed": ("seed", np.array(seeds, dtype=np.int64)),
        "epoch": ("epoch", np.arange(1, epochs + 1, dtype=np.int64), {"long_name": "training epoch"}),
        "layer": ("layer", np.array(layers, dtype=str),
                  {"long_name": "converted weight layer (module name), forward order"}),
    }
    if chance is not None:
        data_vars["test_accuracy"].attrs.update(
            chance_accuracy=float(chance[0]), chance_threshold=float(chance[1]),
            chance_criterion=f"status 'at_chance': final accuracy <= chance_threshold = chance_accuracy (the most "
                             f"common test class's frequency) + {CHANCE_STANDARD_ERRORS:g} binomial standard errors")
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs["title"] = "bioplastic compare: learning rules side by side"
    ds.attrs["source"] = ("Hanut & Kadmon (2025) arXiv:2502.20580 (LDFA); baselines: Lillicrap et al. 2016 (FA), "
                          "Nokland 2016 (DFA), Liao, Leibo & Poggio 2016 (sign symmetry)")
    ds.attrs["results_format"] = RESULTS_FORMAT
    return io.stamp(ds, dict(config) if config is not None else None)


def _rank_coordinates(ranks: Sequence[int]) -> dict[str, Any]:
    """The ``rank_fraction`` and ``rank_label`` coordinates of the rank keys ``ranks``."""
    fractions = [rank_fraction_of(r) for r in ranks]
    return {
        "rank_fraction": ("rank", np.array([np.nan if f is None else f for f in fractions], dtype=np.float64),
                          {"long_name": "feedback rank as a fraction of each layer's width (ceil(fraction * "
                                        "width)); NaN for absolute ranks and rules without a rank"}),
        "rank_label": ("rank", np.array([rank_text(r) for r in ranks], dtype=str),
                       {"long_name": "feedback rank as text: '-' none, '10' absolute, '0.25w' a fraction of "
                                     "each layer's width"}),
    }


def upgrade_results(ds: xr.Dataset, source: str | os.PathLike | None = None) -> xr.Dataset:
    """Comparison results of an older format (:data:`RESULTS_FORMAT`) converted to the current one.

    Format 1 (no ``results_format`` attribute) gains the ``rank_label`` (and, where missing, the
    ``rank_fraction``) coordinate. Results of either format written before bioplastic recorded per-epoch times
    gain ``train_wall_time`` and ``train_cpu_time`` as NaN, with a ``note`` attribute saying why (the format
    number is unchanged: newer files only add these variables). A current Dataset is returned unchanged.

    Parameters
    ----------
    ds : xarray.Dataset
        Results of :func:`bioplastic.compare`, e.g. read with :func:`bioplastic.io.load`.
    source : path-like, optional
        The file it came from (named in errors).

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    ValueError
        A format newer than this version reads, or a Dataset that is not a comparison (no ``rule`` / ``rank``
        dims); the message names the file and the versions.
    """
    where = f"{source}: " if source is not None else ""
    version = ds.attrs.get("bioplastic_version", "an unknown version")
    fmt = ds.attrs.get("results_format", 1)
    try:
        fmt = int(fmt)
    except (TypeError, ValueError):
        raise ValueError(f"{where}unreadable results_format {fmt!r} (written by bioplastic {version})") from None
    if fmt > RESULTS_FORMAT:
        from bioplastic import __version__

        raise ValueError(f"{where}results format {fmt}, written by bioplastic {version}, is newer than this "
                         f"bioplastic {__version__} reads (format {RESULTS_FORMAT}); update bioplastic")
    if "rule" not in ds.dims or "rank" not in ds.dims:
        raise ValueError(f"{where}not the results of bioplastic.compare (dims {tuple(ds.dims)}, written by "
                         f"bioplastic {version})")
    ds = _with_epoch_times(ds)
    if fmt == RESULTS_FORMAT:
        return ds
    log.info("%sconverting results format %d (bioplastic %s) to %d", where, fmt, version, RESULTS_FORMAT)
    coords = _rank_coordinates([int(r) for r in ds["rank"].values])
    if "rank_fraction" in ds.coords:
        coords.pop("rank_fraction")
    ds = ds.assign_coords(coords)
    ds.attrs["results_format"] = RESULTS_FORMAT
    return ds


def _with_epoch_times(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the :data:`EPOCH_TIMES` it lacks (results written before they were recorded) as NaN, with a
    ``note`` saying so (``wall_time``, the run's total, is still there)."""
    missing = [name for name in EPOCH_TIMES if name not in ds]
    if not missing or "epoch" not in ds.dims:
        return ds
    grid = tuple(d for d in ("rule", "rank", "seed", "epoch") if d in ds.dims)
    shape = tuple(ds.sizes[d] for d in grid)
    return ds.assign({name: xr.Variable(grid, np.full(shape, np.nan), attrs={
        "long_name": EPOCH_TIMES[name], "units": "s",
        "note": "not recorded: these results were written before bioplastic recorded per-epoch times"})
        for name in missing})


def results_path(out: str | os.PathLike) -> Path:
    """``out/results.nc`` if ``out`` is a folder, else ``out`` itself."""
    out = Path(out)
    return out / RESULTS_FILE if out.is_dir() or out.suffix != ".nc" else out


def load_results(out: str | os.PathLike) -> xr.Dataset:
    """Load the results of :func:`bioplastic.compare`.

    Parameters
    ----------
    out : path-like
        The comparison's output folder (reads ``out/results.nc``) or a path to a ``.nc`` file.

    Returns
    -------
    xarray.Dataset
        As described in :func:`merge_runs`.

    Raises
    ------
    FileNotFoundError
        No results file there.
    ValueError
        The file is not readable netCDF, not a comparison, or of a newer results format than this version
        reads (the message names the file and the versions). Older formats are converted
        (:func:`upgrade_results`).
    """
    path = results_path(out)
    return upgrade_results(io.load(path), source=path)


def final(ds: xr.Dataset, name: str = "test_accuracy") -> xr.DataArray:
    """Value of ``name`` at the last epoch of each run (the last finite epoch is *not* used: a diverged
    run's final value is NaN)."""
    return ds[name].isel(epoch=-1)


def format_table(ds: xr.Dataset, *, alignment: str = "update_cosine") -> str:
    """A plain-text table of a comparison: one row per (rule, rank) that was run.

    Columns: rule, rank (``-`` for none, ``0.25w`` for a quarter of each layer's width), final test accuracy in percent (mean +- standard deviation over the seeds
    that finished; ``n`` seeds), status counts if not all ``ok``, ``reads W`` (weight transport:
    :func:`weight_transport`), and the final ``alignment`` measure (default: cosine between the rule's update
    and the backprop gradient) per layer, mean over seeds. Footnotes explain the alignment and ``reads W``
    columns.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`bioplastic.compare` / :func:`load_results`.
    alignment : str
        Name of the per-layer variable to show.

    Returns
    -------
    str
    """
    ds = upgrade_results(ds)
    rank_labels = ds["rank_label"].values
    has_align = alignment in ds
    layers = [str(x) for x in ds["layer"].values] if has_align else []
    header = ["rule", "rank", "test acc (%)", "n", "status", "reads W"] + [f"{alignment[:3]}:{name}" for name in layers]
    rows = []
    acc = final(ds).values * 100.0
    for i, label in enumerate(ds["rule"].values):
        for j, rank in enumerate(ds["rank"].values):
            st = ds["status"].values[i, j]
            run = np.array([s not in ("not_applicable",) for s in st])
            if not run.any():
                continue
            vals = acc[i, j][np.isfinite(acc[i, j])]
            if vals.size:
                sd = f" +- {vals.std(ddof=1):.2f}" if vals.size > 1 else ""
                acc_text = f"{vals.mean():.2f}{sd}"
            else:
                acc_text = "nan"
            counts: dict[str, int] = {}
            for s in st[run]:
                counts[str(s)] = counts.get(str(s), 0) + 1
            # "ok" when every seed agrees, else counts such as "ok:2,diverged:1"
            status_text = next(iter(counts)) if len(counts) == 1 else ",".join(f"{k}:{v}" for k, v in counts.items())
            flagged = any(k in FLAGGED_STATUSES for k in counts)
            row = [str(label), str(rank_labels[j]), acc_text, str(int(vals.size)),
                   status_text + (" (!)" if flagged else ""), weight_transport(str(label))]
            if has_align:
                last = ds[alignment].values[i, j][:, -1, :]  # (seed, layer)
                with np.errstate(all="ignore"):
                    finite = np.isfinite(last)
                    mean = np.where(finite.any(0), np.nansum(last, 0) / np.maximum(finite.sum(0), 1), np.nan)
                row += ["nan" if not np.isfinite(m) else f"{m:.3f}" for m in mean]
            rows.append(row)
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if has_align:
        what = _ALIGNMENT_DOC.get(alignment, (alignment, ""))[0]
        lines += ["", f"{alignment[:3]}:<layer> = {what} (final epoch, mean over seeds)"]
    lines += ["" if not has_align else None,
              transport_footnote()]
    lines = [line for line in lines if line is not None]
    lines += flag_notes(ds)
    return "\n".join(lines)


def flagged_runs(ds: xr.Dataset) -> list[tuple[str, str]]:
    """The finished runs that failed to learn, as (run id, status) pairs, status in :data:`FLAGGED_STATUSES`."""
    status = ds["status"].values
    return [(run_id(str(label), int(rank), int(seed)), str(status[i, j, k]))
            for i, label in enumerate(ds["rule"].values) for j, rank in enumerate(ds["rank"].values)
            for k, seed in enumerate(ds["seed"].values) if str(status[i, j, k]) in FLAGGED_STATUSES]


def flag_notes(ds: xr.Dataset) -> list[str]:
    """Lines explaining the flagged runs of a comparison (empty when every finished run is ``"ok"``)."""
    flagged = flagged_runs(ds)
    if not flagged:
        return []
    lines = ["", "(!) runs that did not learn: " + ", ".join(f"{rid} {st}" for rid, st in flagged)]
    kinds = {st for _, st in flagged}
    if "diverged" in kinds:
        lines.append("    diverged: the training or test loss became NaN/Inf; training stopped there (later epochs NaN)")
    if "at_chance" in kinds:
        attrs = ds["test_accuracy"].attrs
        if "chance_threshold" in attrs:
            lines.append(f"    at_chance: final test accuracy <= {100 * attrs['chance_threshold']:.2f}% (chance level "
                         f"{100 * attrs['chance_accuracy']:.2f}%, the most common test class, + "
                         f"{CHANCE_STANDARD_ERRORS:g} binomial standard errors)")
        else:
            lines.append("    at_chance: final test accuracy at chance level")
    return lines
