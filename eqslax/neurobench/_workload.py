r"""NeuroBench's workload metrics: accumulated over the batches of a data set.

Every metric is an `init -> update -> compute` triple over an immutable state, so a
run is a fold over batches. NeuroBench's two kinds map onto it:

- plain metrics (`AbstractMeanMetric`) give one value per batch and report the
  batch-size-weighted mean $\sum_b n_b m_b / \sum_b n_b$;
- accumulated metrics keep running totals and report the latest `compute`.
"""

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._counts import BatchCounts


class WorkloadBatch(eqx.Module):
    """What a workload metric sees of one batch: post-processed predictions, targets,
    the number of samples and, for metrics that need them, the activity counts."""

    preds: Array
    targets: Array
    samples: int
    counts: BatchCounts | None


class AbstractWorkloadMetric(eqx.Module):
    """A metric folded over batches: `compute(update(...update(init(), b1)..., bn))`.

    `needs_activity` metrics read `batch.counts` (the harness then records every
    layer); the others read predictions and targets only.
    """

    needs_activity: ClassVar[bool] = False

    @abc.abstractmethod
    def init(self) -> Any:
        """The state before the first batch."""

    @abc.abstractmethod
    def update(self, state: Any, batch: WorkloadBatch) -> Any:
        """The state after one more batch."""

    @abc.abstractmethod
    def compute(self, state: Any) -> Any:
        """The reported value."""


class AbstractMeanMetric(AbstractWorkloadMetric):
    r"""A per-batch value $m_b$, reported as $\sum_b n_b m_b / \sum_b n_b$
    (NeuroBench's plain `WorkloadMetric`)."""

    @abc.abstractmethod
    def batch_value(self, batch: WorkloadBatch) -> float:
        """The value on one batch."""

    def init(self) -> tuple[float, int]:
        return 0.0, 0

    def update(self, state: tuple[float, int], batch: WorkloadBatch) -> tuple[float, int]:
        total, samples = state
        return total + self.batch_value(batch) * batch.samples, samples + batch.samples

    def compute(self, state: tuple[float, int]) -> float:
        total, samples = state
        return total / samples if samples else 0.0


def _same_shape(batch: WorkloadBatch, owner: str) -> None:
    if batch.preds.shape != batch.targets.shape:
        raise ValueError(
            f"{owner}: predictions and targets must have the same shape, got "
            f"{tuple(batch.preds.shape)} and {tuple(batch.targets.shape)}. Add a "
            f"postprocessor such as ChooseMaxCount() to turn outputs into predictions."
        )


class ClassificationAccuracy(AbstractMeanMetric):
    r"""Fraction of correct predictions, $\frac1n \sum_i [\hat y_i = y_i]$."""

    def batch_value(self, batch: WorkloadBatch) -> float:
        _same_shape(batch, "ClassificationAccuracy")
        return float(jnp.mean(batch.preds == batch.targets))


class MSE(AbstractMeanMetric):
    r"""Mean squared error, $\mathrm{mean}\,(\hat y - y)^2$."""

    def batch_value(self, batch: WorkloadBatch) -> float:
        _same_shape(batch, "MSE")
        return float(jnp.mean((batch.preds - batch.targets) ** 2))


class SMAPE(AbstractMeanMetric):
    r"""Symmetric mean absolute percentage error,
    $200\,\mathrm{mean}\,\frac{|\hat y - y|}{|\hat y| + |y|}$.

    NeuroBench's quirk is kept: a NaN is replaced by 200 *after* the mean, so a single
    entry with $\hat y = y = 0$ makes the whole batch score 200.
    """

    def batch_value(self, batch: WorkloadBatch) -> float:
        _same_shape(batch, "SMAPE")
        p, y = batch.preds, batch.targets
        value = 200.0 * jnp.mean(jnp.abs(p - y) / (jnp.abs(p) + jnp.abs(y)))
        return float(jnp.nan_to_num(value, nan=200.0))


class ActivationSparsity(AbstractMeanMetric):
    r"""Fraction of zero activations, $(N - N_{\ne 0}) / N$ over the outputs of every
    neuron and ReLU/sigmoid layer, every step and every sample of a batch."""

    needs_activity: ClassVar[bool] = True

    def batch_value(self, batch: WorkloadBatch) -> float:
        counts = batch.counts
        if counts is None or counts.activations_total == 0:
            return 0.0
        return (counts.activations_total - counts.activations_nonzero) / counts.activations_total


class SynapticOperations(AbstractWorkloadMetric):
    r"""Synaptic operations per sample (see `_counts`):
    `{"Effective_MACs", "Effective_ACs", "Dense"}`, each the total over the data set
    divided by the number of samples. Biases are not operations."""

    needs_activity: ClassVar[bool] = True

    def init(self) -> tuple[int, int, int, int]:
        return 0, 0, 0, 0

    def update(self, state: tuple[int, int, int, int], batch: WorkloadBatch):
        macs, acs, dense, samples = state
        c = batch.counts
        return macs + c.effective_macs, acs + c.effective_acs, dense + c.dense, samples + c.samples

    def compute(self, state: tuple[int, int, int, int]) -> dict[str, float]:
        macs, acs, dense, samples = state
        if samples == 0:
            return {"Effective_MACs": 0.0, "Effective_ACs": 0.0, "Dense": 0.0}
        return {
            "Effective_MACs": macs / samples,
            "Effective_ACs": acs / samples,
            "Dense": dense / samples,
        }


class MembraneUpdates(AbstractWorkloadMetric):
    r"""Membrane updates per sample: for each neuron layer, all $n$ units at the
    first step plus, at every later step, the units whose membrane $v$ changed,
    $n + \sum_{t>1} \#\{i: v_{t,i} \ne v_{t-1,i}\}$; summed over layers and
    divided by the number of samples. Neurons without a membrane `v` add nothing."""

    needs_activity: ClassVar[bool] = True

    def init(self) -> tuple[int, int]:
        return 0, 0

    def update(self, state: tuple[int, int], batch: WorkloadBatch) -> tuple[int, int]:
        updates, samples = state
        return updates + batch.counts.membrane_updates, samples + batch.counts.samples

    def compute(self, state: tuple[int, int]) -> float:
        updates, samples = state
        return updates / samples if samples else 0.0


class R2(AbstractWorkloadMetric):
    r"""Coefficient of determination over the whole data set, per target column
    $j$: $R^2_j = 1 - \sum_i (\hat y_{ij} - y_{ij})^2 / (n\,\mathrm{Var}(y_j))$
    with the population variance; reported as the mean over columns (NeuroBench: the
    two columns x and y of a 2-D target). 1-D targets are one column."""

    def init(self) -> tuple[np.ndarray, list]:
        return np.zeros(0), []

    def update(self, state: tuple[np.ndarray, list], batch: WorkloadBatch):
        _same_shape(batch, "R2")
        p = np.asarray(batch.preds, np.float64).reshape(batch.samples, -1)
        y = np.asarray(batch.targets, np.float64).reshape(batch.samples, -1)
        squared, labels = state
        errors = ((p - y) ** 2).sum(axis=0)
        squared = errors if squared.size == 0 else squared + errors
        return squared, [*labels, y]

    def compute(self, state: tuple[np.ndarray, list]) -> float:
        squared, labels = state
        if not labels:
            return 0.0
        y = np.concatenate(labels, axis=0)
        return float(np.mean(1.0 - squared / (y.var(axis=0) * y.shape[0])))
