"""LTC-SNN (Yin, Corradi & Bohté 2023): adaptive spiking neuron with input-gated leaks."""

import math
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import shape_tuple
from .._surrogate import AbstractSurrogate, MultiGaussian
from ._base import (
    AbstractSpikingPopulation,
    frozen_names,
    population_parameter,
    spiking_options,
)


def _gate(weight_x: Array, weight_state: Array, bias: Array, x: Array, state: Array) -> Array:
    """`sigmoid(W_x x + W_state state + bias)` on the flattened population."""
    pre = weight_x @ x.reshape(-1) + weight_state @ state.reshape(-1) + bias
    return jax.nn.sigmoid(pre).reshape(x.shape)


class LTCState(eqx.Module):
    """Carried membrane `v`, the spikes `s` of the last step and the adaptation `b`."""

    v: Float[Array, "*neurons"]
    s: Float[Array, "*neurons"]
    b: Float[Array, "*neurons"]


class LTC(AbstractSpikingPopulation):
    r"""Liquid-time-constant spiking neuron, the LTC-SNN of Yin, Corradi & Bohté (2023),
    "Accurate online training of dynamical spiking neural networks through Forward
    Propagation Through Time" (Nature Machine Intelligence).

    The membrane and adaptation leaks are gates computed from the input and the state:

    $$
    \alpha_t = \mathrm{sigmoid}(W_{x\alpha} x_t + W_{v\alpha} v_{t-1} + b_\alpha),
    \qquad \rho_t = \mathrm{sigmoid}(W_{x\rho} x_t + W_{b\rho} b_{t-1} + b_\rho)
    $$

    $$
    b_t = \rho_t b_{t-1} + (1 - \rho_t) s_{t-1}, \qquad
    \theta_t = b_0 + \beta b_t, \qquad
    v_t = \alpha_t v_{t-1} + (1 - \alpha_t) x_t, \qquad
    s_t = H(v_t - \theta_t)
    $$

    then the reset of `AbstractSpikingPopulation` with the dynamic threshold:
    $v_t \leftarrow v_t (1 - R(s_t))$ (`"zero"`, the paper's hard reset and the
    default), $v_t - \theta_t R(s_t)$ (`"subtract"`) or none. The reset is always
    applied in the same step, as in the paper (there is no `reset_decay=False` form).

    `x` is the neuron's input current, so the output width equals the input width
    (put an `eqx.nn.Linear` in front). Weights act on the flattened population. Fields:
    $W_{x\alpha}$ `input_membrane_weight`, $W_{v\alpha}$ `membrane_weight`,
    $b_\alpha$ `membrane_bias`, $W_{x\rho}$ `input_adaptation_weight`,
    $W_{b\rho}$ `adaptation_weight`, $b_\rho$ `adaptation_bias`,
    $b_0$ `threshold`, $\beta$ `adaptation` (as in `ALIF`).
    The state starts at $v = s = b = 0$.

    **Differences from Slax's `LTC`.** Slax's later versions update the membrane with
    $(2\alpha - 1) v_{t-1} + (1 - \alpha) x_t$, a regression of the paper's
    smoothing; this class uses the paper's $\alpha v_{t-1} + (1 - \alpha) x_t$.
    (Some public LTC-SNN code writes $v + \alpha (x - v)$: the same model with
    $\alpha \mapsto 1 - \alpha$, i.e. with negated gate weights and bias.) Slax
    also draws a fresh Dense layer for each of its gate terms and crashes on a
    subtractive reset; here the gate weights are four named matrices and all three
    resets work. Slax's optional gate terms on $s_{t-1}$ are not included.
    """

    elementwise: ClassVar[bool] = False  # the gates mix all units
    reset_decay: ClassVar[bool] = True

    shape: tuple[int, ...] = eqx.field(static=True)
    input_membrane_weight: Float[Array, "neurons neurons"]
    membrane_weight: Float[Array, "neurons neurons"]
    membrane_bias: Float[Array, " neurons"]
    input_adaptation_weight: Float[Array, "neurons neurons"]
    adaptation_weight: Float[Array, "neurons neurons"]
    adaptation_bias: Float[Array, " neurons"]
    threshold: Float[Array, "*threshold"]
    adaptation: Float[Array, "*beta"]
    surrogate: AbstractSurrogate
    reset: str = eqx.field(static=True)
    detach_reset: bool = eqx.field(static=True)
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        shape: int | Sequence[int],
        threshold: float | Float[ArrayLike, "*threshold"] = 0.1,
        adaptation: float | Float[ArrayLike, "*beta"] = 1.8,
        *,
        key: PRNGKeyArray,
        surrogate: AbstractSurrogate | None = None,
        reset: str = "zero",
        detach_reset: bool = False,
        train_threshold: bool = False,
    ):
        """**Arguments:**

        - `shape`: population size, `128` or `(8, 16)`; `n` is its product.
        - `threshold`: base threshold $b_0 \\ge 0$ (default 0.1, the paper's).
        - `adaptation`: $\\beta \\ge 0$, scalar or per neuron (default 1.8).
        - `key`: draws the four `(n, n)` gate weights from
          $U(-1/\\sqrt{2n}, 1/\\sqrt{2n})$, the default of one Dense layer over
          $[x_t, v_{t-1}]$ (resp. $[x_t, b_{t-1}]$) as in the paper. The gate
          biases start at zero, so $\\alpha = \\rho = 1/2$ at rest.
        - `surrogate`: spike function (default `MultiGaussian()`, Yin et al.'s).
        - `reset`: `"zero"` (default), `"subtract"` or `"none"`.
        - `detach_reset`: stop the gradient through the reset term.
        - `train_threshold`: train $b_0$ and $\\beta$ (default frozen). The
          gate weights and biases are always trainable.
        """
        owner = type(self).__name__
        self.shape = shape_tuple(shape, "shape", owner)
        n = math.prod(self.shape)
        bound = 1.0 / math.sqrt(2 * n)
        keys = jax.random.split(key, 4)

        def uniform(k):
            return jax.random.uniform(
                k, (n, n), dtype=jnp.result_type(float), minval=-bound, maxval=bound
            )

        self.input_membrane_weight = uniform(keys[0])
        self.membrane_weight = uniform(keys[1])
        self.membrane_bias = jnp.zeros(n, jnp.result_type(float))
        self.input_adaptation_weight = uniform(keys[2])
        self.adaptation_weight = uniform(keys[3])
        self.adaptation_bias = jnp.zeros(n, jnp.result_type(float))
        self.threshold = population_parameter(threshold, "threshold", self.shape, owner, 0)
        self.adaptation = population_parameter(adaptation, "adaptation", self.shape, owner, 0)
        if surrogate is None:
            surrogate = MultiGaussian()
        self.reset, self.detach_reset, _, self.surrogate = spiking_options(
            owner, reset, detach_reset, True, surrogate
        )
        self.frozen = frozen_names(
            owner, train_adaptation=train_threshold, train_threshold=train_threshold
        )

    def init_state(self) -> LTCState:
        zeros = jnp.zeros(self.shape, self.threshold.dtype)
        return LTCState(v=zeros, s=zeros, b=zeros)

    def __call__(
        self, state: LTCState, x: Float[Array, "*neurons"]
    ) -> tuple[LTCState, Float[Array, "*neurons"]]:
        self.check_input(x)
        alpha = _gate(
            self.input_membrane_weight, self.membrane_weight, self.membrane_bias, x, state.v
        )
        rho = _gate(
            self.input_adaptation_weight, self.adaptation_weight, self.adaptation_bias, x, state.b
        )
        b = rho * state.b + (1.0 - rho) * state.s
        theta = self.param("threshold") + self.param("adaptation") * b
        v = alpha * state.v + (1.0 - alpha) * x
        s, v = self.spike(v, theta)
        return LTCState(v=v, s=s, b=b), s
