"""EventProp (Wunderlich & Pehle 2021): exact gradients of spiking networks in continuous
time by the adjoint method, backwards through the events."""

import equinox as eqx
import jax
import jax.numpy as jnp

from .._continuous._layers import Arrivals
from .._continuous._model import ContinuousTime, ContinuousTimeState, advance
from .._mask import with_mask
from .._neurons import CuBaLIFState
from .._parameters import trainable_mask
from ._base import AbstractLearningRule, Aux
from ._eventprop_adjoint import readout_adjoint, spiking_adjoint


def _forward(layers, xs):
    """The outputs (time, out) and what each spiking layer did at each step."""
    state = initial_state_of(layers, jnp.result_type(xs, layers[0].weight))

    def step(state, x):
        state, output, fired = advance(layers, state, x)
        return state, (output, fired)

    _, (outputs, fired) = jax.lax.scan(step, state, xs)
    return outputs, fired


def _arrivals_of(layers, fired, x):
    """The events reaching each layer in one step."""
    out = [Arrivals(jnp.zeros_like(x), x)]
    for what in fired[:-1]:
        out.append(what.arrivals())
    return out


def _backward(layers, fired, xs, g_outputs):
    """The gradient of every layer's weight and bias from $\\partial L/\\partial y_t$,
    by a scan backwards over the steps and, in each, down through the layers."""

    def start(layer):
        zeros = jnp.zeros(layer.weight.shape[0], layer.weight.dtype)
        return (zeros, zeros)

    grads = tuple(
        (jnp.zeros_like(layer.weight), jnp.zeros(layer.weight.shape[0], layer.weight.dtype))
        for layer in layers
    )

    def step(carry, inputs):
        sensitivities, grads = carry
        fired_t, x, g_out = inputs
        arrivals = _arrivals_of(layers, fired_t, x)
        new_sens, new_grads = list(sensitivities), list(grads)
        g_phase = None
        for index in reversed(range(len(layers))):
            layer, what, top = layers[index], fired_t[index], index == len(layers) - 1
            g_i, g_v = sensitivities[index]
            if layer.spiking:
                if top:  # the output is 1 - p at a crossing
                    g_phase = jnp.where(what.crossed, -g_out, 0.0)
                g_i, g_v, g_w, g_b, g_phase = spiking_adjoint(
                    layer, what, arrivals[index], g_i, g_v, g_phase
                )
                new_sens[index] = (g_i, g_v)
            else:
                g_i, g_v, g_w, g_b, g_phase = readout_adjoint(
                    layer, arrivals[index], g_i, g_v + g_out
                )
                new_sens[index] = (g_i, g_v)
            w, b = grads[index]
            new_grads[index] = (w + g_w, b + g_b)
        return (tuple(new_sens), tuple(new_grads)), None

    carry = (tuple(start(layer) for layer in layers), grads)
    (_, grads), _ = jax.lax.scan(step, carry, (fired, xs, g_outputs), reverse=True)
    return grads


@jax.custom_vjp
def event_outputs(layers, xs):
    """The outputs of a `ContinuousTime` network's `event_layers()` on one sequence,
    differentiated by EventProp."""
    return _forward(layers, xs)[0]


def _event_outputs_fwd(layers, xs):
    outputs, fired = _forward(layers, xs)
    return outputs, (layers, fired, xs)


def _event_outputs_bwd(residuals, g_outputs):
    layers, fired, xs = residuals
    grads = _backward(layers, fired, xs, g_outputs)
    cotangents = []
    for layer, (g_w, g_b) in zip(layers, grads):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, layer)
        zeros = eqx.tree_at(lambda m: m.weight, zeros, g_w)
        if layer.bias is not None:
            zeros = eqx.tree_at(lambda m: m.bias, zeros, g_b)
        cotangents.append(zeros)
    return tuple(cotangents), jnp.zeros_like(xs)


event_outputs.defvjp(_event_outputs_fwd, _event_outputs_bwd)


def _check_model(model, owner: str) -> ContinuousTime:
    if not isinstance(model, ContinuousTime):
        raise TypeError(
            f"{owner}: `model` must be an eqslax.ContinuousTime network (Linear -> CuBaLIF "
            f"layers read in continuous time), got {type(model).__name__}; wrap a "
            "feed-forward Connect of Linear and CuBaLIF layers in eqslax.ContinuousTime."
        )
    return model


class EventProp(AbstractLearningRule):
    r"""EventProp (Wunderlich & Pehle 2021, "Event-based backpropagation can compute
    exact gradients for spiking neural networks"): the exact gradient of a loss on
    spike times and membrane values of a `ContinuousTime` network, by the adjoint
    method. No surrogate is involved.

    The forward pass simulates the network exactly (see `ContinuousTime`) and keeps,
    per step and unit, only the crossing time and two numbers of state, so memory is
    $O(T N)$ and never $O(T N^2)$. The backward pass runs the adjoint system backwards in
    time, in closed form between events, with jumps at the spike times: with
    $\lambda_V$, $\lambda_I$ the sensitivities of the loss to $V$ and $I$,

    $$
    \lambda_V^- = \frac{\dot V^+}{\dot V^-}\lambda_V^+ - \frac{1}{\dot V^-}
        \frac{\partial L}{\partial t^*}, \qquad
    \frac{\partial L}{\partial w_{ji}} = \sum_{t_k \in \text{spikes of } i}
        \lambda_{I,j}(t_k)
    $$

    ($-\tau_s\sum_k \lambda_{I,j}(t_k)$ in the paper's sign convention), where
    $\partial L/\partial t^*$ holds the loss's own dependence on the spike time and what
    the postsynaptic layer passes down, $\sum_j w_{ji}\dot\lambda_{I,j}(t^*)$. The loss
    is any eqslax loss on the outputs: `FirstSpikeTime` on a spiking output layer, or a
    membrane loss (`Accumulated(reduce="max")`, `PerStep`) on a leaky-integrator
    readout; its sensitivity to each step's output enters the adjoint at that step.

    The gradient equals autodiff through the same forward (`BPTT` on the
    `ContinuousTime` model), which differentiates the crossing times by the implicit
    function theorem instead. It is the gradient of a piecewise-smooth loss: where a
    spike appears or disappears the loss jumps, and neither route sees it.
    """

    def update(self, model, rule_state, loss, xs, ys, mask=None):
        model = _check_model(model, "EventProp")
        params, static = eqx.partition(model, trainable_mask(model))

        def objective(params):
            layers = eqx.combine(params, static).event_layers()
            outputs = jax.vmap(lambda x: event_outputs(layers, x))(xs)

            def one(output, y, m):
                return with_mask(loss, output, y, None, mask=m)

            return jnp.mean(jax.vmap(one)(outputs, ys, mask)), outputs

        (value, outputs), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return grads, rule_state, Aux(outputs=outputs, loss=value)


def initial_state_of(layers, dtype) -> ContinuousTimeState:
    """Zero currents and membranes for every layer."""
    states = []
    for layer in layers:
        zeros = jnp.zeros(layer.weight.shape[0], dtype)
        states.append(CuBaLIFState(i=zeros, v=zeros))
    return ContinuousTimeState(tuple(states))
