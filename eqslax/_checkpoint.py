"""Checkpoints: model, training state, step, RNG key and metadata in one checksummed file.

A file is, in order: the signature `_MAGIC`; the SHA-256 digest (32 bytes) of everything
after it; the header length (8 bytes, little-endian); a JSON header (format, the leaves'
paths, dtypes and shapes, the payload length, the metadata); the payload, written by
`eqx.tree_serialise_leaves`. Loading checks the signature, the digest and the lengths
before it reads a leaf, so a truncated, extended or corrupted file is refused by name.
"""

import glob
import hashlib
import io
import json
import os
import tempfile

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

_MAGIC = b"\x89eqslax-checkpoint-v2\r\n\x1a\n"
_DIGEST = 32
_LENGTH = 8
_PREFIX = len(_MAGIC) + _DIGEST + _LENGTH


class CheckpointError(ValueError):
    """A file that is not a valid, complete eqslax checkpoint, or that was written for a
    different model or training state."""


class Checkpoint(eqx.Module):
    """Everything needed to resume training bit for bit: `model`, the training
    `state`, the `step` count, the RNG `key`, and `metadata`, a JSON-serialisable
    dict stored in the checked header (`eqslax.fit` keeps its history, the running
    sums of the current epoch and its position there)."""

    model: PyTree
    state: PyTree
    step: Array
    key: Array
    metadata: dict = eqx.field(static=True, default_factory=dict)


def _describe(tree) -> list[str]:
    leaves = jtu.tree_leaves_with_path(eqx.filter(tree, eqx.is_array))
    return [f"{jtu.keystr(path)}: {leaf.dtype}{list(leaf.shape)}" for path, leaf in leaves]


def _arrays(checkpoint: Checkpoint) -> tuple:
    """The serialised part: `(model, state, step, key)` with the key as raw data."""
    key = checkpoint.key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return (checkpoint.model, checkpoint.state, jnp.asarray(checkpoint.step), key)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, flush it to disk, then rename
    it into place: a reader sees the old file or the new one, never a mixture. Temporary
    files left beside `path` by an earlier, interrupted write are removed afterwards."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    prefix = f".{os.path.basename(path)}.tmp-"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
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
    _fsync_directory(directory)
    for stale in glob.glob(os.path.join(glob.escape(directory), glob.escape(prefix) + "*.part")):
        try:
            os.remove(stale)
        except FileNotFoundError:
            pass


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    """The bytes `save_checkpoint` writes for `checkpoint`."""
    arrays = _arrays(checkpoint)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, arrays)
    payload = buffer.getvalue()
    header = json.dumps(
        {
            "format": "eqslax-checkpoint",
            "version": 2,
            "leaves": _describe(arrays),
            "payload_bytes": len(payload),
            "metadata": checkpoint.metadata,
        },
        allow_nan=True,
    ).encode()
    body = len(header).to_bytes(_LENGTH, "little") + header + payload
    return _MAGIC + hashlib.sha256(body).digest() + body


def save_checkpoint(path: str, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically (one file, renamed into place), with a
    header that describes the structure and a SHA-256 digest of everything after it."""
    atomic_write(path, checkpoint_bytes(checkpoint))


def _invalid(path: str, reason: str) -> CheckpointError:
    return CheckpointError(
        f"load_checkpoint: {path!r} is not a valid or complete eqslax checkpoint: {reason}."
    )


def _read_header(path: str, data: bytes) -> tuple[dict, bytes]:
    """Check signature, digest and lengths; return the header and the payload."""
    if not data:
        raise _invalid(path, "the file is empty")
    if len(data) < len(_MAGIC) and _MAGIC.startswith(data):
        raise _invalid(path, f"it ends after {len(data)} bytes, inside the signature")
    if not data.startswith(_MAGIC):
        if b"eqslax-checkpoint-v1" in data[:256]:
            raise _invalid(path, "it has the format of an earlier eqslax (v1, no checksum)")
        raise _invalid(path, "it does not start with the eqslax checkpoint signature")
    if len(data) < _PREFIX:
        raise _invalid(path, f"it ends after {len(data)} bytes, inside the header")
    digest, body = data[len(_MAGIC) : len(_MAGIC) + _DIGEST], data[len(_MAGIC) + _DIGEST :]
    size = int.from_bytes(body[:_LENGTH], "little")
    header = None
    try:
        header = json.loads(body[_LENGTH : _LENGTH + size])
        expected = _LENGTH + size + int(header["payload_bytes"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        expected = None
    if hashlib.sha256(body).digest() != digest:
        if expected is not None and len(body) < expected:
            raise _invalid(path, f"it is truncated ({len(body) - expected} bytes missing)")
        if expected is not None and len(body) > expected:
            raise _invalid(path, f"{len(body) - expected} unexpected bytes follow its end")
        raise _invalid(path, "its SHA-256 checksum does not match (the file is corrupted)")
    if not isinstance(header, dict) or header.get("version") != 2 or expected != len(body):
        raise _invalid(path, "its header is not an eqslax checkpoint header")
    return header, body[_LENGTH + size :]


def read_checkpoint_metadata(path: str) -> dict:
    """The `metadata` stored in the checkpoint at `path`, after checking the file's
    integrity (no model needed)."""
    return _read_header(path, _read(path))[0]["metadata"]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_checkpoint(path: str, like: Checkpoint) -> Checkpoint:
    """Load into the structure of `like` (a checkpoint of the same model and state).

    Raises `eqslax.CheckpointError` (a `ValueError`) naming the file when it is
    empty, truncated, extended, corrupted (checksum) or not an eqslax checkpoint, and
    naming the first leaf that differs when it was written for another structure.
    """
    header, payload = _read_header(path, _read(path))
    portable_like = _arrays(like)
    expected, found = _describe(portable_like), header["leaves"]
    if expected != found:
        diff = next(
            (f"file has {b!r}, model has {a!r}" for a, b in zip(expected, found) if a != b),
            f"file has {len(found)} leaves, model has {len(expected)}",
        )
        raise CheckpointError(
            f"load_checkpoint: {path!r} was saved for a different model or training "
            f"state structure ({diff})."
        )
    model, state, step, key = eqx.tree_deserialise_leaves(io.BytesIO(payload), portable_like)
    if jnp.issubdtype(like.key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key, impl=jax.random.key_impl(like.key))
    return Checkpoint(model, state, step, key, header["metadata"])
