"""`Layers`: the layer-wise view of a `Connect` that the layer-local rules work on."""

import dataclasses

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PyTree

from .._connect import Connect
from .._delay import AbstractDelay
from .._flatten import Flatten
from .._neurons import (
    LI,
    LIF,
    RLIF,
    AbstractNeuron,
    AbstractPopulation,
    LIFState,
    Recurrent,
    RecurrentState,
    RLIFState,
)
from .._parameters import trainable


def rebuild(cls, module, **changes):
    """`cls` filled with `module`'s fields (those `cls` declares) and `changes`, set field
    by field as Equinox itself unflattens a module: static fields such as `detach_reset`
    cannot be replaced with `eqx.tree_at`."""
    new = object.__new__(cls)
    for field in dataclasses.fields(cls):
        value = changes[field.name] if field.name in changes else getattr(module, field.name)
        object.__setattr__(new, field.name, value)
    return new


class Layer(eqx.Module):
    r"""Layer $l$ of a [`eqslax.layerwise.Layers`][] view: an affine map, an optional
    recurrent weight and an elementwise neuron,

    $$I^l_t = W^l x^l_t + b^l + W^l_{rec}\, y^l_{t-1}, \qquad
      (h^l_t, y^l_t) = N^l(h^l_{t-1}, I^l_t),$$

    with $W^l_{rec} = 0$ (`recurrent is None`) for a feed-forward layer. A convolutional
    layer (`kind == "conv"`) has an `eqx.nn.Conv1d`/`Conv2d` as $W^l x + b^l$ and a neuron
    of shape $(C_{out}, *S)$; the rules see it at each output position as a dense layer on
    the unfolded input patch, with the weight shared over positions.

    **Fields:**

    - `index`: $l$, counted from the input.
    - `position`: where the neuron sits in `Connect.layers` (the affine map is at
      `position - 1`); error messages name this position.
    - `affine`: the `eqx.nn.Linear` (or convolution) $W^l, b^l$.
    - `neuron`: the elementwise neuron $N^l$ (for `Recurrent(neuron)` the wrapped neuron).
    - `recurrent`: $W^l_{rec}$ `(n, n)`, from unit $j$'s $y_{t-1}$ to unit $i$'s input, or
      `None`.
    - `kind`: `"feedforward"`, `"recurrent"` (an `eqslax.Recurrent`), `"rlif"` or
      `"conv"`.
    - `flatten`: an `eqslax.Flatten` precedes the affine map (its input is
      $\mathrm{vec}(x^l)$).
    """

    index: int = eqx.field(static=True)
    position: int = eqx.field(static=True)
    affine: eqx.nn.Linear | eqx.nn.Conv
    neuron: AbstractNeuron
    recurrent: Float[Array, "n n"] | None
    kind: str = eqx.field(static=True)
    flatten: bool = eqx.field(static=True, default=False)

    @property
    def size(self) -> int:
        """$n$, the number of units."""
        return self.affine.out_features

    @property
    def in_size(self) -> int:
        """$n_{in}$, the size of the layer input $x^l$."""
        return self.affine.in_features


CONVS = (eqx.nn.Conv1d, eqx.nn.Conv2d)


def check_conv(conv, owner: str, position: int) -> None:
    """The convolutions the rules handle: one group, zero padding."""
    name = type(conv).__name__
    if conv.groups != 1:
        raise ValueError(
            f"{owner}: layer {position} ({name}) has groups={conv.groups}; only groups=1 "
            f"convolutions are supported."
        )
    if conv.padding_mode != "ZEROS":
        raise ValueError(
            f"{owner}: layer {position} ({name}) pads with mode {conv.padding_mode!r}; only "
            f"padding_mode='ZEROS' is supported."
        )


def _check_conv_pair(conv, neuron, index, position, owner, flatten) -> Layer:
    check_conv(conv, owner, position - 1)
    name = type(neuron).__name__
    if isinstance(neuron, (Recurrent, RLIF)):
        raise ValueError(
            f"{owner}: layer {position} ({name}) is recurrent after a convolution (layer "
            f"{position - 1}); recurrent convolutional layers are not supported."
        )
    if not isinstance(neuron, AbstractPopulation) or not neuron.elementwise:
        raise ValueError(
            f"{owner}: layer {position} ({name}) after a convolution must be an elementwise "
            f"population (unit i depends only on input i and its own state)."
        )
    return Layer(index, position, conv, neuron, None, "conv", flatten)


