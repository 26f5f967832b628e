"""Online spatio-temporal learning (Bohnstingl et al. 2022): diagonal RTRL per layer."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float

from .._parameters import trainable
from ._layerwise import (
    check_layers,
    factored_gradient,
    float_dtype,
    neuron_params,
    neuron_step,
    passback,
    set_layer_grads,
    state_size,
)
from ._online import AbstractOnlineRule


class LayerEligibility(eqx.Module):
    """Eligibility of one layer: $E^W = dh/dW$ `(k, n, n_in)`, $E^b$
    `(k, n)` and one `(k, n)` array per trainable neuron parameter."""

    weight: Float[Array, "k n n_in"]
    bias: Float[Array, "k n"] | None
    neuron: tuple[Array, ...]


class OSTLTraces(eqx.Module):
    """OSTL's traces: one `LayerEligibility` per (Linear, neuron) pair."""

    layers: tuple[LayerEligibility, ...]


def init_eligibility(pairs, state, dtype) -> tuple[LayerEligibility, ...]:
    traces = []
    for index, (linear, neuron) in enumerate(pairs):
        k = state_size(state.layers[2 * index + 1])
        n = linear.out_features
        leaves, _, _ = neuron_params(neuron)
        traces.append(
            LayerEligibility(
                weight=jnp.zeros((k, n, linear.in_features), dtype),
                bias=None if linear.bias is None else jnp.zeros((k, n), dtype),
                neuron=tuple(jnp.zeros((k, n), dtype) for _ in leaves),
            )
        )
    return tuple(traces)


def forward_layers(pairs, state, x):
    """Run every (Linear, neuron) pair; keep each layer's input and local derivatives."""
    inputs, locals_, states, h = [], [], list(state.layers), x
    for index, (linear, neuron) in enumerate(pairs):
        inputs.append(h)
        new_state, h, local = neuron_step(neuron, state.layers[2 * index + 1], linear(h))
        states[2 * index + 1] = new_state
        locals_.append(local)
    new_state = eqx.tree_at(lambda s: s.layers, state, tuple(states))
    return new_state, h, inputs, locals_


class LayerSensitivity(eqx.Module):
    r"""Per-unit $dy_t/d\theta$ of one layer (or its leaky sum $\hat R$):
    `weight` `(n, n_in)`, `bias` `(n,)` and one `(n,)` array per trainable
    neuron parameter (summed to the parameter's shape only after the signal is applied)."""

    weight: Float[Array, "n n_in"]
    bias: Float[Array, " n"] | None
    neuron: tuple[Array, ...]


def output_sensitivity(trace: LayerEligibility, local, x) -> LayerSensitivity:
    r"""$dy_t/d\theta = \frac{\partial y_t}{\partial h_{t-1}} E_{t-1}
    + \frac{\partial y_t}{\partial\theta}$ per unit, before any learning signal.

    OSTL contracts it with the learning signal at once; OTPE filters it over time first."""
    weight = jnp.einsum("mi,mij->ij", local.y_state, trace.weight) + local.y_input[:, None] * x
    bias = None
    if trace.bias is not None:
        bias = jnp.einsum("mi,mi->i", local.y_state, trace.bias) + local.y_input
    neuron = tuple(
        jnp.einsum("mi,mi->i", local.y_state, e) + direct
        for e, direct in zip(trace.neuron, local.y_param)
    )
    return LayerSensitivity(weight=weight, bias=bias, neuron=neuron)


def layer_gradient(linear, neuron, trace: LayerEligibility, local, x, signal):
    r"""`signal` $\cdot\, dy/d\theta$ with $dy/d\theta$ from the eligibility
    of the last step and the direct terms of this one."""
    sensitivity = output_sensitivity(trace, local, x)
    return factored_gradient(
        linear,
        neuron,
        signal,
        sensitivity.weight,
        sensitivity.bias,
        [signal * s for s in sensitivity.neuron],
    )


def advance_eligibility(trace: LayerEligibility, local, x) -> LayerEligibility:
    r"""$E_t = J_t E_{t-1} + \partial h_t/\partial\theta$ for every parameter."""
    weight = jnp.einsum("kmi,mij->kij", local.J, trace.weight) + local.h_input[:, :, None] * x
    bias = None
    if trace.bias is not None:
        bias = jnp.einsum("kmi,mi->ki", local.J, trace.bias) + local.h_input
    neuron = tuple(
        jnp.einsum("kmi,mi->ki", local.J, e) + direct
        for e, direct in zip(trace.neuron, local.h_param)
    )
    return LayerEligibility(weight=weight, bias=bias, neuron=neuron)


class OSTL(AbstractOnlineRule):
    r"""OSTL: exact per-layer eligibility, spatial learning signal.

    For each layer $l$ (an `eqx.nn.Linear` then an elementwise neuron with any
    number of state variables), the eligibility $E^l_t = dh^l_t/d\theta^l$ follows
    the diagonal RTRL recursion $E_t = J_t E_{t-1} + \partial h_t/\partial\theta$
    ($J_t$ is block diagonal, one $k\times k$ block per unit). The learning
    signal $g^l_t = \partial\ell_t/\partial y^l_t$ is backpropagated through the
    layers above at the same step only, $g^{l-1}_t = W^{l\top}(g^l_t \odot
    \partial y^l_t/\partial I^l_t)$, and

    $$
    \nabla_{\theta^l}\ell_t \approx g^l_t\Big(\frac{\partial y^l_t}{\partial h^l_{t-1}}
    E^l_{t-1} + \frac{\partial y^l_t}{\partial \theta^l}\Big)
    $$

    It drops temporal paths across layers. Exact (equal to BPTT) for a single layer,
    for the last layer of any feed-forward stack, and for every layer when the layers
    above the first are memoryless. Memory $O(k\, n_{in} n)$ per layer and sample.
    Layers it cannot handle (recurrent `cat` edges, coupled neurons such as `RLIF`,
    non-`Linear` maps) raise an error naming the layer.
    """

    def init_traces(self, model, state):
        pairs = check_layers(model, "OSTL")
        dtype = float_dtype(state)
        return OSTLTraces(init_eligibility(pairs, state, dtype))

    def step(self, model, state, traces, x, label, loss):
        pairs = check_layers(model, "OSTL")
        state, y, inputs, locals_ = forward_layers(pairs, state, x)
        value, signal = jax.value_and_grad(lambda y: loss.step(y, label))(y)
        grads = jtu.tree_map(jnp.zeros_like, trainable(model))
        new_traces = list(traces.layers)
        for index in reversed(range(len(pairs))):
            linear, neuron = pairs[index]
            trace, local, x_in = traces.layers[index], locals_[index], inputs[index]
            linear_grad, neuron_grad = layer_gradient(linear, neuron, trace, local, x_in, signal)
            grads = set_layer_grads(grads, index, linear_grad, neuron_grad)
            new_traces[index] = advance_eligibility(trace, local, x_in)
            signal = passback(linear, local, signal)
        return state, OSTLTraces(tuple(new_traces)), grads, y, value
