"""Online learning rules: per-step gradients from forward-in-time traces.

An online rule advances the model one step together with its own traces (eligibility
traces, influence matrices), a typed record threaded through the `lax.scan` next to
the model state, and returns the gradient of the current step's loss term
$\\nabla_\\theta \\ell(y_t, c)$ as the rule estimates it. The traces are updated
on every step whether or not a gradient is used.

Its `update`/`grad` defer parameter updates to the end of the sequence: they sum
the step gradients, divide by $T$ and average over the batch, matching the
per-step loss $\\mathcal L$ of `eqslax.PerStep` (deferred training). With a `mask`
the step gradients and losses of padded steps are left out and each sample's sum is
divided by its length $T_b$; the traces still advance through padded steps, as the
model does, so a mask may also leave out steps in the middle of a sequence.
"""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

from .._losses import AbstractLoss
from .._mask import time_mean
from .._neurons import AbstractNeuron
from .._simulate import initial_state
from ._base import AbstractLearningRule, Aux
from ._outer import batch_sum


def check_per_step(loss: AbstractLoss, owner: str) -> None:
    if not loss.per_step:
        raise ValueError(
            f"{owner}: online rules learn from a per-step loss (eqslax.PerStep); got "
            f"{type(loss).__name__}, which needs the whole sequence."
        )


class AbstractOnlineRule(AbstractLearningRule):
    """A rule that learns forward in time. Concrete rules define `init_traces` and
    `step`; deferred `update` and `grad` come from here.

    `sum_batch_each_step`: how the deferred gradient is accumulated. `False` keeps one
    running sum per sample (vmap over samples of a scan over time); `True` scans over
    time and adds the batch sum of the step gradients to a single accumulator. A rule
    whose `factored_step` keeps weight gradients as [`eqslax.layerwise.Outer`][]
    factors then contracts them over the batch in one product per step. The result is
    the same.
    """

    sum_batch_each_step: ClassVar[bool] = False

    @abc.abstractmethod
    def init_traces(self, model: AbstractNeuron, state: PyTree) -> PyTree:
        """Traces before the first step of a sample (`state` is the model's)."""

    @abc.abstractmethod
    def step(
        self,
        model: AbstractNeuron,
        state: PyTree,
        traces: PyTree,
        x: Array,
        label: Array,
        loss: AbstractLoss,
    ) -> tuple[PyTree, PyTree, PyTree, Array, Array]:
        """One step of one sample: `(state, traces, grads, output, step_loss)`.

        `grads` is the rule's estimate of $\\nabla_\\theta \\ell(y_t, c)$, shaped
        like `eqslax.trainable(model)`.
        """

    def factored_step(self, model, state, traces, x, label, loss):
        """`step`, except that a weight gradient may stay an [`eqslax.layerwise.Outer`][]
        (its factors) for the batched step to contract over the batch. Defaults to
        `step`."""
        return self.step(model, state, traces, x, label, loss)

    def initial(self, model: AbstractNeuron, x0: Array) -> PyTree:
        """The model state of one sample before its first step."""
        return initial_state(model, x0)

    def start(
        self, model: AbstractNeuron, x0: Array, rule_state: PyTree = None
    ) -> tuple[PyTree, PyTree]:
        """Model state and traces of one sample before its first step (a rule whose
        traces depend on its `rule_state`, such as e-prop's feedback, reads it here)."""
        state = self.initial(model, x0)
        return state, self.init_traces(model, state)

    def run(self, model, loss, xs, label, rule_state=None, mask=None):
        """One sample, deferred: summed step gradients, outputs and step losses.

        The scan runs over step indices and reads step $t$ of `xs` in place, handing
        `loss.target_at(label, t)` to `step`. With a `mask` `(time,)` the sum and the
        step losses keep only the real steps."""
        state, traces = self.start(model, xs[0], rule_state)

        def body(carry, t):
            state, traces, total = carry
            x = jax.lax.dynamic_index_in_dim(xs, t, 0, keepdims=False)
            target = loss.target_at(label, t)
            state, traces, grads, y, value = self.step(model, state, traces, x, target, loss)
            grads, value = keep_real((grads, value), None if mask is None else mask[t])
            total = jtu.tree_map(jnp.add, total, grads)
            return (state, traces, total), (y, value)

        zero = jtu.tree_map(jnp.zeros_like, _trainable(model))
        steps = jnp.arange(xs.shape[0])
        (_, _, total), (ys, values) = jax.lax.scan(body, (state, traces, zero), steps)
        return total, ys, values

    def update(self, model, rule_state, loss, xs, ys, mask=None):
        check_per_step(loss, type(self).__name__)
        return deferred_update(self, model, rule_state, loss, xs, ys, mask)

    def _run_batch(self, model, loss, xs, ys, rule_state=None, mask=None):
        """A batch: the batch-summed step gradients, summed over time. With a `mask`
        each sample keeps its real steps, scaled by $T / T_b$, so that one division by
        $B T$ gives the batch mean of each sample's mean over its own steps."""
        states, traces = jax.vmap(lambda x: self.start(model, x[0], rule_state))(xs)
        scale = None if mask is None else xs.shape[1] / jnp.sum(mask, axis=1)

        def body(carry, t):
            states, traces, total = carry
            real = None if mask is None else mask[:, t]
            states, traces, grads, y, value = batch_step(
                self, model, loss, states, traces, xs, ys, t, real, scale
            )
            return (states, traces, jtu.tree_map(jnp.add, total, grads)), (y, value)

        zero = jtu.tree_map(jnp.zeros_like, _trainable(model))
        steps = jnp.arange(xs.shape[1])
        (_, _, total), (outputs, values) = jax.lax.scan(body, (states, traces, zero), steps)
        return total, jnp.moveaxis(outputs, 0, 1), values


