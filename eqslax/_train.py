"""Offline training: one jitted step per batch, any rule, any optax optimiser."""

import equinox as eqx
import optax
from jaxtyping import Array, Float, Int, PyTree

from ._losses import AbstractLoss
from ._neurons import AbstractNeuron
from ._parameters import trainable
from ._rules import BPTT, AbstractLearningRule
from ._rules._base import check_batch


class TrainState(eqx.Module):
    """What a training step carries besides the model: the optimiser's state and the
    learning rule's state."""

    optimizer: PyTree
    rule: PyTree


def check_optimizer(optimizer, owner: str) -> None:
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"{owner}: `optimizer` must be an optax GradientTransformation such as "
            f"optax.adam(1e-3), got {type(optimizer).__name__}."
        )


class OfflineStep(eqx.Module):
    """A training step ``(model, state, xs, ys) -> (model, state, outputs, loss)``.

    Built by :func:`train_offline`; ``init(model)`` makes the first ``state``.
    """

    loss: AbstractLoss
    optimizer: optax.GradientTransformation
    rule: AbstractLearningRule

    def init(self, model: AbstractNeuron) -> TrainState:
        return TrainState(self.optimizer.init(trainable(model)), self.rule.init(model))

    def __call__(
        self,
        model: AbstractNeuron,
        state: TrainState,
        xs: Float[Array, "batch time *in"],
        ys: Int[Array, " batch"],
    ) -> tuple[AbstractNeuron, TrainState, Array, Array]:
        check_batch(model, self.loss, xs, ys, "train step")
        return _offline_step(self, model, state, xs, ys)


@eqx.filter_jit
def _offline_step(step: OfflineStep, model, state: TrainState, xs, ys):
    grads, rule_state, aux = step.rule.update(model, state.rule, step.loss, xs, ys)
    updates, opt_state = step.optimizer.update(grads, state.optimizer, trainable(model))
    model = eqx.apply_updates(model, updates)
    return model, TrainState(opt_state, rule_state), aux.outputs, aux.loss


def train_offline(
    model: AbstractNeuron,
    loss: AbstractLoss,
    optimizer: optax.GradientTransformation,
    rule: AbstractLearningRule | None = None,
) -> OfflineStep:
    """A jitted offline training step (Slax's ``train_offline``), BPTT by default.

    Each call vmaps the model over the batch, scans over time, asks ``rule`` for the
    batch gradient of the loss (normalised as in :mod:`eqslax.losses`) and applies one
    optimiser step to the trainable leaves (:func:`eqslax.trainable_mask`)::

        step = eqslax.train_offline(model, eqslax.PerStep(), optax.adam(1e-3))
        state = step.init(model)
        model, state, outputs, loss = step(model, state, xs, ys)
    """
    from ._simulate import check_model

    check_model(model, "train_offline")
    check_optimizer(optimizer, "train_offline")
    if not isinstance(loss, AbstractLoss):
        raise TypeError(f"train_offline: `loss` must be an eqslax loss, got {type(loss).__name__}.")
    return OfflineStep(loss=loss, optimizer=optimizer, rule=BPTT() if rule is None else rule)
