"""Training: the training engine (``train``, ``TrainConfig``) and ``compare``, which trains learning rules
side by side and returns an xarray Dataset (``bioplastic compare`` on the command line).

Names
-----
compare        train rules x ranks x feedback learning x seeds; results as ``xarray.Dataset``
               (``bioplastic.training.comparison``)
load_results   read ``out/results.nc`` of a comparison
load_model     the trained, converted model of one run of a comparison (``out/models/<run>.pt``,
               ``bioplastic.training.store``)
list_models    the runs whose models were saved
plot_comparison, format_table   the figure and the printed table
TrainConfig    a run's configuration (``bioplastic.training.config``)
RunResult, train   the training loop (``bioplastic.training.trainer``)
flops          FLOPs per training step and to a target accuracy (``bioplastic.training.flops``)
run_task_dimensionality, minimal_sufficient_rank   the task-dimensionality experiment and its r* estimate
    (``bioplastic.training.task_dimensionality``, docs/task_dimensionality.md)
kolen_pollack_gap, step_learning_rates   closed form of the Kolen-Pollack gap under SGD, per step, and the
    per-step learning rates of a run (``bioplastic.training.kolen_pollack``, docs/rules.md)
"""
from __future__ import annotations

import importlib

_LAZY = {
    "compare": "bioplastic.training.comparison",
    "load_model": "bioplastic.training.store",
    "list_models": "bioplastic.training.store",
    "load_results": "bioplastic.training.results",
    "format_table": "bioplastic.training.results",
    "plot_comparison": "bioplastic.training.plots",
    "TrainConfig": "bioplastic.training.config",
    "RunResult": "bioplastic.training.trainer",
    "train": "bioplastic.training.trainer",
    "run_task_dimensionality": "bioplastic.training.task_dimensionality",
    "minimal_sufficient_rank": "bioplastic.training.task_dimensionality",
    "kolen_pollack_gap": "bioplastic.training.kolen_pollack",
    "step_learning_rates": "bioplastic.training.kolen_pollack",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    # Lazy: matplotlib and the training engine load only when used.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bioplastic.training' has no attribute {name!r}")


def __dir__():
    return __all__
