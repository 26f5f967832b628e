"""What `eqslax.compare` reads of a data set: in-memory arrays (`train_x`, `train_y`,
`test_x`, `test_y`, e.g. `eqslax.data.Splits` or Randman) or `eqslax.data.Loaders`.

Both give each seed its own order per epoch: for arrays the permutation
`jax.random.permutation(fold_in(k, epoch), n)` of the seed's order key `k`; for loaders
`train.batch(fold_in(k, epoch), i)`, which for an `ArrayLoader` is the same permutation, so
a comparison from arrays and from `ArrayLoader`s of them trains the same models.
"""

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from .._finite import check_finite
from ..data import AbstractLoader, Loaders
from ..data._loader import batch_parts
from ..data._prefetch import prefetch


class ArraySource:
    """Arrays, gathered on the host by each seed's permutation."""

    def __init__(self, data):
        missing = [k for k in ("train_x", "train_y", "test_x", "test_y") if not hasattr(data, k)]
        if missing:
            raise TypeError(
                f"compare: `data` must have train_x, train_y, test_x, test_y arrays (e.g. "
                f"eqslax.data.randman(...)) or be eqslax.data.Loaders; {type(data).__name__} "
                f"lacks {', '.join(missing)}."
            )
        for name in ("train_x", "test_x"):
            check_finite(getattr(data, name), f"data.{name}", "compare")
        self.arrays = data
        self.n_train, self.steps = int(data.train_x.shape[0]), int(data.train_x.shape[1])
        self.batch_size = None
        self._train = self._test_y = None

    def head(self, size: int):
        """The first `size` training samples (checks, compiling, the initial similarity)."""
        return self.arrays.train_x[:size], self.arrays.train_y[:size]

    def epoch(self, keys, epoch: int, size: int, count: int) -> Iterator:
        """`count` batches of epoch `epoch`, each `(xs, ys)` with a leading seed axis."""
        if self._train is None:
            self._train = np.asarray(self.arrays.train_x), np.asarray(self.arrays.train_y)
        train_x, train_y = self._train
        orders = [
            np.asarray(jax.random.permutation(jax.random.fold_in(k, epoch), self.n_train))
            for k in keys
        ]
        for batch in range(count):
            index = np.stack([order[batch * size : (batch + 1) * size] for order in orders])
            yield jnp.asarray(train_x[index]), jnp.asarray(train_y[index])

    def test_chunks(self, chunk: int, check) -> Iterator:
        """The test split in chunks of `chunk`; `check(xs, ys) -> ys` runs once on the
        whole split (its result, the targets as the loss takes them, is kept)."""
        xs = self.arrays.test_x
        if self._test_y is None:
            self._test_y = check(xs, self.arrays.test_y)
        for start in range(0, xs.shape[0], chunk):
            yield xs[start : start + chunk], self._test_y[start : start + chunk]


class LoaderSource:
    """`eqslax.data.Loaders`: training batches drawn from `train` (its batch size is the
    comparison's), the test split read batch by batch in stored order."""

    def __init__(self, data: Loaders):
        self.loaders = data
        self.arrays = None
        train = data.train
        self.n_train, self.batch_size = int(train.n_samples), int(train.batch_size)
        first = train.batch(None, 0), data.test.batch(None, 0, drop_last=False)
        for batch, name in zip(first, ("train", "test")):
            if batch_parts(batch, "compare", f"{name} batch 0")[2] is not None:
                raise ValueError(
                    f"compare: the {name} loader yields masks (padded variable-length "
                    "sequences), which eqslax.compare does not take yet; train with "
                    "eqslax.fit, or give sequences of one length."
                )
        self._first = first[0]
        self.steps = int(first[0][0].shape[1])

    def head(self, size: int):
        xs, ys = self._first
        return xs[:size], ys[:size]

    def epoch(self, keys, epoch: int, size: int, count: int) -> Iterator:
        """The seeds' batches stacked, prepared on a background thread when the training
        loader prefetches (`prefetch` > 0)."""
        train = self.loaders.train

        def stacked():
            for batch in range(count):
                pairs = [train.batch(jax.random.fold_in(k, epoch), batch) for k in keys]
                yield jnp.stack([x for x, _ in pairs]), jnp.stack([y for _, y in pairs])

        return prefetch(stacked(), train.prefetch)

    def test_chunks(self, chunk: int, check) -> Iterator:
        """The test loader's batches in stored order, each checked as it arrives."""
        for xs, ys in self.loaders.test:
            yield xs, check(xs, ys)


def test_head(data, size: int):
    """The first `size` test samples of `data` (arrays or `Loaders`), without the checks
    and the first batches `source` reads: for the report's plots after training."""
    if isinstance(data, Loaders):
        xs, ys = batch_parts(data.test.batch(None, 0, drop_last=False), "compare", "test")[:2]
        return xs[:size], ys[:size]
    return data.test_x[:size], data.test_y[:size]


def source(data):
    """The `compare` view of `data` (arrays or `Loaders`); raises naming `data`."""
    if isinstance(data, Loaders):
        return LoaderSource(data)
    if isinstance(data, AbstractLoader):
        raise TypeError(
            "compare: `data` is one loader; give the train and test splits as "
            "eqslax.data.Loaders(train, test)."
        )
    return ArraySource(data)
