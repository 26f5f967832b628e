"""`Connect`: a network of layers applied in order each step, with skip and recurrent edges."""

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from ._checks import check_float_array, shape_tuple
from ._flatten import Flatten
from ._neurons import AbstractNeuron


class ConnectState(eqx.Module):
    """State of a `Connect`: each layer's own state (`None` for stateless
    layers such as `eqx.nn.Linear`) and, for every source of a recurrent edge, its
    output at the previous step."""

    layers: tuple[PyTree, ...]
    delayed: dict[int, Array]


def declared_in_shape(layer: Any) -> tuple[int, ...] | None:
    """The input shape a layer states itself, if it does."""
    if isinstance(layer, AbstractNeuron):
        return tuple(layer.in_shape)
    if isinstance(layer, eqx.nn.Linear):
        return () if layer.in_features == "scalar" else (layer.in_features,)
    if isinstance(layer, Flatten):
        return layer.in_shape
    return None


def _call_layer(layer, state, x):
    if isinstance(layer, AbstractNeuron):
        return layer(state, x)
    return None, layer(x)


class Connect(AbstractNeuron):
    r"""Layers applied in order at every time step; itself a neuron, so graphs nest.

    `layers` may be any Equinox modules: stateless ones (`eqx.nn.Linear`, ...)
    are called as `layer(x)`, neurons (and nested `Connect`s) as
    `layer(state, x)`. Let $y^k_t$ be the output of layer $k$ at step
    $t$ and $y^{-1}_t = x_t$. Without edges, $y^k_t =
    f_k(y^{k-1}_t)$. An edge `cat={k: [i, ...]}` adds, for each source $i$, a
    new trainable projection $P^{k,i}$ (`eqx.nn.Linear` without bias, on the
    flattened output of layer $i$) to the *input* of layer $k$:

    $$
    y^k_t = f_k\Big(y^{k-1}_t + \sum_{i<k} P^{k,i} y^i_t
                    + \sum_{i \ge k} P^{k,i} y^i_{t-1}\Big)
    $$

    A source before the target ($i < k$) is a *skip* edge and uses the same
    step; a source at or after the target ($i \ge k$) is a *recurrent* edge and
    uses the previous step, carried in `ConnectState` (zeros at the start).

    Slax's `connect(cat={k: [i]})` adds the projection to the *output* of layer
    $k$; `cat={k + 1: [i]}` here is the same graph.
    """

    elementwise: ClassVar[bool] = False

    layers: tuple[Any, ...]
    projections: tuple[eqx.nn.Linear, ...]
    edges: tuple[tuple[int, int], ...] = eqx.field(static=True)
    shapes: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(
        self,
        layers: Sequence[Any],
        cat: Mapping[int, Sequence[int]] | None = None,
        *,
        in_shape: int | Sequence[int] | None = None,
        key: PRNGKeyArray | None = None,
    ):
        """**Arguments:**

        - `layers`: Equinox modules, applied in order.
        - `cat`: `{target: [source, ...]}` extra edges (see above).
        - `in_shape`: shape of one step's input; needed only when the first layer does
          not state it (`eqx.nn.Linear` and neurons do).
        - `key`: PRNG key for the projections; required when `cat` is given.
        """
        layers = tuple(layers)
        if not layers:
            raise ValueError("Connect: `layers` must hold at least one module, got none.")
        for index, layer in enumerate(layers):
            if not isinstance(layer, eqx.Module):
                raise TypeError(
                    f"Connect: layer {index} must be an Equinox module, got "
                    f"{type(layer).__name__}. Wrap functions in eqx.nn.Lambda."
                )
        edges = self._edges(cat, len(layers))
        if edges and key is None:
            raise ValueError("Connect: `key` is required to initialise the `cat` projections.")
        if in_shape is None:
            in_shape = declared_in_shape(layers[0])
            if in_shape is None:
                raise ValueError(
                    f"Connect: layer 0 ({type(layers[0]).__name__}) does not state its input "
                    f"shape; pass `in_shape`."
                )
        else:
            in_shape = shape_tuple(in_shape, "in_shape", "Connect")
        shapes = self._infer_shapes(layers, in_shape, edges)
        keys = jax.random.split(key, len(edges)) if edges else []
        self.projections = tuple(
            eqx.nn.Linear(
                math.prod(shapes[i + 1]) if shapes[i + 1] else "scalar",
                math.prod(shapes[k]) if shapes[k] else "scalar",
                use_bias=False,
                key=edge_key,
            )
            for (k, i), edge_key in zip(edges, keys)
        )
        self.layers = layers
        self.edges = edges
        self.shapes = shapes

    @staticmethod
    def _edges(cat, n_layers) -> tuple[tuple[int, int], ...]:
        if cat is None:
            return ()
        if not isinstance(cat, Mapping):
            raise TypeError(f"Connect: `cat` must be a dict {{target: [sources]}}, got {cat!r}.")
        edges = []
        for target, sources in cat.items():
            if isinstance(sources, (int, np.integer)) and not isinstance(sources, bool):
                sources = [sources]
            if isinstance(sources, (str, bytes, bool)) or not isinstance(sources, Sequence):
                raise TypeError(
                    f"Connect: `cat[{target!r}]` must be a list of layer numbers, got {sources!r}."
                )
            target_ = _layer_index(target, target, sources, n_layers)
            for source in sources:
                edge = (target_, _layer_index(source, target, sources, n_layers))
                if edge in edges:
                    raise ValueError(
                        f"Connect: `cat` lists the edge {edge[1]} -> {target_} twice "
                        f"({target}: {list(sources)}); each edge is one projection."
                    )
                edges.append(edge)
        return tuple(sorted(edges, key=lambda e: e[0]))

    @staticmethod
    def _infer_shapes(layers, in_shape, edges) -> tuple[tuple[int, ...], ...]:
        """`shapes[k]` is the input shape of layer `k`; `shapes[-1]` the output."""
        shapes = [tuple(in_shape)]
        for index, layer in enumerate(layers):
            received = shapes[-1]
            expected = declared_in_shape(layer)
            if expected is not None and expected != received:
                raise ValueError(
                    f"Connect: layer {index} ({type(layer).__name__}) expects input shape "
                    f"{expected} but receives {received} from "
                    f"{'the network input' if index == 0 else f'layer {index - 1}'}."
                    + _slax_hint(index, expected, received, shapes, edges)
                )
            state = layer.init_state() if isinstance(layer, AbstractNeuron) else None
            x = jax.ShapeDtypeStruct(received, jnp.result_type(float))
            try:
                _, out = eqx.filter_eval_shape(_call_layer, layer, state, x)
            except Exception as error:
                raise ValueError(
                    f"Connect: layer {index} ({type(layer).__name__}) cannot take an input of "
                    f"shape {received}: {error}"
                ) from error
            shapes.append(tuple(out.shape))
        return tuple(shapes)

    @property
    def in_shape(self) -> tuple[int, ...]:
        return self.shapes[0]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shapes[-1]

    def init_state(self) -> ConnectState:
        dtype = jnp.result_type(float)
        states = tuple(
            layer.init_state() if isinstance(layer, AbstractNeuron) else None
            for layer in self.layers
        )
        delayed = {i: jnp.zeros(self.shapes[i + 1], dtype) for k, i in self.edges if i >= k}
        return ConnectState(layers=states, delayed=delayed)

    def edge_input(self, k: int, h: Array, source_output) -> Array:
        r"""$h + \sum_i P^{k,i} y^i$: the input of layer `k` with every `cat` projection
        into it added; `source_output(i)` gives $y^i$, the output of source layer `i`."""
        for projection, (target, source) in zip(self.projections, self.edges):
            if target == k:
                y = source_output(source)
                h = h + projection(y.reshape(-1) if y.ndim else y).reshape(self.shapes[k])
        return h

    def forward(
        self, state: ConnectState, x: Float[Array, "*in"]
    ) -> tuple[ConnectState, tuple[Array, ...]]:
        """One step, returning the outputs of every layer (for recordings and rules)."""
        check_float_array(x, "x", self.in_shape, "Connect")
        outputs: list[Array] = []
        states = []
        h = x
        for k, layer in enumerate(self.layers):
            h = self.edge_input(k, h, lambda i, k=k: outputs[i] if i < k else state.delayed[i])
            layer_state, h = _call_layer(layer, state.layers[k], h)
            states.append(layer_state)
            outputs.append(h)
        delayed = {i: outputs[i] for i in state.delayed}
        return ConnectState(layers=tuple(states), delayed=delayed), tuple(outputs)

    def __call__(self, state: ConnectState, x: Float[Array, "*in"]) -> tuple[ConnectState, Array]:
        state, outputs = self.forward(state, x)
        return state, outputs[-1]


