"""Argument checks shared by the encoders, raised before any work."""

import math


def check_steps(name: str, n_steps) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"{name}: `n_steps` must be a positive int, got {n_steps!r}")
    return n_steps


def check_number(name: str, argument: str, value, *, positive: bool = False) -> float:
    """A finite Python number, non-negative (or strictly positive)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: `{argument}` must be a number, got {type(value).__name__}")
    value = float(value)
    bad = not math.isfinite(value) or value < 0 or (positive and value == 0)
    if bad:
        expected = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{name}: `{argument}` must be {expected}, got {value!r}")
    return value
