"""eqslax -> Flax: an eqslax neuron (or a whole `Connect`) as a Flax RNN cell."""

from typing import Any

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from flax import linen, nnx
from jaxtyping import Array, Float, PyTree

from .._neurons import AbstractNeuron
from ._params import Static, check_model, from_flax_params, to_flax_params


def _batch_dims(input_shape: Any, in_shape: tuple[int, ...], owner: str) -> tuple[int, ...]:
    """The leading axes of `input_shape` before the model's `in_shape`."""
    input_shape = tuple(int(s) for s in input_shape)
    n_batch = len(input_shape) - len(in_shape)
    if n_batch < 0 or input_shape[n_batch:] != in_shape:
        raise ValueError(
            f"{owner}: the input shape must be (*batch, *{in_shape}) for this model, got "
            f"{input_shape}."
        )
    return input_shape[:n_batch]


def _batched_carry(model: AbstractNeuron, batch: tuple[int, ...]) -> PyTree:
    state = model.init_state()
    return jtu.tree_map(lambda leaf: jnp.broadcast_to(leaf, batch + jnp.shape(leaf)), state)


def _batched_step(model: AbstractNeuron, carry: PyTree, x: Array, owner: str):
    """One step of `model` on `x` with any number of leading batch axes (`jax.vmap`)."""
    _batch_dims(x.shape, tuple(model.in_shape), owner)
    step = model.__call__
    for _ in range(x.ndim - len(model.in_shape)):
        step = jax.vmap(step)
    return step(carry, x)


class LinenCell(linen.RNNCellBase):
    r"""An eqslax model as a `flax.linen` RNN cell, usable inside `linen.RNN`.

    **Parameters.** The trainable leaves of `model` (per `eqslax.trainable_mask`)
    are this cell's Flax `params`, named by their path in `model`
    (`eqslax.flax_bridge.to_flax_params`): for `Connect([Linear, LIF, Linear,
    LIF])` these are `params["layers"]["0"]["weight"]`, `["bias"]`, and the same
    under `"2"`. `init` returns them as they are in `model` (the PRNG key is not
    used: build `model` with the key you want). Everything else, i.e. static structure,
    frozen parameters (a `LIF`'s decay unless `train_decay`) and surrogate
    hyperparameters, is read from `model` and is not a Flax variable, so Flax/optax
    training updates exactly what eqslax training updates. `to_eqslax` maps trained
    `params` back to an eqslax model.

    **Carry.** The carry is `model`'s state record (`LIFState`, `ConnectState`,
    ...) with the batch axes in front of every leaf; `initialize_carry` broadcasts
    `model.init_state()` to them.

    **Batching.** eqslax models are unbatched. The cell accepts `x` of shape
    `(*batch, *model.in_shape)` with any number of batch axes and applies
    $(h, y) = f(h, x)$ to each batch element by `jax.vmap`; `num_feature_axes`
    is `len(model.in_shape)`, so `linen.RNN` finds the time axis right before them.
    Under `linen.RNN(LinenCell(model))` an input `(batch, time, *in)` gives what
    `jax.vmap(lambda x: eqslax.simulate(model, x)[1])` gives.
    """

    model: AbstractNeuron

    def __post_init__(self):
        check_model(self.model, "LinenCell")
        super().__post_init__()

    @linen.compact
    def __call__(self, carry: PyTree, x: Float[Array, "*batch_in"]) -> tuple[PyTree, Array]:
        params = {
            name: self.param(name, lambda rng, value=value: value)
            for name, value in to_flax_params(self.model).items()
        }
        model = from_flax_params(self.model, params)
        return _batched_step(model, carry, x, "LinenCell")

    @linen.nowrap
    def initialize_carry(self, rng: Any, input_shape: tuple[int, ...]) -> PyTree:
        """`model.init_state()` broadcast to the batch axes of `input_shape`
        (`(*batch, *model.in_shape)`); `rng` is not used."""
        return _batched_carry(
            self.model, _batch_dims(input_shape, self.model.in_shape, "LinenCell")
        )

    @property
    def num_feature_axes(self) -> int:
        return len(self.model.in_shape)

    @linen.nowrap
    def to_eqslax(self, params: PyTree) -> AbstractNeuron:
        """`model` with this cell's `params` collection in place of its trainable
        leaves (inside `linen.RNN` the cell's params are `variables["params"]["cell"]`)."""
        return from_flax_params(self.model, params)


def _as_nnx_params(tree: dict[str, Any]):
    return nnx.Dict(
        {
            key: _as_nnx_params(value) if isinstance(value, dict) else nnx.Param(value)
            for key, value in tree.items()
        }
    )


class NNXCell(nnx.RNNCellBase):
    r"""An eqslax model as a `flax.nnx` RNN cell, usable inside `nnx.RNN`.

    The trainable leaves of `model` are `nnx.Param`s in `self.params`, a nested
    `nnx.Dict` with the names of `eqslax.flax_bridge.to_flax_params`
    (`cell.params["layers"]["0"]["weight"]`), so `nnx.grad` and
    `nnx.Optimizer(cell, tx, wrt=nnx.Param)` train what eqslax would train. Frozen
    leaves and static structure are held, with `model`, as a static attribute: they
    are constants, not NNX state, and the cell has no state but its `Param`s.

    Carry and batching are those of `LinenCell`: the carry is `model`'s state
    record with the batch axes in front, and `x` of shape `(*batch, *in_shape)` is
    stepped by `jax.vmap` over the batch axes. `to_eqslax` returns the eqslax
    model with the current parameter values.
    """

    def __init__(self, model: AbstractNeuron):
        """**Arguments:** `model`, the eqslax neuron or `Connect` to wrap."""
        check_model(model, "NNXCell")
        self.template = nnx.static(Static(model))
        self.params = _as_nnx_params(to_flax_params(model))

    def to_eqslax(self) -> AbstractNeuron:
        """The eqslax model with the current values of `self.params`."""
        values = nnx.state(self.params, nnx.Param).to_pure_dict()
        return from_flax_params(self.template.value, values)

    def __call__(self, carry: PyTree, x: Float[Array, "*batch_in"]) -> tuple[PyTree, Array]:
        return _batched_step(self.to_eqslax(), carry, x, "NNXCell")

    def initialize_carry(
        self, input_shape: tuple[int, ...], rngs: Any = None, carry_init: Any = None
    ) -> PyTree:
        """`model.init_state()` broadcast to the batch axes of `input_shape`; `rngs`
        and `carry_init` are not used (the model's rest state is its own)."""
        model = self.template.value
        return _batched_carry(model, _batch_dims(input_shape, model.in_shape, "NNXCell"))

    @property
    def num_feature_axes(self) -> int:
        return len(self.template.value.in_shape)
