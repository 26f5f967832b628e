"""Recurrent LIF: a LIF population with its own trainable recurrent weight matrix."""

import math
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import shape_tuple
from .._surrogate import AbstractSurrogate
from ._base import (
    AbstractSpikingPopulation,
    frozen_names,
    population_parameter,
    spiking_options,
)


class RLIFState(eqx.Module):
    """Carried membrane `v` and the spikes `s` of the last step."""

    v: Float[Array, "*neurons"]
    s: Float[Array, "*neurons"]


class RLIF(AbstractSpikingPopulation):
    r"""LIF with all-to-all recurrent weights $W^{rec}$ (flattened population).

    $$
    v_t = \lambda u_{t-1} + I_t + W^{rec} s_{t-1}, \qquad s_t = H(v_t - \vartheta)
    $$

    then the reset of `AbstractSpikingPopulation`. Units are coupled, so
    diagonal online rules (OSTL, OTTT) reject this neuron; RTRL handles it exactly.

    This is the same model as `Recurrent(LIF(...), weight=W)` (the general composition,
    which also makes recurrent ALIF and CuBaLIF): equal outputs and gradients for equal
    weights. It is kept as its own class because its flat state `(v, s)` and field
    `recurrent_weight` are what existing code (e-prop, NeuroBench counts) reads.
    """

    elementwise: ClassVar[bool] = False

    shape: tuple[int, ...] = eqx.field(static=True)
    recurrent_weight: Float[Array, "neurons neurons"]
    decay: Float[Array, "*decay"]
    threshold: Float[Array, "*threshold"]
    surrogate: AbstractSurrogate
    reset: str = eqx.field(static=True)
    detach_reset: bool = eqx.field(static=True)
    reset_decay: bool = eqx.field(static=True)
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        shape: int | Sequence[int],
        decay: float | Float[ArrayLike, "*decay"] = 0.9,
        threshold: float | Float[ArrayLike, "*threshold"] = 1.0,
        *,
        key: PRNGKeyArray,
        surrogate: AbstractSurrogate | None = None,
        reset: str = "subtract",
        detach_reset: bool = False,
        reset_decay: bool = True,
        train_decay: bool = False,
        train_threshold: bool = False,
    ):
        """**Arguments:** as `LIF`, plus `key` to draw $W^{rec}$ from
        $U(-1/\\sqrt n, 1/\\sqrt n)$ with a zero diagonal (no self-connections)."""
        owner = type(self).__name__
        self.shape = shape_tuple(shape, "shape", owner)
        n = math.prod(self.shape)
        bound = 1.0 / math.sqrt(n)
        w = jax.random.uniform(key, (n, n), minval=-bound, maxval=bound)
        self.recurrent_weight = w * (1.0 - jnp.eye(n, dtype=w.dtype))
        self.decay = population_parameter(decay, "decay", self.shape, owner, 0, 1)
        self.threshold = population_parameter(threshold, "threshold", self.shape, owner, 0)
        self.reset, self.detach_reset, self.reset_decay, self.surrogate = spiking_options(
            owner, reset, detach_reset, reset_decay, surrogate
        )
        self.frozen = frozen_names(owner, train_decay=train_decay, train_threshold=train_threshold)

    def init_state(self) -> RLIFState:
        zeros = jnp.zeros(self.shape, self.decay.dtype)
        return RLIFState(v=zeros, s=zeros)

    def __call__(
        self, state: RLIFState, x: Float[Array, "*neurons"]
    ) -> tuple[RLIFState, Float[Array, "*neurons"]]:
        self.check_input(x)
        decay = jnp.clip(self.param("decay"), 0.0, 1.0)
        threshold = self.param("threshold")
        recurrent = (self.recurrent_weight @ state.s.reshape(-1)).reshape(self.shape)
        v = self.leak(state.v, decay, threshold) + x + recurrent
        s, v = self.spike(v, threshold)
        return RLIFState(v=v, s=s), s
