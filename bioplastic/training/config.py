"""A training run's configuration and identity: :class:`TrainConfig`, the recipe defaults, the conversion
options and the record that identifies a run when it resumes.

Every option of a run is declared once, as a field of :class:`TrainConfig` whose metadata holds its help
text, its command-line type and, for a *recipe* field, its built-in default. From there come
:data:`RECIPE_DEFAULTS`, the Parameters section of :class:`TrainConfig`'s docstring and the recipe flags of
``bioplastic compare`` (:func:`bioplastic.cli`), so a new option is one field (and the code that uses it).

Resolution happens once per configuration, on construction: the model spec (a name in ``models/``, a TOML
path or a dict) is loaded once, by the ``model`` field's converter, and stored as ``model`` (a dict), the recipe fields left at None take the
spec's ``[training]`` value or :data:`RECIPE_DEFAULTS`, low-rank rules without a rank take the spec's
``[rule]`` rank, and the rule object is built once (:meth:`TrainConfig.make_rule` returns it).
:func:`bioplastic.training.train` reads the resolved values and loads nothing again.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch.nn as nn

from bioplastic._checks import check_choice, check_device, check_positive_int
from bioplastic.training.schedule import SCHEDULES

__all__ = [
    "TrainConfig", "RECIPE_DEFAULTS", "RULE_TABLE_KEYS", "OPTIMIZERS", "AMP_DTYPES", "conversion_options",
    "resolved_config", "check_same_run", "config_options",
]

log = logging.getLogger(__name__)

Optimizer = Literal["adam", "adamw", "sgd"]
OPTIMIZERS = ("adam", "adamw", "sgd")
AMP_DTYPES = ("auto", "bfloat16", "float16")

_NO_DEFAULT = object()


def _option(default: Any = None, help: str = "", *, recipe: Any = _NO_DEFAULT, type: Any = None,
            choices: Sequence[str] | None = None, cli: str | None = "recipe", doc_type: str = "",
            keyword: bool = False, default_factory: Any = None) -> Any:
    """A field of :class:`TrainConfig` with its documentation and command-line form in the metadata.

    ``recipe``: the built-in default of a recipe field (the field itself defaults to None: "from the spec").
    ``type`` / ``choices``: how the command line parses it (``bool``: ``--x / --no-x``). ``cli``: the flag
    group of ``bioplastic compare`` (None: no flag). ``keyword``: a named keyword of
    :func:`bioplastic.compare` (the others reach it through ``train_options``). ``doc_type``: the numpydoc
    type.
    """
    metadata = {"help": help, "type": type, "choices": tuple(choices) if choices else None, "cli": cli,
                "doc_type": doc_type, "keyword": keyword}
    if recipe is not _NO_DEFAULT:
        metadata["recipe_default"] = recipe
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class _ModelSpec:
    """The converter of ``TrainConfig.model`` (a descriptor: dataclasses pass a field's value to its
    ``__set__``): a spec name, TOML path or dict becomes the spec dict when the field is set, in ``__init__``.
    This is the one read of the spec of a run; a dict (what :func:`dataclasses.replace`, ``TrainConfig(**d)``
    and :func:`bioplastic.compare` pass) is copied, not read."""

    default = "mlp_mnist"

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = "_" + name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self if obj is None else getattr(obj, self._attr)

    def __set__(self, obj: Any, value: Any) -> None:
        from bioplastic.architectures.spec import load_spec

        if value is self:  # the field's default
            value = self.default
        object.__setattr__(obj, self._attr, load_spec(str(value) if isinstance(value, Path) else value))

    def __repr__(self) -> str:
        return repr(self.default)


@dataclass(frozen=True)
class TrainConfig:
    # The docstring is assembled below from the fields' metadata (see _docstring).
    model: str | dict = _option(
        _ModelSpec(), "Spec name in ``models/`` (``\"mlp_mnist\"``, ``\"cnn_small\"`` ...), path to a TOML file, "
        "or a spec dict; stored resolved (the spec dict).", cli=None, doc_type="str or dict")
    rule: str = _option("bp", "One of :data:`bioplastic.rules.RULE_NAMES`.", cli=None, doc_type="str")
    rule_options: dict = _option(
        help="Passed to :func:`bioplastic.rules.make` (e.g. ``{\"rank\": 10, \"feedback_learning\": "
        "\"normative\"}``). For low-rank rules without ``rank`` / ``rank_fraction``, the spec's ``[rule]`` table "
        "supplies them (e.g. ``rank_fraction = 0.25`` in ``models/cnn_small.toml``); the resolved options are "
        "stored.", cli=None, doc_type="dict", default_factory=dict)
    epochs: int | None = _option(help="passes over the training set", recipe=10, type=int, keyword=True,
                                 doc_type="int")
    batch_size: int | None = _option(
        help="global batch size (split across ranks under torch.distributed)", recipe=128, type=int,
        keyword=True, doc_type="int")
    lr: float | None = _option(help="learning rate of the forward weights (peak of the schedule)", recipe=1e-3,
                               type=float, keyword=True, doc_type="float")
    optimizer: Optimizer | None = _option(
        help="optimiser of the forward weights (sgd uses momentum, Nesterov off)", recipe="adam",
        choices=OPTIMIZERS, keyword=True, doc_type='{"adam", "adamw", "sgd"}')
    weight_decay: float | None = _option(
        help="weight decay of the forward optimiser (decoupled for adamw, L2 for adam / sgd)", recipe=0.0,
        type=float, keyword=True, doc_type="float")
    momentum: float | None = _option(help="SGD momentum", recipe=0.9, type=float, doc_type="float")
    feedback_lr: float | None = _option(
        help="learning rate of the separate feedback optimiser; unset: rule_options['feedback_lr'], else the "
        "spec's recipe, else the rule's own feedback_lr, else lr", recipe=None, type=float, keyword=True,
        doc_type="float or None")
    feedback_weight_decay: float | None = _option(
        help="weight decay of the feedback optimiser, resolved like feedback_lr (last resort 0; Kolen-Pollack: "
        "weight_decay)", recipe=None, type=float, keyword=True, doc_type="float or None")
    feedback_optimizer: Optimizer | None = _option(
        help="optimiser of the feedback weights; unset: AdamW (the LDFA authors' choice), except for "
        "Kolen-Pollack, whose feedback weights get the forward optimiser, learning rate and weight decay "
        "(so B -> W)", recipe=None, choices=OPTIMIZERS, doc_type='{"adam", "adamw", "sgd"} or None')
    schedule: Literal["constant", "cosine"] | None = _option(
        help="learning-rate shape after the warm-up, applied per step to both optimisers "
        "(bioplastic.training.schedule.lr_factor)", recipe="cosine", choices=SCHEDULES, keyword=True,
        doc_type='{"constant", "cosine"}')
    warmup_epochs: float | None = _option(help="linear warm-up length in epochs (rounded to whole steps)",
                                          recipe=0.0, type=float, keyword=True, doc_type="float")
    label_smoothing: float | None = _option(help="cross-entropy label smoothing in [0, 1) (Szegedy et al. 2016)",
                                            recipe=0.0, type=float, doc_type="float")
    augment: bool | None = _option(
        help="the dataset's augmentation (e.g. random shifts), where it has one, on training batches",
        recipe=True, type=bool, doc_type="bool")
    grad_clip: float | None = _option(help="clip the global norm of the forward-weight gradients to this value",
                                      recipe=None, type=float, doc_type="float or None")
    amp: bool = _option(
        False, "mixed precision with torch.autocast (losses, evaluation metrics and optimiser states stay "
        "float32)", type=bool, keyword=True, doc_type="bool")
    amp_dtype: Literal["auto", "bfloat16", "float16"] = _option(
        "auto", "autocast dtype; auto: bfloat16 on CPU, on CUDA bfloat16 where the GPU supports it, else "
        "float16. float16 uses a GradScaler (dynamic loss scaling); it is refused for LDFA with normative or "
        "oja feedback learning, whose feedback gradients do not scale with the loss", choices=AMP_DTYPES,
        doc_type='{"auto", "bfloat16", "float16"}')
    compile: bool = _option(False, "torch.compile the model (falls back to eager mode, with a warning, if "
                            "compilation fails)", type=bool, keyword=True, doc_type="bool")
    seed: int = _option(0, "Seed of the model initialisation, feedback weights, dropout, data order and "
                        "augmentation.", cli=None, doc_type="int")
    device: str = _option(
        "auto", "torch device: auto (CUDA if available, else CPU), cpu, cuda, cuda:1, mps ...", type=str,
        cli="running", keyword=True, doc_type="str")
    max_train: int | None = _option(
        None, "train on a fixed random subset of this many training examples (the same subset for every seed "
        "and rule, drawn with seed 0); unset: all", type=int, cli="data", keyword=True, doc_type="int or None")
    exclude: list[str] | None = _option(
        None, "Module names kept on backprop (``bioplastic.convert(exclude=...)``). None: the spec's "
        "``[rule].exclude``, else none.", cli=None, doc_type="list of str or None")
    ranks: dict[str, int] | None = _option(
        None, "Per-layer feedback rank ``{\"layer.name\": r}`` for low-rank rules "
        "(``bioplastic.convert(ranks=...)``), applied after the spec's ``[rule].ranks`` and "
        "``[rule].rank_multipliers`` (:func:`conversion_options`).", cli=None,
        doc_type="dict of str to int, or None")
    alignment: bool = _option(True, "measure per-layer alignment with backprop after each epoch "
                              "(bioplastic.nn.alignment on a fixed batch of test samples, model in eval mode)",
                              type=bool, keyword=True, doc_type="bool")
    alignment_batch: int = _option(512, "number of test samples in the alignment batch", type=int,
                                   doc_type="int")
    eval_batch_size: int = _option(4096, "batch size of the evaluation passes (no gradients, so large)",
                                   type=int, doc_type="int")

    def __post_init__(self) -> None:
        from bioplastic import rules

        spec = self.model  # the spec dict (read once, by the field's converter _ModelSpec); no I/O here
        recipe = _spec_table(spec, "training", RECIPE_DEFAULTS)
        for key, default in RECIPE_DEFAULTS.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, recipe.get(key, default))
        options = dict(self.rule_options)
        check_choice("rule", self.rule, rules.RULE_NAMES)
        table = rule_table(spec)
        if "rank" in rules.options(self.rule) and "rank" not in options and "rank_fraction" not in options:
            options.update({key: table[key] for key in ("rank", "rank_fraction") if key in table})
        object.__setattr__(self, "rule_options", options)
        if self.exclude is not None:
            if isinstance(self.exclude, str) or not all(isinstance(n, str) for n in self.exclude):
                raise ValueError(f"exclude must be a list of module names, got {self.exclude!r}")
            object.__setattr__(self, "exclude", list(self.exclude))
        if self.ranks is not None:
            if not isinstance(self.ranks, dict):
                raise ValueError(f"ranks must be a dict {{layer name: rank}}, got {self.ranks!r}")
            object.__setattr__(
                self, "ranks", {str(k): check_positive_int(f"ranks[{k!r}]", v) for k, v in self.ranks.items()}
            )
        # The rule is built here, once: invalid options fail before any training; make_rule() returns it.
        object.__setattr__(self, "_rule", rules.make(self.rule, **self.rule_options))
        for name, f in _FIELDS.items():
            choices = f.metadata.get("choices")
            value = getattr(self, name)
            if choices and (value is not None or name not in RECIPE_DEFAULTS):
                check_choice(name, value, choices)
        for name in ("epochs", "batch_size", "alignment_batch", "eval_batch_size"):
            object.__setattr__(self, name, check_positive_int(name, getattr(self, name)))
        if self.max_train is not None:
            object.__setattr__(self, "max_train", check_positive_int("max_train", self.max_train))
        check_positive_int("seed", self.seed, minimum=0)
        _check_number("lr", self.lr, positive=True)
        for name in ("weight_decay", "momentum", "warmup_epochs", "label_smoothing"):
            _check_number(name, getattr(self, name))
        for name in ("feedback_lr", "grad_clip"):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), positive=True)
        if self.feedback_weight_decay is not None:
            _check_number("feedback_weight_decay", self.feedback_weight_decay)
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) exceeds epochs ({self.epochs})")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got {self.device!r}")
        check_device(self.device, resolve_auto=False)

    @property
    def spec_name(self) -> str:
        """The model spec's ``name``."""
        return str(self.model.get("name", "<dict>"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary of every field (``TrainConfig(**d)`` rebuilds the same config)."""
        return dataclasses.asdict(self)

    def make_rule(self):
        """The :class:`bioplastic.rules.Rule` of this run (``rules.make(rule, **rule_options)``, built once on
        construction)."""
        return self._rule


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

#: Built-in values of the recipe fields, used where neither the config nor the spec's ``[training]``
#: table sets them (from the fields' metadata).
RECIPE_DEFAULTS: dict[str, Any] = {
    name: f.metadata["recipe_default"] for name, f in _FIELDS.items() if "recipe_default" in f.metadata
}


def config_options(group: str | None = None) -> list[dataclasses.Field]:
    """The fields of :class:`TrainConfig` offered as command-line flags (in ``group``: ``"recipe"``,
    ``"data"``, ``"running"``; None: all), in declaration order. Each field's ``metadata`` holds ``help``,
    ``type`` (a parser type; ``bool`` for ``--x / --no-x``), ``choices``, ``keyword`` (a named keyword of
    :func:`bioplastic.compare`) and, for a recipe field, ``recipe_default``."""
    return [f for f in _FIELDS.values() if f.metadata["cli"] is not None
            and (group is None or f.metadata["cli"] == group)]


def _docstring() -> str:
    lines = [
        "Configuration of one training run (JSON-able through :meth:`to_dict`).",
        "",
        "*Recipe fields* (``epochs`` ... ``grad_clip``) left at None take their value from the model spec's",
        "``[training]`` table (e.g. ``models/mlp_mnist.toml``), else from :data:`RECIPE_DEFAULTS`; the",
        "resolved values are stored, so ``TrainConfig(model=\"mlp_mnist\").epochs`` is the spec's recipe.",
        "",
        "Parameters",
        "----------",
    ]
    for name, f in _FIELDS.items():
        text = f.metadata["help"]
        text = text[0].upper() + text[1:]
        if not text.endswith("."):
            text += "."
        if "recipe_default" in f.metadata:
            text += f" Built-in default {f.metadata['recipe_default']!r}."
        lines.append(f"{name} : {f.metadata['doc_type']}")
        lines += textwrap.wrap(text, width=100, initial_indent="    ", subsequent_indent="    ")
    lines += [
        "",
        "Raises",
        "------",
        "ValueError",
        "    On construction: unknown rule / optimiser / schedule / model spec (lists the allowed values),",
        "    invalid rule options, non-positive sizes or rates, unknown keys in the spec's ``[training]`` or",
        "    ``[rule]`` table, an unknown or unavailable device.",
        "",
        "Examples",
        "--------",
        ">>> from bioplastic.training import TrainConfig",
        ">>> cfg = TrainConfig(model=\"mlp_digits\", rule=\"ldfa\", rule_options={\"rank\": 2}, epochs=3)",
        ">>> cfg.epochs, cfg.make_rule().rank, cfg.model[\"name\"]",
        "(3, 2, 'mlp_digits')",
    ]
    return "\n".join(lines)


TrainConfig.__doc__ = _docstring()


#: Keys a spec's ``[rule]`` table may hold (conversion suggestions read by :func:`conversion_options`).
RULE_TABLE_KEYS = ("rank", "rank_fraction", "exclude", "ranks", "rank_multipliers", "output_layer")


def rule_table(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's ``[rule]`` table (empty if none).

    Raises
    ------
    ValueError
        Keys other than :data:`RULE_TABLE_KEYS` (the message lists them).
    """
    return _spec_table(spec, "rule", RULE_TABLE_KEYS)


def _spec_table(spec: Mapping[str, Any], name: str, allowed: Sequence[str]) -> dict[str, Any]:
    """The spec's ``[name]`` table (empty if none); a ValueError lists unknown and allowed keys."""
    table = dict(spec.get(name, {}) or {})
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(f"model spec {spec.get('name')!r}: unknown keys {unknown} in its [{name}] table; "
                         f"allowed: {', '.join(allowed)}")
    return table


def conversion_options(spec: Mapping[str, Any], model: nn.Module, rule: Any, *,
                       exclude: Sequence[str] | None = None,
                       ranks: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`bioplastic.convert` for a run: ``exclude``, ``ranks``, ``output_layer``.

    The one place where a model spec's ``[rule]`` table becomes conversion options: training
    (:func:`bioplastic.training.train`), the saved-model store (:func:`bioplastic.training.load_model`) and
    the FLOP counter (:mod:`bioplastic.training.flops`) call it, so FLOPs are counted on the model that is
    trained.

    Parameters
    ----------
    spec : mapping
        The resolved model spec (:func:`bioplastic.architectures.load_spec`).
    model : torch.nn.Module
        The spec's (plain) model: its module names are matched.
    rule : bioplastic.rules.Rule
        The run's rule.
    exclude : sequence of str, optional
        A run's own exclusions (``TrainConfig.exclude``); None: the spec's ``[rule].exclude`` (for the
        direct rules without the entries that hold the output layer, the source of the output error they
        deliver).
    ranks : mapping of str to int, optional
        A run's own per-layer ranks (``TrainConfig.ranks``), applied last.

    Returns
    -------
    dict
        ``exclude`` (list), and where they apply ``output_layer`` and ``ranks``. ``ranks`` (low-rank rules
        only): the spec's ``[rule].rank_multipliers`` applied to an absolute ``rank`` (``{"qkv": 3}``: each
        weight layer whose module name ends in ``qkv`` gets ``3 * rank``, the fused query-key-value
        projection of a transformer, Hanut & Kadmon 2025), then the spec's ``[rule].ranks``, then ``ranks``
        (later ones win).

    Raises
    ------
    ValueError
        Unknown keys in the spec's ``[rule]`` table; a rank multiplier that is not a positive integer.
    """
    table = rule_table(spec)
    out: dict[str, Any] = {"exclude": list(exclude if exclude is not None else table.get("exclude", []))}
    if "output_layer" in table:
        out["output_layer"] = table["output_layer"]
    if exclude is None and getattr(rule, "direct", False) and out["exclude"]:
        # The spec's exclusions (e.g. "keep the classifier on backprop") are suggestions for the layer-wise
        # rules; a direct rule (dfa, direct_ldfa) needs its output layer converted, as the source of e.
        weight_layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        output_name = out.get("output_layer") or (weight_layers[-1] if weight_layers else "")
        kept = [e for e in out["exclude"] if not (output_name == e or output_name.startswith(e + "."))]
        if kept != out["exclude"]:
            log.info("%s: the spec's exclude %s holds the output layer %r, the source of the output error; "
                     "converting it", rule.name, sorted(set(out["exclude"]) - set(kept)), output_name)
        out["exclude"] = kept
    if not rule.low_rank:
        return out
    layer_ranks: dict[str, int] = {}
    base = getattr(rule, "rank", None)
    multipliers = dict(table.get("rank_multipliers", {}) or {})
    if base is not None and multipliers:
        for name, module in model.named_modules():
            if not isinstance(module, (nn.Linear, nn.Conv2d)):
                continue
            for suffix, factor in multipliers.items():
                if name.endswith(suffix):
                    layer_ranks[name] = int(base) * check_positive_int(f"rank_multipliers[{suffix!r}]", factor)
    layer_ranks.update(table.get("ranks", {}) or {})
    layer_ranks.update(ranks or {})
    if layer_ranks:
        out["ranks"] = layer_ranks
    return out


def _check_number(name: str, value: Any, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value}")


# --------------------------------------------------------------------------------------------------------
# identity


def resolved_config(config: TrainConfig, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """The identity of a run: ``config.to_dict()``, JSON-normalised, with ``model`` the resolved spec.

    This is what :func:`bioplastic.training.train` stores in its checkpoints, compares when resuming and
    returns as ``RunResult.config``: a run named by a spec (``model="cnn_small"`` or a TOML path) is
    identified by the spec's content, so editing ``models/cnn_small.toml`` makes it a different run instead
    of silently resuming from checkpoints of the old spec. ``TrainConfig(**resolved_config(c))`` rebuilds the
    same run. The dict is JSON-normalised (tuples become lists), so it compares equal to a stored copy.
    ``spec`` replaces ``config.model`` where given.
    """
    out = config.to_dict()
    out["model"] = json.loads(json.dumps(config.model if spec is None else spec, sort_keys=True, default=str))
    return out


# Fields that may differ between a checkpoint and the run resuming from it (they do not change the maths).
_RESUMABLE_DIFFERENCES = {"device", "compile", "eval_batch_size"}


def _describe_change(key: str, old: Any, new: Any) -> str:
    """``key: old -> new``; for two dicts (e.g. model specs) only the entries that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        inner = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return ", ".join(_describe_change(f"{key}.{k}", old.get(k), new.get(k)) for k in inner)
    return f"{key}: {old!r} -> {new!r}"


def check_same_run(saved: dict, current: dict, path: Path) -> None:
    """Refuse to resume from the checkpoint at ``path`` if its run identity (:func:`resolved_config`)
    differs from ``current`` in anything but the device, ``compile`` or ``eval_batch_size``.

    Raises
    ------
    ValueError
        Naming the file and every difference (for a spec, only the entries that differ).
    """
    differ = sorted(
        k for k in set(saved) | set(current) if k not in _RESUMABLE_DIFFERENCES and saved.get(k) != current.get(k)
    )
    if differ:
        details = ", ".join(_describe_change(k, saved.get(k), current.get(k)) for k in differ)
        raise ValueError(
            f"checkpoint {path} belongs to a different run ({details}); use another checkpoint_dir or delete it"
        )
