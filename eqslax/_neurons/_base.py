"""Base classes of every neuron: the one-step interface and shared spiking mechanics."""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._checks import check_choice, check_float_array, check_hyperparameter
from .._surrogate import AbstractSurrogate, FastSigmoid

RESET_MODES = ("subtract", "zero", "none")


class AbstractNeuron(eqx.Module):
    """One time step of a stateful population: `(state, x) -> (state, output)`.

    Modules are unbatched: `x` has shape `in_shape` and `output` has shape
    `out_shape`; batches come from `jax.vmap`. The state is an explicit, immutable
    record (an `eqx.Module`) returned by `init_state` and by every call.

    `elementwise` declares that unit *i* depends only on input *i* and on its own
    state variables (its state Jacobian is block diagonal). Diagonal online rules
    (OSTL, OTTT, ...) rely on it; neurons with internal coupling set it to `False`.
    """

    elementwise: ClassVar[bool] = True

    @property
    @abc.abstractmethod
    def in_shape(self) -> tuple[int, ...]:
        """Shape of one step's input."""

    @property
    @abc.abstractmethod
    def out_shape(self) -> tuple[int, ...]:
        """Shape of one step's output."""

    @abc.abstractmethod
    def init_state(self) -> PyTree:
        """The state before the first step (resting potentials, empty traces)."""

    @abc.abstractmethod
    def __call__(self, state: PyTree, x: Float[Array, "*in"]) -> tuple[PyTree, Array]:
        """Advance one time step. Never mutates `self` or `state`."""


class AbstractPopulation(AbstractNeuron):
    """A population of `shape` units whose input and output have that shape.

    Parameters named in `frozen` are read through `jax.lax.stop_gradient` and are
    masked out of every optimiser by `eqslax.trainable_mask`.
    """

    shape: eqx.AbstractVar[tuple[int, ...]]
    frozen: eqx.AbstractVar[tuple[str, ...]]

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shape

    def param(self, name: str) -> Array:
        """The value of parameter `name`, detached when that parameter is frozen."""
        value = getattr(self, name)
        return jax.lax.stop_gradient(value) if name in self.frozen else value

    def check_input(self, x) -> None:
        check_float_array(x, "x", self.shape, type(self).__name__)


class AbstractSpikingPopulation(AbstractPopulation):
    r"""Shared firing and reset of spiking populations.

    With pre-spike membrane $v_t$ and threshold $\vartheta$:

    $$
    s_t = H(v_t - \vartheta), \qquad R(s) = s \text{ or } \mathrm{sg}(s) \text{ (detach\_reset)}
    $$

    and the carried membrane $u_t$ depends on `reset` and `reset_decay`:

    - `reset_decay=True` (Slax/OTPE form, default): the reset is applied at once and is
      decayed at the next step, $u_t = v_t - \vartheta R(s_t)$ (`"subtract"`),
      $u_t = v_t(1 - R(s_t))$ (`"zero"`) or $u_t = v_t$ (`"none"`);
      then $v_{t+1} = \lambda u_t + I_{t+1}$.
    - `reset_decay=False` (snnTorch form): the state keeps $v_t$ and the reset
      of $s_t$ enters the next step undecayed,
      $v_{t+1} = \lambda v_t - \vartheta R(s_t) + I_{t+1}$ (`"subtract"`) or
      $v_{t+1} = \lambda v_t (1 - R(s_t)) + I_{t+1}$ (`"zero"`).

    The local Jacobian is $\lambda(1 - c\sigma'_t)$ in the first form and
    $\lambda - c\sigma'_t$ in the second, $c = \vartheta$ (0 if detached).
    """

    threshold: eqx.AbstractVar[Float[Array, "*threshold"]]
    surrogate: eqx.AbstractVar[AbstractSurrogate]
    reset: eqx.AbstractVar[str]
    detach_reset: eqx.AbstractVar[bool]
    reset_decay: eqx.AbstractVar[bool]

    def spike(
        self, v: Array, threshold: Array, reset_by: Array | None = None
    ) -> tuple[Array, Array]:
        """Fire at `v >= threshold`; return spikes and the membrane to carry.

        `reset_by` is the amount a subtractive reset removes (default: `threshold`).
        """
        s = self.surrogate(v - threshold)
        if not self.reset_decay:
            return s, v
        return s, self._apply_reset(v, s, threshold if reset_by is None else reset_by)

    def leak(
        self, v_prev: Array, decay: Array, threshold_prev: Array, reset_by: Array | None = None
    ) -> Array:
        """The decayed carried membrane, with the pending reset in the undecayed form."""
        if self.reset_decay or self.reset == "none":
            return decay * v_prev
        s_prev = self.surrogate(v_prev - threshold_prev)
        amount = threshold_prev if reset_by is None else reset_by
        return self._apply_reset(decay * v_prev, s_prev, amount)

    def previous_spikes(self, v_prev: Array, threshold_prev: Array) -> Array:
        """Spikes of the last step, recomputed from the carried membrane.

        Exact only in the undecayed form, whose state keeps the pre-reset membrane.
        """
        return self.surrogate(v_prev - threshold_prev)

    def _apply_reset(self, v, s, amount):
        r = jax.lax.stop_gradient(s) if self.detach_reset else s
        if self.reset == "subtract":
            return v - amount * r
        if self.reset == "zero":
            return v * (1.0 - r)
        return v


