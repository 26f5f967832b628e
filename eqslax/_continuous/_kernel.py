r"""Closed-form CuBa LIF dynamics between events and the threshold-crossing solver.

Time is measured in steps. With rates $r_m = -\ln\lambda$ and $r_s = -\ln\alpha$
(`decay` and `synapse_decay` of `CuBaLIF`), a neuron free of events and resets
evolves from $(I, V)$ at phase $0$ as

$$
I(u) = I e^{-r_s u}, \qquad V(u) = V e^{-r_m u} + I\,\kappa(u), \qquad
\kappa(u) = \frac{e^{-r_s u} - e^{-r_m u}}{r_m - r_s}.
$$
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike


def kernel(u: ArrayLike, rate_m: Array, rate_s: Array) -> Array:
    r"""$\kappa(u)$: the membrane's response at lag $u$ to a unit current jump."""
    return (jnp.exp(-rate_s * u) - jnp.exp(-rate_m * u)) / (rate_m - rate_s)


def kernel_slope(u: ArrayLike, rate_m: Array, rate_s: Array) -> Array:
    r"""$\kappa'(u)$."""
    return (rate_m * jnp.exp(-rate_m * u) - rate_s * jnp.exp(-rate_s * u)) / (rate_m - rate_s)


def membrane(u: Array, v: Array, i: Array, rate_m: Array, rate_s: Array) -> Array:
    """$V(u)$ from $(I, V)$ at lag 0, no events in between."""
    return v * jnp.exp(-rate_m * u) + i * kernel(u, rate_m, rate_s)


def membrane_slope(u: Array, v: Array, i: Array, rate_m: Array, rate_s: Array) -> Array:
    """$dV/du = -r_m V + I$."""
    return -rate_m * membrane(u, v, i, rate_m, rate_s) + i * jnp.exp(-rate_s * u)


def peak_lag(v: Array, i: Array, rate_m: Array, rate_s: Array) -> Array:
    r"""The lag of the membrane's maximum, $-1$ where it has none.

    With $I > 0$ every critical point is a maximum (there $V'' = -r_s I$), so there
    is at most one: $u_c = \ln\big(\tfrac{r_m}{r_s}(1 - (r_m - r_s) V / I)\big)/(r_m - r_s)$.
    With $I \le 0$ the membrane cannot rise through a positive threshold."""
    positive = i > 0
    safe_i = jnp.where(positive, i, 1.0)
    z = (rate_m / rate_s) * (1.0 - (rate_m - rate_s) * v / safe_i)
    valid = positive & (z > 0)
    lag = jnp.log(jnp.where(valid, z, 1.0)) / (rate_m - rate_s)
    return jnp.where(valid, lag, -1.0)


def rising_bracket(v: Array, i: Array, length: Array, rate_m: Array, rate_s: Array) -> Array:
    """The end of the stretch `[0, end]` of an interval of `length` on which the membrane
    rises to its maximum over the interval (`length` itself where it rises throughout
    or never rises)."""
    peak = peak_lag(v, i, rate_m, rate_s)
    return jnp.where((peak > 0) & (peak < length), peak, length)


def _bisections(dtype) -> int:
    return 44 if jnp.finfo(dtype).bits > 32 else 22


def _solve(v, i, rate_m, rate_s, threshold, end):
    """The lag in `[0, end]` where the (rising) membrane meets `threshold`: bisection,
    then Newton steps kept inside the bracket."""

    def excess(u):
        return membrane(u, v, i, rate_m, rate_s) - threshold

    def halve(_, bracket):
        low, high = bracket
        middle = 0.5 * (low + high)
        above = excess(middle) >= 0
        return jnp.where(above, low, middle), jnp.where(above, middle, high)

    low, high = jax.lax.fori_loop(0, _bisections(v.dtype), halve, (jnp.zeros_like(end), end))
    u = 0.5 * (low + high)
    for _ in range(3):
        slope = membrane_slope(u, v, i, rate_m, rate_s)
        step = excess(u) / jnp.where(slope > 0, slope, 1.0)
        u = jnp.clip(u - step, low, high)
    return u


@jax.custom_jvp
def crossing_lag(v, i, rate_m, rate_s, threshold, end):
    r"""The lag $u^*$ at which the membrane, free from $(I, V)$ at lag 0 and rising on
    $[0, \text{end}]$, meets the threshold.

    Differentiated by the implicit function theorem: $V(u^*; p) = \vartheta$ gives
    $du^* = -(\partial_p V\, dp - d\vartheta) / \dot V(u^*)$; the bracket `end` has no
    tangent."""
    return _solve(v, i, rate_m, rate_s, threshold, jax.lax.stop_gradient(end))


@crossing_lag.defjvp
def _crossing_lag_jvp(primals, tangents):
    v, i, rate_m, rate_s, threshold, end = primals
    dv, di, drate_m, drate_s, dthreshold, _ = tangents
    u = crossing_lag(v, i, rate_m, rate_s, threshold, end)

    def excess(v, i, rate_m, rate_s, threshold):
        return membrane(u, v, i, rate_m, rate_s) - threshold

    _, d_excess = jax.jvp(
        excess, (v, i, rate_m, rate_s, threshold), (dv, di, drate_m, drate_s, dthreshold)
    )
    slope = membrane_slope(u, v, i, rate_m, rate_s)
    # no crossing (the caller masks it out) leaves a flat or falling slope: keep it finite
    slope = jnp.where(slope > 0, slope, 1.0)
    return u, -d_excess / slope
