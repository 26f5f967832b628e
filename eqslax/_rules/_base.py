"""The learning-rule interface: rules are transformations around a model.

A rule turns a batch into a parameter gradient shaped like
``eqslax.trainable(model)``; an optax optimiser turns that into updates applied with
``eqx.apply_updates``. Rules never own the model or the optimiser.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PyTree

from .._checks import check_float_array
from .._losses import AbstractLoss
from .._neurons import AbstractNeuron


class Aux(eqx.Module):
    """What a rule's ``update`` saw: the batch ``outputs`` (batch, time, *out) and the
    batch-mean ``loss``."""

    outputs: Array
    loss: Array


def check_batch(model, loss, xs, ys, owner: str) -> None:
    """Batch-major data: ``xs`` (batch, time, *in) floats, ``ys`` (batch,) ints."""
    if not isinstance(model, AbstractNeuron):
        raise TypeError(
            f"{owner}: `model` must be an eqslax neuron or Connect, got {type(model).__name__}."
        )
    if not isinstance(loss, AbstractLoss):
        raise TypeError(
            f"{owner}: `loss` must be an eqslax loss such as PerStep(), got {type(loss).__name__}."
        )
    check_float_array(xs, "xs", model.in_shape, owner, leading="batch time")
    if not hasattr(ys, "shape") or ys.shape != xs.shape[:1]:
        raise ValueError(
            f"{owner}: `ys` must have shape (batch,) = ({xs.shape[0]},) to match `xs`, got "
            f"{getattr(ys, 'shape', type(ys).__name__)}."
        )
    if not jnp.issubdtype(ys.dtype, jnp.integer):
        raise TypeError(f"{owner}: `ys` must hold integer class labels, got dtype {ys.dtype}.")


class AbstractLearningRule(eqx.Module):
    """A way of computing parameter gradients for a spiking model.

    - ``init(model) -> rule_state``: whatever the rule keeps across batches.
    - ``update(model, rule_state, loss, xs, ys) -> (grads, rule_state, aux)``: the
      gradient for one batch (``xs``: (batch, time, *in), ``ys``: (batch,)), shaped like
      ``eqslax.trainable(model)``, ready for ``optimizer.update``.
    - ``grad(model, loss, xs, ys) -> grads``: the gradient the rule produces for one
      batch, summed over the sequence with parameter updates deferred to its end. This
      is what gradient comparisons and identity tests use.
    """

    def init(self, model: AbstractNeuron) -> PyTree:
        return None

    @abc.abstractmethod
    def update(
        self,
        model: AbstractNeuron,
        rule_state: PyTree,
        loss: AbstractLoss,
        xs: Float[Array, "batch time *in"],
        ys: Int[Array, " batch"],
    ) -> tuple[PyTree, PyTree, Aux]:
        """One batch's gradient, the new rule state and what the rule saw."""

    def grad(
        self,
        model: AbstractNeuron,
        loss: AbstractLoss,
        xs: Float[Array, "batch time *in"],
        ys: Int[Array, " batch"],
    ) -> PyTree:
        check_batch(model, loss, xs, ys, f"{type(self).__name__}.grad")
        grads, _, _ = _jit_update(self, model, self.init(model), loss, xs, ys)
        return grads


@eqx.filter_jit
def _jit_update(rule, model, rule_state, loss, xs, ys):
    return rule.update(model, rule_state, loss, xs, ys)


def zeros_like_trainable(params: PyTree) -> PyTree:
    return jax.tree_util.tree_map(jnp.zeros_like, params)
