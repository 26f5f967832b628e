"""Online spatio-temporal learning (Bohnstingl et al. 2022): diagonal RTRL per layer."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float

from ._layers import Layer, Layers
from ._layerwise import (
    LayerStep,
    factored_gradient,
    is_float,
    neuron_params,
    stack_state,
    state_size,
)
from ._layerwise_rule import AbstractLayerwiseRule


class LayerSensitivity(eqx.Module):
    r"""Per-unit $dy_t/d\theta$ of one layer (or a filtered sum of it such as OTPE's
    $\hat R$): `weight` `(n, n_in)`, `bias` `(n,)`, one `(n,)` array per trainable neuron
    parameter (summed to the parameter's shape only after the signal is applied) and
    `recurrent` `(n, n)` for $W_{rec}$ of a recurrent layer."""

    weight: Float[Array, "n n_in"]
    bias: Float[Array, " n"] | None
    neuron: tuple[Array, ...]
    recurrent: Float[Array, "n n"] | None = None


class LayerEligibility(eqx.Module):
    r"""Eligibility of one layer, $E = dh/d\theta$ per unit: `weight` `(k, n, n_in)`,
    `bias` `(k, n)`, one `(k, n)` array per trainable neuron parameter, `recurrent`
    `(k, n, n)` for $W_{rec}$, and for a recurrent layer that keeps its self-connection
    path, `output`: the previous step's $dy_{t-1}/d\theta$ (a
    [`eqslax.layerwise.LayerSensitivity`][]), the part of unit $i$'s state that
    $W_{rec,ii}$ feeds back."""

    weight: Float[Array, "k n n_in"]
    bias: Float[Array, "k n"] | None
    neuron: tuple[Array, ...]
    recurrent: Float[Array, "k n n"] | None = None
    output: LayerSensitivity | None = None


class OSTLTraces(eqx.Module):
    """OSTL's traces: one [`eqslax.layerwise.LayerEligibility`][] per layer."""

    layers: tuple[LayerEligibility, ...]


def init_eligibility(layer: Layer, state, dtype, self_path: bool = True) -> LayerEligibility:
    """Zero eligibility of `layer` (`state`: its neuron state). `self_path`: for a
    recurrent layer, carry $dy_{t-1}/d\\theta$ to follow the path through $W_{rec,ii}$."""
    k, n, n_in = state_size(state), layer.size, layer.in_size
    leaves, _, _ = neuron_params(layer.neuron)
    recurrent = layer.recurrent is not None
    output = None
    if recurrent and self_path:
        output = LayerSensitivity(
            weight=jnp.zeros((n, n_in), dtype),
            bias=None if layer.affine.bias is None else jnp.zeros((n,), dtype),
            neuron=tuple(jnp.zeros((n,), dtype) for _ in leaves),
            recurrent=jnp.zeros((n, n), dtype),
        )
    return LayerEligibility(
        weight=jnp.zeros((k, n, n_in), dtype),
        bias=None if layer.affine.bias is None else jnp.zeros((k, n), dtype),
        neuron=initial_sensitivity(layer.neuron, state, dtype),
        recurrent=jnp.zeros((k, n, n), dtype) if recurrent else None,
        output=output,
    )


def initial_sensitivity(neuron, state, dtype) -> tuple[Array, ...]:
    r"""$\partial h_{0}/\partial\theta_p$ per unit, `(k, n)` for each trainable neuron
    leaf $p$: zero unless the neuron's initial state depends on its parameters
    (`Izhikevich` starts at $v_0 = c$, $u_0 = bc$), as RTRL seeds its influence. The
    neuron is elementwise, so one JVP with an all-ones tangent per leaf gives every unit's
    derivative. The state is the one the neuron itself starts from, cast to the dtypes of
    `state` (what the rule carries)."""
    leaves, treedef, static = neuron_params(neuron)

    def start(index, leaf):
        params = list(leaves)
        params[index] = leaf
        h0 = eqx.combine(jtu.tree_unflatten(treedef, params), static).init_state()
        h0 = jtu.tree_map(lambda h, s: jnp.asarray(h, s.dtype) if is_float(s) else s, h0, state)
        return stack_state(h0)

    def seed(index, leaf):
        _, tangent = jax.jvp(lambda p: start(index, p), (leaf,), (jnp.ones_like(leaf),))
        return tangent.astype(dtype)

    return tuple(seed(index, leaf) for index, leaf in enumerate(leaves))


