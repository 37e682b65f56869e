"""The saved-model store of a comparison: ``out/models/<run>.pt`` (state_dict + the run's configuration).

:func:`bioplastic.compare` saves every trained model here (:func:`save_model`); :func:`load_model` rebuilds
the converted model from the stored configuration (the same :func:`bioplastic.training.config.conversion_options`
as in training) and loads the trained weights; :func:`list_models` lists what is saved. Files load with
``weights_only=True`` (no code runs when reading one).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from bioplastic import io
from bioplastic.training.results import (LOW_RANK_RULES, NO_RANK, fraction_rank, rank_fraction_of, run_id,
                                         run_label)

__all__ = ["save_model", "load_model", "list_models", "MODELS_FOLDER"]

MODELS_FOLDER = "models"
"""Sub-folder of a comparison's ``out`` holding the saved models."""


def save_model(out: str | os.PathLike, result: Any, config: Any, *, rule: str, feedback_learning: str | None,
               rank: int, seed: int, input_shape: Sequence[int], status: str) -> Path:
    """Write the trained model of one run atomically to ``out/models/<run>.pt``.

    Parameters
    ----------
    out : path-like
        The comparison's output folder.
    result : RunResult
        The run (its ``model``: unwrapped from DistributedDataParallel / torch.compile here).
    config : TrainConfig
        The run's configuration (stored as JSON: ``train_config``).
    rule, feedback_learning, rank, seed : str, str or None, int, int
        The run's place in the grid (:mod:`bioplastic.training.results`).
    input_shape : sequence of int
        One input's shape (direct rules on convolutions need it to rebuild).
    status : str
        The run's status.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    bioplastic.io.WriteError
        The file cannot be written (no partial file is left).
    """
    from bioplastic import __version__
    from bioplastic.training.checkpoint import torch_save

    model = result.model
    model = getattr(model, "module", model)  # DistributedDataParallel
    model = getattr(model, "_orig_mod", model)  # torch.compile
    label = run_label(rule, feedback_learning)
    record = {
        "state_dict": model.state_dict(),  # the trainer returns the model on CPU
        "train_config": json.loads(json.dumps(config.to_dict(), sort_keys=True, default=str)), "rule": rule,
        "feedback_learning": feedback_learning, "rank": rank, "seed": seed, "label": label,
        "status": str(status), "bioplastic_version": __version__,
        "input_shape": [int(n) for n in input_shape],
    }
    path = Path(out) / MODELS_FOLDER / f"{run_id(label, int(rank), int(seed))}.pt"
    io.atomic_write(path, lambda tmp: torch_save(record, tmp))
    return path


_MODEL_FILE = re.compile(
    r"^(?P<label>[A-Za-z0-9_]+?)(?:-r(?P<rank>\d+)|-f(?P<fraction>[0-9.]+))?-s(?P<seed>\d+)\.pt$")


def list_models(out: str | os.PathLike) -> list[tuple[str, int, int]]:
    """The saved models of a comparison, as (rule label, rank, seed) triples (rank -1: no rank; a relative
    rank as its :func:`~bioplastic.training.results.fraction_rank` code)."""
    found = []
    for path in sorted((Path(out) / MODELS_FOLDER).glob("*.pt")):
        m = _MODEL_FILE.match(path.name)
        if m:
            if m["fraction"]:
                try:
                    rank = fraction_rank(float(m["fraction"]))
                except ValueError:
                    continue
            else:
                rank = int(m["rank"]) if m["rank"] else NO_RANK
            found.append((m["label"], rank, int(m["seed"])))
    # numerically: rule label, then no rank, absolute ranks (1, 3, 10), relative ranks by fraction, then seed
    def order(item: tuple[str, int, int]) -> tuple:
        label, rank, seed = item
        fraction = rank_fraction_of(rank)
        kind = 0 if rank == NO_RANK else 1 if fraction is None else 2
        return label, kind, fraction if fraction is not None else rank, seed

    return sorted(found, key=order)


