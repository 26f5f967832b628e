"""Integrate-and-fire populations: `IF`, `LIF` and the non-spiking readout `LI`."""

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import shape_tuple
from .._surrogate import AbstractSurrogate
from ._base import (
    AbstractPopulation,
    AbstractSpikingPopulation,
    frozen_names,
    population_parameter,
    spiking_options,
)


class LIFState(eqx.Module):
    """Membrane potential `v` carried between steps (post-reset when `reset_decay`)."""

    v: Float[Array, "*neurons"]


class LIF(AbstractSpikingPopulation):
    r"""Leaky integrate-and-fire neuron, discrete time, no explicit `dt`.

    $$
    v_t = \lambda u_{t-1} + I_t, \qquad s_t = H(v_t - \vartheta)
    $$

    followed by the reset of `AbstractSpikingPopulation` (subtractive by default).
    The input $I_t$ is not scaled by $1-\lambda$ (Slax, snnTorch). The decay
    $\lambda$ is clipped to $[0, 1]$ when read, so training cannot make it
    unstable. Output: spikes $s_t \in \{0, 1\}$.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
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
        surrogate: AbstractSurrogate | None = None,
        reset: str = "subtract",
        detach_reset: bool = False,
        reset_decay: bool = True,
        train_decay: bool = False,
        train_threshold: bool = False,
    ):
        """**Arguments:**

        - `shape`: population size, `128` or `(8, 16)`.
        - `decay`: leak $\\lambda \\in [0, 1]$, scalar or per neuron (default 0.9).
        - `threshold`: $\\vartheta > 0$, scalar or per neuron (default 1).
        - `surrogate`: spike function (default `FastSigmoid()`, slope 25).
        - `reset`: `"subtract"`, `"zero"` or `"none"`.
        - `detach_reset`: stop the gradient through the reset term.
        - `reset_decay`: decay the reset at the next step (Slax form, default) or not
          (snnTorch form).
        - `train_decay`, `train_threshold`: make them trainable (default frozen).
        """
        owner = type(self).__name__
        self.shape = shape_tuple(shape, "shape", owner)
        self.decay = population_parameter(decay, "decay", self.shape, owner, 0, 1)
        self.threshold = population_parameter(threshold, "threshold", self.shape, owner, 0)
        self.reset, self.detach_reset, self.reset_decay, self.surrogate = spiking_options(
            owner, reset, detach_reset, reset_decay, surrogate
        )
        self.frozen = frozen_names(owner, train_decay=train_decay, train_threshold=train_threshold)

    def init_state(self) -> LIFState:
        return LIFState(v=jnp.zeros(self.shape, self.decay.dtype))

    def __call__(
        self, state: LIFState, x: Float[Array, "*neurons"]
    ) -> tuple[LIFState, Float[Array, "*neurons"]]:
        self.check_input(x)
        decay = jnp.clip(self.param("decay"), 0.0, 1.0)
        threshold = self.param("threshold")
        v = self.leak(state.v, decay, threshold) + x
        s, v = self.spike(v, threshold)
        return LIFState(v=v), s


class IF(AbstractSpikingPopulation):
    r"""Integrate-and-fire neuron: `LIF` without leak ($\lambda = 1$).

    $$
    v_t = u_{t-1} + I_t, \qquad s_t = H(v_t - \vartheta)
    $$
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    threshold: Float[Array, "*threshold"]
    surrogate: AbstractSurrogate
    reset: str = eqx.field(static=True)
    detach_reset: bool = eqx.field(static=True)
    reset_decay: bool = eqx.field(static=True)
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        shape: int | Sequence[int],
        threshold: float | Float[ArrayLike, "*threshold"] = 1.0,
        *,
        surrogate: AbstractSurrogate | None = None,
        reset: str = "subtract",
        detach_reset: bool = False,
        reset_decay: bool = True,
        train_threshold: bool = False,
    ):
        """**Arguments:** as `LIF`, without `decay`."""
        owner = type(self).__name__
        self.shape = shape_tuple(shape, "shape", owner)
        self.threshold = population_parameter(threshold, "threshold", self.shape, owner, 0)
        self.reset, self.detach_reset, self.reset_decay, self.surrogate = spiking_options(
            owner, reset, detach_reset, reset_decay, surrogate
        )
        self.frozen = frozen_names(owner, train_threshold=train_threshold)

    def init_state(self) -> LIFState:
        return LIFState(v=jnp.zeros(self.shape, self.threshold.dtype))

    def __call__(
        self, state: LIFState, x: Float[Array, "*neurons"]
    ) -> tuple[LIFState, Float[Array, "*neurons"]]:
        self.check_input(x)
        threshold = self.param("threshold")
        v = self.leak(state.v, jnp.ones((), threshold.dtype), threshold) + x
        s, v = self.spike(v, threshold)
        return LIFState(v=v), s


class LI(AbstractPopulation):
    r"""Leaky integrator, the non-spiking readout: $v_t = \lambda v_{t-1} + I_t$.

    Output: the membrane $v_t$ itself (use with max- or mean-over-time losses).
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    decay: Float[Array, "*decay"]
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        shape: int | Sequence[int],
        decay: float | Float[ArrayLike, "*decay"] = 0.9,
        *,
        train_decay: bool = False,
    ):
        """**Arguments:** `shape`; `decay` $\\lambda \\in [0, 1]$; `train_decay`."""
        owner = type(self).__name__
        self.shape = shape_tuple(shape, "shape", owner)
        self.decay = population_parameter(decay, "decay", self.shape, owner, 0, 1)
        self.frozen = frozen_names(owner, train_decay=train_decay)

    def init_state(self) -> LIFState:
        return LIFState(v=jnp.zeros(self.shape, self.decay.dtype))

    def __call__(
        self, state: LIFState, x: Float[Array, "*neurons"]
    ) -> tuple[LIFState, Float[Array, "*neurons"]]:
        self.check_input(x)
        v = jnp.clip(self.param("decay"), 0.0, 1.0) * state.v + x
        return LIFState(v=v), v
