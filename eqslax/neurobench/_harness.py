"""`Benchmark`: NeuroBench's harness for eqslax models, and `neurobench_metrics`."""

import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Shaped

from .._checks import check_float_array
from .._finite import check_finite
from .._mask import check_mask
from .._neurons import AbstractNeuron
from ._counts import reduce_counts, run_batch
from ._processors import ChooseMaxCount
from ._static import AbstractStaticMetric, ConnectionSparsity, Footprint, ParameterCount
from ._workload import (
    AbstractWorkloadMetric,
    ActivationSparsity,
    ClassificationAccuracy,
    MembraneUpdates,
    SynapticOperations,
    WorkloadBatch,
)


class Batches:
    """Consecutive batches `(xs[i:i+n], ys[i:i+n])` of two aligned arrays, or
    `(xs[i:i+n], ys[i:i+n], mask[i:i+n])` with a mask; the last batch may be smaller.
    Iterable any number of times; `len` is the batch count."""

    def __init__(
        self,
        xs: Shaped[ArrayLike, "samples ..."],
        ys: Shaped[ArrayLike, "samples ..."],
        batch_size: int = 256,
        mask: Bool[ArrayLike, "samples time"] | None = None,
    ):
        """**Arguments:** `xs` (samples, time, *in), `ys` (samples, ...),
        `batch_size` (default 256) and `mask` (samples, time), the real steps of padded
        sequences (`eqslax.data.pad_sequences`)."""
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"Batches: `batch_size` must be a positive int, got {batch_size!r}.")
        if len(xs) != len(ys):
            raise ValueError(
                f"Batches: `xs` and `ys` must hold the same number of samples, got "
                f"{len(xs)} and {len(ys)}."
            )
        self.xs, self.ys, self.batch_size, self.mask = xs, ys, batch_size, mask

    def __len__(self) -> int:
        return math.ceil(len(self.xs) / self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.xs), self.batch_size):
            stop = start + self.batch_size
            if self.mask is None:
                yield self.xs[start:stop], self.ys[start:stop]
            else:
                yield self.xs[start:stop], self.ys[start:stop], self.mask[start:stop]


def _metric(entry, base, kind: str):
    metric = entry() if isinstance(entry, type) else entry
    if not isinstance(metric, base):
        raise TypeError(
            f"Benchmark: every {kind} metric must be a {base.__name__} class or instance "
            f"(e.g. {'ParameterCount' if kind == 'static' else 'SynapticOperations'}), got "
            f"{entry!r}."
        )
    return metric


class _Progress:
    def __init__(self, enabled: bool, total: int | None):
        self.enabled, self.total = enabled, total
        self.live = enabled and sys.stderr.isatty()
        self.start = time.perf_counter()

    def update(self, done: int):
        if self.live:
            of = f"/{self.total}" if self.total else ""
            sys.stderr.write(f"\rneurobench: batch {done}{of}")
            sys.stderr.flush()

    def close(self, batches: int, samples: int):
        if self.enabled:
            end = "\r" if self.live else ""
            seconds = time.perf_counter() - self.start
            sys.stderr.write(
                f"{end}neurobench: {samples} samples in {batches} batches ({seconds:.1f} s)\n"
            )


