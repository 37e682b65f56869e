"""The error bus of a converted model: the output error ``e`` and the targets of each forward pass.

The direct rules (DFA, direct LDFA, DRTP) send a signal of the output space to every layer, and Oja's rule on the
label covariance reads the targets; neither is an input of the hidden layers' forward pass. The bus carries
them from the output layer (and :func:`bioplastic.nn.set_targets`) to every layer without changing the model's
forward signature.
"""
from __future__ import annotations

import torch

__all__ = ["ErrorBus"]


class _Slot:
    """Holds the output error ``e`` of one forward pass (filled by the output layer's backward) and the targets
    of that pass (given by :func:`bioplastic.nn.set_targets`)."""

    __slots__ = ("e", "lead", "targets")

    def __init__(self) -> None:
        self.e: torch.Tensor | None = None  # (N_e, d), rows = leading dims of the output flattened
        self.lead: tuple[int, ...] = ()
        self.targets: torch.Tensor | None = None  # (N_e,) class indices or (N_e, d) target vectors


class ErrorBus:
    """Delivers the output error ``e`` of each forward pass to every layer of a model (DFA, direct LDFA).

    Every converted layer picks up ``current`` in its forward pass; the output layer's forward, the last of a
    pass, then opens a fresh slot for the next pass, so several forward passes before one backward each keep
    their own error. The output layer's backward fills the slot before any hidden layer's backward runs
    (autograd's topological order: every hidden layer feeds the output layer). One bus per converted model, no
    global state; it also carries the flags of :func:`bioplastic.nn.alignment` (``force_bp``, ``capture``).

    Attributes
    ----------
    current : _Slot
        The slot the next layers' forward passes attach to.
    last : _Slot or None
        The slot of the latest completed forward pass (:func:`bioplastic.nn.set_targets` writes its targets).
    force_bp : bool
        Diagnostics: every layer sends ``delta W`` below (:func:`bioplastic.nn.true_gradient`).
    capture : dict or None
        Diagnostics: ``id(layer) -> delta`` rows (N, out) of the latest backward.
    """

    def __init__(self) -> None:
        self.current = _Slot()
        self.last: _Slot | None = None
        self.force_bp = False
        self.capture: dict[int, torch.Tensor] | None = None

    def begin_pass(self) -> _Slot:
        """Called by the output layer's forward: closes the current pass and opens a fresh slot; returns the
        slot of the closing pass."""
        slot = self.current
        self.last = slot
        self.current = _Slot()
        return slot

    def __deepcopy__(self, memo):  # a copied model gets its own, empty bus
        return ErrorBus()

    def __getstate__(self):  # pickled models get a fresh bus
        return {"bus": 1}

    def __setstate__(self, state):
        self.__init__()
