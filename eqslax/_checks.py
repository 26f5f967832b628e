"""Argument checks at the public boundary: clear messages, raised before any work."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def shape_tuple(shape: int | Sequence[int], name: str, owner: str) -> tuple[int, ...]:
    """Normalise a population shape (`128` or `(8, 16)`) to a tuple of positive ints."""
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
    """Raise if `x` is not a floating array whose trailing shape is `shape`.

    `leading` names axes expected before `shape` (e.g. `"time"`); one axis each.
    Runs on static shape information only, so it costs nothing under `jit`.
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


def _describe(value, bad) -> str:
    """`value` itself when small, else its shape and the first offending entry."""
    arr = np.asarray(value)
    if arr.size <= 4:
        return repr(value)
    index = tuple(int(i) for i in np.argwhere(np.broadcast_to(bad, arr.shape))[0])
    return f"an array of shape {arr.shape} with {arr[index].item()!r} at index {index}"


def check_hyperparameter(
    arr, value, name: str, owner: str, low=None, high=None, strict=False, allow_inf=False
):
    """Raise if a concrete hyperparameter is NaN, infinite or outside `[low, high]`.

    `strict` makes the lower bound exclusive (`> low`); `allow_inf` accepts
    +-inf (never NaN). Traced values (inside `jit`/`vmap`) cannot be
    inspected and pass unchecked. Returns `arr`.
    """
    if isinstance(arr, jax.core.Tracer):
        return arr
    data = np.asarray(arr)
    lower = None if low is None else f"{'>' if strict else '>='} {low}"
    valid = " and ".join(b for b in (lower, None if high is None else f"<= {high}") if b)
    bad = np.isnan(data) if allow_inf else ~np.isfinite(data)
    if np.any(bad):
        what = "not NaN" if allow_inf else "finite"
        valid = what + (f" and {valid}" if valid else "")
        raise ValueError(f"{owner}: `{name}` must be {valid}, got {_describe(value, bad)}.")
    if low is not None:
        bad = data <= low if strict else data < low
        if np.any(bad):
            raise ValueError(f"{owner}: `{name}` must be {lower}, got {_describe(value, bad)}.")
    if high is not None and np.any(data > high):
        raise ValueError(
            f"{owner}: `{name}` must be <= {high}, got {_describe(value, data > high)}."
        )
    return arr
