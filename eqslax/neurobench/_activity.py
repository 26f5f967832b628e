"""What one run of a model did, layer by layer: the input of every linear map (synapses)
and the output and membrane of every neuron, read from `eqslax.record`.

JAX has no forward hooks, so the inputs NeuroBench's hooks would see are rebuilt from the
recording: the input of layer $k$ of a `Connect` is the output of
layer $k-1$ (or the network input) plus every `cat` projection into it, and each
projection reads its source's output at the same step (skip edge) or at the previous step
(recurrent edge, zeros at the first step). A nested `Connect` is recorded again on the
input rebuilt for it, so graphs of any depth are covered.
"""

from typing import Any

import beartype
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, jaxtyped

from .._connect import Connect
from .._neurons import LTC, RLIF, AbstractNeuron
from .._simulate import record

# The stateless activations NeuroBench hooks (`nn.ReLU`, `nn.Sigmoid`), written as
# `eqx.nn.Lambda(jax.nn.relu)` in a Connect. Other Lambdas (reshapes, ...) are ignored.
ACTIVATION_FUNCTIONS = (jax.nn.relu, jax.nn.sigmoid)

# Layers whose weights are connections (NeuroBench: Linear and Conv1d/2d/3d).
CONNECTION_LAYERS = (eqx.nn.Linear, eqx.nn.Conv)

# The gate weights of an LTC neuron, which read the input and the previous v and b.
LTC_WEIGHTS = (
    "input_membrane_weight",
    "membrane_weight",
    "input_adaptation_weight",
    "adaptation_weight",
)


class LinearMap(eqx.Module):
    """One set of synapses and what entered it at every step.

    `layer` is an `eqx.nn.Linear`, an `eqx.nn.Conv` or a weight matrix
    `(out, in)` applied to the flattened input (the recurrent weights inside a neuron).
    """

    name: str = eqx.field(static=True)
    layer: Any
    inputs: Float[Array, "time ..."]


class NeuronActivity(eqx.Module):
    """The outputs of one activation layer at every step and, for a neuron whose state
    has a membrane `v`, that membrane after every step (`None` otherwise)."""

    name: str = eqx.field(static=True)
    outputs: Float[Array, "time ..."]
    membrane: Float[Array, "time ..."] | None


class Activity(eqx.Module):
    """Everything the NeuroBench workload metrics count, for one sample.

    **Fields:** `outputs` (time, *out), the model's output; `maps`, every linear map
    with its inputs; `neurons`, every neuron and stateless activation with its outputs.
    """

    outputs: Float[Array, "time ..."]
    maps: tuple[LinearMap, ...]
    neurons: tuple[NeuronActivity, ...]


@jaxtyped(typechecker=beartype.beartype)
def record_activity(model: AbstractNeuron, xs: Float[Array, "time *in"]) -> Activity:
    """Run `model` on one sample `xs` (time, *in) and collect its `Activity`.

    Counted as synapses: `eqx.nn.Linear` and `eqx.nn.Conv` layers of a Connect (at any
    nesting depth), its `cat` projections, and the recurrent weights of `RLIF`
    (input $s_{t-1}$) and `LTC` (gate weights on $x_t$,
    $v_{t-1}$ and $b_{t-1}$). Counted as activations: every neuron that is not
    a Connect and every `eqx.nn.Lambda` of `jax.nn.relu` or `jax.nn.sigmoid`.
    A layer that hides a Linear or Conv inside another container raises `ValueError`:
    its synapses could not be counted.
    """
    _check_visible(model, "model")
    _, recording = record(model, xs)
    maps: list[LinearMap] = []
    neurons: list[NeuronActivity] = []
    if isinstance(model, Connect):
        _collect_connect(model, xs, recording, "", maps, neurons)
    else:
        _collect_neuron(model, xs, recording.outputs, recording.states, "model", maps, neurons)
    return Activity(outputs=recording.outputs, maps=tuple(maps), neurons=tuple(neurons))


def _previous(ys):
    """`ys` delayed by one step, zeros at the first step (a recurrent edge's input)."""
    return jnp.concatenate([jnp.zeros_like(ys[:1]), ys[:-1]], axis=0)


