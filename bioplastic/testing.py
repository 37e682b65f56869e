"""Public test helpers, in the style of ``xarray.testing``: compare the gradients of models and rules, and
compare results.

>>> import torch, torch.nn as nn, torch.nn.functional as F, bioplastic
>>> from bioplastic.testing import assert_gradients_equal
>>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()
>>> x, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
>>> assert_gradients_equal(bioplastic.convert(net, "bp"), net, x, y, F.cross_entropy)
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

__all__ = ["gradients", "assert_gradients_equal", "propagated_error", "assert_results_equal"]


def _call(model: nn.Module, inputs: Any) -> torch.Tensor:
    return model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)


def gradients(model: nn.Module, inputs: Any, targets: Any,
              loss_fn: Callable[[torch.Tensor, Any], torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """Gradients of ``loss_fn(model(inputs), targets)`` w.r.t. every trainable parameter, by name.

    Uses ``torch.autograd.grad``: the model's ``.grad`` fields are left unchanged. Under a converted model
    these are the *rule's* updates (the weight update ``delta^T h``, the feedback parameters' updates); a rule
    that learns from the targets (DRTP) is given ``targets`` (:func:`bioplastic.nn.set_targets`).

    Returns
    -------
    dict
        Parameter name (as in ``named_parameters``) -> gradient tensor (None if the loss does not depend on it).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    out = _call(model, inputs)
    from bioplastic.nn import needs_targets, set_targets

    if needs_targets(model):
        set_targets(model, targets)
    loss = loss_fn(out, targets)
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {n: g for (n, _), g in zip(named, grads)}


def assert_gradients_equal(actual: nn.Module, expected: nn.Module, inputs: Any, targets: Any,
                           loss_fn: Callable[[torch.Tensor, Any], torch.Tensor], *, rtol: float = 1e-7,
                           atol: float = 1e-10, names: list[str] | None = None) -> None:
    """Assert that two models give the same gradient for every parameter ``expected`` has.

    Parameters
    ----------
    actual, expected : torch.nn.Module
        E.g. a converted model and the plain model it came from (parameter names are preserved by
        :func:`bioplastic.convert`; feedback parameters exist only in ``actual`` and are ignored).
    inputs, targets, loss_fn
        One batch and the loss, as in :func:`gradients`.
    rtol, atol : float
        Tolerances of ``torch.testing.assert_close`` (defaults suit float64).
    names : list of str, optional
        Compare only these parameters.

    Raises
    ------
    AssertionError
        Naming the first parameter whose gradient differs (or is missing in ``actual``).
    """
    got = gradients(actual, inputs, targets, loss_fn)
    want = gradients(expected, inputs, targets, loss_fn)
    for name in names if names is not None else list(want):
        if name not in got:
            raise AssertionError(f"parameter {name!r} has no gradient in the actual model")
        g, w = got[name], want[name]
        if (g is None) != (w is None):
            raise AssertionError(f"parameter {name!r}: gradient is {'None' if g is None else 'set'} in actual, "
                                 f"{'None' if w is None else 'set'} in expected")
        if g is not None:
            torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=lambda m, n=name: f"gradient of {n!r}: {m}")


def propagated_error(layer: nn.Module, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The error ``g_in`` that ``layer`` sends below for input ``x`` when its teaching signal is ``delta``.

    Runs ``y = layer(x)`` and backpropagates ``delta`` as ``dL/dy`` (``L = <y, delta>``); for a converted
    output layer ``delta`` is also its output error ``e``.

    Parameters
    ----------
    layer : torch.nn.Module
        A (converted) layer or any module.
    x : torch.Tensor
        Its input.
    delta : torch.Tensor
        Same shape as ``layer(x)``.

    Returns
    -------
    torch.Tensor
        ``dL/dx`` under the layer's rule, shape of ``x``.
    """
    x = x.detach().requires_grad_(True)
    y = layer(x)
    if y.shape != delta.shape:
        raise ValueError(f"delta has shape {tuple(delta.shape)}, the layer output {tuple(y.shape)}")
    (g,) = torch.autograd.grad(y, x, grad_outputs=delta)
    return g


def assert_results_equal(actual: Any, expected: Any, *, ignore: Iterable[str] | None = None,
                         ignore_attrs: Iterable[str] = ()) -> None:
    """Assert that two result Datasets are identical (values, dtypes, coordinates, attributes) except for
    the variables that depend on the machine, not on the computation.

    Parameters
    ----------
    actual, expected : xarray.Dataset or xarray.DataArray
        E.g. the results of a resumed and of an uninterrupted :func:`bioplastic.compare`.
    ignore : iterable of str, optional
        Variables or coordinates left out of the comparison (where present). Default:
        :data:`bioplastic.training.results.WALL_CLOCK_VARIABLES` (``wall_time``, ``train_wall_time``,
        ``train_cpu_time``; seconds).
    ignore_attrs : iterable of str
        Attributes of the Dataset left out (e.g. ``"bioplastic_version"``).

    Raises
    ------
    AssertionError
        :func:`xarray.testing.assert_identical`'s report of what differs.

    Examples
    --------
    >>> import xarray as xr
    >>> from bioplastic.testing import assert_results_equal
    >>> a = xr.Dataset({"test_accuracy": ("epoch", [0.5, 0.9]), "wall_time": ((), 12.0)})
    >>> assert_results_equal(a, a.assign(wall_time=13.5))  # wall_time depends on the machine
    >>> assert_results_equal(a, a.assign(test_accuracy=("epoch", [0.5, 0.8])))
    Traceback (most recent call last):
    ...
    AssertionError: ...
    """
    import xarray as xr

    if ignore is None:
        from bioplastic.training.results import WALL_CLOCK_VARIABLES

        ignore = WALL_CLOCK_VARIABLES
    ignore = list(ignore)

    def prepared(ds: Any) -> Any:
        ds = ds.drop_vars(ignore, errors="ignore")
        if ignore_attrs:
            ds = ds.copy()
            for key in ignore_attrs:
                ds.attrs.pop(key, None)
        return ds

    xr.testing.assert_identical(prepared(actual), prepared(expected))
