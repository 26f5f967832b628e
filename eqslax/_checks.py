"""Argument checks at the public boundary: clear messages, raised before any work."""

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


def shape_tuple(shape: int | Sequence[int], name: str, owner: str) -> tuple[int, ...]:
    """Normalise a population shape (``128`` or ``(8, 16)``) to a tuple of positive ints."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(
            f"{owner}: `{name}` must be an int or a tuple of ints, got {shape!r}."
        ) from None
    if len(shape) == 0 or any(s <= 0 for s in shape):
        raise ValueError(f"{owner}: `{name}` must be positive sizes, got {shape!r}.")
    return shape


def check_choice(value: str, name: str, choices: Sequence[str], owner: str) -> str:
    if value not in choices:
        raise ValueError(
            f"{owner}: `{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}."
        )
    return value


def check_float_array(x, name: str, shape: tuple[int, ...], owner: str, leading: str = ""):
    """Raise if ``x`` is not a floating array whose trailing shape is ``shape``.

    ``leading`` names axes expected before ``shape`` (e.g. ``"time"``); one axis each.
    Runs on static shape information only, so it costs nothing under ``jit``.
    """
    lead = leading.split()
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{owner}: `{name}` must be an array, got {type(x).__name__}.")
    expected = tuple(lead) + tuple(shape)
    pretty = "(" + ", ".join(str(e) for e in expected) + ")"
    if x.ndim != len(expected) or tuple(x.shape[len(lead) :]) != tuple(shape):
        hint = ""
        if x.ndim == len(expected) + 1 and tuple(x.shape[-len(shape) :]) == tuple(shape):
            hint = " It has one axis too many: a batch axis? Use jax.vmap over the batch."
        raise ValueError(f"{owner}: `{name}` must have shape {pretty}, got {tuple(x.shape)}.{hint}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{owner}: `{name}` must have a floating dtype, got {x.dtype}. "
            f"Cast it with x.astype(jnp.float32)."
        )
