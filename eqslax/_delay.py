"""Synaptic delays: layers that hold their recent inputs in a ring buffer."""

import abc
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from ._checks import check_float_array, shape_tuple
from ._neurons import AbstractNeuron


class DelayState(eqx.Module):
    r"""State of a delay layer: the ring buffer of its last $K$ inputs, `buffer`
    `(K, *in_shape)`, and `position`, the slot that the next input is written to
    ($t \bmod K$ at step $t$). Slot $(p - k) \bmod K$ holds $x_{t-k}$ once $x_t$ is
    written to slot $p$; slots not yet written hold zeros."""

    buffer: Float[Array, "slots *in"]
    position: Int[Array, ""]


class AbstractDelay(AbstractNeuron):
    r"""A layer whose output at step $t$ reads its inputs $x_{t-k}$, $0 \le k < K$,
    from a ring buffer carried in its state ([`eqslax.DelayState`][]).

    The base class writes the step once: $x_t$ goes to slot $p_t$, the concrete class
    `read`s the output from the buffer, and $p_{t+1} = (p_t + 1) \bmod K$. Writing costs
    $O(|x|)$ per step; nothing is shifted. Before step $k$ the entry $x_{t-k}$ is zero.

    Parameters named in `frozen` are read through `jax.lax.stop_gradient` and masked out
    of every optimiser by `eqslax.trainable_mask`, as for populations.

    The buffer carries a temporal path from one layer to the next, so the layer-local
    rules (OSTL, OTTT, OTPE, e-prop, OSTTP) refuse a network holding a delay layer, naming
    it; BPTT, RTRL, SnAp and UORO handle it like any other stateful layer.
    """

    window: eqx.AbstractVar[int]
    frozen: eqx.AbstractVar[tuple[str, ...]]

    def param(self, name: str) -> Array:
        """The value of parameter `name`, detached when that parameter is frozen."""
        value = getattr(self, name)
        return jax.lax.stop_gradient(value) if name in self.frozen else value

    def state_dtype(self):
        """The floating dtype of the buffer."""
        return jnp.result_type(float)

    def init_state(self) -> DelayState:
        buffer = jnp.zeros((self.window, *self.in_shape), self.state_dtype())
        return DelayState(buffer=buffer, position=jnp.zeros((), jnp.int32))

    def slots(self, position: Array, lags: Array) -> Array:
        """The slots holding $x_{t-k}$ for `lags` $k$, once $x_t$ is in slot `position`."""
        return jnp.mod(position - lags, self.window)

    @abc.abstractmethod
    def read(self, buffer: Array, position: Array) -> Array:
        """The output from the `buffer` that holds $x_t$ in slot `position`."""

    def __call__(self, state: DelayState, x: Float[Array, "*in"]) -> tuple[DelayState, Array]:
        check_float_array(x, "x", tuple(self.in_shape), type(self).__name__)
        x = x.astype(state.buffer.dtype)
        buffer = jax.lax.dynamic_update_index_in_dim(state.buffer, x, state.position, 0)
        y = self.read(buffer, state.position)
        position = jnp.mod(state.position + 1, self.window).astype(state.position.dtype)
        return DelayState(buffer=buffer, position=position), y


def integer_delays(delays, shape: tuple[int, ...], owner: str) -> np.ndarray:
    """Concrete non-negative integer delays broadcast to `shape`."""
    try:
        values = np.asarray(delays)
    except Exception as error:  # a traced value has no concrete delays
        raise TypeError(
            f"{owner}: `delays` must be concrete integers (the buffer size depends on "
            f"them), got {type(delays).__name__}."
        ) from error
    if values.dtype.kind == "f" and np.all(np.isfinite(values)):
        if np.any(values != np.round(values)):
            raise ValueError(
                f"{owner}: `delays` must be whole numbers of steps, got {values.tolist()}."
            )
        values = values.astype(np.int64)
    if values.dtype.kind not in "iu":
        raise TypeError(f"{owner}: `delays` must be integers, got dtype {values.dtype}.")
    if np.any(values < 0):
        raise ValueError(f"{owner}: `delays` must be >= 0 steps, got {values.tolist()}.")
    try:
        return np.broadcast_to(values, shape)
    except ValueError:
        raise ValueError(
            f"{owner}: `delays` of shape {values.shape} does not broadcast to the shape {shape}."
        ) from None


class Delay(AbstractDelay):
    r"""Per-channel integer delays: $y_{i,t} = x_{i,t-d_i}$, and $y_{i,t} = 0$ for
    $t < d_i$.

    The last $K = \max_i d_i + 1$ inputs are carried in a ring buffer
    ([`eqslax.DelayState`][]); step $t$ writes $x_t$ to slot $p = t \bmod K$ and reads
    unit $i$ from slot $(p - d_i) \bmod K$. Memory $O(K n)$, compute $O(n)$ per step. The
    delays are integers, never trained; NIR's `Delay` node imports and exports through
    this layer (`eqslax.nir`). For learnable per-synapse delays see
    [`eqslax.DCLSDelay`][].
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    delays: Int[Array, "*neurons"]
    window: int = eqx.field(static=True)
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, shape: int | Sequence[int], delays: ArrayLike | Sequence[int]):
        """**Arguments:**

        - `shape`: the shape of one step's input (and output), `8` or `(2, 4)`.
        - `delays`: $d \\ge 0$ in steps, one integer or one per unit (broadcast to
          `shape`).
        """
        owner = type(self).__name__
        self.shape = shape_tuple(shape, "shape", owner)
        values = integer_delays(delays, self.shape, owner)
        self.delays = jnp.asarray(values, jnp.int32)
        self.window = int(values.max(initial=0)) + 1
        self.frozen = ("delays",)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shape

    def read(self, buffer, position):
        slots = self.slots(position, self.delays)
        return jnp.take_along_axis(buffer, slots[None], axis=0)[0]
