r"""One step of one layer of a `ContinuousTime` network, integrated exactly.

A step covers the phases $[0, 1)$ of one time unit. Its events are the presynaptic
spikes, each an arrival at phase $p_i$ with amplitude $a_i$ (1 for a spike; the data
$x_i$ at phase 0 for the first layer), and the bias, a jump of the current at phase 0.
"""

from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from ._kernel import crossing_lag, membrane, rising_bracket


class EventLayer(eqx.Module):
    """The arrays of one `Linear -> population` pair as the exact integrator reads them:
    weights $W$ (out, in), bias (or `None`), rates $r_m$, $r_s$ and the threshold
    (`None` for the readout), each per unit. `grid`: its inputs are data at phase 0."""

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    rate_m: Float[Array, " out"]
    rate_s: Float[Array, " out"]
    threshold: Float[Array, " out"] | None
    grid: bool = eqx.field(static=True)

    @property
    def spiking(self) -> bool:
        return self.threshold is not None


class Arrivals(NamedTuple):
    """Events reaching a layer in one step: phases in $[0, 1)$ and amplitudes (0 for a
    presynaptic unit that did not fire)."""

    phase: Float[Array, " in"]
    amplitude: Float[Array, " in"]


class Fired(NamedTuple):
    """What a spiking layer did in one step: the current just after the phase-0 jumps
    `i0`, the membrane it started from `v0` (0 after a grid spike), which units fired at
    phase 0 because they started at or above threshold (`grid`), which crossed threshold
    inside the step (`crossed`) and at which phase (`phase`, 0 where none)."""

    i0: Float[Array, " out"]
    v0: Float[Array, " out"]
    grid: Bool[Array, " out"]
    crossed: Bool[Array, " out"]
    phase: Float[Array, " out"]

    def arrivals(self) -> Arrivals:
        spiked = self.grid | self.crossed
        return Arrivals(self.phase, spiked.astype(self.phase.dtype))

    def output(self) -> Float[Array, " out"]:
        """$1 - p$ for a spike at phase $p$ (1 at the step's start), 0 without one."""
        return jnp.where(self.grid | self.crossed, 1.0 - self.phase, 0.0)


def _bias(layer: EventLayer, like: Array) -> Array:
    return jnp.zeros_like(like) if layer.bias is None else layer.bias


def _segments(layer: EventLayer, i0: Array, v0: Array, arrivals: Arrivals):
    r"""Start states $(I_r, V_r)$ (out, segments) of the free membrane on the segments
    between sorted arrivals, their start phases and lengths, and the sums
    $S_{s,m} = \sum_i W a_i e^{r_{s,m} p_i}$ over all arrivals (out,)."""
    rate_m, rate_s = layer.rate_m[:, None], layer.rate_s[:, None]
    if layer.grid:
        zero = jnp.zeros_like(i0)
        starts = jnp.zeros((1,), i0.dtype)
        return i0[:, None], v0[:, None], starts, jnp.ones((1,), i0.dtype), zero, zero
    key = jnp.where(arrivals.amplitude != 0, arrivals.phase, 1.0)
    order = jnp.argsort(key)
    phases = key[order]
    weighted = layer.weight[:, order] * arrivals.amplitude[order]
    sum_s = jnp.cumsum(weighted * jnp.exp(rate_s * phases), axis=1)
    sum_m = jnp.cumsum(weighted * jnp.exp(rate_m * phases), axis=1)
    zero = jnp.zeros_like(i0)[:, None]
    sum_s = jnp.concatenate([zero, sum_s], axis=1)
    sum_m = jnp.concatenate([zero, sum_m], axis=1)
    starts = jnp.concatenate([jnp.zeros((1,), phases.dtype), phases])
    ends = jnp.concatenate([phases, jnp.ones((1,), phases.dtype)])
    decay_s, decay_m = jnp.exp(-rate_s * starts), jnp.exp(-rate_m * starts)
    current = decay_s * (i0[:, None] + sum_s)
    potential = v0[:, None] * decay_m + (
        (i0[:, None] + sum_s) * decay_s - (i0[:, None] + sum_m) * decay_m
    ) / (rate_m - rate_s)
    return current, potential, starts, ends - starts, sum_s[:, -1], sum_m[:, -1]


