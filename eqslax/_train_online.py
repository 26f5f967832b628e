"""Online training drivers: parameter updates at every step, or deferred to the end."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax

from ._finite import any_nonfinite
from ._losses import AbstractLoss
from ._neurons import AbstractNeuron
from ._parameters import trainable_mask
from ._precision import check_training_precision
from ._rules._online import (
    AbstractOnlineRule,
    batch_step,
    check_per_step,
    sequence_loss_value,
)
from ._simulate import check_model
from ._step import AbstractTrainStep, TrainState, check_optimizer
from ._train import OfflineStep


class OnlineStep(AbstractTrainStep):
    r"""A training step that updates the parameters after every time step.

    At step $t$ each sample advances its model state and the rule's traces, the
    rule's gradient of the step loss $\ell(y_t, c_t)$ is averaged over the batch,
    and the optimiser updates $\theta$; the next step runs with the new
    parameters while traces carry on. One `lax.scan` over time, `vmap` over batch.
    Built by `train_online`; `init(model)` makes the first state.

    With a `mask`, a padded sample's step gradient is zero (the batch mean still divides
    by $B$), and at a step where every sample is padded neither the parameters nor the
    optimiser state change. The reported loss is
    $\frac1B\sum_b \frac{1}{T_b}\sum_t m_{b,t}\,\ell(y^{(b)}_t, c^{(b)}_t)$.
    """

    loss: AbstractLoss
    optimizer: optax.GradientTransformation
    rule: AbstractOnlineRule

    def init_rule(self, model):
        return self.rule.init(model)

    def run(self, model, state, xs, ys, mask=None):
        return _online_step(self, model, state, xs, ys, mask)


@eqx.filter_jit
def _online_step(step: OnlineStep, model, state: TrainState, xs, ys, mask):
    rule, loss = step.rule, step.loss
    params, static = eqx.partition(model, trainable_mask(model))
    model_states, traces = jax.vmap(lambda x: rule.start(model, x[0]))(xs)

    def body(carry, t):
        params, opt_state, model_states, traces, bad = carry
        current = eqx.combine(params, static)
        real = None if mask is None else mask[:, t]
        model_states, traces, grads, y, value = batch_step(
            rule, current, loss, model_states, traces, xs, ys, t, real
        )
        grads = jtu.tree_map(lambda g: g / xs.shape[0], grads)
        updates, new_opt_state = step.optimizer.update(grads, opt_state, params)
        new_params = eqx.apply_updates(params, updates)
        if mask is None:
            params, opt_state = new_params, new_opt_state
        else:  # a step no sample reaches leaves the optimiser untouched
            any_real = jnp.any(real)
            params, opt_state = jtu.tree_map(
                lambda new, old: jnp.where(any_real, new, old),
                (new_params, new_opt_state),
                (params, opt_state),
            )
        bad = bad | any_nonfinite(grads)
        return (params, opt_state, model_states, traces, bad), (y, value)

    carry = (params, state.optimizer, model_states, traces, jnp.asarray(False))
    steps = jnp.arange(xs.shape[1])
    (params, opt_state, _, _, bad), (outputs, values) = jax.lax.scan(body, carry, steps)
    model = eqx.combine(params, static)
    new_state = TrainState(opt_state, state.rule, bad | any_nonfinite(params))
    value = sequence_loss_value(jnp.moveaxis(values, 0, 1), mask)
    return model, new_state, jnp.moveaxis(outputs, 0, 1), value


def _check(model, rule, loss, optimizer, owner):
    check_model(model, owner)
    check_optimizer(optimizer, owner)
    check_training_precision(model, owner)
    if not isinstance(rule, AbstractOnlineRule):
        raise TypeError(
            f"{owner}: `rule` must be an online rule (RTRL, OSTL, ...), got {type(rule).__name__}."
        )
    if not isinstance(loss, AbstractLoss):
        raise TypeError(f"{owner}: `loss` must be an eqslax loss, got {type(loss).__name__}.")
    check_per_step(loss, owner)
    rule.init_traces(model, model.init_state())  # layer checks, before any tracing


def train_online(
    model: AbstractNeuron,
    rule: AbstractOnlineRule,
    loss: AbstractLoss,
    optimizer: optax.GradientTransformation,
) -> OnlineStep:
    """A jitted step `(model, state, xs, ys) -> (model, state, outputs, loss)` that
    applies `optimizer` after every time step (fully online learning)."""
    _check(model, rule, loss, optimizer, "train_online")
    return OnlineStep(loss=loss, optimizer=optimizer, rule=rule)


def train_online_deferred(
    model: AbstractNeuron,
    rule: AbstractOnlineRule,
    loss: AbstractLoss,
    optimizer: optax.GradientTransformation,
) -> OfflineStep:
    r"""The same rule with its step gradients summed over the sequence, divided by
    $T$, averaged over the batch and applied once at the end: with an exact rule
    (RTRL) this is the offline BPTT step on the per-step loss."""
    _check(model, rule, loss, optimizer, "train_online_deferred")
    return OfflineStep(loss=loss, optimizer=optimizer, rule=rule)
