r"""Losses on a model's output sequence, with one normalisation used everywhere.

**Normalisation (every driver and every learning rule).** A loss is computed per
sample on its whole output sequence $y_{1..T}$ and averaged over the batch:

$$
\mathcal L = \frac1B \sum_{b=1}^B L(y^{(b)}_{1..T}, c^{(b)})
$$

- `PerStep` (per-step convention, Slax Fig. 9): $L = \frac1T\sum_t
  \ell(y_t, c_t)$, the *mean* over time of a per-step loss. Online rules see the step
  term $\ell(y_t, c_t)$ and update from it; deferred online rules sum the step
  gradients and divide by $T$, so they follow the same $\mathcal L$.
- `Accumulated` (accumulated convention): $L = \ell(\mathrm{reduce}_t\,
  y_t, c)$ with `reduce` one of `"sum"` (spike counts), `"mean"` or `"max"`
  (membrane readouts). Only offline rules (BPTT) can train it.

The per-step function $\ell(\text{output}, \text{target})$ is optax-style, e.g.
`optax.softmax_cross_entropy_with_integer_labels` or `optax.l2_loss`.

**Targets.** Each loss declares the targets it takes (`Targets`); a batch's
`ys` is one of

- one integer class label per sequence, `(batch,)` ($c_t = c$);
- one integer class label per step, `(batch, time)`;
- real-valued targets per step, `(batch, time, *out)` shaped like the model's output.

**Masks.** Every loss takes an optional per-sample `mask` of shape `(time,)`, True at the
real steps of a padded sequence: padded steps give no loss, `PerStep` divides by the
sample's length $T_b = \sum_t m_t$, and `Accumulated` reduces over the real steps only
(see `eqslax.data.pad_sequences`).
"""

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Shaped

from ._checks import check_choice
from ._mask import broadcast_steps, check_mask_shape, time_mean, with_mask

_REDUCTIONS = {"sum": jnp.sum, "mean": jnp.mean, "max": jnp.max}
# What a padded step holds for each reduction, so that it changes nothing.
_NEUTRAL = {"sum": 0.0, "mean": 0.0, "max": -jnp.inf}
_KINDS = ("class", "value")
# optax's regression losses: `PerStep(fn)` with one of them takes real-valued targets.
_REGRESSION = (optax.l2_loss, optax.squared_error, optax.huber_loss, optax.log_cosh)


class Targets(eqx.Module):
    """What a loss takes as targets.

    **Fields:**

    - `kind`: `"class"` (integer labels in `0..n_classes-1`, `n_classes` the size
      of the output's last axis) or `"value"` (real numbers shaped like one step's
      output).
    - `per_sequence`: accepts one target per sequence, `ys` of shape `(batch,)`.
    - `per_step`: accepts one target per step, `(batch, time)` for labels or
      `(batch, time, *out)` for values.
    """

    kind: str = eqx.field(static=True)
    per_sequence: bool = eqx.field(static=True)
    per_step: bool = eqx.field(static=True)

    def __check_init__(self):
        check_choice(self.kind, "kind", _KINDS, "Targets")


def check_label_range(labels: Array, n_classes: int, owner: str, name: str) -> Array:
    """`labels` with a runtime check (`eqx.error_if`) that each is in `0..n_classes-1`.

    Works on traced labels; the returned array must be used."""
    bad = (labels < 0) | (labels >= n_classes)
    return eqx.error_if(
        labels,
        jnp.any(bad),
        f"{owner}: `{name}` holds a class label outside 0..{n_classes - 1} "
        f"(n_classes = {n_classes}, the size of the output's last axis).",
    )


