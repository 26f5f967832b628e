r"""Per-layer pieces of the layer-local online rules (OSTL, OTTT, OTPE, e-prop).

These rules see a network as a stack of layers $l$ (a [`eqslax.layerwise.Layers`][]
view), each an affine map, an optional recurrent weight and an elementwise neuron with
$k$ state variables per unit:

$$I^l_t = W^l x^l_t + b^l + W^l_{rec} y^l_{t-1}, \qquad (h^l_t, y^l_t) = N^l(h^l_{t-1}, I^l_t)$$

At each step, every rule needs only per-unit local derivatives of $N^l$, which
forward-mode JVPs with all-ones tangents deliver without building any Jacobian across
units (the neuron is elementwise, so unit $i$ only sees its own entries):

- `J[k, m, i]` $= \partial h_{k,i,t} / \partial h_{m,i,t-1}$ (state Jacobian);
- `h_input[k, i]` $= \partial h_{k,i,t} / \partial I_i$, `y_input[i]` likewise for $y$,
  `y_state[m, i]` $= \partial y_i / \partial h_{m,i,t-1}$;
- for each trainable neuron parameter leaf $\nu$: `h_param` and `y_param`.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PyTree

from .._neurons import AbstractNeuron
from .._parameters import trainable, trainable_mask
from ._layers import Layer
from ._outer import Outer


class Local(eqx.Module):
    r"""Per-unit local derivatives of one step of an elementwise neuron with $k$ state
    variables and $n$ units: `J` $= \partial h_t/\partial h_{t-1}$ `(k, k, n)`,
    `h_input` $= \partial h_t/\partial I_t$ `(k, n)`, `y_input` $= \partial y_t/\partial
    I_t$ `(n,)`, `y_state` $= \partial y_t/\partial h_{t-1}$ `(k, n)`, and per trainable
    neuron leaf $\nu$ `h_param` $= \partial h_t/\partial\nu$ `(k, n)` and `y_param`
    $= \partial y_t/\partial\nu$ `(n,)`."""

    J: Float[Array, "k k n"]
    h_input: Float[Array, "k n"]
    y_input: Float[Array, " n"]
    y_state: Float[Array, "k n"]
    h_param: tuple[Array, ...]  # one (k, n) array per trainable neuron leaf
    y_param: tuple[Array, ...]  # one (n,) array per trainable neuron leaf


def neuron_params(neuron):
    """Trainable leaves of a neuron, the rest, and how to rebuild the leaf tree."""
    params, static = eqx.partition(neuron, trainable_mask(neuron))
    leaves, treedef = jtu.tree_flatten(params)
    return leaves, treedef, static


def is_float(leaf) -> bool:
    """A state leaf that carries gradient: inexact dtype. Integer and boolean leaves
    (counters, flags) are constants to every rule and keep their dtype."""
    return jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)


def float_leaves(state) -> list[Array]:
    """The differentiable leaves of a state, in tree order."""
    return [leaf for leaf in jtu.tree_leaves(state) if is_float(leaf)]


def state_size(state) -> int:
    """$k$: the number of differentiable state variables per unit."""
    return len(float_leaves(state))


def float_dtype(state):
    """The dtype of the traces: that of the first differentiable state leaf."""
    leaves = float_leaves(state)
    return leaves[0].dtype if leaves else jnp.result_type(float)


def stack_state(state) -> Array:
    """The differentiable leaves of a state stacked into one `(k, n)` array."""
    return jnp.stack([leaf.reshape(-1) for leaf in float_leaves(state)])


def neuron_step(neuron: AbstractNeuron, state, current: Array):
    """One step of an elementwise `neuron` from `state` with input `current`:
    `(new_state, output, local)`, `local` its [`eqslax.layerwise.Local`][] derivatives
    from one `jax.linearize` and $k + 1 + P$ JVPs with all-ones tangents.

    Only the inexact state leaves enter the derivatives; integer or boolean leaves are
    held constant and come back with their own dtype."""
    leaves, treedef, static = neuron_params(neuron)
    state_leaves, state_def = jtu.tree_flatten(state)
    where = [is_float(leaf) for leaf in state_leaves]
    k = sum(where)

    def rebuild(h, others):
        h, others = iter(h), iter(others)
        merged = [next(h) if f else next(others) for f in where]
        return jtu.tree_unflatten(state_def, merged)

    others = [leaf for leaf, f in zip(state_leaves, where) if not f]

    def f(h, current, params):
        module = eqx.combine(jtu.tree_unflatten(treedef, params), static)
        new_state, y = module(rebuild(list(h), others), current)
        new_leaves = jtu.tree_leaves(new_state)
        new_others = [leaf for leaf, f in zip(new_leaves, where) if not f]
        return (stack_state(new_state), y), new_others

    h = jnp.stack([leaf for leaf, f in zip(state_leaves, where) if f])
    (h_new, y), linear, new_others = jax.linearize(f, h, current, leaves, has_aux=True)
    zeros_h, zeros_i = jnp.zeros_like(h), jnp.zeros_like(current)
    zeros_p = [jnp.zeros_like(p) for p in leaves]
    state_cols = [linear(zeros_h.at[m].set(1.0), zeros_i, zeros_p) for m in range(k)]
    h_input, y_input = linear(zeros_h, jnp.ones_like(current), zeros_p)
    param_cols = [
        linear(zeros_h, zeros_i, [jnp.ones_like(p) if j == q else z for j, z in enumerate(zeros_p)])
        for q, p in enumerate(leaves)
    ]
    local = Local(
        J=jnp.stack([col[0] for col in state_cols], axis=1),
        h_input=h_input,
        y_input=y_input.reshape(-1),
        y_state=jnp.stack([col[1].reshape(-1) for col in state_cols]),
        h_param=tuple(col[0] for col in param_cols),
        y_param=tuple(col[1].reshape(-1) for col in param_cols),
    )
    shapes = [leaf.shape for leaf, f in zip(state_leaves, where) if f]
    return rebuild([a.reshape(s) for a, s in zip(h_new, shapes)], new_others), y, local


def reduce_to(values: Array, shape: tuple[int, ...]) -> Array:
    """Sum a per-unit `(n,)` quantity down to a parameter of broadcast `shape`."""
    if values.shape == tuple(shape):
        return values
    if math.prod(shape) == 1:
        return jnp.sum(values).reshape(shape)
    raise ValueError(f"parameter of shape {shape} does not broadcast per unit ({values.shape}).")


class LayerStep(eqx.Module):
    r"""What the forward sweep saw at layer $l$ on this step: the layer `input` $x^l_t$,
    the `previous` output $y^l_{t-1}$ of a recurrent layer (`None` otherwise), the
    neuron's `local` derivatives ([`eqslax.layerwise.Local`][]) and the `output`
    $y^l_t$. For a convolutional layer `input` is the input map and `output` has the
    neuron's shape."""

    input: Float[Array, "*n_in"]
    previous: Float[Array, " n"] | None
    local: Local
    output: Float[Array, "*n"]


