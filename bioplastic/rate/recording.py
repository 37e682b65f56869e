"""The recording format of a rate-network simulation: the backends' arrays as a documented ``xarray.Dataset``."""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from bioplastic.io import stamp
from bioplastic.rate.protocol import Protocol

__all__ = ["recording_dataset"]


def recording_dataset(net, proto: Protocol, result: dict[str, Any], *, backend: str,
                      codegen_target: str = "") -> xr.Dataset:
    """Assemble the backend's arrays into the documented Dataset (see :func:`simulate`)."""
    pops = net.recorded_populations
    sizes = [net.size_of(p) for p in pops]
    population = np.concatenate([np.full(n, p, dtype=object) for p, n in zip(pops, sizes)]).astype(str)
    unit = np.concatenate([np.arange(n) for n in sizes])
    steps = proto.recorded_steps
    coords: dict[str, Any] = {
        "time": ("time", steps * proto.dt, {"units": "s", "long_name": "time since run start"}),
        "neuron": ("neuron", np.arange(len(population))),
        "population": ("neuron", population),
        "unit": ("neuron", unit),
    }
    data_vars: dict[str, Any] = {}
    trial_dims = ("trial",) if proto.batch_size > 1 else ()
    for var in proto.record:
        arr = result[var]  # (time, trial, neuron)
        if not trial_dims:
            arr = arr[:, 0]
        else:
            arr = np.moveaxis(arr, 1, 0)
        data_vars[var] = (trial_dims + ("time", "neuron"), arr,
                          {"units": "1", "long_name": {"rate": "firing rate (dimensionless)",
                                                      "apical": "apical (dendritic) error compartment"}[var]})
    if proto.record_weights:
        proj, rows, cols = [], [], []
        for k in proto.record_weights:
            shape = net.weight_shapes()[k]
            rr, cc = np.meshgrid(np.arange(shape[0]), np.arange(shape[1] if len(shape) > 1 else 1), indexing="ij")
            proj.append(np.full(rr.size, k, dtype=object))
            rows.append(rr.ravel())
            cols.append(cc.ravel())
        coords["synapse"] = ("synapse", np.arange(sum(len(p) for p in proj)))
        coords["projection"] = ("synapse", np.concatenate(proj).astype(str))
        coords["row"] = ("synapse", np.concatenate(rows))
        coords["column"] = ("synapse", np.concatenate(cols))
        data_vars["weight_change"] = (("time", "synapse"), result["weight_change"],
                                      {"units": "1", "long_name": "weight minus its value at the run start"})
    block = steps // proto.steps_per_presentation
    data_vars["stimulus_index"] = ("time", block * proto.batch_size,
                                   {"long_name": "index of the stimulus shown (trial 0)"})
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update({
        "backend": backend, "codegen_target": codegen_target, "method": proto.method, "dt": proto.dt,
        "presentation": proto.presentation, "plasticity_delay": proto.plasticity_delay_steps * proto.dt,
        "learn": int(proto.learn), "batch_size": proto.batch_size, "n_presentations": proto.n_blocks,
        "rate_units": "dimensionless (rate / reference rate)",
        "model": "LDFA rate network (Hanut & Kadmon 2025, arXiv:2502.20580)",
    })
    return stamp(ds, {"network": net.to_dict(), "backend": backend, "method": proto.method, "dt": proto.dt,
                      "presentation": proto.presentation, "learn": proto.learn})