def _slax_hint(index, expected, received, shapes, edges) -> str:
    """An explanation when a shape mismatch is what Slax's `cat` convention would give:
    Slax concatenates layer i's output onto layer k's, so the layer after k was sized for
    both."""
    sources = [i for k, i in edges if k == index - 1]
    if not sources or len(expected) != 1 or len(received) != 1:
        return ""
    if any(i + 1 >= len(shapes) for i in sources):
        return ""
    extra = sum(math.prod(shapes[i + 1]) for i in sources)
    if expected[0] != received[0] + extra:
        return ""
    k = index - 1
    return (
        f" Its size {expected[0]} is layer {k}'s output plus that of `cat` edge {k}: "
        f"{sources}, as in Slax, where `cat={{k: [i]}}` concatenates layer i's output to "
        f"layer k's. Here `cat={{k: [i]}}` adds a trainable projection of layer i's output "
        f"to the input of layer k: write `cat={{{index}: {sources}}}` and give layer {index} "
        f"the input size {received[0]}."
    )


def _layer_index(index, target, sources, n_layers: int) -> int:
    """A layer number of a `cat` edge: an int (not a bool) in `0..n_layers - 1`."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise TypeError(
            f"Connect: `cat` indices must be ints (layer numbers), got {index!r} of type "
            f"{type(index).__name__} in edge {target!r}: {list(sources)}."
        )
    if not 0 <= index < n_layers:
        raise ValueError(
            f"Connect: `cat` index {index!r} (edge {target}: {list(sources)}) is "
            f"out of range; layers are numbered 0..{n_layers - 1}. "
            f"`cat={{k: [i]}}` adds to the input of layer k (Slax adds to the "
            f"output of layer k, which is `cat={{k + 1: [i]}}` here)."
        )
    return int(index)
