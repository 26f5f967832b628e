r"""Loaders: a data split as batches `(xs, ys)`, drawn in an order fixed by a key.

A loader is random-access: `batch(key, i)` is the $i$-th batch of the epoch whose order
`key` draws, so a run can stop anywhere and resume at the same batch (the position in the
epoch is all a checkpoint needs). Writing a loader for a new data set takes three things:
`n_samples`, `batch_size`, and `batch`; `eqslax.fit`, `eqslax.evaluate` and the
NeuroBench harness then take it in place of arrays.

A batch is `(xs, ys)`, or `(xs, ys, mask)` for padded variable-length sequences, `mask`
`(batch, time)` booleans marking the real steps (see `pad_sequences`); `fit` and
`evaluate` pass the mask on to the training step, the loss and the metrics.

A loader whose `prefetch` is above 0 prepares its batches on a background thread, that
many ahead of use, and moves them to the device there (`prefetch`): `ArrayLoader` does
so when its arrays stay on the host, `SHDLoader` always. The batches, and so the
trained model, are the same either way.
"""

import abc
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._mask import check_mask
from .._preflight import check_int
from ._prefetch import prefetch as prefetch_batches

PRESTAGE_LIMIT = 2**30
"""`ArrayLoader`'s default bound on the data it puts on the device: 1 GiB."""


