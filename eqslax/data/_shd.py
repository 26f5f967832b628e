"""The Spiking Heidelberg Digits (Cramer et al. 2020) from a local HDF5 file, as dense rasters.

Layout of `shd_train.h5` / `shd_test.h5` (after `gunzip`): `spikes/times` and
`spikes/units` hold one variable-length array per sample (event times in seconds, and
the channel 0..699 of each event); `labels` holds the class 0..19 of each sample. Nothing
is downloaded: get the files from the Zenke lab's SHD page and pass their path.
"""

import math
import os
from collections.abc import Iterator, Sequence

import beartype
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike
from jaxtyping import Int, PRNGKeyArray, Real, jaxtyped

from .._preflight import check_int
from ._loader import AbstractLoader

SHD_UNITS = 700
_BIN_MODES = ("fixed", "per_sample")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "eqslax.data.load_shd reads HDF5 files with h5py: pip install h5py"
        ) from None
    return h5py


def _check_options(path, n_steps, max_time, bin_mode):
    if not isinstance(n_steps, int) or n_steps <= 0:
        raise ValueError(f"load_shd: `n_steps` must be a positive int, got {n_steps!r}.")
    if not max_time > 0:
        raise ValueError(f"load_shd: `max_time` must be positive (seconds), got {max_time!r}.")
    if bin_mode not in _BIN_MODES:
        raise ValueError(
            f"load_shd: `bin_mode` must be one of {', '.join(map(repr, _BIN_MODES))}, got "
            f"{bin_mode!r}."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"load_shd: no file at {path!r}. Download shd_train.h5.gz / shd_test.h5.gz from "
            f"the SHD page (zenkelab.org/datasets), gunzip them and pass the .h5 path."
        )


def _open(h5py, path):
    file = h5py.File(path, "r")
    for key in ("spikes/times", "spikes/units", "labels"):
        if key not in file:
            file.close()
            raise ValueError(
                f"load_shd: {path!r} has no dataset {key!r}; an SHD file holds spikes/times, "
                f"spikes/units (one array per sample) and labels."
            )
    return file


def _bins(times, n_steps, max_time, bin_mode):
    """Time bin of every kept event and the mask of kept events."""
    if bin_mode == "fixed":
        keep = (times >= 0) & (times < max_time)
        scale = n_steps / max_time
    else:
        keep = times >= 0
        duration = float(times.max()) if times.size else 0.0
        scale = n_steps / duration if duration > 0 else 0.0
    # The last event of a per-sample window, or rounding just below max_time, lands in bin
    # n_steps; it belongs to the last bin.
    bins = np.minimum(np.floor(times[keep] * scale).astype(np.int64), n_steps - 1)
    return bins, keep


def _raster(times, units, n_steps, max_time, bin_mode, binarize, out, where):
    times = np.asarray(times, np.float64)
    units = np.asarray(units, np.int64)
    if times.shape != units.shape:
        raise ValueError(f"load_shd: sample {where} has {times.size} times but {units.size} units.")
    if units.size and (units.min() < 0 or units.max() >= SHD_UNITS):
        raise ValueError(
            f"load_shd: sample {where} has channel {int(units.max())}; SHD channels are "
            f"0..{SHD_UNITS - 1}."
        )
    bins, keep = _bins(times, n_steps, max_time, bin_mode)
    if binarize:
        out[bins, units[keep]] = 1
    else:
        np.add.at(out, (bins, units[keep]), 1)
    return int(bins.max()) + 1 if bins.size else 1  # steps up to the last event


@jaxtyped(typechecker=beartype.beartype)
def load_shd(
    path: str | os.PathLike,
    n_steps: int,
    *,
    max_time: float | int = 1.4,
    binarize: bool = False,
    bin_mode: str = "fixed",
    index: Sequence[int] | np.ndarray | None = None,
    dtype: DTypeLike = np.float32,
) -> tuple[Real[np.ndarray, "batch time 700"], Int[np.ndarray, " batch"]]:
    r"""Spike rasters `(batch, n_steps, 700)` and labels `(batch,)` from an SHD file.

    With `bin_mode="fixed"` an event at time $t$ (seconds) goes to bin
    $\lfloor t\, T / t_{max} \rfloor$ and events at $t \ge t_{max}$ are dropped,
    so the time axis means the same for every sample (Zenke's tutorial: `n_steps=100`,
    `max_time=1.4`). With `"per_sample"` each sample's own span
    $[0, t_{last}]$ is cut into `n_steps` bins and no event is dropped (like
    tonic's `ToFrame(n_time_bins=...)` used in the OTPE experiments, `n_steps=50`).
    A bin holds the number of events of its channel, or 1 if `binarize`.

    **Arguments:** `path` to `shd_train.h5`/`shd_test.h5`; `n_steps`; `max_time`
    in seconds; `binarize`; `bin_mode`; `index`, the samples to read (default all,
    in file order); `dtype` of the rasters. Needs `h5py`.
    """
    rasters, labels, _ = _load(path, n_steps, max_time, binarize, bin_mode, index, dtype)
    return rasters, labels


def _load(path, n_steps, max_time=1.4, binarize=False, bin_mode="fixed", index=None, dtype=None):
    """`load_shd`'s rasters and labels, and each sample's length in steps (up to its
    last kept event; at least 1)."""
    dtype = np.float32 if dtype is None else dtype
    _check_options(path, n_steps, max_time, bin_mode)
    h5py = _h5py()
    with _open(h5py, path) as file:
        times, units = file["spikes/times"], file["spikes/units"]
        labels = np.asarray(file["labels"][()], np.int64)
        chosen = np.arange(len(labels)) if index is None else np.asarray(index, np.int64)
        if chosen.size and (chosen.min() < 0 or chosen.max() >= len(labels)):
            raise ValueError(
                f"load_shd: `index` must be in 0..{len(labels) - 1}, got values "
                f"{int(chosen.min())}..{int(chosen.max())}."
            )
        rasters = np.zeros((len(chosen), n_steps, SHD_UNITS), dtype)
        lengths = np.ones(len(chosen), np.int64)
        for row, sample in enumerate(chosen):
            lengths[row] = _raster(
                times[int(sample)],
                units[int(sample)],
                n_steps,
                max_time,
                bin_mode,
                binarize,
                rasters[row],
                int(sample),
            )
    return rasters, labels[chosen].astype(np.int32), lengths