def _current_sensitivity(layer: Layer, trace: LayerEligibility, step: LayerStep):
    r"""$dI_t/d\theta$ per unit: the direct terms ($x_t$, 1, $y_{t-1}$, 0 for neuron
    parameters) plus, along the self-connection, $W_{rec,ii}\, dy_{t-1,i}/d\theta$."""
    one = jnp.ones((), step.input.dtype)
    neuron = tuple(None for _ in trace.neuron)
    if trace.output is None:
        return step.input, one, neuron, step.previous
    d, old = jnp.diagonal(layer.recurrent), trace.output
    bias = None if old.bias is None else one + d * old.bias
    return (
        step.input + d[:, None] * old.weight,
        bias,
        tuple(d * e for e in old.neuron),
        step.previous + d[:, None] * old.recurrent,
    )


def _sensitivity(local, e, direct_state, direct_output, current, rows: bool):
    """`(dy_t, E_t)` of one parameter from its eligibility `e` and direct terms."""
    if rows:
        dy = jnp.einsum("mi,mij->ij", local.y_state, e) + local.y_input[:, None] * current
        dh = jnp.einsum("kmi,mij->kij", local.J, e) + local.h_input[:, :, None] * current
        return dy, dh
    dy = jnp.einsum("mi,mi->i", local.y_state, e) + direct_output
    dh = jnp.einsum("kmi,mi->ki", local.J, e) + direct_state
    if current is not None:
        dy, dh = dy + local.y_input * current, dh + local.h_input * current
    return dy, dh


def advance_eligibility(layer: Layer, trace: LayerEligibility, step: LayerStep):
    r"""One step of the per-unit (diagonal) RTRL recursion of `layer`:

    $$\frac{dy_t}{d\theta} = \frac{\partial y_t}{\partial h_{t-1}} E_{t-1}
        + \frac{\partial y_t}{\partial I_t}\frac{dI_t}{d\theta}
        + \frac{\partial y_t}{\partial\theta}, \qquad
      E_t = J_t E_{t-1} + \frac{\partial h_t}{\partial I_t}\frac{dI_t}{d\theta}
        + \frac{\partial h_t}{\partial\theta},$$

    with $dI_{i,t}/d\theta$ its direct part ($x_t$ for $W$, 1 for $b$, $y_{t-1}$ for
    $W_{rec}$) plus $W_{rec,ii}\, dy_{i,t-1}/d\theta$ when the trace keeps the self path.
    Returns `(E_t, dy_t/dθ)` (a [`eqslax.layerwise.LayerSensitivity`][])."""
    local = step.local
    x, bias_current, neuron_current, previous = _current_sensitivity(layer, trace, step)
    weight = _sensitivity(local, trace.weight, None, None, x, rows=True)
    bias = None
    if trace.bias is not None:
        bias = _sensitivity(local, trace.bias, 0.0, 0.0, bias_current, rows=False)
    neuron = [
        _sensitivity(local, e, h, y, c, rows=False)
        for e, h, y, c in zip(trace.neuron, local.h_param, local.y_param, neuron_current)
    ]
    recurrent = None
    if trace.recurrent is not None:
        recurrent = _sensitivity(local, trace.recurrent, None, None, previous, rows=True)
    pick = lambda pair, i: None if pair is None else pair[i]  # noqa: E731
    output = LayerSensitivity(
        weight=weight[0],
        bias=pick(bias, 0),
        neuron=tuple(p[0] for p in neuron),
        recurrent=pick(recurrent, 0),
    )
    new = LayerEligibility(
        weight=weight[1],
        bias=pick(bias, 1),
        neuron=tuple(p[1] for p in neuron),
        recurrent=pick(recurrent, 1),
        output=None if trace.output is None else output,
    )
    return new, output