class AbstractLoader(abc.ABC):
    r"""Batches of one split. Subclasses give `n_samples`, `batch_size` and `batch`.

    With `key=None` the order is the stored order (evaluation); otherwise it is a
    permutation drawn from `key` (a fresh `key` per epoch reshuffles). A subclass may set
    `prefetch` to a queue depth $\ge 1$ to have `batches` prepared ahead on a background
    thread (`eqslax.data.prefetch`); `batch` is then called from that thread, one batch at
    a time and in order.
    """

    n_samples: int
    batch_size: int
    prefetch: int = 0

    @abc.abstractmethod
    def batch(self, key: PRNGKeyArray | None, index: int, *, drop_last: bool = True):
        """The `index`-th batch `(xs, ys)` (or `(xs, ys, mask)`) of the epoch ordered by
        `key`."""

    def __len__(self) -> int:
        """Full batches per epoch (a last partial batch is not trained on)."""
        return self.n_samples // self.batch_size

    def n_batches(self, drop_last: bool = True) -> int:
        """Batches per epoch; with `drop_last=False` a last partial batch counts."""
        if drop_last:
            return len(self)
        return -(-self.n_samples // self.batch_size)

    def __iter__(self) -> Iterator:
        """Every batch in the stored order, the last partial one included (evaluation;
        the NeuroBench harness takes a loader this way)."""
        return self.batches(None, drop_last=False)

    def batches(
        self, key: PRNGKeyArray | None = None, start: int = 0, *, drop_last: bool = True
    ) -> Iterator:
        """Batches `start, start + 1, ...` of the epoch ordered by `key`, prepared
        `prefetch` batches ahead on a background thread when `prefetch` > 0 (close the
        iterator, or run it to its end, to stop the thread)."""
        indices = range(start, self.n_batches(drop_last))
        each = (self.batch(key, index, drop_last=drop_last) for index in indices)
        return prefetch_batches(each, self.prefetch)


class ArrayLoader(AbstractLoader):
    """Batches sliced from arrays `xs` (samples, time, *in) and `ys` (samples, ...).

    The order of an epoch is `jax.random.permutation(key, n_samples)`, the order `fit`
    uses for arrays, so training from an `ArrayLoader` and from the same arrays gives the
    same model. With a `mask` (samples, time) of padded sequences (`pad_sequences`) the
    batches are `(xs, ys, mask)`.

    **Arguments:** `xs`, `ys`, `batch_size`, `mask`, and where the data live:

    - `prestage`: `True` puts the arrays on the default device once and gathers every
      batch there; `False` keeps them on the host and copies one batch at a time (for data
      sets that do not fit on the device). The default, `None`, prestages when the arrays
      take at most `prestage_limit` bytes (default `PRESTAGE_LIMIT`, 1 GiB), or when
      `xs` is a JAX array already on a device.
    - `prefetch`: for arrays on the host, how many batches a background thread gathers
      and copies to the device ahead of use (default 2; 0 gathers each batch when it is
      asked for). Prestaged arrays need no prefetching.
    """

    def __init__(
        self,
        xs,
        ys,
        batch_size: int,
        *,
        mask=None,
        prestage: bool | None = None,
        prestage_limit: int = PRESTAGE_LIMIT,
        prefetch: int = 2,
    ):
        if not (hasattr(xs, "shape") and hasattr(ys, "shape")) or np.ndim(xs) == 0:
            raise TypeError(
                f"ArrayLoader: `xs` and `ys` must be arrays with a leading sample axis, got "
                f"{type(xs).__name__} and {type(ys).__name__}."
            )
        if xs.shape[0] != ys.shape[0]:
            raise ValueError(
                f"ArrayLoader: `xs` has {xs.shape[0]} samples but `ys` has {ys.shape[0]}."
            )
        check_int(batch_size, "batch_size", "ArrayLoader")
        if mask is not None:
            check_mask(mask, xs.shape[:2], "ArrayLoader")
        if prestage is not None and not isinstance(prestage, bool):
            raise TypeError(
                f"ArrayLoader: `prestage` must be True, False or None, got {prestage!r}."
            )
        check_int(prestage_limit, "prestage_limit", "ArrayLoader", minimum=0)
        check_int(prefetch, "prefetch", "ArrayLoader", minimum=0)
        if prestage is None and isinstance(xs, jax.Array):
            prestage = True  # already on a device: copying it back would only cost
        if prestage is None:
            size = sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in (xs, ys))
            size += 0 if mask is None else int(np.prod(mask.shape))
            prestage = size <= prestage_limit
        self.prestaged, self.prefetch = prestage, 0 if prestage else prefetch
        convert = jnp.asarray if prestage else np.asarray
        self.xs, self.ys = convert(xs), convert(ys)
        self.mask = None if mask is None else convert(mask)
        self.n_samples, self.batch_size = int(xs.shape[0]), batch_size
        self._order = (None, None)

    def order(self, key: PRNGKeyArray | None) -> Array | np.ndarray | None:
        """The epoch's sample order (cached for the last key)."""
        if key is None:
            return None
        cached_key, order = self._order
        if cached_key is not key and (
            cached_key is None or not bool(jnp.array_equal(_data(cached_key), _data(key)))
        ):
            order = jax.random.permutation(key, self.n_samples)
            if not self.prestaged:  # gathered on the host: one copy of the order per epoch
                order = np.asarray(order)
            self._order = (key, order)
        return order

    def batch(self, key, index, *, drop_last=True):
        if not 0 <= index < self.n_batches(drop_last):
            raise IndexError(
                f"ArrayLoader: batch {index} does not exist; an epoch has "
                f"{self.n_batches(drop_last)} batches of {self.batch_size}."
            )
        start, stop = index * self.batch_size, (index + 1) * self.batch_size
        order = self.order(key)
        if order is None:
            picked = slice(start, stop)
        else:
            picked = order[start:stop]
        arrays = (self.xs, self.ys) if self.mask is None else (self.xs, self.ys, self.mask)
        return tuple(jnp.asarray(a[picked]) for a in arrays)


def batch_parts(batch, owner: str, where: str):
    """`(xs, ys, mask)` of a loader's batch `(xs, ys)` (mask None) or `(xs, ys, mask)`."""
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        return (*batch, None) if len(batch) == 2 else tuple(batch)
    got = f"a {type(batch).__name__} of {len(batch)}" if hasattr(batch, "__len__") else repr(batch)
    raise TypeError(
        f"{owner}: a loader's batch ({where}) must be a tuple (xs, ys) or (xs, ys, mask), got "
        f"{got}."
    )


def _data(key):
    """Raw key data of a new-style key or a legacy `uint32` key."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


class Loaders:
    """A data set given as loaders: `train` (shuffled each epoch, last partial batch
    dropped) and `test` (stored order, every sample), what `eqslax.fit` takes in place of
    a split of arrays."""

    def __init__(self, train: AbstractLoader, test: AbstractLoader):
        for name, loader in (("train", train), ("test", test)):
            if not isinstance(loader, AbstractLoader):
                raise TypeError(
                    f"Loaders: `{name}` must be an eqslax.data loader (e.g. ArrayLoader), got "
                    f"{type(loader).__name__}."
                )
        self.train, self.test = train, test
