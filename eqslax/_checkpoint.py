"""Checkpoints: model, training state, step and RNG key, written atomically."""

import io
import json
import os
import tempfile

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, PyTree

_MAGIC = "eqslax-checkpoint-v1"


class Checkpoint(eqx.Module):
    """Everything needed to resume training bit for bit."""

    model: PyTree
    state: PyTree
    step: Array
    key: Array


def _describe(tree) -> list[str]:
    leaves = jtu.tree_leaves_with_path(eqx.filter(tree, eqx.is_array))
    return [f"{jtu.keystr(path)}: {leaf.dtype}{list(leaf.shape)}" for path, leaf in leaves]


def _portable(checkpoint: Checkpoint) -> Checkpoint:
    key = checkpoint.key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return eqx.tree_at(lambda c: (c.key, c.step), checkpoint, (key, jnp.asarray(checkpoint.step)))


def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(path: str, checkpoint: Checkpoint) -> None:
    """Serialise with `eqx.tree_serialise_leaves` after a header that describes the
    structure, so that loading into a different model fails with a clear message."""
    checkpoint = _portable(checkpoint)
    buffer = io.BytesIO()
    header = json.dumps({"format": _MAGIC, "leaves": _describe(checkpoint)})
    np.save(buffer, np.array(header))
    eqx.tree_serialise_leaves(buffer, checkpoint)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: str, like: Checkpoint) -> Checkpoint:
    """Load into the structure of `like` (a checkpoint of the same model and state).

    Raises `ValueError` naming the first leaf that differs when the file was written
    for another structure.
    """
    portable_like = _portable(like)
    with open(path, "rb") as f:
        header = json.loads(str(np.load(f)))
        if header.get("format") != _MAGIC:
            raise ValueError(f"load_checkpoint: {path!r} is not an eqslax checkpoint.")
        expected, found = _describe(portable_like), header["leaves"]
        if expected != found:
            diff = next(
                (f"file has {b!r}, model has {a!r}" for a, b in zip(expected, found) if a != b),
                f"file has {len(found)} leaves, model has {len(expected)}",
            )
            raise ValueError(
                f"load_checkpoint: {path!r} was saved for a different model or training "
                f"state structure ({diff})."
            )
        loaded = eqx.tree_deserialise_leaves(f, portable_like)
    key = loaded.key
    if jnp.issubdtype(like.key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key, impl=jax.random.key_impl(like.key))
    return eqx.tree_at(lambda c: c.key, loaded, key)
