"""Current-based LIF: a synaptic current filter in front of the membrane."""

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import shape_tuple
from .._surrogate import AbstractSurrogate
from ._base import (
    AbstractSpikingPopulation,
    frozen_names,
    population_parameter,
    spiking_options,
)


class CuBaLIFState(eqx.Module):
    """Synaptic current `i` and carried membrane `v`."""

    i: Float[Array, "*neurons"]
    v: Float[Array, "*neurons"]


class CuBaLIF(AbstractSpikingPopulation):
    r"""Current-based leaky integrate-and-fire neuron (two state variables).

    $$
    i_t = \alpha\, i_{t-1} + I_t, \qquad v_t = \lambda u_{t-1} + i_t,
    \qquad s_t = H(v_t - \vartheta)
    $$

    then the reset of `AbstractSpikingPopulation`. $\alpha$ is
    `synapse_decay`, $\lambda$ is `decay` (snnTorch's `Synaptic`, NIR's
    `CubaLIF`).
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    synapse_decay: Float[Array, "*alpha"]
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
        synapse_decay: float | Float[ArrayLike, "*alpha"] = 0.8,
        decay: float | Float[ArrayLike, "*decay"] = 0.9,
        threshold: float | Float[ArrayLike, "*threshold"] = 1.0,
        *,
        surrogate: AbstractSurrogate | None = None,
        reset: str = "subtract",
        detach_reset: bool = False,
        reset_decay: bool = True,
        train_decay: bool = False,
        train_threshold: bool = False,
    ):
        """**Arguments:** as `LIF`, plus `synapse_decay` $\\alpha \\in [0, 1]$
        (default 0.8), trained together with `decay` when `train_decay`."""
        owner = type(self).__name__
        self.shape = shape_tuple(shape, "shape", owner)
        self.synapse_decay = population_parameter(
            synapse_decay, "synapse_decay", self.shape, owner, 0, 1
        )
        self.decay = population_parameter(decay, "decay", self.shape, owner, 0, 1)
        self.threshold = population_parameter(threshold, "threshold", self.shape, owner, 0)
        self.reset, self.detach_reset, self.reset_decay, self.surrogate = spiking_options(
            owner, reset, detach_reset, reset_decay, surrogate
        )
        frozen = frozen_names(owner, train_decay=train_decay, train_threshold=train_threshold)
        self.frozen = frozen + (("synapse_decay",) if not train_decay else ())

    def init_state(self) -> CuBaLIFState:
        zeros = jnp.zeros(self.shape, self.decay.dtype)
        return CuBaLIFState(i=zeros, v=zeros)

    def __call__(
        self, state: CuBaLIFState, x: Float[Array, "*neurons"]
    ) -> tuple[CuBaLIFState, Float[Array, "*neurons"]]:
        self.check_input(x)
        alpha = jnp.clip(self.param("synapse_decay"), 0.0, 1.0)
        decay = jnp.clip(self.param("decay"), 0.0, 1.0)
        threshold = self.param("threshold")
        i = alpha * state.i + x
        v = self.leak(state.v, decay, threshold) + i
        s, v = self.spike(v, threshold)
        return CuBaLIFState(i=i, v=v), s
