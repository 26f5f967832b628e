"""Offline training: one jitted step per batch, any rule, any optax optimiser."""

import equinox as eqx
import optax

from ._finite import any_nonfinite
from ._losses import AbstractLoss
from ._mask import with_mask
from ._neurons import AbstractNeuron
from ._parameters import trainable
from ._precision import check_training_precision
from ._rules import BPTT, AbstractLearningRule
from ._step import AbstractTrainStep, TrainState, check_optimizer


class OfflineStep(AbstractTrainStep):
    """One optimiser step per batch on the rule's batch gradient; see `train_offline`."""

    loss: AbstractLoss
    optimizer: optax.GradientTransformation
    rule: AbstractLearningRule

    def init_rule(self, model):
        return self.rule.init(model)

    def run(self, model, state, xs, ys, mask=None):
        return _offline_step(self, model, state, xs, ys, mask)


@eqx.filter_jit
def _offline_step(step: OfflineStep, model, state: TrainState, xs, ys, mask):
    update = step.rule.update
    grads, rule_state, aux = with_mask(update, model, state.rule, step.loss, xs, ys, mask=mask)
    updates, opt_state = step.optimizer.update(grads, state.optimizer, trainable(model))
    model = eqx.apply_updates(model, updates)
    bad = any_nonfinite(grads, trainable(model))
    return model, TrainState(opt_state, rule_state, bad), aux.outputs, aux.loss


def train_offline(
    model: AbstractNeuron,
    loss: AbstractLoss,
    optimizer: optax.GradientTransformation,
    rule: AbstractLearningRule | None = None,
) -> OfflineStep:
    """A jitted offline training step (Slax's `train_offline`), BPTT by default.

    Each call vmaps the model over the batch, scans over time, asks `rule` for the
    batch gradient of the loss (normalised as in `eqslax.losses`) and applies one
    optimiser step to the trainable leaves (`eqslax.trainable_mask`):

    ```python
    step = eqslax.train_offline(model, eqslax.PerStep(), optax.adam(1e-3))
    state = step.init(model)
    model, state, outputs, loss = step(model, state, xs, ys)
    ```
    """
    from ._simulate import check_model

    check_model(model, "train_offline")
    check_optimizer(optimizer, "train_offline")
    check_training_precision(model, "train_offline")
    if not isinstance(loss, AbstractLoss):
        raise TypeError(f"train_offline: `loss` must be an eqslax loss, got {type(loss).__name__}.")
    if rule is not None and not isinstance(rule, AbstractLearningRule):
        raise TypeError(
            f"train_offline: `rule` must be a learning rule object such as eqslax.BPTT() or "
            f"eqslax.TruncatedBPTT(20), got {rule!r} ({type(rule).__name__})."
        )
    return OfflineStep(loss=loss, optimizer=optimizer, rule=BPTT() if rule is None else rule)
