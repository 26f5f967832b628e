"""What `eqslax.compare` reads of a data set: in-memory arrays (`train_x`, `train_y`,
`test_x`, `test_y`, e.g. `eqslax.data.Splits` or Randman) or `eqslax.data.Loaders`.

Both give each seed its own order per epoch: for arrays the permutation
`jax.random.permutation(fold_in(k, epoch), n)` of the seed's order key `k`; for loaders
`train.batch(fold_in(k, epoch), i)`, which for an `ArrayLoader` is the same permutation, so
a comparison from arrays and from `ArrayLoader`s of them trains the same models.

Every batch is `(xs, ys, mask)`: `mask` is `None` for arrays and for loaders of sequences
of one length, and the `(batch, time)` real steps of a loader of padded sequences, which
the training steps, the losses and the metrics then honour.
"""

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from .._finite import check_finite
from .._mask import check_mask
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
        self.batch_size, self.masked = None, False
        self._train = self._test_y = None

    def head(self, size: int):
        """The first `size` training samples (checks, compiling, the initial similarity)
        and their mask (None)."""
        return self.arrays.train_x[:size], self.arrays.train_y[:size], None

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
            yield jnp.asarray(train_x[index]), jnp.asarray(train_y[index]), None

    def test_chunks(self, chunk: int, check) -> Iterator:
        """The test split in chunks of `chunk`; `check(xs, ys) -> ys` runs once on the
        whole split (its result, the targets as the loss takes them, is kept)."""
        xs = self.arrays.test_x
        if self._test_y is None:
            self._test_y = check(xs, self.arrays.test_y)
        for start in range(0, xs.shape[0], chunk):
            yield xs[start : start + chunk], self._test_y[start : start + chunk], None


class LoaderSource:
    """`eqslax.data.Loaders`: training batches drawn from `train` (its batch size is the
    comparison's), the test split read batch by batch in stored order; a loader's masks
    (padded sequences) go with its batches."""

    def __init__(self, data: Loaders):
        self.loaders = data
        self.arrays = None
        train = data.train
        self.n_train, self.batch_size = int(train.n_samples), int(train.batch_size)
        self._first = batch_parts(train.batch(None, 0), "compare", "train batch 0")
        self.masked = self._first[2] is not None
        self.steps = int(self._first[0].shape[1])

    def head(self, size: int):
        return tuple(None if a is None else a[:size] for a in self._first)

    def epoch(self, keys, epoch: int, size: int, count: int) -> Iterator:
        """The seeds' batches stacked, prepared on a background thread when the training
        loader prefetches (`prefetch` > 0)."""
        train = self.loaders.train

        def stacked():
            for batch in range(count):
                where = f"epoch {epoch + 1}, batch {batch}"
                parts = [
                    batch_parts(train.batch(jax.random.fold_in(k, epoch), batch), "compare", where)
                    for k in keys
                ]
                masks = [
                    None if m is None else check_mask(m, x.shape[:2], "compare", f"mask ({where})")
                    for x, _, m in parts
                ]
                if any(m is None for m in masks) != all(m is None for m in masks):
                    raise ValueError(
                        f"compare: the training loader gave masks for some seeds' {where} "
                        "and none for others; a loader yields (xs, ys, mask) always or never."
                    )
                mask = None if masks[0] is None else jnp.stack(masks)
                yield jnp.stack([x for x, _, _ in parts]), jnp.stack([y for _, y, _ in parts]), mask

        return prefetch(stacked(), train.prefetch)

    def test_chunks(self, chunk: int, check) -> Iterator:
        """The test loader's batches in stored order, each checked as it arrives."""
        for index, batch in enumerate(self.loaders.test):
            xs, ys, mask = batch_parts(batch, "compare", f"test batch {index}")
            if mask is not None:
                mask = check_mask(mask, xs.shape[:2], "compare", f"mask (test batch {index})")
            yield xs, check(xs, ys), mask


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
