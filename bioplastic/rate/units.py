"""Physical units of rate-network parameters.

Every parameter is stored as a plain float in SI units: time constants, ``dt`` and presentation times in
seconds, learning rates in 1/second. Users may pass either floats (read in those units) or brian2
quantities (``10 * brian2.ms``); a quantity with the wrong dimension raises a ``ValueError`` that names
the parameter and the expected unit. brian2 is imported only when a quantity is actually passed.
"""
from __future__ import annotations

import math
from typing import Any, Literal

Unit = Literal["second", "1/second", "1"]
_UNIT_TEXT = {"second": "second (a time)", "1/second": "1/second (a rate, e.g. Hz)", "1": "dimensionless"}


def _is_quantity(value: Any) -> bool:
    return type(value).__module__.startswith("brian2") and hasattr(value, "dim")


def to_si(name: str, value: Any, unit: Unit, *, positive: bool = True, allow_zero: bool = False) -> float:
    """Return ``value`` as a float in the SI unit ``unit``.

    Parameters
    ----------
    name : str
        Parameter name used in error messages (e.g. ``"tau of population 'hidden1'"``).
    value : float or brian2.Quantity
        A float is read in ``unit``; a brian2 quantity must have the dimension of ``unit``.
    unit : {"second", "1/second", "1"}
        Expected unit.
    positive, allow_zero : bool
        Require ``value > 0`` (or ``>= 0`` with ``allow_zero``); otherwise only finiteness is checked.

    Raises
    ------
    ValueError
        Wrong unit (message names the parameter, the expected unit and the value given), a value that
        is not a real number, NaN/Inf, or a sign violation.
    """
    if _is_quantity(value):
        import brian2

        reference = {"second": brian2.second, "1/second": brian2.Hz, "1": brian2.Quantity(1.0)}[unit]
        if not brian2.have_same_dimensions(value, reference):
            raise ValueError(
                f"{name} must have units of {_UNIT_TEXT[unit]}, got {value!s} "
                f"(dimensions {brian2.get_dimensions(value)!s})"
            )
        if getattr(value, "shape", ()) not in ((), (1,)):
            raise ValueError(f"{name} must be a scalar, got shape {value.shape}")
        number = float(value / reference)
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise ValueError(f"{name} must be a real number in {_UNIT_TEXT[unit]}, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a real number in {_UNIT_TEXT[unit]}, got {value!r}") from exc
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    if positive:
        if allow_zero and number < 0:
            raise ValueError(f"{name} must be >= 0, got {number}")
        if not allow_zero and number <= 0:
            raise ValueError(f"{name} must be > 0, got {number}")
    return number
