"""`ContinuousTime`: a feed-forward CuBa LIF network read in continuous time."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .._connect import Connect
from .._neurons import LI, AbstractNeuron, CuBaLIF, CuBaLIFState
from ._layers import Arrivals, EventLayer, readout_step, spiking_step

OWNER = "ContinuousTime"


class ContinuousTimeState(eqx.Module):
    """One `CuBaLIFState(i, v)` per population (the readout's too), the values at
    the step's start."""

    layers: tuple


def _check_rate(value, name: str, index: int, layer) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    array = np.asarray(value)
    if not np.all((array > 0) & (array < 1)):
        raise ValueError(
            f"{OWNER}: layer {index} ({type(layer).__name__}) must have `{name}` strictly "
            f"between 0 and 1 (a finite time constant), got {array.tolist()}."
        )


def _check_population(index: int, layer, last: bool) -> None:
    name = type(layer).__name__
    if isinstance(layer, LI):
        if not last:
            raise ValueError(
                f"{OWNER}: layer {index} (LI) must be the last layer (the readout), got it "
                "before other layers."
            )
        needed = ("decay",)
    elif isinstance(layer, CuBaLIF):
        if layer.reset not in ("subtract", "zero"):
            raise ValueError(
                f"{OWNER}: layer {index} (CuBaLIF) must reset ('subtract' or 'zero', the "
                f"same reset to 0 at a threshold crossing), got reset={layer.reset!r}."
            )
        needed = ("decay", "synapse_decay", "threshold")
        _check_rate(layer.synapse_decay, "synapse_decay", index, layer)
        if not isinstance(layer.decay, jax.core.Tracer) and np.any(
            np.asarray(layer.decay) == np.asarray(layer.synapse_decay)
        ):
            raise ValueError(
                f"{OWNER}: layer {index} (CuBaLIF) must have `decay` != `synapse_decay` "
                f"(distinct time constants), got both {np.asarray(layer.decay).tolist()}."
            )
    else:
        raise ValueError(
            f"{OWNER}: layer {index} must be a CuBaLIF (hidden or output) or an LI "
            f"(readout), got {name}."
        )
    trained = [p for p in needed if p not in layer.frozen]
    if trained:
        raise ValueError(
            f"{OWNER}: layer {index} ({name}) trains {', '.join(map(repr, trained))}; only "
            "the weights and biases are trained in continuous time, got "
            f"frozen={layer.frozen!r}."
        )
    _check_rate(layer.decay, "decay", index, layer)


def check_network(network) -> None:
    """A feed-forward `Connect` of `Linear -> CuBaLIF` pairs, optionally ending in
    `Linear -> LI`; raise naming the first layer that is not."""
    if not isinstance(network, Connect):
        raise TypeError(
            f"{OWNER}: `network` must be an eqslax.Connect of Linear and CuBaLIF layers, got "
            f"{type(network).__name__}."
        )
    if network.edges:
        raise ValueError(
            f"{OWNER}: `network` must be feed-forward (no `cat` edges), got edges "
            f"{list(network.edges)}."
        )
    layers = network.layers
    if len(layers) % 2:
        raise ValueError(
            f"{OWNER}: `network` must alternate Linear and population layers (an even "
            f"number of layers), got {len(layers)}."
        )
    for index, layer in enumerate(layers):
        if index % 2 == 0:
            if not isinstance(layer, eqx.nn.Linear) or layer.in_features == "scalar":
                raise ValueError(
                    f"{OWNER}: layer {index} must be an eqx.nn.Linear on vectors, got "
                    f"{type(layer).__name__}."
                )
        else:
            _check_population(index, layer, index == len(layers) - 1)


def _rate(value: Array, shape) -> Array:
    return jnp.broadcast_to(-jnp.log(jax.lax.stop_gradient(value)), shape)


class ContinuousTime(AbstractNeuron):
    r"""A feed-forward network of current-based LIF layers, simulated exactly in
    continuous time on a grid of unit steps (Wunderlich & Pehle 2021's neuron model).

    `network` is an `eqslax.Connect` of `eqx.nn.Linear -> CuBaLIF` pairs, optionally
    ending in `eqx.nn.Linear -> LI` (a leaky-integrator readout). Time is measured in
    steps; a CuBa LIF unit with `decay` $\lambda$ and `synapse_decay` $\alpha$ has
    $\tau_m = -1/\ln\lambda$, $\tau_s = -1/\ln\alpha$ and obeys

    $$
    \tau_s \dot I = -I + \tau_s \sum_k w_k\,\delta(t - t_k), \qquad
    \dot V = -V/\tau_m + I, \qquad V(t^*) = \vartheta \Rightarrow V \to 0,
    $$

    where $t_k$ are the presynaptic spikes (every step's data $x_t$ arrives at the
    step's start $t$, weighted by $W$; the bias is a jump at every step's start). The
    readout `LI` is read as the same current-based unit without a threshold, its
    synaptic current decaying by `readout_synapse_decay` per step, so that its membrane
    is continuous in the times of the spikes it receives (a membrane that jumped at each
    arrival would make a loss read at the ends of steps jump whenever a spike crosses a
    step boundary).

    **How spikes are located.** Between events the dynamics is linear and solved in
    closed form, $V(u) = V_0 e^{-u/\tau_m} + I_0 \kappa(u)$ with
    $\kappa(u) = (e^{-u/\tau_s} - e^{-u/\tau_m})/(1/\tau_m - 1/\tau_s)$. In each step
    a layer sorts the spikes arriving from the layer below by time; on each segment
    between arrivals the membrane has at most one maximum, known in closed form, so the
    first segment where it reaches threshold is found exactly and the crossing time by
    bisection and Newton steps on that segment (to machine precision). Spikes go to the
    next layer with these exact times, in the same step. Nothing here depends on the step
    length except two limits: a unit fires at most once per step (a second crossing
    within a step waits until the next step's start, where the unit fires if still at or
    above threshold), and the readout is observed at the ends of steps.

    **Outputs, per step.** The readout's membrane at the step's end; or, when the last
    layer spikes, $1 - p$ for a spike at phase $p \in [0, 1)$ of the step (1 at the
    step's start, 0 without a spike), so the spike time is $t + 1 - y_t$ (see
    `FirstSpikeTime`).

    Only the weights and biases are trained (decays and thresholds stay frozen); the
    `CuBaLIF` options `surrogate`, `detach_reset` and `reset_decay` are not used.
    Gradients through this model by autodiff (`BPTT`) are exact: crossing times are
    differentiated by the implicit function theorem; `EventProp` computes the same
    gradient with the adjoint system.
    """

    elementwise: ClassVar[bool] = False

    network: Connect
    readout_synapse_decay: float = eqx.field(static=True)

    def __init__(self, network: Connect, *, readout_synapse_decay: float = 0.8):
        r"""**Arguments:**

        - `network`: a feed-forward `eqslax.Connect` as above.
        - `readout_synapse_decay`: $\alpha$ of the readout's synaptic current, in
          $(0, 1)$ and different from the readout's `decay` (default 0.8, as `CuBaLIF`).
        """
        check_network(network)
        last = network.layers[-1]
        if isinstance(last, LI):
            decay = np.asarray(last.decay)
            if not 0 < readout_synapse_decay < 1 or np.any(decay == readout_synapse_decay):
                raise ValueError(
                    f"{OWNER}: `readout_synapse_decay` must be in (0, 1) and differ from the "
                    f"readout's decay {decay.tolist()}, got {readout_synapse_decay!r}."
                )
        self.network = network
        self.readout_synapse_decay = float(readout_synapse_decay)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.network.in_shape

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.network.out_shape

    def event_layers(self) -> tuple[EventLayer, ...]:
        """The `Linear -> population` pairs as `EventLayer`s (frozen arrays detached)."""
        layers = self.network.layers
        out = []
        for index in range(0, len(layers), 2):
            linear, population = layers[index], layers[index + 1]
            shape = (linear.out_features,)
            spiking = isinstance(population, CuBaLIF)
            out.append(
                EventLayer(
                    weight=linear.weight,
                    bias=linear.bias,
                    rate_m=_rate(population.decay, shape),
                    rate_s=_rate(
                        population.synapse_decay
                        if spiking
                        else jnp.asarray(self.readout_synapse_decay, population.decay.dtype),
                        shape,
                    ),
                    threshold=(
                        jnp.broadcast_to(jax.lax.stop_gradient(population.threshold), shape)
                        if spiking
                        else None
                    ),
                    grid=index == 0,
                )
            )
        return tuple(out)

    def init_state(self) -> ContinuousTimeState:
        states = []
        for layer in self.network.layers[1::2]:
            zeros = jnp.zeros(layer.shape, layer.decay.dtype)
            states.append(CuBaLIFState(i=zeros, v=zeros))
        return ContinuousTimeState(tuple(states))

    def __call__(
        self, state: ContinuousTimeState, x: Float[Array, " in"]
    ) -> tuple[ContinuousTimeState, Float[Array, " out"]]:
        new_states, output, _ = advance(self.event_layers(), state, x)
        return new_states, output

    def spikes(self, xs: Float[Array, "time in"]) -> tuple[Float[Array, "time _"], ...]:
        """Every spiking layer's spikes over a sequence, `(time, neurons)` each, coded as
        the outputs are: $1 - p$ for a spike at phase $p$ of a step, 0 without one."""
        layers = self.event_layers()

        def step(state, x):
            state, _, fired = advance(layers, state, x)
            return state, tuple(f.output() for f in fired if f is not None)

        start = jax.tree_util.tree_map(
            lambda s: jnp.asarray(s, jnp.result_type(s, xs)), self.init_state()
        )
        return jax.lax.scan(step, start, xs)[1]


def advance(layers, state: ContinuousTimeState, x: Array):
    """One step of every layer: the new state, the output and what each spiking layer
    did (`Fired`, `None` for the readout)."""
    arrivals = Arrivals(jnp.zeros_like(x), x)
    states, fired, output = [], [], None
    for layer, s in zip(layers, state.layers):
        if layer.spiking:
            i1, v1, what = spiking_step(layer, s.i, s.v, arrivals)
            states.append(CuBaLIFState(i=i1, v=v1))
            fired.append(what)
            arrivals, output = what.arrivals(), what.output()
        else:
            i1, output = readout_step(layer, s.i, s.v, arrivals)
            states.append(CuBaLIFState(i=i1, v=output))
            fired.append(None)
    return ContinuousTimeState(tuple(states)), output, tuple(fired)