class AbstractLoss(eqx.Module):
    """A per-sample loss on an output sequence `(time, *out)` and its target.

    `needs_layers` losses also receive every layer's outputs (rate regularisers).
    `targets` says which targets the loss takes (default: one class label per
    sequence). Online rules hand `target_at(target, t)` to `PerStep.step`. `mask`
    `(time,)` marks the real steps of a padded sequence (True); the library passes it
    only when one is given, so a loss written without it still runs on unpadded data.
    """

    per_step: ClassVar[bool] = False
    needs_layers: ClassVar[bool] = False

    @property
    def targets(self) -> Targets:
        """The targets this loss takes (see `Targets`)."""
        return Targets("class", per_sequence=True, per_step=False)

    def target_at(
        self, target: Shaped[ArrayLike, "..."], t: Int[ArrayLike, ""]
    ) -> Shaped[ArrayLike, "..."]:
        """One sample's target at step `t` (default: the target itself, the same at
        every step)."""
        return target

    @abc.abstractmethod
    def __call__(
        self,
        outputs: Float[Array, "time ..."],
        label: Shaped[ArrayLike, "..."],
        layers=None,
        mask: Bool[Array, " time"] | None = None,
    ) -> Float[Array, ""]:
        """The loss $L$ of one sample (over its real steps when `mask` is given)."""

    @abc.abstractmethod
    def predict(
        self, outputs: Float[Array, "time ..."], mask: Bool[Array, " time"] | None = None
    ) -> Shaped[Array, "..."]:
        """The class this loss's readout assigns to one sample."""

    def predict_steps(self, outputs: Float[Array, "time ..."]) -> Shaped[Array, "time ..."]:
        """The prediction at each step (for per-step targets): $\\arg\\max_c y_{t,c}$."""
        return jnp.argmax(outputs, axis=-1)


class PerStep(AbstractLoss):
    r"""$L = \frac1T \sum_t \ell(y_t, c_t)$, the mean over time of a per-step loss.

    With a `mask`, $L = \frac{1}{T_b}\sum_t m_t\,\ell(y_t, c_t)$, $T_b = \sum_t m_t$.

    Classification (`target="class"`): the target is one integer label per sequence
    ($c_t = c$) or one per step; the prediction is $\arg\max_c \sum_t y_{t,c}$
    for one label per sequence and $\arg\max_c y_{t,c}$ at each step otherwise.
    Regression (`target="value"`): $c_t$ is a real target shaped like
    $y_t$, e.g. `PerStep(optax.l2_loss)` for $\ell = \tfrac12\lVert y_t -
    c_t\rVert^2$; the prediction is $y_t$ itself.

    **Arguments:**

    - `fn(output, target) -> scalar` (default softmax cross-entropy, the output at each
      step used as logits, as in the OTPE and Slax experiments); its value is summed if
      it is not a scalar (`optax.l2_loss` is elementwise).
    - `target`: `"class"` or `"value"`; by default `"value"` when `fn` is one
      of optax's regression losses (`l2_loss`, `squared_error`, `huber_loss`,
      `log_cosh`) and `"class"` otherwise.
    """

    per_step: ClassVar[bool] = True
    fn: Callable[[Array, Array], Array]
    target: str = eqx.field(static=True)

    def __init__(
        self,
        fn: Callable[[Array, Array], Array] = optax.softmax_cross_entropy_with_integer_labels,
        *,
        target: str | None = None,
    ):
        if not callable(fn):
            raise TypeError(
                f"PerStep: `fn` must be a function (output, target) -> scalar, got {fn!r}."
            )
        if target is None:
            target = "value" if any(fn is f for f in _REGRESSION) else "class"
        self.fn = fn
        self.target = check_choice(target, "target", _KINDS, "PerStep")

    @property
    def targets(self) -> Targets:
        return Targets(self.target, per_sequence=self.target == "class", per_step=True)

    def has_time_axis(self, target: Array) -> bool:
        """Whether one sample's `target` holds one entry per step."""
        return self.target == "value" or jnp.ndim(target) > 0

    def target_at(self, target, t):
        return target[t] if self.has_time_axis(target) else target

    def step(
        self, output: Float[Array, "*out"], target: Shaped[ArrayLike, "..."]
    ) -> Float[Array, ""]:
        r"""The step term $\ell(y_t, c_t)$ of one step's `target`."""
        target = jnp.asarray(target)
        if self.target == "class" and target.ndim != 0:
            raise ValueError(
                f"PerStep.step: `target` must be one step's class label (a scalar), got "
                f"shape {target.shape}; slice a per-step target with `target_at(target, t)`."
            )
        if self.target == "value" and target.shape != output.shape:
            raise ValueError(
                f"PerStep.step: `target` must be shaped like the output {output.shape}, got "
                f"{target.shape}; slice a per-step target with `target_at(target, t)`."
            )
        return jnp.sum(self.fn(output, target))

    def __call__(self, outputs, label, layers=None, mask=None):
        label = jnp.asarray(label)
        if mask is not None:
            check_mask_shape(mask, outputs.shape[:1], "PerStep")
        if self.target == "class":
            label = check_label_range(label, outputs.shape[-1], "PerStep", "label")
        if self.has_time_axis(label):
            if label.shape[:1] != outputs.shape[:1]:
                raise ValueError(
                    f"PerStep: a per-step `label` must have {outputs.shape[0]} steps like the "
                    f"outputs, got shape {label.shape}."
                )
            terms = jax.vmap(self.step)(outputs, label)
        else:
            terms = jax.vmap(self.step, in_axes=(0, None))(outputs, label)
        return time_mean(terms, mask)

    def predict(self, outputs, mask=None):
        if self.target == "value":
            return outputs
        return jnp.argmax(reduce_time(outputs, "sum", mask))

    def predict_steps(self, outputs):
        return outputs if self.target == "value" else jnp.argmax(outputs, axis=-1)