def _check_pair(model, index: int, position: int, owner: str, rlif: bool, flatten: bool) -> Layer:
    linear, neuron = model.layers[position - 1], model.layers[position]
    if isinstance(linear, CONVS):
        return _check_conv_pair(linear, neuron, index, position, owner, flatten)
    if not isinstance(linear, eqx.nn.Linear) or linear.in_features == "scalar":
        raise ValueError(
            f"{owner}: layer {position - 1} must be an eqx.nn.Linear with vector input or an "
            f"eqx.nn.Conv1d/Conv2d, got {type(linear).__name__}."
        )
    name, kind, recurrent, inner = type(neuron).__name__, "feedforward", None, neuron
    if isinstance(neuron, Recurrent):
        kind, recurrent, inner = "recurrent", neuron.weight, neuron.neuron
        name = f"Recurrent({type(inner).__name__})"
    elif isinstance(neuron, RLIF) and rlif:
        kind, recurrent, inner = "rlif", neuron.recurrent_weight, rebuild(LIF, neuron)
    elif isinstance(neuron, RLIF):
        raise ValueError(
            f"{owner}: layer {position} (RLIF) couples its units through a recurrent weight "
            f"it keeps in its own state; write it as eqslax.Recurrent(eqslax.LIF(n), ...) "
            f"(the same model), which {owner} handles, or use RTRL."
        )
    if not isinstance(inner, AbstractNeuron) or not inner.elementwise:
        raise ValueError(
            f"{owner}: layer {position} ({name}) is not an elementwise neuron (unit i must "
            f"depend only on input i and its own state)."
        )
    n = linear.out_features
    if tuple(inner.in_shape) != (n,) or tuple(inner.out_shape) != (n,):
        raise ValueError(
            f"{owner}: layer {position} ({name}) must be a 1-D population of {n} units, got "
            f"input shape {inner.in_shape} and output shape {inner.out_shape}."
        )
    return Layer(index, position, linear, inner, recurrent, kind, flatten)


