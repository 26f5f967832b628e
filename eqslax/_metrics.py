r"""Task metrics of a loss's predictions, accumulated over batches.

Classification (`loss.targets.kind == "class"`): `accuracy`, the fraction of correct
predictions (of sequences for one label per sequence, of steps for per-step labels).

Regression (`"value"`): with predictions $\hat y$ (the outputs) and targets
$y$ over every sample and step, for each output component $j$,

$$
\mathrm{MSE} = \operatorname{mean}_{b,t,j}\,(\hat y - y)^2, \qquad
R^2 = \frac1J\sum_j \Big(1 - \frac{\sum_{b,t}(\hat y_j - y_j)^2}
                              {\sum_{b,t}(y_j - \bar y_j)^2}\Big)
$$

(the uniform average over components, as scikit-learn's `r2_score`; a component
whose targets are constant scores 1 if predicted exactly and 0 otherwise).
Totals are sums, so that metrics over many batches equal metrics over their union.
With a `mask` (batch, time) of padded sequences only the real steps count: per-step
metrics sum over them, and a sequence's prediction reads its real steps only.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._losses import AbstractLoss
from ._mask import with_mask


def metric_names(loss: AbstractLoss) -> tuple[str, ...]:
    """The task metrics of `loss`: `("accuracy",)` or `("mse", "r2")`; the last is the
    one rules are ranked by (`primary_metric`)."""
    return ("mse", "r2") if loss.targets.kind == "value" else ("accuracy",)


def primary_metric(loss: AbstractLoss) -> str:
    """The metric rules are ranked by (higher is better): `"accuracy"` or `"r2"`."""
    return metric_names(loss)[-1]


def _steps_sum(values, real, axes):
    """Sum over `axes` of `values` (batch, time, ...) at the `real` steps (all if None)."""
    if real is None:
        return jnp.sum(values, axis=axes)
    real = real.reshape(real.shape + (1,) * (values.ndim - real.ndim))
    return jnp.sum(jnp.where(real, values, 0), axis=axes)


@eqx.filter_jit
def _totals(loss, outputs, targets, mask=None):
    if loss.targets.kind == "value":
        axes = (0, 1)
        residual = outputs - targets
        steps = targets.shape[0] * targets.shape[1]
        return {
            "residual": _steps_sum(residual**2, mask, axes),
            "sum": _steps_sum(targets, mask, axes),
            "square": _steps_sum(targets**2, mask, axes),
            "count": jnp.asarray(steps) if mask is None else jnp.sum(mask),
        }
    if targets.ndim == 2:
        correct = jax.vmap(loss.predict_steps)(outputs) == targets
        count = jnp.asarray(correct.size) if mask is None else jnp.sum(mask)
        return {"correct": _steps_sum(correct, mask, (0, 1)), "count": count}
    predict = jax.vmap(lambda o, m: with_mask(loss.predict, o, mask=m))
    correct = predict(outputs, mask) == targets
    return {"correct": jnp.sum(correct), "count": jnp.asarray(correct.size)}


def metric_totals(loss: AbstractLoss, outputs, targets, mask=None) -> dict[str, np.ndarray]:
    """Sums over one batch (`outputs` (batch, time, *out), `mask` (batch, time) or None)
    from which `finish_metrics` computes the task metrics, as float64 host arrays."""
    from .distributed._mesh import to_host

    totals = _totals(loss, outputs, targets, mask)
    return {k: to_host(v).astype(np.float64) for k, v in totals.items()}


def task_metrics(loss: AbstractLoss, outputs, targets, mask=None) -> dict[str, float]:
    """The task metrics of one batch: `{"accuracy"}` or `{"mse", "r2"}` (over the real
    steps of `mask` when given)."""
    return finish_metrics(loss, metric_totals(loss, outputs, targets, mask))


def add_totals(a: dict | None, b: dict) -> dict:
    """Two batches' totals together (`a` may be `None`: nothing yet)."""
    return dict(b) if a is None else {k: a[k] + b[k] for k in a}


def finish_metrics(loss: AbstractLoss, totals: dict | None) -> dict[str, float]:
    """`{name: value}` from accumulated totals (NaN for each metric if none)."""
    if totals is None:
        return {name: float("nan") for name in metric_names(loss)}
    count = float(totals["count"])
    if loss.targets.kind != "value":
        return {"accuracy": float(totals["correct"]) / count}
    residual = totals["residual"]
    spread = totals["square"] - totals["sum"] ** 2 / count
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(
            spread > 1e-12 * totals["square"],
            1.0 - residual / spread,
            np.where(residual == 0, 1.0, 0.0),
        )
    return {"mse": float(np.sum(residual) / (count * residual.size)), "r2": float(np.mean(r2))}
