"""Running several rules side by side, and reading the ``linear_teacher_student`` model spec."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import xarray as xr

from bioplastic._checks import check_choice
from bioplastic.theory.dynamics import FEEDBACK_LEARNING, THEORY_RULES
from bioplastic.theory.ode import gradient_flow
from bioplastic.theory.simulation import simulate
from bioplastic.theory.teachers import Teacher, paper_teacher, random_teacher

__all__ = ["parse_rule_label", "rule_labels", "compare_rules", "teacher_from_spec", "EXECUTORS"]

log = logging.getLogger(__name__)

EXECUTORS = ("simulate", "gradient_flow")


def rule_labels() -> tuple[str, ...]:
    """Every label the ``rule`` coordinate can take: ``bp``, ``fa``, ..., ``ldfa_fixed``, ..., ``direct_ldfa_oja``."""
    out: list[str] = []
    for rule in THEORY_RULES:
        if rule in ("ldfa", "direct_ldfa"):
            out += [f"{rule}_{m}" for m in FEEDBACK_LEARNING if not (rule == "direct_ldfa" and m == "normative")]
        else:
            out.append(rule)
    return tuple(out)


def parse_rule_label(label: str) -> tuple[str, str | None]:
    """``"ldfa_q_only"`` -> ``("ldfa", "q_only")``; ``"fa"`` -> ``("fa", None)``; a bare ``"ldfa"`` -> its default.

    Raises
    ------
    ValueError
        Unknown label (the message lists the allowed ones).
    """
    if label in THEORY_RULES:
        return label, None
    check_choice("rule label", label, rule_labels())
    for rule in ("direct_ldfa", "ldfa"):
        if label.startswith(rule + "_"):
            return rule, label[len(rule) + 1:]
    raise AssertionError(label)  # pragma: no cover


def compare_rules(labels: Sequence[str], teacher: Teacher, *,
                  executor: Literal["simulate", "gradient_flow"] = "simulate",
                  per_rule: dict[str, dict[str, Any]] | None = None, **kwargs: Any) -> xr.Dataset:
    """Run several rules on one teacher from the same initial weights and concatenate along ``rule``.

    Parameters
    ----------
    labels : sequence of str
        Rule labels (:func:`rule_labels`), e.g. ``["bp", "fa", "ldfa_fixed", "ldfa_normative"]``.
    teacher : Teacher
    executor : {"simulate", "gradient_flow"}
        :func:`bioplastic.theory.simulate` or :func:`bioplastic.theory.gradient_flow`.
    per_rule : dict, optional
        Extra keyword arguments per label (e.g. ``{"ldfa_oja": {"feedback_lr": 0.1}}``).
    **kwargs
        Passed to the executor for every rule.

    Returns
    -------
    xarray.Dataset
        The executors' Datasets concatenated along ``rule`` (per-rule settings as ``rule`` variables).

    Raises
    ------
    ValueError
        Unknown executor or label, duplicate labels, and whatever the executor raises.
    """
    check_choice("executor", executor, EXECUTORS)
    labels = list(labels)
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError(f"labels must be non-empty and distinct, got {labels}")
    per_rule = per_rule or {}
    for key in per_rule:
        check_choice("per_rule label", key, labels)
    run = simulate if executor == "simulate" else gradient_flow
    parts = []
    for label in labels:
        rule, mode = parse_rule_label(label)
        log.info("%s: %s", executor, label)
        parts.append(run(rule, teacher, feedback_learning=mode, **{**kwargs, **per_rule.get(label, {})}))
    out = xr.concat(parts, dim="rule", data_vars="minimal", coords="minimal", compat="override",
                    combine_attrs="override")
    out.attrs.pop("config", None)  # per-rule configs differ; the caller stamps its own
    return out


def teacher_from_spec(spec: dict[str, Any]) -> Teacher:
    """The teacher described by a ``linear_teacher_student`` spec (``load_spec("linear_teacher_student")``).

    ``[teacher] construction = "paper"`` uses :func:`paper_teacher` (keys ``hidden``, ``rank``, ``seed``,
    ``noise_std``); ``"random"`` uses :func:`random_teacher` (keys ``singular_values``, ``seed``,
    ``noise_std``). Sizes come from the spec's ``n_inputs`` and ``n_outputs``.

    Raises
    ------
    ValueError
        Unknown construction or missing keys.
    """
    try:
        t = dict(spec["teacher"])
        m, n = int(spec["n_outputs"]), int(spec["n_inputs"])
    except KeyError as exc:
        raise ValueError(f"linear_teacher_student spec lacks {exc}") from None
    kind = check_choice("teacher construction", t.pop("construction", "paper"), ("paper", "random"))
    if kind == "paper":
        return paper_teacher(m, n, **t)
    if "singular_values" not in t:
        raise ValueError("a 'random' teacher needs singular_values")
    return random_teacher(m, n, t.pop("singular_values"), **t)
