"""Several processes (one per host, or one per GPU): `jax.distributed` and who writes."""

import jax

from .._preflight import check_int


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    cpu_collectives: str | None = "gloo",
    **options,
) -> None:
    """Join this process to a multi-process JAX run: `jax.distributed.initialize`, after
    choosing the CPU collectives.

    Call it once per process, first thing, before any JAX computation. Afterwards
    `jax.devices()` lists the devices of every process, `jax.local_devices()` this
    process's own, and `eqslax.distributed.data_mesh()` spans them all: `eqslax.fit(...,
    mesh=data_mesh())` then trains one model data-parallel over every host, each process
    feeding its devices their part of each batch.

    **Arguments:**

    - `coordinator_address`: `"host:port"` of process 0, which every process can reach
      (on one machine, `"127.0.0.1:<free port>"`).
    - `num_processes`: how many processes take part.
    - `process_id`: this process's number, `0..num_processes - 1`; process 0 writes
      checkpoints (`is_main_process`).
    - `cpu_collectives`: the `jax_cpu_collectives_implementation` to use for CPU
      devices (`"gloo"`, the default, or `"mpi"`; `None` leaves the setting alone).
      Without it, CPU processes cannot reduce across each other. GPU and TPU runs use
      their own collectives and ignore it.
    - `options`: passed on to `jax.distributed.initialize` (`local_device_ids`,
      `initialization_timeout`, ...). On a managed cluster (Slurm, Open MPI, Kubernetes,
      Cloud TPU) every argument may be left out and JAX detects them.
    """
    if num_processes is not None:
        check_int(num_processes, "num_processes", "initialize")
    if process_id is not None:
        check_int(process_id, "process_id", "initialize", minimum=0)
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(
                f"initialize: `process_id` must be in 0..{num_processes - 1} (num_processes = "
                f"{num_processes}), got {process_id}."
            )
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(coordinator_address, num_processes, process_id, **options)


def is_main_process() -> bool:
    """Whether this is process 0 (`jax.process_index() == 0`), the one that writes
    checkpoints, histories and reports; `True` in a single-process run."""
    return jax.process_index() == 0
