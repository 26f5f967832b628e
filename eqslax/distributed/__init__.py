r"""More than one device: data-parallel training over `jax.sharding`, and several
processes with `jax.distributed`.

`eqslax.fit(..., mesh=data_mesh())` (or `devices=`) splits each batch over the devices
and replicates the model, optimiser and rule state; XLA reduces the gradients. The
helpers below are what `fit` uses, for writing a loop of your own:

- [`eqslax.distributed.data_mesh`][]: a 1-D mesh with the axis `"data"`.
- [`eqslax.distributed.shard_batch`][], [`eqslax.distributed.replicate`][]: put a batch
  or a model on it.
- [`eqslax.distributed.initialize`][], [`eqslax.distributed.is_main_process`][]: one
  process per host; process 0 writes checkpoints.
"""

from ._mesh import (
    data_mesh as data_mesh,
    replicate as replicate,
    shard_batch as shard_batch,
)
from ._processes import initialize as initialize, is_main_process as is_main_process
