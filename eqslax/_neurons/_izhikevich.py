"""Izhikevich (2003) neuron: two-variable quadratic model, Euler-integrated."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import shape_tuple
from .._surrogate import AbstractSurrogate, FastSigmoid
from ._base import AbstractPopulation, as_float, population_parameter


class IzhikevichState(eqx.Module):
    """Membrane potential `v` (mV) and recovery variable `u`, both after the reset."""

    v: Float[Array, "*neurons"]
    u: Float[Array, "*neurons"]


class Izhikevich(AbstractPopulation):
    r"""Izhikevich's simple model of spiking neurons (IEEE Trans. Neural Netw. 2003).

    $$
    \dot v = 0.04 v^2 + 5 v + 140 - u + I, \qquad \dot u = a (b v - u)
    $$

    integrated with one explicit Euler step of `dt` ms, both derivatives taken at the
    previous state:

    $$
    v'_t = v_{t-1} + \Delta t\,(0.04 v_{t-1}^2 + 5 v_{t-1} + 140 - u_{t-1} + I_t),
    \qquad u'_t = u_{t-1} + \Delta t\, a (b v_{t-1} - u_{t-1})
    $$

    $$
    s_t = H\big((v'_t - v_{peak}) / v_{scale}\big), \qquad
    v_t = v'_t (1 - R(s_t)) + c\, R(s_t), \qquad u_t = u'_t + d\, R(s_t)
    $$

    with $R(s) = s$, or $\mathrm{sg}(s)$ when `detach_reset`. The reset
    ("v ← c, u ← u + d") is written as this interpolation so that its gradient flows.
    Dividing by $v_{scale}$ (default 30 mV) does not move the threshold; it puts
    the surrogate's argument in O(1) units, so surrogates tuned for LIF (the default
    `FastSigmoid()`, slope 25 per unit) see membranes tens of mV apart as a few units
    apart rather than hundreds. The input $I$ is a current in the model's units
    (about 10 drives regular spiking). The defaults of $a, b, c, d$ are
    Izhikevich's regular-spiking cell, $v_{peak} = 30$ mV, and the state starts
    at rest, $v = c$, $u = b c$. Output: spikes $s_t \in \{0, 1\}$.
    """

    shape: tuple[int, ...] = eqx.field(static=True)
    a: Float[Array, "*a"]
    b: Float[Array, "*b"]
    c: Float[Array, "*c"]
    d: Float[Array, "*d"]
    dt: Float[Array, ""]
    v_peak: Float[Array, ""]
    v_scale: Float[Array, ""]
    surrogate: AbstractSurrogate
    detach_reset: bool = eqx.field(static=True)
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(
        self,
        shape: int | Sequence[int],
        a: float | Float[ArrayLike, "*a"] = 0.02,
        b: float | Float[ArrayLike, "*b"] = 0.2,
        c: float | Float[ArrayLike, "*c"] = -65.0,
        d: float | Float[ArrayLike, "*d"] = 8.0,
        *,
        dt: float = 1.0,
        v_peak: float = 30.0,
        v_scale: float = 30.0,
        surrogate: AbstractSurrogate | None = None,
        detach_reset: bool = False,
        train_parameters: bool = False,
    ):
        """**Arguments:**

        - `shape`: population size, `128` or `(8, 16)`.
        - `a`: recovery rate (default 0.02), scalar or per neuron, $\\ge 0$.
        - `b`: sensitivity of $u$ to $v$ (default 0.2), scalar or per neuron.
        - `c`: after-spike reset of $v$ in mV (default -65), scalar or per neuron.
        - `d`: after-spike increment of $u$ (default 8), scalar or per neuron.
        - `dt`: Euler step in ms (default 1), $> 0$.
        - `v_peak`: spike cut-off in mV (default 30).
        - `v_scale`: scale of the surrogate's argument in mV (default 30), $> 0$.
        - `surrogate`: spike function (default `FastSigmoid()`).
        - `detach_reset`: stop the gradient through the reset.
        - `train_parameters`: train $a, b, c, d$ (default frozen). `dt`,
          `v_peak` and `v_scale` are always frozen.
        """
        owner = type(self).__name__
        self.shape = shape_tuple(shape, "shape", owner)
        self.a = population_parameter(a, "a", self.shape, owner, 0)
        self.b = population_parameter(b, "b", self.shape, owner)
        self.c = population_parameter(c, "c", self.shape, owner)
        self.d = population_parameter(d, "d", self.shape, owner)
        self.dt = _positive_scalar(dt, "dt", owner)
        self.v_peak = _scalar(v_peak, "v_peak", owner)
        self.v_scale = _positive_scalar(v_scale, "v_scale", owner)
        if surrogate is None:
            surrogate = FastSigmoid()
        if not isinstance(surrogate, AbstractSurrogate):
            raise TypeError(
                f"{owner}: `surrogate` must be an eqslax surrogate such as FastSigmoid(), "
                f"got {type(surrogate).__name__}."
            )
        self.surrogate = surrogate
        self.detach_reset = bool(detach_reset)
        constants = ("dt", "v_peak", "v_scale")
        self.frozen = constants if train_parameters else ("a", "b", "c", "d") + constants

    def init_state(self) -> IzhikevichState:
        # Through `param`, so that a frozen b or c gets no gradient from the initial state.
        c = jnp.broadcast_to(self.param("c"), self.shape)
        return IzhikevichState(v=c, u=self.param("b") * c)

    def __call__(
        self, state: IzhikevichState, x: Float[Array, "*neurons"]
    ) -> tuple[IzhikevichState, Float[Array, "*neurons"]]:
        self.check_input(x)
        a, b, c, d = (self.param(name) for name in "abcd")
        dt = self.param("dt")
        v, u = state.v, state.u
        v_new = v + dt * (0.04 * v**2 + 5.0 * v + 140.0 - u + x)
        u_new = u + dt * a * (b * v - u)
        s = self.surrogate((v_new - self.param("v_peak")) / self.param("v_scale"))
        r = jax.lax.stop_gradient(s) if self.detach_reset else s
        v_new = v_new * (1.0 - r) + c * r
        u_new = u_new + d * r
        return IzhikevichState(v=v_new, u=u_new), s


def _scalar(value: float, name: str, owner: str) -> Array:
    arr = as_float(value, name, owner)
    if arr.ndim != 0:
        raise ValueError(f"{owner}: `{name}` must be a scalar, got shape {arr.shape}.")
    return arr


def _positive_scalar(value: float, name: str, owner: str) -> Array:
    arr = _scalar(value, name, owner)
    if not isinstance(arr, jax.core.Tracer) and not bool(arr > 0):
        raise ValueError(f"{owner}: `{name}` must be > 0, got {value!r}.")
    return arr