class LayerGrads(eqx.Module):
    """One layer's gradients: `affine` shaped like `trainable(layer.affine)`, `neuron`
    like `trainable(layer.neuron)` and `recurrent` like $W_{rec}$ (`None` for a
    feed-forward layer). `Layers.write` puts them in the model's tree. A weight (of
    `affine` or `recurrent`) may be an [`eqslax.layerwise.Outer`][], its factors, which
    the batched step contracts over the batch in one product; a dense array works too."""

    affine: PyTree
    neuron: PyTree
    recurrent: Array | Outer | None


def factored_gradient(
    layer: Layer,
    post: Float[Array, " n"],
    pre: Float[Array, "*n n_in"],
    bias: Float[Array, "*n"] | None,
    neuron_terms,
    recurrent: Float[Array, "*n n"] | None = None,
) -> LayerGrads:
    r"""Gradients of one layer from a postsynaptic factor `post` $p$ `(n,)`: weight
    $p \otimes \text{pre}$ (`pre` is `(n_in,)` or `(n, n_in)`), bias $p \odot$ `bias`
    (a trace; `None` for the untraced $p$), recurrent weight $p \otimes$ `recurrent`
    (`(n,)` or `(n, n)`, only for a recurrent layer) and neuron parameters from their
    per-unit `(n,)` terms, summed to each parameter's shape.

    The weights come back as [`eqslax.layerwise.Outer`][] factors: the step of a batch
    sums $p_b \otimes \text{pre}_b$ over its samples as one matrix product (for vector
    traces) instead of forming each sample's product."""
    weight = Outer(post, pre, tuple(layer.affine.weight.shape))
    affine = eqx.tree_at(lambda m: m.weight, trainable(layer.affine), weight)
    if layer.affine.bias is not None:
        affine = eqx.tree_at(lambda m: m.bias, affine, post if bias is None else post * bias)
    leaves, treedef, _ = neuron_params(layer.neuron)
    neuron = jtu.tree_unflatten(
        treedef, [reduce_to(term, leaf.shape) for leaf, term in zip(leaves, neuron_terms)]
    )
    recurrent_grad = None
    if layer.recurrent is not None:
        recurrent_grad = Outer(post, recurrent, tuple(layer.recurrent.shape))
    return LayerGrads(affine=affine, neuron=neuron, recurrent=recurrent_grad)


def passback(layer: Layer, step: LayerStep, signal: Float[Array, " n"]) -> Float[Array, " n_in"]:
    r"""Spatial backpropagation to the layer below at the same step:
    $g^{l-1}_t = W^{l\top}(g^l_t \odot \partial y^l_t/\partial I^l_t)$."""
    return layer.affine.weight.T @ (signal * step.local.y_input)
