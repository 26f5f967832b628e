r"""Prefetching: batches prepared on a background thread and moved to the device ahead
of use, so that the device does not wait for the host.

One producer thread runs the batch iterator and puts each batch, already on the device,
into a queue of at most `depth` batches; the caller takes them in the order the iterator
made them. Nothing about the batches changes, only when they are made: a run with
prefetching gives bit for bit the model of the same run without it.
"""

import queue
import threading
from collections.abc import Iterable, Iterator

import jax
import numpy as np

from .._preflight import check_int

_POLL_S = 0.05  # how often a blocked producer looks whether the consumer has gone


class _Raised:
    """The producer's exception, handed to the caller to re-raise."""

    def __init__(self, error: BaseException):
        self.error = error


_DONE = object()


def _to_device(batch):
    """NumPy leaves of a batch copied to the default device (JAX arrays stay where they
    are), so that the copy happens on the producer thread."""
    return jax.tree_util.tree_map(
        lambda leaf: jax.device_put(leaf) if isinstance(leaf, np.ndarray) else leaf, batch
    )


def prefetch(batches: Iterable, depth: int = 2) -> Iterator:
    r"""Iterate over `batches` with the next `depth` batches prepared ahead, on a
    background thread.

    The thread runs `batches` to its end (or until the iterator returned here is closed or
    garbage-collected) and puts every batch, its NumPy arrays copied to the default device,
    into a bounded queue; at most `depth` batches wait there, plus the one the thread is
    preparing. The order is the order of `batches`, so a run that prefetches trains the
    same model as one that does not. An exception raised while preparing a batch is raised
    again here, at the batch where it happened, with its traceback; closing the returned
    iterator stops the thread and waits for it. The thread sees JAX's global
    configuration (`jax.config.update`), not a context manager entered by the caller
    (`jax.default_device(...)`, `jax.enable_x64()`): set those globally when a loader
    prefetches, or give it `prefetch=0`.

    ```python
    for xs, ys in eqslax.data.prefetch(loader.batches(key), depth=4):
        ...
    ```

    **Arguments:**

    - `batches`: any iterable of batches (a loader's `batches(key)`, a generator).
    - `depth`: how many batches may wait, $\ge 1$ (default 2); `0` prefetches nothing and
      returns an iterator over `batches` itself.
    """
    check_int(depth, "depth", "prefetch", minimum=0)
    if depth == 0:
        return iter(batches)
    return _prefetched(iter(batches), depth)


def _prefetched(source: Iterator, depth: int) -> Iterator:
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for batch in source:
                if not put(_to_device(batch)):
                    return
        except BaseException as error:  # handed over, raised again by the caller
            put(_Raised(error))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None and stop.is_set():
                close()
        put(_DONE)

    thread = threading.Thread(target=produce, name="eqslax-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
