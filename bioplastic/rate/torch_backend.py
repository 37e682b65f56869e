"""The torch backend: the rate network batched over parallel trials, on CPU or GPU.

Time stepping (the same order as the brian2 backend, so both compute the same numbers): at every step,
from the state at time ``t``, compute the summed inputs (currents ``I``, apical inputs ``a = z Q``, teaching
signals ``t = f'(I) a`` / ``e`` and feedback-unit inputs ``u = t_src P``), then update the weights
(forward Euler, while the plasticity gate is on) and relax every rate towards its drive
(``r += alpha (f(I) - r)`` with ``alpha = dt/tau`` for Euler, ``1 - exp(-dt/tau)`` for exponential
integration). No host synchronisation inside the loop; recordings are written into preallocated tensors.
The feedback plasticity is the rule's entry of :data:`bioplastic.rate.plasticity.RATE_FORMS` (which calls the
rules' maths); the forward weights follow ``dW/dt = eta_l (t^T r_pre - lambda_W W)``, the rules' exact
``-grad_W`` with ``delta = -t``.
"""
from __future__ import annotations

from typing import Any

import torch

from bioplastic._progress import progress_bar
from bioplastic.rate.activations import rate_derivative, rate_function
from bioplastic.rate.plasticity import rate_form
from bioplastic.rate.populations import ERROR_POPULATION
from bioplastic.rate.protocol import Protocol

__all__ = ["run_torch"]