def deferred_update(rule: AbstractOnlineRule, model, rule_state, loss, xs, ys, mask=None):
    """Deferred training on a batch: the step gradients summed over time, divided by
    $T$ (by each sample's $T_b$ with a `mask`) and averaged over the batch;
    `(grads, rule_state, Aux)`."""
    batch, steps = xs.shape[:2]
    if rule.sum_batch_each_step:
        total, outputs, values = rule._run_batch(model, loss, xs, ys, rule_state, mask)
        grads = jtu.tree_map(lambda g: g / (batch * steps), total)
        values = jnp.moveaxis(values, 0, 1)
    else:
        totals, outputs, values = jax.vmap(
            lambda x, y, m: rule.run(model, loss, x, y, rule_state, m)
        )(xs, ys, mask)
        if mask is None:
            grads = jtu.tree_map(lambda g: jnp.mean(g, axis=0) / steps, totals)
        else:
            lengths = jnp.sum(mask, axis=1)
            grads = jtu.tree_map(lambda g: jnp.mean(g / _per_sample(lengths, g), 0), totals)
    return grads, rule_state, Aux(outputs=outputs, loss=sequence_loss_value(values, mask))


def sequence_loss_value(values, mask):
    """The batch-mean loss $\\frac1B\\sum_b \\frac{1}{T_b}\\sum_t m_{b,t}\\ell_{b,t}$
    from step losses `values` (batch, time)."""
    return jnp.mean(values) if mask is None else jnp.mean(time_mean(values, mask))


def keep_real(tree, real):
    """`tree` where step `real` (a scalar or per-sample boolean) is real, zeros where it
    is padded; `tree` itself when `real` is None (no mask)."""
    if real is None:
        return tree
    return jtu.tree_map(lambda a: jnp.where(_per_sample(real, a), a, 0), tree)


def _per_sample(values, like):
    """`values` (batch,) or a scalar, shaped to broadcast against `like` (batch, ...)."""
    values = jnp.asarray(values)
    return values.reshape(values.shape + (1,) * (jnp.ndim(like) - values.ndim))


def batch_step(rule, model, loss, states, traces, xs, ys, t, real=None, weights=None):
    r"""Step $t$ of a batch: reads `xs[:, t]` in place (no time-major copy of the
    batch-major input) and each sample's `loss.target_at(target, t)`, runs
    `rule.factored_step` on every sample and sums the step gradients over the batch,
    $\sum_b w_b\, g_b$ (`weights` `(batch,)`, ones when `None`), leaving out the samples
    that are padded at this step (`real` `(batch,)`, all real when `None`). Returns
    `(states, traces, grads, y, loss)`: `grads` is that sum, the rest is per sample."""
    x = jax.lax.dynamic_index_in_dim(xs, t, 1, keepdims=False)
    targets = jax.vmap(lambda c: loss.target_at(c, t))(ys)
    states, traces, grads, y, value = jax.vmap(
        lambda s, tr, x, c: rule.factored_step(model, s, tr, x, c, loss)
    )(states, traces, x, targets)
    grads = batch_sum(keep_real(grads, real), weights)
    return states, traces, grads, y, value


def _trainable(model):
    from .._parameters import trainable

    return trainable(model)


def split_trainable(model) -> tuple[PyTree, PyTree]:
    from .._parameters import trainable_mask

    return eqx.partition(model, trainable_mask(model))