class Accumulated(AbstractLoss):
    r"""$L = \ell(\mathrm{reduce}_t\, y_t, c)$; prediction $\arg\max$ of the same.

    `reduce="sum"` with spikes gives a loss on spike counts; `"max"` and `"mean"`
    are the usual membrane readouts of an `LI` output layer. Takes one
    class label per sequence. With a `mask` the reduction runs over the real steps only
    (`"mean"` divides by $T_b$).

    **Arguments:** `fn(reduced, label) -> scalar` (default softmax cross-entropy) and
    `reduce`.
    """

    fn: Callable[[Array, Array], Array] = optax.softmax_cross_entropy_with_integer_labels
    reduce: str = eqx.field(static=True, default="sum")

    def __check_init__(self):
        check_choice(self.reduce, "reduce", tuple(_REDUCTIONS), "Accumulated")

    def __call__(self, outputs, label, layers=None, mask=None):
        label = jnp.asarray(label)
        if mask is not None:
            check_mask_shape(mask, outputs.shape[:1], "Accumulated")
        if label.ndim != 0:
            raise ValueError(
                f"Accumulated: `label` must be one class label per sequence (a scalar), got "
                f"shape {label.shape}; per-step targets need PerStep."
            )
        label = check_label_range(label, outputs.shape[-1], "Accumulated", "label")
        return self.fn(reduce_time(outputs, self.reduce, mask), label)

    def predict(self, outputs, mask=None):
        return jnp.argmax(reduce_time(outputs, self.reduce, mask))


def reduce_time(
    outputs: Float[Array, "time ..."], reduce: str, mask: Bool[Array, " time"] | None = None
) -> Float[Array, "..."]:
    """`reduce` (`"sum"`, `"mean"` or `"max"`) over the time axis, over the real steps
    of `mask` when one is given."""
    if mask is None:
        return _REDUCTIONS[reduce](outputs, axis=0)
    kept = jnp.where(broadcast_steps(mask, outputs), outputs, _NEUTRAL[reduce])
    if reduce == "mean":
        return jnp.sum(kept, axis=0) / jnp.maximum(jnp.sum(mask), 1)
    return _REDUCTIONS[reduce](kept, axis=0)


