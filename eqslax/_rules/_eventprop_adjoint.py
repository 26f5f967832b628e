r"""The adjoint system of a `ContinuousTime` network, one step and one layer at a time.

With $\lambda_I = \partial L/\partial I$ and $\lambda_V = \partial L/\partial V$ (the
sensitivities; Wunderlich & Pehle's adjoints up to sign and a factor $\tau_s$), between
events, backwards in time,

$$
\dot\lambda_V = \lambda_V/\tau_m, \qquad \dot\lambda_I = \lambda_I/\tau_s - \lambda_V,
$$

so over a lag $u$: $\lambda_V \leftarrow e^{-u/\tau_m}\lambda_V$,
$\lambda_I \leftarrow e^{-u/\tau_s}\lambda_I + \kappa(u)\lambda_V$. At a unit's
crossing $t^*$ ($\dot V^- = I - \vartheta/\tau_m$ before it, $\dot V^+ = I$ after it)

$$
\lambda_V^- = \frac{\dot V^+}{\dot V^-}\lambda_V^+ - \frac{g^*}{\dot V^-}
    = \lambda_V^+ + \mu, \qquad
\mu = -\frac{g^* - \lambda_V^+\vartheta/\tau_m}{\dot V^-},
$$

with $g^* = \partial L/\partial t^*$, the loss's own dependence on the spike time plus
what the layer above passes down. An arrival at $t_i$ of weight $w_{ji}$ gives
$\partial L/\partial w_{ji} \mathrel{+}= a_i\lambda_{I,j}(t_i)$ (the paper's
$-\tau_s\sum\lambda_I$) and $\partial L/\partial t_i \mathrel{+}= w_{ji} a_i
\dot\lambda_{I,j}(t_i)$, which is $g^*$ of the presynaptic unit. Within a step these are
evaluated in closed form from the end-of-step sensitivities and $\mu$ at the crossing.
"""

import jax.numpy as jnp

from .._continuous._kernel import kernel, kernel_slope
from .._continuous._layers import Arrivals, EventLayer, Fired


def _propagated(layer: EventLayer, arrivals: Arrivals, g_i, g_v):
    r"""The adjoint propagated back from the step's end, without the jump at a spike:
    $\partial L/\partial I_0$, and $\lambda_I$, $\dot\lambda_I$ at each arrival
    (out, in) (`None` for data)."""
    rate_m, rate_s = layer.rate_m, layer.rate_s
    g_i0 = g_i * jnp.exp(-rate_s) + g_v * kernel(1.0, rate_m, rate_s)
    if layer.grid:
        return g_i0, None, None
    rm, rs = rate_m[:, None], rate_s[:, None]
    lag = 1.0 - arrivals.phase[None, :]
    at_arrival = g_i[:, None] * jnp.exp(-rs * lag) + g_v[:, None] * kernel(lag, rm, rs)
    slope = rs * g_i[:, None] * jnp.exp(-rs * lag) - g_v[:, None] * kernel_slope(lag, rm, rs)
    return g_i0, at_arrival, slope


def _weight_gradients(layer: EventLayer, arrivals: Arrivals, g_i0, at_arrival, slope):
    r"""Weight gradient and $\partial L/\partial p_i$ of the arrivals from $\lambda_I$
    and $\dot\lambda_I$ at them."""
    if layer.grid:
        return jnp.outer(g_i0, arrivals.amplitude), None
    g_weight = at_arrival * arrivals.amplitude[None, :]
    g_arrival = jnp.sum(layer.weight * arrivals.amplitude[None, :] * slope, axis=0)
    return g_weight, g_arrival


def spiking_adjoint(layer: EventLayer, fired: Fired, arrivals: Arrivals, g_i, g_v, g_phase):
    r"""One step of a CuBa LIF layer backwards. `g_i`, `g_v`: $\lambda_I, \lambda_V$ at
    the step's end; `g_phase`: $\partial L/\partial p^*$ of each unit's crossing.

    Returns $\lambda_I, \lambda_V$ at the step's start, the step's weight and bias
    gradients and $\partial L/\partial p_i$ of the arrivals (`None` for data)."""
    rate_m, rate_s, threshold = layer.rate_m, layer.rate_s, layer.threshold
    phase, crossed = fired.phase, fired.crossed
    rm, rs = rate_m[:, None], rate_s[:, None]
    pull = g_phase - g_v * threshold * rate_m * jnp.exp(-rate_m * (1.0 - phase))
    current = fired.i0 * jnp.exp(-rate_s * phase)
    if not layer.grid:
        before = (arrivals.amplitude[None, :] != 0) & (arrivals.phase[None, :] < phase[:, None])
        lead = jnp.exp(-rs * (phase[:, None] - arrivals.phase[None, :]))
        jumps = jnp.where(before, layer.weight * arrivals.amplitude * lead, 0.0)
        current = current + jnp.sum(jumps, axis=1)
    slope = current - rate_m * threshold
    mu = jnp.where(crossed, -pull / jnp.where(crossed & (slope > 0), slope, 1.0), 0.0)
    g_i0, at_arrival, lambda_slope = _propagated(layer, arrivals, g_i, g_v)
    g_i0 = g_i0 + mu * kernel(phase, rate_m, rate_s)
    g_v0 = jnp.where(fired.grid, 0.0, g_v * jnp.exp(-rate_m) + mu * jnp.exp(-rate_m * phase))
    if not layer.grid:
        lag = phase[:, None] - arrivals.phase[None, :]
        at_arrival = at_arrival + jnp.where(before, mu[:, None] * kernel(lag, rm, rs), 0.0)
        lambda_slope = lambda_slope - jnp.where(
            before, mu[:, None] * kernel_slope(lag, rm, rs), 0.0
        )
    g_weight, g_arrival = _weight_gradients(layer, arrivals, g_i0, at_arrival, lambda_slope)
    return g_i0, g_v0, g_weight, g_i0, g_arrival


def readout_adjoint(layer: EventLayer, arrivals: Arrivals, g_i, g_v):
    r"""One step of the readout backwards from $\lambda_I$, $\lambda_V$ at its end (the
    carried sensitivity plus the loss's on this step's output): the same system without
    jumps."""
    g_i0, at_arrival, slope = _propagated(layer, arrivals, g_i, g_v)
    g_weight, g_arrival = _weight_gradients(layer, arrivals, g_i0, at_arrival, slope)
    return g_i0, g_v * jnp.exp(-layer.rate_m), g_weight, g_i0, g_arrival