def spiking_step(
    layer: EventLayer, i: Array, v: Array, arrivals: Arrivals
) -> tuple[Array, Array, Fired]:
    r"""One step of a CuBa LIF layer: the current and membrane at the step's end and what
    fired. A unit fires at most once per step: at its first threshold crossing, found by
    `crossing_lag` on the segment between arrivals where the membrane first reaches
    threshold, or at phase 0 when it starts the step at or above threshold (a crossing
    left over from the step before). Either way its membrane is reset to 0; after a
    crossing the reset is the jump $-\vartheta$ at $p^*$, decaying with the membrane."""
    rate_m, rate_s, threshold = layer.rate_m, layer.rate_s, layer.threshold
    i0 = i + _bias(layer, i)
    if layer.grid:
        i0 = i0 + layer.weight @ arrivals.amplitude
    grid = v >= threshold
    v0 = jnp.where(grid, 0.0, v)
    current, potential, starts, lengths, sum_s, sum_m = _segments(layer, i0, v0, arrivals)
    rm, rs, th = rate_m[:, None], rate_s[:, None], threshold[:, None]
    ends = rising_bracket(potential, current, lengths, rm, rs)
    reaches = (membrane(ends, potential, current, rm, rs) >= th) & ~grid[:, None]
    crossed = jnp.any(reaches, axis=1)
    first = jnp.argmax(reaches, axis=1)[:, None]

    def pick(a):
        return jnp.take_along_axis(jnp.broadcast_to(a, reaches.shape), first, axis=1)[:, 0]

    lag = crossing_lag(pick(potential), pick(current), rate_m, rate_s, threshold, pick(ends))
    phase = jnp.where(crossed, pick(starts) + lag, 0.0)
    total_s, total_m = i0 + sum_s, i0 + sum_m
    decay_s, decay_m = jnp.exp(-rate_s), jnp.exp(-rate_m)
    i1 = decay_s * total_s
    v1 = v0 * decay_m + (total_s * decay_s - total_m * decay_m) / (rate_m - rate_s)
    v1 = v1 - jnp.where(crossed, threshold * jnp.exp(-rate_m * (1.0 - phase)), 0.0)
    return i1, v1, Fired(i0, v0, grid, crossed, phase)


def readout_step(layer: EventLayer, i: Array, v: Array, arrivals: Arrivals):
    r"""One step of the readout, a CuBa leaky integrator (no threshold): the current and
    membrane at the step's end,
    $I(1) = e^{-r_s}(I_0 + S_s)$, $V(1) = V e^{-r_m} + \big((I_0 + S_s)e^{-r_s} -
    (I_0 + S_m)e^{-r_m}\big)/(r_m - r_s)$ with $S_{s,m} = \sum_i W_{\cdot i} a_i
    e^{r_{s,m} p_i}$."""
    rate_m, rate_s = layer.rate_m, layer.rate_s
    i0 = i + _bias(layer, i)
    if layer.grid:
        i0 = i0 + layer.weight @ arrivals.amplitude
        total_s = total_m = i0
    else:
        weighted = layer.weight * arrivals.amplitude[None, :]
        total_s = i0 + jnp.sum(weighted * jnp.exp(rate_s[:, None] * arrivals.phase), axis=1)
        total_m = i0 + jnp.sum(weighted * jnp.exp(rate_m[:, None] * arrivals.phase), axis=1)
    decay_s, decay_m = jnp.exp(-rate_s), jnp.exp(-rate_m)
    v1 = v * decay_m + (total_s * decay_s - total_m * decay_m) / (rate_m - rate_s)
    return decay_s * total_s, v1