def load_model(out: str | os.PathLike, rule: str, rank: int | None = None, seed: int = 0, *,
               feedback_learning: str | None = None, rank_fraction: float | None = None,
               map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a model trained by :func:`compare` (the converted module, trained weights, eval mode).

    Parameters
    ----------
    out : path-like
        The comparison's output folder (models are in ``out/models/<run>.pt``).
    rule : str
        A rule label of the results (``"bp"``, ``"ldfa_normative"``, ``"ldfa_fixed"``) or a rule name
        (``"ldfa"``) with ``feedback_learning``. ``"ldfa"`` alone means the adaptive ``"ldfa_normative"``
        when that run exists (or the only LDFA label present).
    rank : int, optional
        Feedback rank of low-rank rules; may be omitted when only one rank was trained.
    seed : int
        The run's seed.
    feedback_learning : str, optional
        With a rule name: which LDFA variant.
    rank_fraction : float, optional
        A relative rank (``compare(rank_fractions=...)``) instead of ``rank``.
    map_location : str or torch.device
        Where to put the weights.

    Returns
    -------
    torch.nn.Module
        ``bioplastic.convert(build_model(spec), rules.make(rule, **rule_options))`` with the trained
        ``state_dict`` loaded, in eval mode. ``model.bioplastic_run`` holds the run's metadata
        (train_config, rule, rank, seed, status).

    Raises
    ------
    FileNotFoundError
        No such run in ``out/models`` (the message lists the saved runs).
    ValueError
        Ambiguous ``rule`` / ``rank`` (the message lists the candidates), a corrupt model file or one whose
        weights do not fit the rebuilt model (the message names the file).
    """
    from bioplastic import __version__
    from bioplastic import rules as rules_mod
    from bioplastic.architectures.spec import build_model, load_spec
    from bioplastic.nn import convert
    from bioplastic.training.config import TrainConfig, conversion_options

    if rank_fraction is not None:
        if rank is not None:
            raise ValueError(f"give rank or rank_fraction, not both (got rank={rank}, rank_fraction={rank_fraction})")
        rank = fraction_rank(rank_fraction)
    saved = list_models(out)
    label = run_label(rule, feedback_learning)
    labels = sorted({s[0] for s in saved})
    if label not in labels and feedback_learning is None and rule in LOW_RANK_RULES:
        candidates = [lab for lab in labels if lab.startswith(rule + "_")
                      and lab[len(rule) + 1:] in rules_mod.FEEDBACK_LEARNING]
        if run_label(rule, "normative") in candidates:
            label = run_label(rule, "normative")
        elif len(candidates) == 1:
            label = candidates[0]
        elif candidates:
            raise ValueError(f"rule {rule!r} is ambiguous in {out}: give feedback_learning or one of {candidates}")
    if rank is None:
        rank_options = sorted({s[1] for s in saved if s[0] == label and s[2] == seed})
        if len(rank_options) > 1:
            raise ValueError(f"several ranks {rank_options} saved for {label!r}, seed {seed}: give rank")
        rank = rank_options[0] if rank_options else NO_RANK
    path = Path(out) / MODELS_FOLDER / f"{run_id(label, int(rank), int(seed))}.pt"
    if not path.exists():
        listing = ", ".join(run_id(*s) for s in saved) or "none"
        raise FileNotFoundError(f"no saved model {path}; saved runs: {listing}")
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise ValueError(f"cannot read model file {path}: {exc}") from exc
    cfg = record["train_config"]
    with torch.random.fork_rng(devices=[]):  # building draws random weights: leave the caller's RNG alone
        plain = build_model(cfg["model"])
        rule_obj = rules_mod.make(cfg["rule"], **cfg.get("rule_options", {}))
        try:  # the trainer's conversion: the spec's [rule] exclude / ranks / output layer
            unknown = sorted(set(cfg) - {f.name for f in dataclasses.fields(TrainConfig)})
            if unknown:
                raise ValueError(f"unknown configuration keys {unknown}")
            options = conversion_options(load_spec(cfg["model"]), plain, rule_obj, exclude=cfg.get("exclude"),
                                         ranks=cfg.get("ranks"))
        except (TypeError, ValueError) as exc:  # a configuration this version cannot rebuild: say so
            raise ValueError(f"model file {path}: cannot rebuild its conversion from the stored configuration "
                             f"(saved by bioplastic {record.get('bioplastic_version', '?')}, this is "
                             f"{__version__}): {exc}") from exc
        if "input_shape" in record:  # the direct rules size D / Q of conv layers from an example input
            options["example_input"] = torch.zeros(2, *record["input_shape"])
        module = convert(plain, rule_obj, **options)
    try:
        module.load_state_dict(record["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"model file {path} does not fit the model rebuilt from its configuration (saved by "
                         f"bioplastic {record.get('bioplastic_version', '?')}, this is {__version__}): {exc}") from exc
    module.to(map_location)
    module.eval()
    module.bioplastic_run = {k: v for k, v in record.items() if k != "state_dict"}
    return module
