"""The learning-rule interface: rules are transformations around a model.

A rule turns a batch into a parameter gradient shaped like
`eqslax.trainable(model)`; an optax optimiser turns that into updates applied with
`eqx.apply_updates`. Rules never own the model or the optimiser.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PyTree, Shaped

from .._checks import check_float_array
from .._losses import AbstractLoss, check_label_range
from .._mask import check_mask, check_takes_mask, with_mask
from .._neurons import AbstractNeuron
from .._precision import check_input_precision


class Aux(eqx.Module):
    """What a rule's `update` saw: the batch `outputs` (batch, time, *out) and the
    batch-mean `loss`."""

    outputs: Array
    loss: Array


def check_batch(model, loss, xs, ys, owner: str, names=("xs", "ys")):
    """Batch-major data: `xs` (batch, time, *in) floats with `batch` and `time` > 0,
    and `ys` a target `loss` takes (`check_targets`).

    Returns `ys`, with a runtime check of the label range when it is traced; use it."""
    if not isinstance(model, AbstractNeuron):
        raise TypeError(
            f"{owner}: `model` must be an eqslax neuron or Connect, got {type(model).__name__}."
        )
    if not isinstance(loss, AbstractLoss):
        raise TypeError(
            f"{owner}: `loss` must be an eqslax loss such as PerStep(), got {type(loss).__name__}."
        )
    x_name, y_name = names
    check_float_array(xs, x_name, model.in_shape, owner, leading="batch time")
    check_input_precision(model, xs, x_name, owner)
    if xs.shape[0] == 0:
        raise ValueError(f"{owner}: `{x_name}` holds no samples (shape {tuple(xs.shape)}).")
    if xs.shape[1] == 0:
        raise ValueError(
            f"{owner}: `{x_name}` holds empty sequences (time = 0, shape {tuple(xs.shape)})."
        )
    return check_targets(model, loss, xs.shape[:2], ys, owner, y_name)


def _target_shapes(loss, batch: int, time: int, out_shape) -> list[tuple[int, ...]]:
    spec = loss.targets
    if spec.kind == "value":
        return [(batch, time, *out_shape)] if spec.per_step else [(batch, *out_shape)]
    return [(batch,)] * spec.per_sequence + [(batch, time)] * spec.per_step


def check_targets(model, loss, batch_time, ys, owner: str, name: str = "ys"):
    """`ys` must be a target `loss` takes (`loss.targets`) for a batch of
    `batch_time = (batch, time)`: class labels `(batch,)` or `(batch, time)` in
    `0..n_classes-1` (`n_classes` = the model's output size), or real values
    `(batch, time, *model.out_shape)`. Host labels are checked here; traced ones get an
    `eqx.error_if`, so use the returned `ys`."""
    spec, out_shape = loss.targets, tuple(model.out_shape)
    shapes = _target_shapes(loss, *batch_time, out_shape)
    what = "real-valued targets" if spec.kind == "value" else "integer class labels"
    if not hasattr(ys, "shape") or not hasattr(ys, "dtype"):
        raise TypeError(f"{owner}: `{name}` must be an array of {what}, got {type(ys).__name__}.")
    pretty = " or ".join(str(s) for s in shapes)
    if tuple(ys.shape) not in shapes:
        raise ValueError(
            f"{owner}: `{name}` must have shape {pretty} for {type(loss).__name__} "
            f"({what}), got {tuple(ys.shape)}."
        )
    if spec.kind == "value":
        if not jnp.issubdtype(ys.dtype, jnp.floating):
            raise TypeError(
                f"{owner}: `{name}` must hold real-valued targets (a floating dtype) for "
                f"{type(loss).__name__}, got dtype {ys.dtype}."
            )
        return ys
    if not jnp.issubdtype(ys.dtype, jnp.integer):
        hint = ""
        if jnp.issubdtype(ys.dtype, jnp.floating):
            hint = " For real-valued targets use a regression loss, e.g. PerStep(optax.l2_loss)."
        raise TypeError(
            f"{owner}: `{name}` must hold integer class labels, got dtype {ys.dtype}.{hint}"
        )
    n_classes = out_shape[-1]
    if isinstance(ys, jax.core.Tracer):
        return check_label_range(ys, n_classes, owner, name)
    low, high = (int(v) for v in (jnp.min(ys), jnp.max(ys)))
    if low < 0 or high >= n_classes:
        raise ValueError(
            f"{owner}: `{name}` must hold class labels in 0..{n_classes - 1} (n_classes = "
            f"{n_classes}, the model's output size), got labels from {low} to {high}."
        )
    return ys


class AbstractLearningRule(eqx.Module):
    """A way of computing parameter gradients for a spiking model.

    - `init(model) -> rule_state`: whatever the rule keeps across batches.
    - `update(model, rule_state, loss, xs, ys) -> (grads, rule_state, aux)`: the
      gradient for one batch (`xs`: (batch, time, *in), `ys`: (batch,)), shaped like
      `eqslax.trainable(model)`, ready for `optimizer.update`.
    - `grad(model, loss, xs, ys) -> grads`: the gradient the rule produces for one
      batch, summed over the sequence with parameter updates deferred to its end. This
      is what gradient comparisons and identity tests use.

    Both take an optional `mask` `(batch, time)` of booleans, True at the real steps of
    padded sequences: padded steps give no loss and no learning signal (see
    `eqslax.data.pad_sequences`). A rule's `update` written without a `mask` keyword
    runs unchanged on unpadded batches.
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
        ys: Shaped[Array, "batch ..."],
        mask: Bool[Array, "batch time"] | None = None,
    ) -> tuple[PyTree, PyTree, Aux]:
        """One batch's gradient, the new rule state and what the rule saw."""

    def grad(
        self,
        model: AbstractNeuron,
        loss: AbstractLoss,
        xs: Float[Array, "batch time *in"],
        ys: Shaped[Array, "batch ..."],
        mask: Bool[Array, "batch time"] | None = None,
    ) -> PyTree:
        owner = f"{type(self).__name__}.grad"
        ys = check_batch(model, loss, xs, ys, owner)
        mask = check_rule_mask(self, loss, mask, xs, owner)
        return _jit_grad(self, model, self.init(model), loss, xs, ys, mask)


def check_rule_mask(rule, loss, mask, xs, owner: str):
    """`mask` checked against the batch `xs` (None passes), and taken by `rule` (when
    given) and by `loss`."""
    if mask is None:
        return None
    mask = check_mask(mask, xs.shape[:2], owner)
    if rule is not None:
        check_takes_mask(rule.update, f"{type(rule).__name__}.update", owner)
    check_takes_mask(loss.__call__, f"the loss {type(loss).__name__}", owner)
    return mask


@eqx.filter_jit
def _jit_update(rule, model, rule_state, loss, xs, ys, mask=None):
    return with_mask(rule.update, model, rule_state, loss, xs, ys, mask=mask)


@eqx.filter_jit
def _jit_grad(rule, model, rule_state, loss, xs, ys, mask=None):
    """`update`'s gradient alone: the per-step outputs and losses it also returns are
    never computed (the scan drops them), so `grad` keeps no `(batch, time, ...)` arrays."""
    return with_mask(rule.update, model, rule_state, loss, xs, ys, mask=mask)[0]


def zeros_like_trainable(params: PyTree) -> PyTree:
    return jax.tree_util.tree_map(jnp.zeros_like, params)
