r"""Convolutional layers in the layer-wise rules: a convolution seen at each output
position as a dense layer on the unfolded input patch.

A convolution `eqx.nn.Conv1d`/`Conv2d` with weight $W$ of shape
$(C_{out}, C_{in}, *K)$ and bias $b$, followed by an elementwise neuron of shape
$(C_{out}, *S)$, computes at every output position $p$ (of $P = \prod S$)

$$I_{c,p,t} = \sum_j W^{flat}_{cj}\, u_{p,j}(x_t) + b_c, \qquad
  u_p(x) = \text{the patch of } x \text{ that position } p \text{ sees},$$

with $W^{flat} = W$ reshaped to $(C_{out}, C_{in}\prod K)$. At one position this is a
dense layer of $C_{out}$ units on the input $u_p(x_t)$, with the weight shared over
positions. The layer-wise rules run their per-layer pieces on that dense layer,
`jax.vmap`ped over positions; the gradient of a shared parameter is the sum over
positions, and the signal passed down is folded back onto the input map by the
transpose of the unfolding $u$ (the convolution's transpose).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array

from .._parameters import trainable
from ._layers import Layer, Layers, rebuild
from ._layerwise import LayerGrads, LayerStep, neuron_params
from ._outer import Outer, is_outer


def unfold(conv, x: Array) -> Array:
    r"""The patches $u_p(x)$ of an input map `x` `(C_in, *spatial)`: `(P, C_in * prod(K))`,
    ordered as `conv.weight.reshape(C_out, -1)` reads them."""
    patches = jax.lax.conv_general_dilated_patches(
        x[None], conv.kernel_size, conv.stride, conv.padding, rhs_dilation=conv.dilation
    )[0]
    return patches.reshape(patches.shape[0], -1).T


def flat_linear(conv) -> eqx.nn.Linear:
    """The dense layer a convolution is at one position: weight $W^{flat}$, bias $b$."""
    weight = conv.weight.reshape(conv.out_channels, -1)
    new = object.__new__(eqx.nn.Linear)
    fields = {
        "weight": weight,
        "bias": None if conv.bias is None else conv.bias.reshape(-1),
        "in_features": weight.shape[1],
        "out_features": weight.shape[0],
        "use_bias": conv.bias is not None,
    }
    for name, value in fields.items():
        object.__setattr__(new, name, value)
    return new


def sum_to(values: Array, shape: tuple[int, ...]) -> Array:
    """Sum a population-shaped array down to a parameter of broadcast `shape`."""
    extra = values.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, size in enumerate(shape) if size == 1 and values.shape[extra + i] != 1
    )
    return jnp.sum(values, axis=axes).reshape(shape)


class Positions:
    """Layer `index` of `layers` (a convolution) seen at each output position: builds the
    per-position dense [`eqslax.layerwise.Layer`][] and maps a rule's hooks over
    positions."""

    def __init__(self, layers: Layers, index: int):
        layer = layers[index]
        self.layers, self.index, self.layer = layers, index, layer
        self.shape = tuple(layer.neuron.shape)
        self.channels, self.count = self.shape[0], math.prod(self.shape[1:])
        leaves, treedef = jtu.tree_flatten(layer.neuron)
        self.mapped = [eqx.is_array(leaf) and leaf.size > 1 for leaf in leaves]
        cut = [self._cut(leaf, m) for leaf, m in zip(leaves, self.mapped)]
        neuron = rebuild(
            type(layer.neuron), jtu.tree_unflatten(treedef, cut), shape=(self.channels,)
        )
        mask = jtu.tree_unflatten(jtu.tree_structure(neuron), self.mapped)
        self.dynamic, self.static = eqx.partition(neuron, mask)
        self.linear = flat_linear(layer.affine)

    def _cut(self, leaf, mapped: bool):
        """A neuron leaf per position: `(P, C_out)` if it varies over units, else `()`."""
        if mapped:
            full = jnp.broadcast_to(leaf, self.shape).reshape(self.channels, self.count)
            return full.T
        return leaf.reshape(()) if eqx.is_array(leaf) else leaf

    def view(self, dynamic) -> Layers:
        """`layers` with layer `index` replaced by its dense form at one position."""
        neuron = eqx.combine(dynamic, self.static)
        dense = Layer(self.index, self.layer.position, self.linear, neuron, None, "feedforward")
        new = list(self.layers.layers)
        new[self.index] = dense
        return rebuild(Layers, self.layers, layers=tuple(new))

    def units(self, values: Array) -> Array:
        """A per-unit array, population-shaped or flattened last axis, as `(P, ..., C_out)`."""
        n = len(self.shape)
        if values.shape[values.ndim - n :] == self.shape:
            lead = values.shape[: values.ndim - n]
        else:
            lead = values.shape[:-1]
        grid = values.reshape(*lead, self.channels, self.count)
        return jnp.moveaxis(grid, -1, 0)

    def state(self, state):
        """The layer's neuron state per position."""
        return jtu.tree_map(self.units, state)

    def step(self, step: LayerStep) -> LayerStep:
        """What the forward sweep saw, per position: patches, local derivatives, outputs."""
        return LayerStep(
            input=unfold(self.layer.affine, step.input),
            previous=None,
            local=jtu.tree_map(self.units, step.local),
            output=self.units(step.output),
        )

    def map(self, hook, *args):
        """`hook(view, *args_p)` at every position, stacked on a leading axis."""
        return jax.vmap(lambda dynamic, *a: hook(self.view(dynamic), *a))(self.dynamic, *args)

    def grads(self, stacked: LayerGrads) -> LayerGrads:
        """Per-position gradients summed over positions, in the layer's own shapes. The
        weight stays factored ([`eqslax.layerwise.Outer`][] with the positions as a summed
        axis): over positions (and samples) it is one product, the convolution's weight
        gradient."""
        conv = self.layer.affine
        affine = trainable(conv)
        weight = stacked.affine.weight
        if is_outer(weight):
            weight = Outer(weight.post, weight.pre, tuple(conv.weight.shape))
        else:
            weight = jnp.sum(weight, axis=0).reshape(conv.weight.shape)
        affine = eqx.tree_at(lambda m: m.weight, affine, weight)
        if conv.bias is not None:
            bias = jnp.sum(stacked.affine.bias, axis=0).reshape(conv.bias.shape)
            affine = eqx.tree_at(lambda m: m.bias, affine, bias)
        leaves, treedef, _ = neuron_params(self.layer.neuron)
        sums = []
        for leaf, grad in zip(leaves, jtu.tree_leaves(stacked.neuron)):
            if leaf.size > 1:
                sums.append(sum_to(grad.T.reshape(self.shape), leaf.shape))
            else:
                sums.append(jnp.sum(grad).reshape(leaf.shape))
        return LayerGrads(affine=affine, neuron=jtu.tree_unflatten(treedef, sums), recurrent=None)

    def fold(self, step: LayerStep, patches: Array) -> Array:
        """A per-position signal on the patches, `(P, C_in * prod(K))`, folded back onto
        the input map by the transpose of the unfolding."""
        _, transpose = jax.vjp(lambda x: unfold(self.layer.affine, x), step.input)
        return transpose(patches)[0]
