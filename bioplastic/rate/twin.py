"""The autograd twin of a rate network: the same network and rule, trained by :func:`bioplastic.convert` online.

The twin is what the rate network computes once its dynamics have settled: the same layers (``Linear`` +
transfer function; the output's sigmoid folded into the loss), the same initial weights and feedback weights
(copied), the same rule (:func:`bioplastic.convert` with the network's rule), the loss whose error is the rate
network's error population (``e = y - sigmoid(I)``: binary cross-entropy on the logits, summed over outputs;
``y - I``: squared error / 2 for a linear output), batch size 1, the same digits in the same order
(:func:`bioplastic.rate.train_online`'s permutation of ``seed``), and plain SGD whose per-parameter step is the
rate network's synaptic learning rate times the time plasticity is on per presentation
(``eta_syn * (presentation - plasticity_delay)``; the learning-rate schedule applied per epoch as there).

What is left between the two is the rate dynamics: plasticity during the settling of a continuous-time network
(rates, error and feedback units lag their fixed point by a few time constants, the weights move while the
network computes), no reset between stimuli, and the feedback units' ``z`` in place of ``e P``. Two documented
differences of the rules remain: Oja's rule is trace-normalised in the autograd executor and not in the rate
network (:mod:`bioplastic.rate.plasticity`; the same at ``rank = d``, where an orthonormal square ``P`` does not
move under either form), and a direct network with several hidden populations shares one ``P`` in the rate
network but has one ``P_l`` per layer in the twin (the same for one hidden population).

:func:`compare_with_twin` runs the rate network, its twin and the backprop twin (the same protocol with exact
gradients) on MNIST and returns the learning curves and the gap; ``bioplastic reproduce`` calls it for the claim
``rate_matches_autograd_twin`` (``docs/rate.md``, "The rate network against its autograd twin").
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from bioplastic import rules as _rules
from bioplastic._checks import check_positive_int
from bioplastic._progress import progress_bar
from bioplastic.io import stamp
from bioplastic.rate.network import RateNetwork
from bioplastic.rate.protocol import as_tensor
from bioplastic.rate.training import learning_rate_scale, train_online
from bioplastic.rate.units import to_si

__all__ = ["autograd_twin", "twin_learning_rates", "train_twin_online", "compare_with_twin", "plot_twin", "twin_table",
           "TWIN_MODELS"]

log = logging.getLogger(__name__)

#: The models of :func:`compare_with_twin`: the rate network, its autograd twin, the backprop twin.
TWIN_MODELS = ("rate", "twin", "bp_twin")

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "softplus": nn.Softplus,
                "linear": nn.Identity}


def _layer_names(net: RateNetwork) -> list[str]:
    return [p.name for p in net.populations[1:]]


def autograd_twin(net: RateNetwork, *, rule: _rules.Rule | str | None = None) -> nn.Module:
    """The torch model of ``net`` with its weights, converted with its rule and its feedback weights.

    Parameters
    ----------
    net : RateNetwork
    rule : bioplastic.rules.Rule or str, optional
        Default: the network's rule, with ``oja_covariance="error"`` (the rate network's feedback units see the
        teaching signal). ``"bp"`` gives the backprop twin (a plain torch model, exact gradients).

    Returns
    -------
    torch.nn.Module
        ``nn.Sequential`` of ``Linear`` layers (indices 0, 2, 4, ...) and transfer functions, ending with the output
        ``Linear`` (logits: the output's sigmoid belongs to the loss), in the network's dtype, float weights
        copied from ``net``; for a low-rank rule, each layer that sends an error to a hidden population has its
        ``P`` and ``Q`` copied from the feedback population that serves that population (the first layer's, which
        would send an error to the clamped input, keep their random values and are never used).

    Raises
    ------
    ValueError
        A rule other than ``bp`` and the network's family (``ldfa`` / ``direct_ldfa``).
    """
    w = net.weights
    layers: list[nn.Module] = []
    names = _layer_names(net)
    for pre, post in zip(net.populations[:-1], net.populations[1:]):
        lin = nn.Linear(pre.size, post.size, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(w[f"W_{post.name}"])
            lin.bias.copy_(w[f"b_{post.name}"])
        layers.append(lin)
        if post is not net.output:
            layers.append(_ACTIVATIONS[post.activation]())
    model = nn.Sequential(*layers).to(dtype=net.dtype, device=net.device)
    if rule is None:
        rule = net.feedback.rule
        if rule.feedback_learning == "oja":
            rule = _rules.make(rule, oja_covariance="error")
    rule = _rules.make(rule)
    if rule.name == "bp":
        return model
    if rule.name != net.feedback.rule.name:
        raise ValueError(f"the twin of a {net.feedback.rule.name} rate network takes 'bp' or "
                         f"{net.feedback.rule.name!r}, got {rule.name!r}")
    import bioplastic

    twin = bioplastic.convert(model, rule, seed=net.seed)
    params = dict(twin.named_parameters())
    with torch.no_grad():
        for g in net.feedback_groups:
            for qn, target in zip(g.q_names, g.targets):
                idx = 2 * (names.index(target) + 1)  # the layer whose input is ``target``
                params[f"{idx}.P"].copy_(w[g.p_name])
                params[f"{idx}.Q"].copy_(w[qn])
    return twin


def twin_learning_rates(net: RateNetwork, model: nn.Module, *, presentation: float,
                        plasticity_delay: float) -> dict[str, float]:
    """SGD step of every parameter of ``model`` (from :func:`autograd_twin`) that matches one presentation of
    ``net``: the synaptic rate of :meth:`RateNetwork.synaptic_learning_rates` (1/second) times the plastic time
    ``presentation - plasticity_delay`` (seconds). Parameters with no counterpart (a frozen feedback weight, the
    first layer's unused ``P``/``Q``) get 0.

    Returns
    -------
    dict
        Parameter name -> step size (dimensionless).
    """
    plastic = to_si("presentation", presentation, "second") - to_si("plasticity_delay", plasticity_delay, "second",
                                                                      allow_zero=True)
    if plastic <= 0:
        raise ValueError(f"plasticity_delay ({plasticity_delay}) must be shorter than the presentation "
                         f"({presentation})")
    rates = net.synaptic_learning_rates()
    names = _layer_names(net)
    steps: dict[str, float] = {}
    feedback_of = {}
    for g in net.feedback_groups:
        for qn, target in zip(g.q_names, g.targets):
            feedback_of[2 * (names.index(target) + 1)] = (g.p_name, qn)
    for pname, _ in model.named_parameters():
        idx, kind = pname.split(".")
        idx = int(idx)
        layer = names[idx // 2]
        if kind == "weight":
            key = f"W_{layer}"
        elif kind == "bias":
            key = f"b_{layer}"
        elif idx in feedback_of:
            key = feedback_of[idx][0] if kind == "P" else feedback_of[idx][1]
        else:
            key = None
        steps[pname] = rates.get(key, 0.0) * plastic if key else 0.0
    return steps


def train_twin_online(
    model: nn.Module,
    net: RateNetwork,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    epochs: int = 1,
    eval_every: int = 500,
    presentation: float = 0.05,
    plasticity_delay: float = 0.0,
    seed: int = 0,
    n_train_eval: int = 1000,
    learning_rate_schedule: str | None = None,
    learning_rate_decay: float | None = None,
    step_scale: float = 1.0,
    progress: bool = False,
    **ignored: Any,
) -> xr.Dataset:
    """Train the twin ``model`` online (batch size 1) exactly in the order :func:`bioplastic.rate.train_online`
    presents the digits, and record the same learning curve.

    Parameters
    ----------
    model : torch.nn.Module
        From :func:`autograd_twin` (trained in place).
    net : RateNetwork
        The rate network it twins (gives the step sizes and the loss; not changed).
    x_train, y_train, x_test, y_test
        As in :func:`bioplastic.rate.train_online`.
    epochs, eval_every, seed, n_train_eval, learning_rate_schedule, learning_rate_decay
        As in :func:`bioplastic.rate.train_online` (same permutation, evaluation subset and per-epoch schedule).
    presentation, plasticity_delay : float (seconds)
        The rate network's protocol: each step is ``eta_syn * (presentation - plasticity_delay)``.
    step_scale : float
        Multiplies every step size (1: the rate network's; a learning-rate sweep of the protocol otherwise).
    **ignored
        Other keys of a rate recipe (``dt``, ``batch_size``, ``method``): they have no autograd counterpart.

    Returns
    -------
    xarray.Dataset
        ``test_accuracy``, ``train_accuracy``, ``epoch``, ``learning_rate_scale`` over ``step`` (stimuli seen).

    Raises
    ------
    ValueError
        Bad shapes, an unknown schedule, ``batch_size`` other than 1 in ``ignored``.
    """
    if ignored.get("batch_size", 1) != 1:
        raise ValueError("the twin learns online (batch size 1); the rate recipe has batch_size "
                         f"{ignored['batch_size']}")
    xtr = as_tensor("x_train", x_train).reshape(-1, net.input.size).to(net.dtype)
    ytr = as_tensor("y_train", y_train).long()
    xte = as_tensor("x_test", x_test).reshape(-1, net.input.size).to(net.dtype)
    yte = as_tensor("y_test", y_test).long()
    if ytr.shape != (xtr.shape[0],) or yte.shape != (xte.shape[0],):
        raise ValueError("labels must have one entry per stimulus")
    epochs = check_positive_int("epochs", epochs)
    eval_every = check_positive_int("eval_every", eval_every)
    if learning_rate_schedule is None:
        learning_rate_schedule = "exponential" if learning_rate_decay else "constant"
    learning_rate_scale(0, epochs, learning_rate_schedule, learning_rate_decay)  # validates the options
    schedule = learning_rate_schedule
    n = xtr.shape[0]
    gen = torch.Generator().manual_seed(check_positive_int("seed", seed, minimum=0))
    order = torch.cat([torch.randperm(n, generator=gen) for _ in range(epochs)])
    eval_idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 1))[:min(n_train_eval, n)]
    steps = twin_learning_rates(net, model, presentation=presentation, plasticity_delay=plasticity_delay)
    params = dict(model.named_parameters())
    base = {k: v * step_scale for k, v in steps.items()}
    d = net.output.size
    sigmoid = net.output.activation == "sigmoid"

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return float((model(x).argmax(-1) == y).double().mean())

    record = {"step": [0], "test": [accuracy(xte, yte)], "train": [accuracy(xtr[eval_idx], ytr[eval_idx])],
              "scale": [1.0]}
    model.train()
    for done, i in enumerate(progress_bar(order.tolist(), disable=not progress, desc="twin (online)"), 1):
        epoch = (done - 1) // n
        scale = learning_rate_scale(epoch, epochs, schedule, learning_rate_decay)
        x = xtr[i:i + 1]
        target = torch.nn.functional.one_hot(ytr[i:i + 1], d).to(net.dtype)
        out = model(x)
        if sigmoid:  # error e = y - sigmoid(I): binary cross-entropy on the logits
            loss = nn.functional.binary_cross_entropy_with_logits(out, target, reduction="sum")
        else:  # e = y - I: squared error / 2
            loss = 0.5 * (out - target).square().sum()
        for p in params.values():
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for k, p in params.items():
                if p.grad is not None and base[k]:
                    p.add_(p.grad, alpha=-base[k] * scale)
        if done % eval_every == 0 or done == len(order):
            record["step"].append(done)
            record["test"].append(accuracy(xte, yte))
            record["train"].append(accuracy(xtr[eval_idx], ytr[eval_idx]))
            record["scale"].append(scale)
    step = np.asarray(record["step"])
    return xr.Dataset({"test_accuracy": ("step", np.asarray(record["test"])),
                       "train_accuracy": ("step", np.asarray(record["train"])),
                       "epoch": ("step", step / n),
                       "learning_rate_scale": ("step", np.asarray(record["scale"]))},
                      coords={"step": ("step", step, {"long_name": "stimuli presented"})})


def _mnist(n_train: int | None, n_test: int | None):
    from bioplastic.data import load_dataset

    mnist = load_dataset("mnist")
    x_train = mnist.x_train.reshape(len(mnist.x_train), -1).float() / 255
    x_test = mnist.x_test.reshape(len(mnist.x_test), -1).float() / 255
    y_train, y_test = mnist.y_train, mnist.y_test
    if n_train is not None:  # a fixed random subset: the embedded training digits are sorted by class
        keep = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(0))[:n_train]
        x_train, y_train = x_train[keep], y_train[keep]
    if n_test is not None:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    return x_train, y_train, x_test, y_test


def compare_with_twin(
    spec: str | Mapping[str, Any] = "rate_mnist",
    *,
    seeds: Sequence[int] = (0, 1, 2),
    epochs: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    bp_step_scales: Sequence[float] = (1.0,),
    twin_step_scales: Sequence[float] = (1.0,),
    data: tuple[Any, Any, Any, Any] | None = None,
    with_rate: bool = True,
    progress: bool = False,
) -> xr.Dataset:
    """Train a rate network, its autograd twin and the backprop twin under one protocol; return the curves and
    the gap.

    For each seed ``s``: ``RateNetwork.from_spec(spec, seed=s)`` trained with :func:`bioplastic.rate.train_online`
    on the spec's recipe (``[training]``; ``epochs`` overrides its epochs) and digit order ``s``; then
    :func:`autograd_twin` of the *initial* network (its rule) and the backprop twin, each trained with
    :func:`train_twin_online` on the same digits, order, schedule and step sizes (the backprop twin also at each
    factor of ``bp_step_scales``). Test accuracy after every epoch.

    Parameters
    ----------
    spec : str or mapping
        A rate-network spec (default ``models/rate_mnist.toml``: 784-256-10, ``direct_ldfa`` rank 10 Oja).
    seeds : sequence of int
        Network initialisation (weights and feedback) and digit order.
    epochs : int, optional
        Default: the spec's recipe.
    n_train, n_test : int, optional
        Use a fixed random subset of ``n_train`` training digits (the embedded ones are sorted by class) and the
        first ``n_test`` test digits (default: all 5,000 embedded training and 10,000 test digits).
    twin_step_scales : sequence of float
        Step-size factors of the (same-rule) twin besides 1: how far the rule itself could go with larger steps,
        which the rate network cannot take (its continuous learning loop goes unstable, ``docs/rate.md``).
    bp_step_scales : sequence of float
        Step-size factors of the backprop twin (1 is the rate network's protocol; others show how much of the
        protocol's deficit is its learning rate).
    data : tuple, optional
        ``(x_train, y_train, x_test, y_test)`` instead of the embedded MNIST (inputs as rates).
    with_rate : bool
        False: train only the twins (minutes instead of hours for long runs); the ``rate`` row and ``gap`` are NaN.
    progress : bool

    Returns
    -------
    xarray.Dataset
        ``test_accuracy`` (model, seed, step) with ``model`` = ``"rate"``, ``"twin"``, ``"bp_twin"`` and
        ``"bp_twin_x<f>"`` / ``"twin_x<f>"`` for the other step factors; ``gap`` (seed): twin minus rate final test accuracy in
        percentage points; ``rule_gap`` (seed): backprop twin minus twin (pp); ``wall_time`` (model, seed) in s.
        Attributes: spec, recipe, the rule, the step sizes.

    Raises
    ------
    ValueError
        An unknown spec, bad seeds or sizes.
    """
    from bioplastic.architectures.spec import load_spec

    s = load_spec(dict(spec) if isinstance(spec, Mapping) else spec)
    recipe = dict(s.get("training", {}))
    if epochs is not None:
        recipe["epochs"] = check_positive_int("epochs", epochs)
    seeds = [check_positive_int("seed", k, minimum=0) for k in seeds]
    if not seeds:
        raise ValueError("seeds is empty")
    x_train, y_train, x_test, y_test = data if data is not None else _mnist(n_train, n_test)
    n = len(y_train)
    models = (list(TWIN_MODELS) + [f"twin_x{f:g}" for f in twin_step_scales if f != 1.0]
              + [f"bp_twin_x{f:g}" for f in bp_step_scales if f != 1.0])
    curves: dict[tuple[str, int], xr.Dataset] = {}
    wall: dict[tuple[str, int], float] = {}
    step_sizes: dict[str, float] = {}
    rule_dict: dict[str, Any] = {}
    for seed in seeds:
        net = RateNetwork.from_spec(s, seed=seed)
        start = net.copy()
        rule_dict = net.feedback.rule.to_dict()
        if with_rate:
            t0 = time.process_time()
            curves["rate", seed] = train_online(net, x_train, y_train, x_test, y_test, eval_every=n, seed=seed,
                                                progress=progress, **recipe)
            wall["rate", seed] = time.process_time() - t0
        twin_kw = dict(epochs=recipe.get("epochs", 1), eval_every=n, seed=seed,
                       presentation=recipe.get("presentation", 0.05),
                       plasticity_delay=recipe.get("plasticity_delay", 0.0),
                       learning_rate_schedule=recipe.get("learning_rate_schedule"),
                       learning_rate_decay=recipe.get("learning_rate_decay"), progress=progress,
                       batch_size=recipe.get("batch_size", 1))
        for name in models:
            if name == "rate":
                continue
            t0 = time.process_time()
            model = autograd_twin(start, rule=None if name.startswith("twin") else "bp")
            factor = 1.0 if name in ("twin", "bp_twin") else float(name.rsplit("_x", 1)[1])
            if name == "twin":
                step_sizes = twin_learning_rates(start, model, presentation=twin_kw["presentation"],
                                                 plasticity_delay=twin_kw["plasticity_delay"])
            curves[name, seed] = train_twin_online(model, start, x_train, y_train, x_test, y_test,
                                                   step_scale=factor, **twin_kw)
            wall[name, seed] = time.process_time() - t0
        log.info("seed %d: rate %.4f, twin %.4f, bp twin %.4f", seed,
                 *(float(curves[m, seed].test_accuracy[-1]) if (m, seed) in curves else np.nan for m in TWIN_MODELS))
    step = curves["twin", seeds[0]].step.values
    acc = np.full((len(models), len(seeds), len(step)), np.nan)
    for i, m in enumerate(models):
        for j, seed in enumerate(seeds):
            if (m, seed) in curves and len(curves[m, seed].step) == len(step):
                acc[i, j] = curves[m, seed].test_accuracy.values
    final = acc[:, :, -1]
    ds = xr.Dataset(
        {"test_accuracy": (("model", "seed", "step"), acc),
         "gap": ("seed", 100 * (final[1] - final[0]),
                 {"units": "pp", "long_name": "autograd twin minus rate network, final test accuracy"}),
         "rule_gap": ("seed", 100 * (final[2] - final[1]),
                      {"units": "pp", "long_name": "backprop twin minus twin, final test accuracy"}),
         "wall_time": (("model", "seed"), np.array([[wall.get((m, k), np.nan) for k in seeds] for m in models]),
                       {"units": "s", "long_name": "CPU time of the training (one process)"})},
        coords={"model": models, "seed": seeds, "step": ("step", step, {"long_name": "stimuli presented"}),
                "epoch": ("step", step / n)})
    ds.attrs.update({"spec": s.get("name", "custom"), "n_train": n, "n_test": len(y_test),
                     "criterion": "twin minus rate network final test accuracy, mean over seeds, |gap| <= 1 pp"})
    return stamp(ds, {"spec": s.get("name", "custom"), "recipe": recipe, "rule": rule_dict,
                      "twin_step_sizes": step_sizes, "bp_step_scales": list(map(float, bp_step_scales)),
                      "twin_step_scales": list(map(float, twin_step_scales))})



_LABELS = {"rate": "rate network (continuous time, feedback population)", "twin": "autograd twin (same rule)",
           "bp_twin": "backprop twin (same protocol)"}


def _label(model: str) -> str:
    if model in _LABELS:
        return _LABELS[model]
    kind = "backprop twin" if model.startswith("bp_") else "autograd twin"
    return f"{kind}, steps x{model.rsplit('_x', 1)[1]}"


def twin_table(ds: xr.Dataset) -> list[dict[str, Any]]:
    """Rows for a report: final test accuracy (%) per model (mean, s.d., n over seeds) and the gaps (pp)."""
    rows = []
    final = 100 * ds["test_accuracy"].isel(step=-1)
    for m in ds["model"].values:
        v = final.sel(model=m).values
        v = v[np.isfinite(v)]
        if not v.size:
            continue
        rows.append({"condition": _label(str(m)), "final test accuracy (%)": float(np.mean(v)),
                     "s.d.": float(np.std(v, ddof=1)) if v.size > 1 else float("nan"), "n": int(v.size)})
    for var, text in (("gap", "twin minus rate network (pp)"), ("rule_gap", "backprop twin minus twin (pp)")):
        v = ds[var].values
        v = v[np.isfinite(v)]
        if not v.size:
            continue
        rows.append({"condition": text, "final test accuracy (%)": float(np.mean(v)),
                     "s.d.": float(np.std(v, ddof=1)) if v.size > 1 else float("nan"), "n": int(v.size)})
    return rows


def plot_twin(ds: xr.Dataset, path: Any) -> None:
    """Test accuracy against epochs, every model overlaid (mean over seeds, band: s.d.), saved as a PNG.

    The evaluation before learning (chance level) is left out so that the curves are readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    later = ds.isel(step=slice(1, None))
    epoch = later["epoch"].values
    styles = {"rate": ("C3", "-", 2.5), "twin": ("C0", "--", 1.5), "bp_twin": ("k", ":", 1.5)}
    for i, m in enumerate(later["model"].values):
        acc = 100 * later["test_accuracy"].sel(model=m)
        if not np.isfinite(acc.values).any():
            continue
        mean = acc.mean("seed").values
        sd = acc.std("seed", ddof=1).values if acc.sizes["seed"] > 1 else 0 * mean
        color, ls, lw = styles.get(str(m), (f"C{i + 2}", "-.", 1.5))
        ax.plot(epoch, mean, color=color, ls=ls, lw=lw, marker="o", ms=3, label=_label(str(m)))
        ax.fill_between(epoch, mean - sd, mean + sd, color=color, alpha=0.15, lw=0)
    n = ds.sizes["seed"]
    ax.set_xlabel("epoch (5,000 digits, one at a time)" if ds.attrs.get("n_train") == 5000 else "epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"rate network vs autograd twin ({n} seed{'s' if n != 1 else ''}; band: s.d.)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