class SHDBatches:
    """Batches `(xs (batch, n_steps, 700), ys (batch,))` of an SHD file, reading only the
    samples of each batch when it is needed: in file order, or shuffled by `key` (the
    same order on every pass). The last batch may be smaller; `len` is the batch count."""

    def __init__(
        self,
        path: str | os.PathLike,
        n_steps: int,
        batch_size: int,
        *,
        key: PRNGKeyArray | None = None,
        **options,
    ):
        """**Arguments:** `path`, `n_steps`, `batch_size`, `key` and the keyword
        `options` of `load_shd` (`max_time`, `binarize`, `bin_mode`, `dtype`)."""
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(
                f"SHDBatches: `batch_size` must be a positive int, got {batch_size!r}."
            )
        if "index" in options:
            raise ValueError("SHDBatches: `index` is chosen per batch; pass `key` to shuffle.")
        _check_options(
            path, n_steps, options.get("max_time", 1.4), options.get("bin_mode", "fixed")
        )
        with _open(_h5py(), path) as file:
            count = len(file["labels"])
        self.order = (
            np.arange(count) if key is None else np.asarray(jax.random.permutation(key, count))
        )
        self.path, self.n_steps, self.batch_size, self.options = path, n_steps, batch_size, options

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self.order), self.batch_size):
            chunk = self.order[start : start + self.batch_size]
            yield load_shd(self.path, self.n_steps, index=chunk, **self.options)


class SHDLoader(AbstractLoader):
    """An SHD (or SSC: same HDF5 layout, 35 classes) file as an `eqslax.data` loader:
    batch `i` of the epoch ordered by `key` reads and bins only its own samples, so the
    file never has to fit in memory and `fit` can resume at any batch.

    `n_classes` is read from the file's labels (largest label + 1). With `mask=True`
    the batches are `(xs, ys, mask)`: utterances differ in length, and with
    `bin_mode="fixed"` the steps after a sample's last event are padding
    ($m_t = [t \\le t_{last}]$), left out of every loss, rule and metric."""

    def __init__(
        self,
        path: str | os.PathLike,
        n_steps: int,
        batch_size: int,
        *,
        mask: bool = False,
        samples: Sequence[int] | np.ndarray | None = None,
        prefetch: int = 2,
        **options,
    ):
        """**Arguments:** `path`, `n_steps`, `batch_size`, `mask` (yield each batch's
        mask of real steps), `samples` (the indices of the file's samples this loader
        serves, in this order, e.g. to hold some out for validation; default all),
        `prefetch` (how many batches a background thread reads,
        bins and copies to the device ahead of use; default 2, 0 reads each batch when it
        is asked for) and the keyword `options` of `load_shd` (`max_time`, `binarize`,
        `bin_mode`, `dtype`)."""
        check_int(batch_size, "batch_size", "SHDLoader")
        self.prefetch = check_int(prefetch, "prefetch", "SHDLoader", minimum=0)
        if not isinstance(mask, bool):
            raise TypeError(f"SHDLoader: `mask` must be True or False, got {mask!r}.")
        if "index" in options:
            raise ValueError("SHDLoader: `index` is chosen per batch from the epoch's key.")
        _check_options(
            path, n_steps, options.get("max_time", 1.4), options.get("bin_mode", "fixed")
        )
        with _open(_h5py(), path) as file:
            labels = np.asarray(file["labels"][()])
        chosen = np.arange(len(labels)) if samples is None else np.asarray(samples, np.int64)
        if chosen.ndim != 1 or (chosen.size and (chosen.min() < 0 or chosen.max() >= len(labels))):
            raise ValueError(
                f"SHDLoader: `samples` must be indices in 0..{len(labels) - 1} of {path!r}'s "
                f"samples, got shape {chosen.shape} with values in "
                f"{chosen.min() if chosen.size else None}..{chosen.max() if chosen.size else None}."
            )
        self.path, self.n_steps, self.options, self.mask = path, n_steps, options, mask
        self.samples = chosen
        self.n_samples, self.batch_size = len(chosen), batch_size
        self.n_classes = int(labels.max()) + 1 if len(labels) else 0
        self.in_shape = (SHD_UNITS,)
        self._order = (None, None)

    def batch(self, key, index, *, drop_last=True):
        if not 0 <= index < self.n_batches(drop_last):
            raise IndexError(
                f"SHDLoader: batch {index} does not exist; an epoch of {self.path!r} has "
                f"{self.n_batches(drop_last)} batches of {self.batch_size}."
            )
        order = np.arange(self.n_samples)
        if key is not None:
            cached, permutation = self._order
            if cached is not key:
                permutation = np.asarray(jax.random.permutation(key, self.n_samples))
                self._order = (key, permutation)
            order = permutation
        chunk = self.samples[order[index * self.batch_size : (index + 1) * self.batch_size]]
        xs, ys, lengths = _load(self.path, self.n_steps, index=chunk, **self.options)
        if not self.mask:
            return jnp.asarray(xs), jnp.asarray(ys)
        mask = np.arange(self.n_steps)[None, :] < lengths[:, None]
        return jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(mask)
