"""Adaptive LIF (Bellec et al. 2018): a threshold that rises with each spike."""

import math
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import shape_tuple
from .._surrogate import AbstractSurrogate
from ._base import (
    AbstractSpikingPopulation,
    population_parameter,
    spiking_options,
)

_DEFAULT_RHO = math.exp(-1 / 20)  # a 20-step adaptation time constant


class ALIFState(eqx.Module):
    """Membrane `v` and threshold adaptation `a`."""

    v: Float[Array, "*neurons"]
    a: Float[Array, "*neurons"]


class ALIF(AbstractSpikingPopulation):
    r"""Adaptive leaky integrate-and-fire neuron (LSNN; Bellec et al. 2018, 2020).

    $$
    A_t = \vartheta + \beta a_{t-1}, \qquad v_t = \lambda u_{t-1} + I_t,
    \qquad s_t = H(v_t - A_t), \qquad a_t = \rho\, a_{t-1} + s_t
    $$

    The threshold of step $t$ depends on spikes up to $t-1$. A subtractive
    reset removes the *base* threshold $\vartheta$, as in e-prop. With
    `reset_decay=False` the state keeps the pre-spike $(v_t, a_{t-1})$ and this
    is e-prop's ALIF exactly: $v_{t+1} = \lambda v_t + I_{t+1} - \vartheta s_t$.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    decay: Float[Array, "*decay"]
    threshold: Float[Array, "*threshold"]
    adaptation_decay: Float[Array, "*rho"]
    adaptation: Float[Array, "*beta"]
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
        adaptation_decay: float | Float[ArrayLike, "*rho"] = _DEFAULT_RHO,
        adaptation: float | Float[ArrayLike, "*beta"] = 0.5,
        *,
        surrogate: AbstractSurrogate | None = None,
        reset: str = "subtract",
        detach_reset: bool = False,
        reset_decay: bool = True,
        train_decay: bool = False,
        train_threshold: bool = False,
    ):
        """**Arguments:** as `LIF`, plus `adaptation_decay` $\\rho \\in [0,1]$
        (default $e^{-1/20}$, a 20-step adaptation time constant) and `adaptation`
        $\\beta \\ge 0$ (default 0.5). `train_decay` trains $\\lambda$ and
        $\\rho$; `train_threshold` trains $\\vartheta$ and $\\beta$."""
        owner = type(self).__name__
        self.shape = shape_tuple(shape, "shape", owner)
        self.decay = population_parameter(decay, "decay", self.shape, owner, 0, 1)
        self.threshold = population_parameter(threshold, "threshold", self.shape, owner, 0)
        self.adaptation_decay = population_parameter(
            adaptation_decay, "adaptation_decay", self.shape, owner, 0, 1
        )
        self.adaptation = population_parameter(adaptation, "adaptation", self.shape, owner, 0)
        self.reset, self.detach_reset, self.reset_decay, self.surrogate = spiking_options(
            owner, reset, detach_reset, reset_decay, surrogate
        )
        frozen = ()
        if not train_decay:
            frozen += ("adaptation_decay", "decay")
        if not train_threshold:
            frozen += ("adaptation", "threshold")
        self.frozen = frozen

    def init_state(self) -> ALIFState:
        zeros = jnp.zeros(self.shape, self.decay.dtype)
        return ALIFState(v=zeros, a=zeros)

    def __call__(
        self, state: ALIFState, x: Float[Array, "*neurons"]
    ) -> tuple[ALIFState, Float[Array, "*neurons"]]:
        self.check_input(x)
        decay = jnp.clip(self.param("decay"), 0.0, 1.0)
        rho = jnp.clip(self.param("adaptation_decay"), 0.0, 1.0)
        base, beta = self.param("threshold"), self.param("adaptation")
        if self.reset_decay:
            a_prev = state.a  # already includes the spikes of the last step
        else:
            a_prev = rho * state.a + self.previous_spikes(state.v, base + beta * state.a)
        v = self.leak(state.v, decay, base + beta * state.a, reset_by=base) + x
        s, v = self.spike(v, base + beta * a_prev, reset_by=base)
        a = rho * a_prev + s if self.reset_decay else a_prev
        return ALIFState(v=v, a=a), s
