"""Checks made before any training: argument types, finite data, writable output folders."""

import numbers
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

_DATA_FIELDS = ("train_x", "train_y", "test_x", "test_y")


def check_int(value, name: str, owner: str, minimum: int = 1) -> int:
    """`value` as an `int` that is at least `minimum` (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{owner}: `{name}` must be an int, got {value!r} ({type(value).__name__})."
        )
    if value < minimum:
        raise ValueError(f"{owner}: `{name}` must be an int >= {minimum}, got {value}.")
    return int(value)


def check_key(key, name: str, owner: str) -> None:
    """A JAX PRNG key: `jax.random.key(seed)` or a raw `jax.random.PRNGKey(seed)`."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and key.shape == ():
        return
    if dtype == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return
    shown = f"{type(key).__name__} {key!r}" if np.ndim(key) == 0 else type(key).__name__
    raise TypeError(
        f"{owner}: `{name}` must be a single JAX PRNG key such as jax.random.key(0), got {shown}."
    )


def check_splits(model, loss, data, owner: str) -> int:
    """`data`'s training and test splits (`train_x, train_y, test_x, test_y`) hold
    batches `loss` can score for `model` (`check_batch`), before any work;
    returns the number of training samples."""
    from ._rules._base import check_batch

    missing = [f for f in _DATA_FIELDS if not hasattr(data, f)]
    if missing:
        raise TypeError(
            f"{owner}: `data` must have the fields {', '.join(_DATA_FIELDS)} (e.g. the result "
            f"of eqslax.data.randman(...)); got a {type(data).__name__} without "
            f"{', '.join(missing)}."
        )
    for split in ("train", "test"):
        x_name, y_name = f"data.{split}_x", f"data.{split}_y"
        xs, ys = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        check_batch(model, loss, xs, ys, owner, (x_name, y_name))
    return int(data.train_x.shape[0])


def prepare_output_dir(path, name: str, owner: str) -> str:
    """Create the folder `path` and prove it writable (a probe file is written and
    removed), so that training never runs only to fail when it saves."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{owner}: `{name}` must be a path, got {type(path).__name__}.")
    path = os.fspath(path)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        where = "it" if blocker == os.path.abspath(path) else f"{blocker!r}"
        raise NotADirectoryError(
            f"{owner}: `{name}` {path!r} cannot be used as an output folder: {where} is a "
            f"file, not a folder."
        )
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".eqslax-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise type(error)(
            f"{owner}: `{name}` {path!r} is not a writable folder: {error.strerror or error}."
        ) from None
    return path


def _file_in_the_way(path: str) -> str | None:
    """The first existing non-folder among `path` and its parents, if any."""
    current = os.path.abspath(path)
    while True:
        if os.path.exists(current):
            return None if os.path.isdir(current) else current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