class CountMSE(eqx.Module):
    r"""Spike-count MSE target (snnTorch's `mse_count_loss`):
    $\ell(n, c) = \frac1C\sum_j (n_j - \hat n_j)^2$, $\hat n_c =$ `correct`,
    $\hat n_{j\ne c} =$ `incorrect`. Use as `Accumulated(CountMSE(...), "sum")`.
    """

    correct: float = 8.0
    incorrect: float = 1.0

    def __call__(self, counts: Float[Array, " out"], label: Int[Array, ""]) -> Float[Array, ""]:
        label = check_label_range(jnp.asarray(label), counts.shape[-1], "CountMSE", "label")
        target = jnp.where(jnp.arange(counts.shape[-1]) == label, self.correct, self.incorrect)
        return jnp.mean((counts - target) ** 2)


class RateRegularised(AbstractLoss):
    r"""A loss plus a firing-rate regulariser on every spiking layer of the network.

    $$
    L' = L + \mu \sum_l \frac{1}{n_l}\sum_i (\bar s^l_i - r^*)^2,
    \quad \bar s^l_i = \frac1T\sum_t s^l_{t,i}
    $$

    (with a `mask`, $\bar s^l_i$ is the mean over the $T_b$ real steps).
    `layer_mask` selects the spiking layers (see `spiking_layers`); linear maps
    and `LI` readouts have no firing rate. Takes the targets of `loss`.

    **Arguments:** `loss`; `strength` $\mu$ (default 1e-2); `target_rate`
    $r^*$ spikes per step (default 0.05); `layer_mask` a tuple of bools, one per
    layer, selecting the regularised layers.
    """

    needs_layers: ClassVar[bool] = True
    loss: AbstractLoss
    layer_mask: tuple[bool, ...] = eqx.field(static=True)
    strength: float = 1e-2
    target_rate: float = 0.05

    @property
    def targets(self) -> Targets:
        return self.loss.targets

    def target_at(self, target, t):
        return self.loss.target_at(target, t)

    def __call__(self, outputs, label, layers=None, mask=None):
        base = with_mask(self.loss, outputs, label, layers, mask=mask)
        if layers is None:
            raise ValueError("RateRegularised: needs every layer's outputs (`layers`).")
        if len(layers) != len(self.layer_mask):
            raise ValueError(
                f"RateRegularised: `layer_mask` has {len(self.layer_mask)} entries but the "
                f"model has {len(layers)} layers."
            )
        penalty = sum(
            jnp.mean((reduce_time(y, "mean", mask) - self.target_rate) ** 2)
            for y, keep in zip(layers, self.layer_mask)
            if keep
        )
        return base + self.strength * penalty

    def predict(self, outputs, mask=None):
        return with_mask(self.loss.predict, outputs, mask=mask)

    def predict_steps(self, outputs):
        return self.loss.predict_steps(outputs)


def spiking_layers(model) -> tuple[bool, ...]:
    """One bool per layer of a `Connect` (or the neuron itself): is it spiking?"""
    from ._connect import Connect
    from ._neurons import AbstractSpikingPopulation

    layers = model.layers if isinstance(model, Connect) else (model,)
    return tuple(isinstance(layer, AbstractSpikingPopulation) for layer in layers)


def accuracy(
    loss: AbstractLoss,
    outputs: Float[Array, "batch time *out"],
    labels,
    mask: Bool[Array, "batch time"] | None = None,
) -> Array:
    """Fraction of samples whose `loss.predict` equals the label; for per-step labels
    `(batch, time)`, the fraction of steps whose per-step prediction equals it. With a
    `mask`, predictions read the real steps only and per-step labels count there only."""
    labels = jnp.asarray(labels)
    if labels.ndim == 2:
        correct = jax.vmap(loss.predict_steps)(outputs) == labels
        return jnp.mean(correct) if mask is None else jnp.sum(correct & mask) / jnp.sum(mask)
    predict = jax.vmap(lambda o, m: with_mask(loss.predict, o, mask=m))
    return jnp.mean(predict(outputs, mask) == labels)