def _flat(ys):
    """Per step, the input a projection receives (flattened, scalars kept scalar)."""
    return ys.reshape(ys.shape[0], -1) if ys.ndim > 1 else ys


def _collect_connect(model, xs, recording, prefix, maps, neurons):
    steps = xs.shape[0]
    for k, layer in enumerate(model.layers):
        h = xs if k == 0 else recording.layers[k - 1]
        for index, (projection, (target, source)) in enumerate(zip(model.projections, model.edges)):
            if target != k:
                continue
            ys = recording.layers[source]
            y = _flat(ys if source < k else _previous(ys))
            maps.append(LinearMap(f"{prefix}projections[{index}]", projection, y))
            h = h + jax.vmap(projection)(y).reshape((steps,) + tuple(model.shapes[k]))
        name = f"{prefix}layers[{k}]"
        if isinstance(layer, Connect):
            _, inner = record(layer, h)
            _collect_connect(layer, h, inner, name + ".", maps, neurons)
        elif isinstance(layer, AbstractNeuron):
            states = recording.states.layers[k]
            _collect_neuron(layer, h, recording.layers[k], states, name, maps, neurons)
        elif isinstance(layer, CONNECTION_LAYERS):
            maps.append(LinearMap(name, layer, h))
        elif isinstance(layer, eqx.nn.Lambda) and _is_activation(layer):
            neurons.append(NeuronActivity(name, recording.layers[k], None))


def _collect_neuron(neuron, xs, outputs, states, name, maps, neurons):
    membrane = getattr(states, "v", None)
    neurons.append(NeuronActivity(name, outputs, membrane))
    initial = neuron.init_state()
    before = jtu.tree_map(
        lambda first, seq: jnp.concatenate([jnp.asarray(first, seq.dtype)[None], seq[:-1]]),
        initial,
        states,
    )
    if isinstance(neuron, RLIF):
        maps.append(LinearMap(f"{name}.recurrent_weight", neuron.recurrent_weight, _flat(before.s)))
    elif isinstance(neuron, LTC):
        x, v, b = _flat(xs), _flat(before.v), _flat(before.b)
        for field, inputs in zip(LTC_WEIGHTS, (x, v, x, b)):
            maps.append(LinearMap(f"{name}.{field}", getattr(neuron, field), inputs))


def _is_activation(layer) -> bool:
    return any(layer.fn is fn for fn in ACTIVATION_FUNCTIONS)


def _check_visible(module, name: str) -> None:
    """Refuse, before any work, a Linear or Conv layer whose inputs cannot be rebuilt."""
    if isinstance(module, Connect):
        for k, layer in enumerate(module.layers):
            _check_visible(layer, f"{name}.layers[{k}]")
    elif not isinstance(module, CONNECTION_LAYERS + (RLIF, LTC)) and holds_connections(module):
        raise ValueError(
            f"record_activity: {name} ({type(module).__name__}) holds Linear or Conv layers "
            f"whose inputs cannot be seen from outside; list them in a Connect instead."
        )


def holds_connections(module) -> bool:
    """Whether a Linear or Conv layer sits anywhere inside `module`."""
    leaves = jtu.tree_leaves(module, is_leaf=lambda node: isinstance(node, CONNECTION_LAYERS))
    return any(isinstance(leaf, CONNECTION_LAYERS) for leaf in leaves)


def connection_weights(model) -> list[tuple[str, Array]]:
    """Every connection weight of `model` (NeuroBench counts weights, not biases):
    Linear and Conv layers and `cat` projections anywhere in the tree, and the
    recurrent weights of RLIF and LTC neurons."""
    found = []
    nodes = jtu.tree_leaves_with_path(
        model, is_leaf=lambda node: isinstance(node, CONNECTION_LAYERS + (RLIF, LTC))
    )
    for path, node in nodes:
        where = jtu.keystr(path)
        if isinstance(node, CONNECTION_LAYERS):
            found.append((where, node.weight))
        elif isinstance(node, RLIF):
            found.append((f"{where}.recurrent_weight", node.recurrent_weight))
        elif isinstance(node, LTC):
            for field in LTC_WEIGHTS:
                found.append((f"{where}.{field}", getattr(node, field)))
    return found
