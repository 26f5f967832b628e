"""Shared machinery of the layer-local online rules (OSTL, OTTT, OTPE, e-prop).

These rules see a network as a stack of layers $l$, each an affine map followed
by an elementwise neuron with $k$ state variables per unit:

$$
I^l_t = W^l y^{l-1}_t + b^l, \\qquad (h^l_t, y^l_t) = N^l(h^l_{t-1}, I^l_t)
$$

At each step, every rule needs only per-unit local derivatives of $N^l$, which
forward-mode JVPs with all-ones tangents deliver without building any Jacobian across
units (the neuron is elementwise, so unit $i$ only sees its own entries):

- `J[k, m, i]` $= \\partial h_{k,i,t} / \\partial h_{m,i,t-1}$ (state Jacobian),
- `h_input[k, i]` $= \\partial h_{k,i,t} / \\partial I_i$, `y_input[i]` likewise for
  $y$, `y_state[m, i]` $= \\partial y_i / \\partial h_{m,i,t-1}$,
- for each trainable neuron parameter leaf $\\nu$: `h_param` and `y_param`.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float

from .._connect import Connect
from .._neurons import AbstractNeuron
from .._parameters import trainable, trainable_mask


class Local(eqx.Module):
    """Per-unit local derivatives of one neuron step (shapes in the module docstring)."""

    J: Float[Array, "k k n"]
    h_input: Float[Array, "k n"]
    y_input: Float[Array, " n"]
    y_state: Float[Array, "k n"]
    h_param: tuple[Array, ...]  # one (k, n) array per trainable neuron leaf
    y_param: tuple[Array, ...]  # one (n,) array per trainable neuron leaf


def check_layers(model, owner: str) -> tuple[tuple[eqx.nn.Linear, AbstractNeuron], ...]:
    """`Connect([Linear, neuron, Linear, neuron, ...])` without edges, else an error
    naming the first layer the rule cannot handle."""
    layers = model.layers if isinstance(model, Connect) else None
    if layers is None:
        raise TypeError(
            f"{owner}: needs a Connect of (eqx.nn.Linear, neuron) pairs, got "
            f"{type(model).__name__}."
        )
    if model.edges:
        raise ValueError(
            f"{owner}: cannot handle `cat` edges {list(model.edges)}: their temporal paths "
            f"cross layers. Use RTRL for exact gradients on this graph."
        )
    if len(layers) % 2:
        raise ValueError(f"{owner}: layer {len(layers) - 1} has no neuron after it.")
    pairs = []
    for index in range(0, len(layers), 2):
        linear, neuron = layers[index], layers[index + 1]
        if not isinstance(linear, eqx.nn.Linear) or linear.in_features == "scalar":
            raise ValueError(
                f"{owner}: layer {index} must be an eqx.nn.Linear with vector input, got "
                f"{type(linear).__name__}."
            )
        if not isinstance(neuron, AbstractNeuron) or not neuron.elementwise:
            raise ValueError(
                f"{owner}: layer {index + 1} ({type(neuron).__name__}) is not an elementwise "
                f"neuron (unit i must depend only on input i and its own state)."
            )
        if tuple(neuron.in_shape) != (linear.out_features,):
            raise ValueError(
                f"{owner}: layer {index + 1} ({type(neuron).__name__}) must be a 1-D "
                f"population of {linear.out_features} units, got shape {neuron.in_shape}."
            )
        pairs.append((linear, neuron))
    return tuple(pairs)


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
    """One neuron step plus its `Local` derivatives.

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
        y_input=y_input,
        y_state=jnp.stack([col[1] for col in state_cols]),
        h_param=tuple(col[0] for col in param_cols),
        y_param=tuple(col[1] for col in param_cols),
    )
    return rebuild(list(h_new), new_others), y, local


def reduce_to(values: Array, shape: tuple[int, ...]) -> Array:
    """Sum a per-unit `(n,)` quantity down to a parameter of broadcast `shape`."""
    if values.shape == tuple(shape):
        return values
    if math.prod(shape) == 1:
        return jnp.sum(values).reshape(shape)
    raise ValueError(f"parameter of shape {shape} does not broadcast per unit ({values.shape}).")


def passback(linear: eqx.nn.Linear, local: Local, signal: Array) -> Array:
    """Spatial backpropagation to the layer below:
    $W^\\top(g \\odot \\partial y/\\partial I)$."""
    return linear.weight.T @ (signal * local.y_input)


def set_layer_grads(grads, index: int, linear_grad, neuron_grad):
    """Write one (Linear, neuron) pair's gradients into a tree like `trainable(model)`."""
    grads = eqx.tree_at(lambda g: g.layers[2 * index], grads, linear_grad)
    return eqx.tree_at(lambda g: g.layers[2 * index + 1], grads, neuron_grad)


def factored_gradient(linear, neuron, post: Array, pre: Array, bias, neuron_terms):
    r"""Gradients of one layer from a postsynaptic factor `post` `(n,)`: weight
    $\text{post} \otimes \text{pre}$ (`pre` is `(n_in,)` or `(n, n_in)`), bias
    $\text{post} \odot$ `bias` (a trace, or `None` for the untraced
    $\text{post}$), neuron parameters from their per-unit `(n,)` terms."""
    linear_grad = eqx.tree_at(lambda m: m.weight, trainable(linear), post[:, None] * pre)
    if linear.bias is not None:
        bias_grad = post if bias is None else post * bias
        linear_grad = eqx.tree_at(lambda m: m.bias, linear_grad, bias_grad)
    leaves, treedef, _ = neuron_params(neuron)
    neuron_grads = [reduce_to(term, leaf.shape) for leaf, term in zip(leaves, neuron_terms)]
    return linear_grad, jtu.tree_unflatten(treedef, neuron_grads)