@torch.no_grad()
def run_torch(net, proto: Protocol) -> dict[str, Any]:
    """Simulate ``proto`` on the :class:`~bioplastic.rate.RateNetwork` ``net`` (weights updated in place when
    learning).

    Returns
    -------
    dict
        ``rate`` / ``apical`` (n_recorded, trials, n_neurons) numpy arrays for the recorded variables,
        ``weight_change`` (n_recorded, n_synapses) if weights are recorded, and ``final_output``
        (trials, d) tensor on the network's device.
    """
    dev, dt_ = net.device, net.dtype
    w = net._weights  # updated in place (the network carries its state, like a brian2 Network)
    pops = net.populations
    layers = [p.name for p in pops[1:]]  # hidden..., output
    hidden = layers[:-1]
    n_layers = len(layers)
    groups = net.feedback_groups
    fb = net.feedback
    B = proto.batch_size
    sizes = {name: net.size_of(name) for name in net.recorded_populations}

    W = [w[f"W_{n}"] for n in layers]
    b = [w[f"b_{n}"] for n in layers]
    acts = [p.activation for p in pops[1:]]
    alpha = [proto.alpha(p.tau) for p in pops[1:]]
    alpha_e = proto.alpha(net.tau_error)
    alpha_z = proto.alpha(fb.tau)
    rates = net.synaptic_learning_rates()
    eta_c = [rates[f"W_{n}"] * proto.dt / B for n in layers]
    eta_b = [rates.get(f"b_{n}", 0.0) * proto.dt / B for n in layers]
    eta_fb = {k: v * proto.dt for k, v in rates.items() if not k.startswith(("W_", "b_"))}
    lam = net.feedback_weight_decay
    lam_w = net.weight_decay
    form = rate_form(fb.rule)
    learn_p = fb.rule.learns_p
    learn_q = fb.rule.learns_q

    stim = proto.stimuli.to(device=dev, dtype=dt_).view(proto.n_blocks, B, -1)
    targ = proto.targets.to(device=dev, dtype=dt_).view(proto.n_blocks, B, -1)
    r = [torch.zeros(B, pops[i + 1].size, device=dev, dtype=dt_) for i in range(n_layers)]
    e = torch.zeros(B, net.output.size, device=dev, dtype=dt_)
    z = {g.name: torch.zeros(B, fb.rank, device=dev, dtype=dt_) for g in groups}
    hidden_index = {h: i for i, h in enumerate(hidden)}
    layer_index = {n: i for i, n in enumerate(layers)}

    gate = proto.gate
    rec_steps = proto.recorded_steps
    n_rec = len(rec_steps)
    n_neurons = sum(sizes.values())
    rec = {v: torch.full((n_rec, B, n_neurons), float("nan"), device=dev, dtype=dt_) for v in proto.record}
    rec_w = proto.record_weights
    w0 = {k: w[k].clone() for k in rec_w}
    n_syn = sum(w[k].numel() for k in rec_w)
    rec_dw = torch.zeros(n_rec, n_syn, device=dev, dtype=dt_) if rec_w else None
    # neuron offsets in the recording (hidden..., output, error, feedback...)
    offsets, start = {}, 0
    for name in net.recorded_populations:
        offsets[name] = (start, start + sizes[name])
        start += sizes[name]

    spp = proto.steps_per_presentation
    n_step = 0
    rec_i = 0
    for blk in progress_bar(range(proto.n_blocks), disable=not proto.progress, desc="presentations", leave=False):
        x = stim[blk]
        y = targ[blk]
        for _ in range(spp):
            pre = [x] + r[:-1]
            cur = [torch.addmm(b[i], pre[i], W[i].T) for i in range(n_layers)]
            apical = {}
            for g in groups:
                for qn, tgt in zip(g.q_names, g.targets):
                    apical[tgt] = z[g.name] @ w[qn]
            teach = {ERROR_POPULATION: e}
            for h in hidden:
                i = hidden_index[h]
                teach[h] = rate_derivative(acts[i], cur[i]) * apical[h]
            u = {g.name: teach[g.source] @ w[g.p_name] for g in groups}

            if rec_i < n_rec and rec_steps[rec_i] == n_step:
                if "rate" in rec:
                    dst = rec["rate"][rec_i]
                    for i, name in enumerate(layers):
                        dst[:, slice(*offsets[name])] = r[i]
                    dst[:, slice(*offsets[ERROR_POPULATION])] = e
                    for g in groups:
                        dst[:, slice(*offsets[g.name])] = z[g.name]
                if "apical" in rec:
                    for h in hidden:
                        rec["apical"][rec_i][:, slice(*offsets[h])] = apical[h]
                if rec_dw is not None:
                    rec_dw[rec_i] = torch.cat([(w[k] - w0[k]).reshape(-1) for k in rec_w])
                rec_i += 1

            if gate[n_step]:
                # feedback plasticity first reads the old P, Q (all updates use the state at time t)
                if learn_p or learn_q:
                    dP, dQ = {}, {}
                    for g in groups:
                        zg = z[g.name]
                        t_src = teach[g.source]
                        if learn_q:
                            for qn, tgt in zip(g.q_names, g.targets):
                                dQ[qn] = form.q_increment(zg, r[layer_index[tgt]], w[qn], lam)
                        if learn_p:
                            # the local rule reads the drive back through Q's synapses, Oja the feedback units
                            second = ([(r[layer_index[tgt]], w[qn]) for qn, tgt in zip(g.q_names, g.targets)]
                                      if form.p_reads_drive else zg)
                            dP[g.p_name] = form.p_increment(t_src, second, w[g.p_name], lam)
                    for k, v in {**dP, **dQ}.items():
                        w[k].add_(v, alpha=eta_fb[k])
                for i, name in enumerate(layers):
                    t_post = teach[ERROR_POPULATION] if i == n_layers - 1 else teach[name]
                    if lam_w:
                        W[i].mul_(1.0 - eta_c[i] * B * lam_w)
                    W[i].addmm_(t_post.T, pre[i], alpha=eta_c[i])
                    if eta_b[i]:
                        b[i].add_(t_post.sum(0), alpha=eta_b[i])

            # relax the rates towards their drives (states at t -> t + dt)
            e_drive = y - r[-1]
            for i in range(n_layers):
                r[i] = r[i] + alpha[i] * (rate_function(acts[i], cur[i]) - r[i])
            for g in groups:
                z[g.name] = z[g.name] + alpha_z * (u[g.name] - z[g.name])
            e = e + alpha_e * (e_drive - e)
            n_step += 1

    out: dict[str, Any] = {v: rec[v].cpu().numpy() for v in proto.record}
    if rec_dw is not None:
        out["weight_change"] = rec_dw.cpu().numpy()
    out["final_output"] = r[-1]
    out["final_state"] = {**{name: r[i] for i, name in enumerate(layers)}, ERROR_POPULATION: e, **z}
    return out

