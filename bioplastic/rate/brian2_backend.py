"""The brian2 backend: the same rate network as NeuronGroup / Synapses equations with physical units.

Every population is a ``NeuronGroup`` whose equations carry units (``tau : second``, learning rates
``eta : 1/second``; rates dimensionless); every weight matrix is a ``Synapses`` object. Currents, apical
inputs and feedback-unit inputs are *summed variables*; forward and feedback plasticity are
*clock-driven* synaptic equations (``dw/dt = eta * gate(t) * teach_post * r_pre``). Stimuli, targets and the
plasticity gate are ``TimedArray`` s. Everything is built into an explicit ``brian2.Network`` owned by the
run (no magic network, no ``defaultclock``); the code generation target (``numpy`` or ``cython``) is set for
the run and restored afterwards.

Schedule within a time step (slot ``groups``; the torch backend follows the same order, so both compute
the same numbers): order 0, summed variables that read only state (currents, apical inputs, error
drive, reconstruction / feed-forward drive of the feedback rules); order 10, the feedback-unit inputs
``u = t_src P`` (they read teaching signals computed from order-0 sums); order 15, monitors; order 20,
synaptic plasticity; order 30, rate dynamics; order 35, bias plasticity.

The feedback synapses' equations come from one table entry per feedback-learning mode
(:data:`bioplastic.rate.plasticity.RATE_FORMS`: ``brian2_p``, ``brian2_q`` and the summed and neuron variables they
need), the same entry whose torch increments the torch backend calls; the backend-agreement tests
(``tests/rate/test_backends.py``) pin the two to each other.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch

from bioplastic.rate.activations import brian2_expressions
from bioplastic.rate.plasticity import rate_form
from bioplastic.rate.populations import ERROR_POPULATION
from bioplastic.rate.protocol import Protocol

__all__ = ["run_brian2", "use_codegen_target", "CODEGEN_TARGETS"]

CodegenTarget = Literal["numpy", "cython"]
#: brian2 code generation targets a run may use.
CODEGEN_TARGETS: tuple[str, ...] = ("numpy", "cython")
_METHOD = {"exponential": "exponential_euler", "euler": "euler"}
ORDER_SUM, ORDER_SUM_FEEDBACK, ORDER_MONITOR, ORDER_SYNAPSES, ORDER_NEURONS, ORDER_BIAS = 0, 10, 15, 20, 30, 35


@contextlib.contextmanager
def use_codegen_target(target: str) -> Iterator[type]:
    """Set ``brian2.prefs.codegen.target`` for the duration of a run and restore it afterwards."""
    import brian2

    if target == "numpy":
        from brian2.codegen.runtime.numpy_rt import NumpyCodeObject as code_class
    else:
        from brian2.codegen.runtime.cython_rt import CythonCodeObject as code_class
    old = brian2.prefs.codegen.target
    brian2.prefs.codegen.target = target
    try:
        yield code_class
    finally:
        brian2.prefs.codegen.target = old


def _connect_matrix(syn: Any, shape: tuple[int, int], pre_is_row: bool) -> None:
    """Connect all-to-all so that the synapse order is the row-major order of a weight matrix."""
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    if pre_is_row:
        syn.connect(i=rows, j=cols)
    else:
        syn.connect(i=cols, j=rows)


def run_brian2(net, proto: Protocol, *, codegen_target: str = "numpy") -> dict[str, Any]:
    """Simulate ``proto`` on the :class:`~bioplastic.rate.RateNetwork` ``net`` with brian2 (weights written back
    into ``net`` when learning).

    Returns the same dictionary as :func:`bioplastic.rate.torch_backend.run_torch` (one trial).
    """
    import brian2 as b2

    with use_codegen_target(codegen_target) as code_class:
        return _run(net, proto, b2, code_class)


def _run(net, proto: Protocol, b2: Any, code_class: type) -> dict[str, Any]:
    second = b2.second
    dt = proto.dt * second
    learn = proto.learn
    fb = net.feedback
    form = rate_form(fb.rule, learn=learn)  # the fixed form (no plasticity) when not learning
    learn_p = learn and fb.rule.learns_p
    learn_q = learn and fb.rule.learns_q
    weights = {k: v.detach().cpu().double().numpy() for k, v in net._weights.items()}
    rates = net.synaptic_learning_rates()
    kw = dict(dt=dt, codeobj_class=code_class)
    method = _METHOD[proto.method]
    layers = [p.name for p in net.populations[1:]]
    hidden = layers[:-1]
    groups_fb = net.feedback_groups
    p_sources = {g.source for g in groups_fb}

    namespace = {
        "stimulus": b2.TimedArray(proto.stimuli.numpy(), dt=proto.presentation * second),
        "target": b2.TimedArray(proto.targets.numpy(), dt=proto.presentation * second),
        "plasticity_gate": b2.TimedArray(proto.gate.astype(float), dt=dt),
    }
    objects: list[Any] = []
    groups: dict[str, Any] = {}

    groups[net.input.name] = b2.NeuronGroup(net.input.size, "r = stimulus(t, i) : 1", name="input*", **kw)
    for pop in net.populations[1:]:
        f, fprime = brian2_expressions(pop.activation, "I")
        is_out = pop is net.output
        eqs = [f"dr/dt = (-r + {f}) / tau : 1", "I = I_ff + b : 1", "I_ff : 1", "b : 1",
               "tau : second (constant, shared)", "eta : 1/second (constant, shared)"]
        eqs += ["teach : 1"] if is_out else ["apical : 1", f"teach = {fprime} * apical : 1"]
        if pop.name in p_sources:
            eqs += list(form.brian2_source_variables)
        g = b2.NeuronGroup(pop.size, "\n".join(eqs), method=method, name=f"{pop.name}*", **kw)
        g.tau = pop.tau * second
        g.eta = rates.get(f"b_{pop.name}", 0.0) / second
        g.b = weights[f"b_{pop.name}"]
        g.state_updater.order = ORDER_NEURONS
        if learn and net.learn_biases:
            g.run_regularly("b = b + dt * eta * plasticity_gate(t) * teach", when="groups", order=ORDER_BIAS)
        groups[pop.name] = g
    err_eqs = ["derr/dt = (-err + y - r_out) / tau : 1", "y = target(t, i) : 1", "r_out : 1", "teach = err : 1",
               "tau : second (constant, shared)"]
    if ERROR_POPULATION in p_sources:
        err_eqs += list(form.brian2_source_variables)
    err = b2.NeuronGroup(net.output.size, "\n".join(err_eqs), method=method, name="error*", **kw)
    err.tau = net.tau_error * second
    err.state_updater.order = ORDER_NEURONS
    groups[ERROR_POPULATION] = err
    for gfb in groups_fb:
        eqs = ["dz/dt = (-z + u) / tau : 1", "u : 1", "tau : second (constant, shared)"]
        eqs += [v.format(k=k) for v in form.brian2_unit_variables for k in range(len(gfb.targets))]
        g = b2.NeuronGroup(fb.rank, "\n".join(eqs), method=method, name=f"{gfb.name}*", **kw)
        g.tau = fb.tau * second
        g.state_updater.order = ORDER_NEURONS
        groups[gfb.name] = g
    objects += list(groups.values())

    synapses: dict[str, Any] = {}

    def _make(name: str, pre: Any, post: Any, model: list[str], plastic: bool) -> Any:
        syn = b2.Synapses(pre, post, "\n".join(model), method="euler", name=f"{name}*", **kw)
        for var, updater in syn.summed_updaters.items():
            updater.order = ORDER_SUM_FEEDBACK if var == "u_post" else ORDER_SUM
        if plastic:
            syn.state_updater.order = ORDER_SYNAPSES
        synapses[name] = syn
        objects.append(syn)
        return syn

    # forward projections
    for pre, post in zip(net.populations[:-1], net.populations[1:]):
        name = f"W_{post.name}"
        model = ["I_ff_post = w * r_pre : 1 (summed)", "eta_w : 1/second (constant, shared)",
                 "lambda_w : 1 (constant, shared)"]
        model.insert(0, "dw/dt = eta_w * plasticity_gate(t) * (teach_post * r_pre - lambda_w * w) : 1 "
                        "(clock-driven)" if learn else "w : 1")
        syn = _make(name, groups[pre.name], groups[post.name], model, learn)
        _connect_matrix(syn, weights[name].shape, pre_is_row=False)
        syn.w = weights[name].ravel()
        syn.eta_w = rates[name] / second
        syn.lambda_w = net.weight_decay
    # output <-> error population (one-to-one)
    for name, src, dst, model in [
        ("output_to_error", net.output.name, ERROR_POPULATION, "r_out_post = r_pre : 1 (summed)"),
        ("error_to_output", ERROR_POPULATION, net.output.name, "teach_post = err_pre : 1 (summed)"),
    ]:
        syn = _make(name, groups[src], groups[dst], [model], False)
        syn.connect(j="i")
    # feedback projections
    fb_params = ["eta_fb : 1/second (constant, shared)", "lambda_fb : 1 (constant, shared)"]
    for gfb in groups_fb:
        drive = " + ".join(f"ffdrive_{k}_post" for k in range(len(gfb.targets)))
        p_model = [form.brian2_p.format(drive=drive), *form.brian2_p_summed]
        p_model += ["u_post = p * teach_pre : 1 (summed)"] + fb_params
        syn = _make(gfb.p_name, groups[gfb.source], groups[gfb.name], p_model, learn_p)
        _connect_matrix(syn, weights[gfb.p_name].shape, pre_is_row=True)
        syn.p = weights[gfb.p_name].ravel()
        syn.eta_fb = rates.get(gfb.p_name, 0.0) / second
        syn.lambda_fb = net.feedback_weight_decay
        for k, (qn, tgt) in enumerate(zip(gfb.q_names, gfb.targets)):
            q_model = [form.brian2_q, "apical_post = q * z_pre : 1 (summed)", *fb_params]
            q_model += [v.format(k=k) for v in form.brian2_q_summed]
            syn = _make(qn, groups[gfb.name], groups[tgt], q_model, learn_q)
            _connect_matrix(syn, weights[qn].shape, pre_is_row=True)
            syn.q = weights[qn].ravel()
            syn.eta_fb = rates.get(qn, 0.0) / second
            syn.lambda_fb = net.feedback_weight_decay

    # monitors
    mon_kw = dict(dt=proto.record_every * dt, when="groups", order=ORDER_MONITOR, codeobj_class=code_class)
    rate_var = {**{n: "r" for n in layers}, ERROR_POPULATION: "err", **{g.name: "z" for g in groups_fb}}
    monitors: dict[tuple[str, str], Any] = {}
    if "rate" in proto.record:
        for name in net.recorded_populations:
            monitors[("rate", name)] = b2.StateMonitor(groups[name], rate_var[name], record=True, **mon_kw)
    if "apical" in proto.record:
        for name in hidden:
            monitors[("apical", name)] = b2.StateMonitor(groups[name], "apical", record=True, **mon_kw)
    var_of = {"W": "w", "P": "p", "Q": "q", "b": "b"}
    for key in proto.record_weights:
        owner = groups[key[2:]] if key.startswith("b_") else synapses[key]
        monitors[("weight", key)] = b2.StateMonitor(owner, var_of[key[0]], record=True, **mon_kw)
    objects += list(monitors.values())

    network = b2.Network(*objects)
    network.run(proto.n_steps * dt, namespace=namespace)

    n_rec = len(proto.recorded_steps)
    out: dict[str, Any] = {}
    for var in proto.record:
        cols = []
        for name in net.recorded_populations:
            mon = monitors.get((var, name))
            if mon is None:
                cols.append(np.full((n_rec, net.size_of(name)), np.nan))
            else:
                vals = np.asarray(getattr(mon, rate_var[name] if var == "rate" else "apical")).T
                cols.append(vals[:n_rec])
        out[var] = np.concatenate(cols, axis=1)[:, None, :]
    if proto.record_weights:
        out["weight_change"] = np.concatenate(
            [(np.asarray(getattr(monitors[("weight", k)], var_of[k[0]])).T[:n_rec]
              - weights[k].ravel()[None, :]) for k in proto.record_weights], axis=1)

    # write the learned weights back
    if learn:
        new: dict[str, np.ndarray] = {}
        for pop in net.populations[1:]:
            new[f"W_{pop.name}"] = np.asarray(synapses[f"W_{pop.name}"].w[:]).reshape(weights[f"W_{pop.name}"].shape)
            new[f"b_{pop.name}"] = np.asarray(groups[pop.name].b[:])
        for gfb in groups_fb:
            if learn_p:
                new[gfb.p_name] = np.asarray(synapses[gfb.p_name].p[:]).reshape(weights[gfb.p_name].shape)
            if learn_q:
                for qn in gfb.q_names:
                    new[qn] = np.asarray(synapses[qn].q[:]).reshape(weights[qn].shape)
        for k, v in new.items():
            net._weights[k] = torch.as_tensor(v).to(dtype=net.dtype, device=net.device)
    out["final_output"] = torch.as_tensor(np.asarray(groups[net.output.name].r[:]))[None].to(
        dtype=net.dtype, device=net.device)
    return out