def sensitivity_gradient(layer: Layer, sensitivity: LayerSensitivity, signal: Array):
    r"""$g \cdot dy/d\theta$ for every parameter of `layer`."""
    return factored_gradient(
        layer,
        signal,
        sensitivity.weight,
        sensitivity.bias,
        [signal * s for s in sensitivity.neuron],
        sensitivity.recurrent,
    )


class OSTL(AbstractLayerwiseRule):
    r"""OSTL: exact per-layer eligibility, spatial learning signal.

    For each layer $l$ (an `eqx.nn.Linear` then an elementwise neuron with any number of
    state variables), the eligibility $E^l_t = dh^l_t/d\theta^l$ follows the diagonal
    RTRL recursion $E_t = J_t E_{t-1} + \partial h_t/\partial\theta$ ($J_t$ is block
    diagonal, one $k\times k$ block per unit). The learning signal
    $g^l_t = \partial\ell_t/\partial y^l_t$ is backpropagated through the layers above at
    the same step only, $g^{l-1}_t = W^{l\top}(g^l_t \odot \partial y^l_t/\partial I^l_t)$,
    and

    $$\nabla_{\theta^l}\ell_t \approx g^l_t\Big(\frac{\partial y^l_t}{\partial h^l_{t-1}}
      E^l_{t-1} + \frac{\partial y^l_t}{\partial \theta^l}\Big)$$

    It drops temporal paths across layers. Exact (equal to BPTT) for a single layer, for
    the last layer of any feed-forward stack, and for every layer when the layers above
    the first are memoryless. Memory $O(k\, n_{in} n)$ per layer and sample.

    **Recurrent layers** (`eqslax.Recurrent(neuron)`, $I_t = W x_t + b + W_{rec}
    y_{t-1}$): D-RTRL, the diagonal approximation of Bohnstingl et al. (2022). Unit $i$'s
    state is $(h_{i}, y_{i,t-1})$; its eligibility for $W_{rec}$ has $y_{t-1}$ as the
    presynaptic factor, and the path $y_{i,t-1} \to I_{i,t}$ through the self-connection
    $W_{rec,ii}$ is kept (see `advance_eligibility`), while the paths of $y_{j,t-1}$
    through other units $j \ne i$ are dropped, at the same $O(k\, n (n_{in} + n))$ memory.
    Exact (equal to BPTT) for a single recurrent layer whose $W_{rec}$ is diagonal
    (including $W_{rec} = 0$). `RTRL(diagonal=True)` (SnAp-1) keeps the same carried
    influence but the exact output sensitivity, which adds
    $\sum_{j \ne i} g_i\, \partial y_{i,t}/\partial I_{i,t}\, W_{rec,ij}\,
    dy_{j,t-1}/d\theta$; the two agree when $W_{rec}$ is diagonal.

    **Convolutional layers** (`eqx.nn.Conv1d`/`Conv2d` with weight $(C_{out}, C_{in},
    *K)$, then an elementwise neuron of shape $(C_{out}, *S)$, $P = \prod S$ output
    positions): at each position the layer is a dense layer of $C_{out}$ units on the
    unfolded input patch $u_p(x_t)$ (size $C_{in}\prod K$), with the weight shared over
    positions. Unit $(c, p)$ depends on the weight only through its own input current, so
    its eligibility $dh_{c,p}/dW_c$ is exact per unit and the layer's gradient is the sum
    over positions: OSTL stays exact per layer (equal to BPTT for one conv layer). Memory
    $O(k\, C_{out} C_{in} \prod K \cdot P)$ per layer and sample.

    Layers it cannot handle (`cat` edges, `RLIF`, maps other than `Linear`/`Conv1d`/
    `Conv2d`, coupled neurons) raise an error naming the layer.
    """

    traces_type: ClassVar[type] = OSTLTraces

    def init_layer(self, layers: Layers, index, state, dtype):
        return init_eligibility(layers[index], state, dtype)

    def advance(self, layers: Layers, index, trace, step):
        return advance_eligibility(layers[index], trace, step)

    def gradient(self, layers: Layers, index, estimate, step, signal):
        return sensitivity_gradient(layers[index], estimate, signal)