class Layers(eqx.Module):
    r"""A `Connect([Linear, neuron, Linear, neuron, ...])` seen as layers $l = 0..L-1$
    (each a [`eqslax.layerwise.Layer`][]), with the bookkeeping a layer-local rule needs:
    where each layer's state and gradients live in the model's trees.

    A neuron may be elementwise (any number of state variables per unit) or
    `eqslax.Recurrent(elementwise neuron)`. The affine map may be an
    `eqx.nn.Conv1d`/`Conv2d` (then the neuron is an elementwise population of the
    convolution's output shape), and an `eqslax.Flatten` may precede it
    (`[Conv2d, LIF, Flatten, Linear, LIF, ...]`). Anything else raises a `ValueError` naming
    the first layer that cannot be handled and why.

    **Arguments:**

    - `model`: the `Connect`.
    - `owner`: the rule's name, for error messages.
    - `readout`: accept a trailing frozen `eqslax.LI` after the last layer (a readout
      without an affine map, OTPE's front form); it is then `readout`.
    - `rlif`: view an `eqslax.RLIF` as a recurrent `LIF` layer (e-prop's legacy path).
    - `view`: a function applied to each layer's elementwise neuron, e.g. to detach its
      reset for the eligibility; the forward values must not change.
    """

    model: Connect
    layers: tuple[Layer, ...]
    readout: AbstractNeuron | None
    owner: str = eqx.field(static=True)

    def __init__(self, model, owner: str, *, readout: bool = False, rlif: bool = False, view=None):
        if not isinstance(model, Connect):
            raise TypeError(
                f"{owner}: needs a Connect of (eqx.nn.Linear, neuron) pairs, got "
                f"{type(model).__name__}."
            )
        if model.edges:
            raise ValueError(
                f"{owner}: cannot handle `cat` edges {list(model.edges)}: their temporal "
                f"paths cross layers. Use eqslax.Recurrent(neuron) for a self-edge, or RTRL "
                f"for exact gradients on this graph."
            )
        for position, layer in enumerate(model.layers):
            if isinstance(layer, AbstractDelay):
                raise ValueError(
                    f"{owner}: layer {position} ({type(layer).__name__}) delays its input by "
                    f"up to {layer.window - 1} steps: the learning signal of the layers below "
                    f"it at step t arrives at step t + d, which a layer-local online rule does "
                    f"not have. Use BPTT or RTRL (exact), SnAp or UORO."
                )
        count = len(model.layers)
        self.readout = None
        affine = (eqx.nn.Linear, *CONVS)
        follows_neuron = count > 1 and not isinstance(model.layers[-2], (*affine, Flatten))
        if readout and follows_neuron and isinstance(model.layers[-1], LI):
            self.readout = model.layers[-1]
            if jtu.tree_leaves(trainable(self.readout)):
                raise ValueError(
                    f"{owner}: layer {count - 1} (LI readout) has a trainable decay; the "
                    f"postsynaptic estimate needs a constant readout leak. Build it with "
                    f"train_decay=False."
                )
            count -= 1
        layers = [
            _check_pair(model, i, p, owner, rlif, flatten)
            for i, (p, flatten) in enumerate(_positions(model, count, owner))
        ]
        if self.readout is not None and layers[-1].kind == "conv":
            raise ValueError(
                f"{owner}: the LI readout (layer {len(model.layers) - 1}) follows a "
                f"convolutional layer directly; put Flatten and an eqx.nn.Linear before it."
            )
        if view is not None:
            layers = [
                eqx.tree_at(lambda m: m.neuron, layer, view(layer.neuron)) for layer in layers
            ]
        self.model, self.layers, self.owner = model, tuple(layers), owner

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def name(self, index: int) -> str:
        """`"layer 3 (LIF)"`: how errors name layer `index`."""
        position = self.layers[index].position
        return f"layer {position} ({type(self.model.layers[position]).__name__})"

    def receiver(self, index: int) -> tuple[int, AbstractNeuron] | None:
        """`(position, neuron)` of the population that receives layer `index`'s output:
        the next layer's neuron, the readout, or `None` (the loss reads $y^l$ directly)."""
        if index + 1 < len(self.layers):
            nxt = self.layers[index + 1]
            return nxt.position, nxt.neuron
        if self.readout is not None:
            return len(self.model.layers) - 1, self.readout
        return None

    def neuron_state(self, state, index: int) -> PyTree:
        """The elementwise neuron's own state of layer `index` in the model `state`."""
        layer = self.layers[index]
        own = state.layers[layer.position]
        if layer.kind == "recurrent":
            return own.neuron
        if layer.kind == "rlif":
            return LIFState(v=own.v)
        return own

    def previous_output(self, state, index: int) -> Array | None:
        """$y^l_{t-1}$ of a recurrent layer (`None` for a feed-forward one)."""
        layer = self.layers[index]
        own = state.layers[layer.position]
        return {"recurrent": lambda: own.output, "rlif": lambda: own.s}.get(
            layer.kind, lambda: None
        )()

    def with_state(self, state, index: int, neuron_state, output: Array):
        """`state` with layer `index`'s state replaced (its output too, if recurrent)."""
        layer = self.layers[index]
        if layer.kind == "recurrent":
            neuron_state = RecurrentState(neuron=neuron_state, output=output)
        elif layer.kind == "rlif":
            neuron_state = RLIFState(v=neuron_state.v, s=output)
        layers = list(state.layers)
        layers[layer.position] = neuron_state
        return eqx.tree_at(lambda s: s.layers, state, tuple(layers))

    def layer_input(self, index: int, h: Array) -> Array:
        """$x^l_t$: the output `h` of the layer below, flattened if an `eqslax.Flatten`
        precedes layer `index`'s affine map."""
        return h.reshape(-1) if self.layers[index].flatten else h

    def current(self, index: int, x: Array, previous: Array | None) -> Array:
        """$I^l_t = W^l x + b^l + W^l_{rec} y^l_{t-1}$ (`x` is $x^l_t$)."""
        layer = self.layers[index]
        current = layer.affine(x)
        if layer.recurrent is not None:
            current = current + layer.recurrent @ previous
        return current

    def write(self, grads, index: int, layer_grads) -> PyTree:
        """`grads` (a tree like `trainable(model)`) with layer `index`'s
        [`eqslax.layerwise.LayerGrads`][] written in place."""
        layer = self.layers[index]
        original = self.model.layers[layer.position]
        grads = eqx.tree_at(lambda g: g.layers[layer.position - 1], grads, layer_grads.affine)
        if layer.kind in ("feedforward", "conv"):
            neuron_grad = _same_leaves(original, layer_grads.neuron)
        elif layer.kind == "recurrent":
            neuron_grad = trainable(original)
            neuron_grad = eqx.tree_at(lambda m: m.weight, neuron_grad, layer_grads.recurrent)
            inner = _same_leaves(original.neuron, layer_grads.neuron)
            neuron_grad = eqx.tree_at(
                lambda m: m.neuron, neuron_grad, inner, is_leaf=lambda x: x is None
            )
        else:
            neuron_grad = eqx.tree_at(
                lambda m: m.recurrent_weight, trainable(original), layer_grads.recurrent
            )
            for name in ("decay", "threshold"):
                if name not in original.frozen:
                    value = getattr(layer_grads.neuron, name)
                    neuron_grad = eqx.tree_at(
                        lambda m, name=name: getattr(m, name), neuron_grad, value
                    )
        return eqx.tree_at(
            lambda g: g.layers[layer.position], grads, neuron_grad, is_leaf=lambda x: x is None
        )


def _positions(model, count: int, owner: str):
    """`(position, flatten)` of each neuron: it follows its affine map, which may follow an
    `eqslax.Flatten`."""
    position = 0
    while position < count:
        flatten = isinstance(model.layers[position], Flatten)
        position += flatten
        if position + 1 >= count:
            raise ValueError(f"{owner}: layer {position} has no neuron after it.")
        yield position + 1, flatten
        position += 2


def _same_leaves(original, grad):
    """`grad` (shaped like the trainable part of a view of `original`) rebuilt with
    `original`'s own structure: a view differs only in static fields."""
    return jtu.tree_unflatten(jtu.tree_structure(trainable(original)), jtu.tree_leaves(grad))


def zeros_like_grads(model) -> PyTree:
    """Zeros shaped like `trainable(model)`."""
    return jtu.tree_map(jnp.zeros_like, trainable(model))
