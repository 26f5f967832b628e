"""`Recurrent`: any neuron with its own output fed back through a trainable matrix."""

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._checks import check_float_array
from ._base import AbstractNeuron


class RecurrentState(eqx.Module):
    """The wrapped neuron's own state and its output of the previous step."""

    neuron: PyTree
    output: Float[Array, "*out"]


class Recurrent(AbstractNeuron):
    r"""A neuron whose input also receives its own previous output through $W_{rec}$.

    With $f$ the wrapped neuron, $h$ its state and $x_t$ this step's input:

    $$(h_t, y_t) = f\big(h_{t-1},\; x_t + W_{rec}\, y_{t-1}\big), \qquad y_0 = 0$$

    ($W_{rec}$ acts on the flattened output and its result is reshaped to the input
    shape). `Recurrent(LIF(n))` is the recurrent LIF layer, `Recurrent(ALIF(n))` the
    LSNN of Bellec et al. (2018, 2020), `Recurrent(CuBaLIF(n))` a recurrent
    current-based LIF. It is the same model as a [`eqslax.Connect`][] whose layer $k$ is
    the neuron and which has a `cat` self-edge $k \to k$; the state here carries
    $y_{t-1}$ as the `Connect` carries a recurrent edge's source. [`eqslax.RLIF`][] is
    `Recurrent(LIF(...))` with a zero-diagonal initial $W_{rec}$.

    Units are coupled through $W_{rec}$, so `elementwise` is `False`: exact rules (BPTT,
    RTRL) handle it, diagonal ones need their recurrent variant.
    """

    elementwise: ClassVar[bool] = False

    neuron: AbstractNeuron
    weight: Float[Array, "in out"]

    def __init__(
        self,
        neuron: AbstractNeuron,
        *,
        key: PRNGKeyArray | None = None,
        weight: Float[ArrayLike, "in out"] | None = None,
        self_connections: bool = True,
    ):
        """**Arguments:**

        - `neuron`: the neuron to wrap (any [`eqslax.AbstractNeuron`][]).
        - `key`: PRNG key to draw $W_{rec}$ from $U(-1/\\sqrt{n}, 1/\\sqrt{n})$, $n$ the
          output size (the initialisation of `eqx.nn.Linear`). Required unless `weight`
          is given.
        - `weight`: an explicit $W_{rec}$ of shape `(input size, output size)`.
        - `self_connections`: if `False`, the drawn $W_{rec}$ has a zero diagonal (no
          unit excites itself), as `RLIF`'s. The diagonal stays trainable.
        """
        if not isinstance(neuron, AbstractNeuron):
            raise TypeError(
                f"Recurrent: `neuron` must be an eqslax neuron such as LIF(8), got "
                f"{type(neuron).__name__}."
            )
        n_in, n_out = math.prod(neuron.in_shape), math.prod(neuron.out_shape)
        if weight is None:
            if key is None:
                raise ValueError("Recurrent: pass `key` to draw the recurrent weight, or `weight`.")
            bound = 1.0 / math.sqrt(n_out)
            weight = jax.random.uniform(
                key, (n_in, n_out), jnp.result_type(float), minval=-bound, maxval=bound
            )
            if not self_connections:
                if n_in != n_out:
                    raise ValueError(
                        f"Recurrent: `self_connections=False` needs equal input and output "
                        f"sizes, got {n_in} and {n_out}."
                    )
                weight = weight * (1.0 - jnp.eye(n_in, dtype=weight.dtype))
        weight = jnp.asarray(weight, dtype=jnp.result_type(float))
        if weight.shape != (n_in, n_out):
            raise ValueError(
                f"Recurrent: `weight` must have shape (input size, output size) = "
                f"{(n_in, n_out)}, got {weight.shape}."
            )
        self.neuron = neuron
        self.weight = weight

    @property
    def in_shape(self) -> tuple[int, ...]:
        return tuple(self.neuron.in_shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(self.neuron.out_shape)

    def init_state(self) -> RecurrentState:
        output = jnp.zeros(self.out_shape, self.weight.dtype)
        return RecurrentState(neuron=self.neuron.init_state(), output=output)

    def recurrent_input(self, output: Float[Array, "*out"]) -> Float[Array, "*in"]:
        """$W_{rec}\\, y$, reshaped to the neuron's input shape."""
        return (self.weight @ output.reshape(-1)).reshape(self.in_shape)

    def check_input(self, x) -> None:
        """Raise unless `x` is a floating array of the neuron's input shape."""
        check_float_array(x, "x", self.in_shape, type(self).__name__)

    def __call__(
        self, state: RecurrentState, x: Float[Array, "*in"]
    ) -> tuple[RecurrentState, Array]:
        self.check_input(x)
        neuron_state, y = self.neuron(state.neuron, x + self.recurrent_input(state.output))
        return RecurrentState(neuron=neuron_state, output=y), y
