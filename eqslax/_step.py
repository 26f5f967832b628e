"""Training steps: the shared shape of every driver's jitted step."""

import abc

import equinox as eqx
import jax.numpy as jnp
import optax
from jaxtyping import Array, Bool, Float, PyTree, Shaped

from ._losses import AbstractLoss
from ._mask import check_takes_mask, with_mask
from ._neurons import AbstractNeuron
from ._parameters import trainable
from ._rules._base import check_batch, check_rule_mask


class TrainState(eqx.Module):
    """What a training step carries besides the model: the optimiser's state, the
    learning rule's state, and `nonfinite`: whether the step that returned this state
    met a NaN or an infinity in a gradient or in an updated trainable parameter (a
    boolean scalar computed inside the jitted step; `eqslax.fit` stops on it)."""

    optimizer: PyTree
    rule: PyTree
    nonfinite: Bool[Array, ""] = eqx.field(default_factory=lambda: jnp.asarray(False))


def check_optimizer(optimizer, owner: str) -> None:
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"{owner}: `optimizer` must be an optax GradientTransformation such as "
            f"optax.adam(1e-3), got {type(optimizer).__name__}."
        )


class AbstractTrainStep(eqx.Module):
    """A jitted training step `(model, state, xs, ys) -> (model, state, outputs, loss)`
    with `xs` (batch, time, *in) and `ys` a target the loss takes ((batch,) labels,
    (batch, time) labels or (batch, time, *out) values); `init(model)` makes the first
    `state` (a `TrainState`). Concrete steps say how one batch is learned.

    An optional `mask` (batch, time) of booleans marks the real steps of padded
    sequences (see `eqslax.data.pad_sequences`): padded steps give no loss and no
    learning signal, and an online step does no update at a step where every sample is
    padded. It is checked (shape, dtype, a real step per sample) before any work."""

    loss: eqx.AbstractVar[AbstractLoss]
    optimizer: eqx.AbstractVar[optax.GradientTransformation]

    @abc.abstractmethod
    def init_rule(self, model: AbstractNeuron) -> PyTree:
        """The learning rule's state before the first batch."""

    @abc.abstractmethod
    def run(self, model, state: TrainState, xs, ys, mask=None):
        """The jitted work of one call, after the arguments were checked (`mask` is
        passed only when one is given)."""

    def check(self, xs) -> None:
        """Extra checks of a batch, before any work (none by default)."""

    def init(self, model: AbstractNeuron) -> TrainState:
        return TrainState(self.optimizer.init(trainable(model)), self.init_rule(model))

    def __call__(
        self,
        model: AbstractNeuron,
        state: TrainState,
        xs: Float[Array, "batch time *in"],
        ys: Shaped[Array, "batch ..."],
        mask: Bool[Array, "batch time"] | None = None,
    ) -> tuple[AbstractNeuron, TrainState, Array, Array]:
        owner = type(self).__name__
        ys = check_batch(model, self.loss, xs, ys, owner)
        mask = check_rule_mask(getattr(self, "rule", None), self.loss, mask, xs, owner)
        if mask is not None:
            check_takes_mask(self.run, f"{owner}.run", owner)
        self.check(xs)
        return with_mask(self.run, model, state, xs, ys, mask=mask)
