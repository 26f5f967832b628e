r"""Data parallelism over `jax.sharding`: a 1-D mesh, batches split along it, and
everything else replicated on it.

A training step vmaps its model over the batch and averages the per-sample gradients.
With the batch axis split over $D$ devices (`NamedSharding(mesh, P("data"))`) and the
parameters, optimiser and rule state replicated (`NamedSharding(mesh, P())`), XLA's
partitioner runs the same jitted step on every device on its $B/D$ samples and inserts
the all-reduce that turns the per-device sums into the batch mean:

$$
\bar g = \frac1B\sum_{d=1}^{D}\sum_{b \in \mathcal B_d} g_b ,
$$

the same number as on one device up to the order of the floating-point additions.
Nothing here reduces by hand; these helpers only say where the arrays live.
"""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.tree_util as jtu
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import PyTree

AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D `jax.sharding.Mesh` with one axis, `"data"`, over `devices` (default:
    `jax.devices()`, every device of every process)."""
    devices = check_devices(jax.devices() if devices is None else devices, "data_mesh")
    return Mesh(np.asarray(devices, dtype=object), (AXIS,))


def check_devices(devices, owner: str, name: str = "devices") -> list:
    """`devices` as a non-empty list of distinct `jax.Device`s."""
    if isinstance(devices, jax.Device) or not isinstance(devices, Sequence | np.ndarray):
        raise TypeError(
            f"{owner}: `{name}` must be a sequence of jax devices such as jax.devices(), got "
            f"{type(devices).__name__}."
        )
    devices = list(np.asarray(devices, dtype=object).reshape(-1))
    wrong = [d for d in devices if not isinstance(d, jax.Device)]
    if not devices or wrong:
        got = "an empty sequence" if not devices else f"a {type(wrong[0]).__name__}"
        raise TypeError(f"{owner}: `{name}` must hold jax devices, got {got}.")
    if len(set(devices)) != len(devices):
        raise ValueError(f"{owner}: `{name}` names a device more than once: {devices}.")
    return devices


def resolve_mesh(mesh, devices, owner: str) -> Mesh | None:
    """The data-parallel mesh of a call with `mesh=` or `devices=` (at most one), or
    `None` for neither; a mesh must have exactly one axis."""
    if mesh is not None and devices is not None:
        raise ValueError(f"{owner}: pass `mesh` or `devices`, not both.")
    if devices is not None:
        return data_mesh(check_devices(devices, owner))
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{owner}: `mesh` must be a jax.sharding.Mesh such as "
            f"eqslax.distributed.data_mesh(), got {type(mesh).__name__}."
        )
    if len(mesh.axis_names) != 1:
        raise ValueError(
            f"{owner}: `mesh` must have one axis (data parallelism), got axes "
            f"{tuple(mesh.axis_names)} of shape {tuple(mesh.devices.shape)}."
        )
    return mesh


def check_divides(count: int, mesh: Mesh, name: str, owner: str, what: str = "samples"):
    """Refuse a `count` of `what` that the mesh's devices cannot share evenly; `name` is
    the argument as the message shows it, back-quotes included."""
    if count % mesh.size:
        fits = [k * mesh.size for k in (count // mesh.size, count // mesh.size + 1) if k]
        raise ValueError(
            f"{owner}: {name} must be a multiple of the number of devices ({mesh.size}) so "
            f"that each device gets the same number of {what}, got {count}. Use e.g. "
            f"{' or '.join(map(str, fits))}, or a mesh of fewer devices."
        )


def _put(x, sharding: NamedSharding):
    if sharding.is_fully_addressable or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)
    # More than one process: each process holds the whole value and gives its devices
    # their parts.
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_batch(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every array leaf of `tree` split along its leading (batch) axis over `mesh`'s
    axis; other leaves unchanged. Each device holds `batch / mesh.size` samples.

    With several processes (`jax.distributed`), every process passes the same global
    batch and only its own devices' parts are copied to them.
    """
    axis = mesh.axis_names[0]
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    leaves = [x for x in jtu.tree_leaves(tree) if eqx.is_array(x)]
    for x in leaves:
        if np.ndim(x) == 0:
            raise ValueError(
                "shard_batch: every array leaf of `tree` needs a leading batch axis, got a scalar."
            )
        check_divides(x.shape[0], mesh, "the leading (batch) axis of `tree`", "shard_batch")
    return jtu.tree_map(lambda x: _put(x, sharding) if eqx.is_array(x) else x, tree)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every array leaf of `tree` copied whole to each device of `mesh` (parameters,
    optimiser and rule state in data-parallel training); other leaves unchanged."""
    sharding = NamedSharding(mesh, PartitionSpec())

    def put(x):
        if not eqx.is_array(x):
            return x
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        return _put(x, sharding)

    return jtu.tree_map(put, tree)


def place_batch(tree: PyTree, mesh: Mesh) -> PyTree:
    """`shard_batch` when the batch divides over the mesh, else `replicate` (a last,
    partial evaluation batch: every device scores it whole)."""
    sizes = {x.shape[0] for x in jtu.tree_leaves(tree) if eqx.is_array(x) and np.ndim(x)}
    if all(size % mesh.size == 0 for size in sizes):
        return shard_batch(tree, mesh)
    return replicate(tree, mesh)


def local(tree: PyTree) -> PyTree:
    """Replicated array leaves as ordinary arrays on one device of this process (the
    copy on its first device), usable without the mesh."""

    def one(x):
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1 and x.is_fully_replicated:
            return x.addressable_data(0)
        return x

    return jtu.tree_map(one, tree)


def to_host(x) -> np.ndarray:
    """`x` as a NumPy array on every process, gathering the parts other processes hold."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
