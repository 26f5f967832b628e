"""Variable-length sequences padded to a common (bucket) length, with their mask."""

from collections.abc import Sequence

import numpy as np
from jax.typing import DTypeLike

from .._preflight import check_int


def pad_sequences(
    sequences: Sequence,
    length: int | None = None,
    *,
    buckets: Sequence[int] | None = None,
    value: float = 0.0,
    dtype: DTypeLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Pad sequences `(time_b, *in)` of different lengths $T_b$ to one length $T$.

    Returns `(xs, mask)`: `xs` `(batch, T, *in)` with `value` after each sequence's end,
    and `mask` `(batch, T)` booleans, $m_{b,t} = [t < T_b]$, the `mask` every eqslax loss,
    rule and training step takes so that padded steps count for nothing:

    ```python
    xs, mask = eqslax.data.pad_sequences(samples, buckets=(50, 100, 200))
    model, state, outputs, loss = step(model, state, xs, ys, mask)
    ```

    **Arguments:**

    - `sequences`: arrays `(time_b, *in)` with the same trailing shape, each `time_b >= 1`.
    - `length`: $T$ (default: the longest sequence).
    - `buckets`: instead of `length`, a few allowed lengths; $T$ is the smallest that
      holds the longest sequence, so that a jitted step compiles once per bucket.
    - `value`: what padded steps hold (default 0: no input spikes).
    - `dtype`: of `xs` (default: the sequences' common dtype).
    """
    owner = "pad_sequences"
    arrays = [np.asarray(s) for s in sequences]
    if not arrays:
        raise ValueError(f"{owner}: `sequences` is empty; give at least one (time, *in) array.")
    for index, array in enumerate(arrays):
        if array.ndim == 0 or array.shape[0] == 0:
            raise ValueError(
                f"{owner}: sequence {index} must be an array (time, *in) with time >= 1, got "
                f"shape {array.shape}."
            )
        if array.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(
                f"{owner}: every sequence must have the trailing shape {arrays[0].shape[1:]} of "
                f"sequence 0, got {array.shape[1:]} for sequence {index}."
            )
    longest = max(a.shape[0] for a in arrays)
    steps = _length(longest, length, buckets, owner)
    dtype = np.result_type(*arrays) if dtype is None else dtype
    xs = np.full((len(arrays), steps, *arrays[0].shape[1:]), value, dtype)
    for row, array in enumerate(arrays):
        xs[row, : array.shape[0]] = array
    lengths = np.array([a.shape[0] for a in arrays])
    return xs, np.arange(steps)[None, :] < lengths[:, None]


def _length(longest: int, length, buckets, owner: str) -> int:
    if length is not None and buckets is not None:
        raise ValueError(f"{owner}: give `length` or `buckets`, not both.")
    if buckets is not None:
        sizes = sorted(check_int(b, "buckets", owner) for b in buckets)
        fitting = [b for b in sizes if b >= longest]
        if not fitting:
            raise ValueError(
                f"{owner}: the longest sequence has {longest} steps but the largest of "
                f"`buckets` {tuple(sizes)} is {sizes[-1] if sizes else None}; add a larger "
                f"bucket."
            )
        return fitting[0]
    if length is None:
        return longest
    check_int(length, "length", owner)
    if length < longest:
        raise ValueError(
            f"{owner}: `length` must be at least the longest sequence ({longest} steps), got "
            f"{length}; cut the sequences first, or pass a larger `length`."
        )
    return length