class Benchmark:
    r"""NeuroBench 2.x's `Benchmark` for eqslax models.

    `run` computes the static metrics once, then for every batch `(xs, ys)`: applies
    the preprocessors to the pair, runs the model with every layer recorded (one jitted
    pass, `jax.vmap` over the batch), applies the postprocessors to the outputs
    (batch, time, *out) and folds each workload metric over the batch. Results are keyed
    by class name, as in NeuroBench.

    A batch `(xs, ys, mask)` (padded sequences; a loader with masks, or
    `Batches(..., mask=)`) counts only the real steps $m_{b,t} = 1$: the outputs of
    padded steps are zero before the postprocessors (so `ChooseMaxCount` sums the real
    steps), and no operation, activation or membrane update of a padded step is counted,
    so a padded batch gives the metrics of its samples run at their own lengths.
    """

    def __init__(
        self,
        model: AbstractNeuron,
        data: Any,
        preprocessors: Sequence[Callable] = (),
        postprocessors: Sequence[Callable] = (),
        metrics: Sequence[Any] = ((), ()),
        *,
        batch_size: int = 256,
    ):
        """**Arguments:**

        - `model`: a neuron or `Connect` (unbatched, as always).
        - `data`: an iterable of `(xs, ys)` or `(xs, ys, mask)` batches, `xs` of shape
          (batch, time, *model.in_shape), e.g. an `eqslax.data` loader; or a split with
          `test_x` and `test_y` (e.g. `eqslax.data.randman`), cut into batches of
          `batch_size`.
        - `preprocessors`: callables `(xs, ys) -> (xs, ys)` on each batch (a batch's
          mask is kept beside them and must still fit `xs`).
        - `postprocessors`: callables on the outputs, e.g. `[ChooseMaxCount()]`.
        - `metrics`: `[static, workload]`, two lists of metric classes (or instances),
          e.g. `[[Footprint], [ClassificationAccuracy, SynapticOperations]]`.
        """
        if not isinstance(model, AbstractNeuron):
            raise TypeError(
                f"Benchmark: `model` must be an eqslax neuron or Connect, got "
                f"{type(model).__name__}."
            )
        if isinstance(metrics, (str, bytes)) or len(metrics) != 2:
            raise ValueError(
                "Benchmark: `metrics` must be [static_metrics, workload_metrics], two lists, "
                f"got {metrics!r}."
            )
        self.model = model
        self.data = _batches(data, batch_size)
        self.preprocessors = tuple(preprocessors)
        self.postprocessors = tuple(postprocessors)
        self.static = [_metric(m, AbstractStaticMetric, "static") for m in metrics[0]]
        self.workload = [_metric(m, AbstractWorkloadMetric, "workload") for m in metrics[1]]

    def run(self, *, quiet: bool = False) -> dict[str, Any]:
        """Evaluate every metric; returns `{metric class name: value}`."""
        results: dict[str, Any] = {type(m).__name__: m(self.model) for m in self.static}
        states = [m.init() for m in self.workload]
        with_counts = any(m.needs_activity for m in self.workload)
        progress = _Progress(not quiet, _length(self.data))
        batches = samples = 0
        for index, pair in enumerate(self.data):
            xs, ys, mask = self._prepare(pair, index)
            outputs, counts = run_batch(self.model, xs, with_counts, mask)
            preds = outputs
            for post in self.postprocessors:
                preds = post(preds)
            batch = WorkloadBatch(
                preds=jnp.asarray(preds),
                targets=ys,
                samples=int(xs.shape[0]),
                counts=reduce_counts(counts) if with_counts else None,
            )
            states = [m.update(s, batch) for m, s in zip(self.workload, states)]
            batches, samples = batches + 1, samples + batch.samples
            progress.update(batches)
        progress.close(batches, samples)
        for metric, state in zip(self.workload, states):
            results[type(metric).__name__] = metric.compute(state)
        return results

    def _prepare(self, pair, index: int) -> tuple[Array, Array, Array | None]:
        if not (isinstance(pair, (tuple, list)) and len(pair) in (2, 3)):
            raise ValueError(
                f"Benchmark: batch {index} must be a pair (xs, ys) or (xs, ys, mask), got "
                f"{type(pair).__name__}. Wrap arrays with "
                f"eqslax.neurobench.Batches(xs, ys, batch_size)."
            )
        mask = pair[2] if len(pair) == 3 else None
        pair = tuple(pair[:2])
        for pre in self.preprocessors:
            pair = pre(pair)
        xs, ys = jnp.asarray(pair[0]), jnp.asarray(pair[1])
        check_float_array(xs, f"xs (batch {index})", self.model.in_shape, "Benchmark", "batch time")
        if mask is not None:
            mask = check_mask(mask, xs.shape[:2], "Benchmark", f"mask (batch {index})")
        if ys.shape[:1] != xs.shape[:1]:
            raise ValueError(
                f"Benchmark: batch {index} has {xs.shape[0]} inputs but targets of shape "
                f"{tuple(ys.shape)}; the leading axis of both is the batch."
            )
        check_finite(xs, f"xs (batch {index})", "Benchmark")
        if jnp.issubdtype(ys.dtype, jnp.integer) and ys.size:
            n_classes = self.model.out_shape[-1] if self.model.out_shape else 1
            low, high = int(jnp.min(ys)), int(jnp.max(ys))
            if low < 0 or high >= n_classes:
                raise ValueError(
                    f"Benchmark: `ys` (batch {index}) must hold class labels in "
                    f"0..{n_classes - 1} (the model's output size), got labels from {low} "
                    f"to {high}."
                )
        return xs, ys, mask


def _batches(data, batch_size: int) -> Iterable:
    if hasattr(data, "test_x") and hasattr(data, "test_y"):
        return Batches(data.test_x, data.test_y, batch_size)
    if not isinstance(data, Iterable):
        raise TypeError(
            f"Benchmark: `data` must be an iterable of (xs, ys) batches or a split with "
            f"test_x/test_y, got {type(data).__name__}."
        )
    return data


def _length(data) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None


def neurobench_metrics(
    model: AbstractNeuron,
    xs: Float[ArrayLike, "samples time *in"],
    ys: Shaped[ArrayLike, " samples"],
    *,
    batch_size: int = 256,
    postprocessors: Sequence[Callable] = (ChooseMaxCount(),),
    quiet: bool = True,
    mask: Bool[ArrayLike, "samples time"] | None = None,
) -> dict[str, Any]:
    """NeuroBench's metrics of a classifier on `(xs, ys)`, with the default set:
    `Footprint`, `ConnectionSparsity`, `ParameterCount`, `ClassificationAccuracy`
    (prediction $\\arg\\max_c \\sum_t y_{t,c}$), `ActivationSparsity`,
    `SynapticOperations` (a dict) and `MembraneUpdates`; with a `mask` of padded
    sequences only the real steps count."""
    bench = Benchmark(
        model,
        Batches(xs, ys, batch_size, mask),
        postprocessors=postprocessors,
        metrics=[
            [Footprint, ConnectionSparsity, ParameterCount],
            [ClassificationAccuracy, ActivationSparsity, SynapticOperations, MembraneUpdates],
        ],
    )
    return bench.run(quiet=quiet)