def as_float(
    value: ArrayLike, name: str, owner: str, low=None, high=None, allow_inf=False, strict=False
) -> Array:
    """Convert a parameter to a float array, checking on concrete values that it is
    finite and within `[low, high]` (`(low, high]` if `strict`): a NaN threshold or
    decay would silently silence a neuron, since `NaN >= threshold` is False."""
    arr = jnp.asarray(value, dtype=jnp.result_type(float))
    return check_hyperparameter(arr, value, name, owner, low, high, strict, allow_inf)


def population_parameter(
    value: ArrayLike, name: str, shape: tuple[int, ...], owner: str, low=None, high=None
) -> Array:
    """A float parameter, scalar or per unit, checked for range and shape.

    `name == "threshold"` must be strictly positive: a threshold of 0 would make the
    resting state (`v = 0`) fire, since $H(0) = 1$.
    """
    strict = name == "threshold"
    if strict:
        low = 0 if low is None else low
    return check_broadcast(
        as_float(value, name, owner, low, high, strict=strict), name, shape, owner
    )


def check_broadcast(arr: Array, name: str, shape: tuple[int, ...], owner: str) -> Array:
    """A parameter must be a scalar or broadcast to the population shape."""
    try:
        jnp.broadcast_shapes(arr.shape, shape)
    except ValueError:
        raise ValueError(
            f"{owner}: `{name}` must be a scalar or broadcastable to shape {shape}, "
            f"got shape {arr.shape}."
        ) from None
    if jnp.broadcast_shapes(arr.shape, shape) != shape:
        raise ValueError(
            f"{owner}: `{name}` with shape {arr.shape} would change the population shape {shape}."
        )
    return arr


def spiking_options(owner, reset, detach_reset, reset_decay, surrogate):
    """Validate the options shared by spiking populations."""
    check_choice(reset, "reset", RESET_MODES, owner)
    if surrogate is None:
        surrogate = FastSigmoid()
    if not isinstance(surrogate, AbstractSurrogate):
        raise TypeError(
            f"{owner}: `surrogate` must be an eqslax surrogate such as FastSigmoid(), "
            f"got {type(surrogate).__name__}."
        )
    return reset, bool(detach_reset), bool(reset_decay), surrogate


def frozen_names(owner: str, **train_flags: bool) -> tuple[str, ...]:
    """`train_decay=False` -> `("decay",)`: the parameters read as constants."""
    return tuple(sorted(name.removeprefix("train_") for name, on in train_flags.items() if not on))
