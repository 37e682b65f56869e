"""The torch executor of the learning rules.

``bioplastic.convert(model, rule)`` returns a copy of any ``torch.nn.Module`` whose Linear and Conv2d layers
run the rule's backward (one ``torch.autograd.Function`` per weight-layer type), with feedback parameters
``B`` / ``D`` / ``P``, ``Q`` that get their rule's update as ``.grad`` during ``loss.backward()``.

Functions
---------
convert            swap a model's weight layers (deep copy; the input is untouched)
conversion_report  which layers were converted, which stay on backprop and why
split_parameters   (forward_params, feedback_params)
param_groups       optimiser parameter groups with the rule's feedback learning rate / weight decay
feedback_step      call after each optimiser step (normative SVD re-initialisation)
set_targets        the targets of the latest forward pass (Oja's rule on the label covariance)
alignment          per-layer diagnostics: update cosine to backprop, feedback angle, subspace angle
true_gradient      context manager: backward passes inside give the true derivative, not the rule's
"""
from __future__ import annotations

from bioplastic.nn.convert import (
    ConversionReport, LayerReport, conversion_report, convert, feedback_layers, feedback_step, param_groups,
    needs_targets, set_targets, split_parameters,
)
from bioplastic.nn.diagnostics import alignment, true_gradient
from bioplastic.nn.error_bus import ErrorBus
from bioplastic.nn.layers import FeedbackConv2d, FeedbackLayer, FeedbackLinear, truncated_svd

__all__ = [
    "convert", "conversion_report", "set_targets", "needs_targets", "split_parameters", "param_groups", "feedback_step",
    "feedback_layers", "alignment", "true_gradient", "ConversionReport", "LayerReport", "FeedbackLinear",
    "FeedbackConv2d", "FeedbackLayer",
    "ErrorBus", "truncated_svd",
]
