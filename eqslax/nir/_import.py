"""NIR -> eqslax: a `Connect` whose layers are the graph's main path and whose `cat`
projections are its side connections."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import nir
import numpy as np

from .._checks import check_choice
from .._connect import Connect
from .._neurons._base import RESET_MODES
from .._surrogate import AbstractSurrogate
from ._conv import nir_infers_wrong_types
from ._conventions import CONVENTIONS
from ._export import DT_KEY, check_dt
from ._graph import chain, flatten
from ._nodes import Layer, Options, first_input_shape, node_to_layer, strip_batch_axes


def _options(graph, dt, convention, reset, reset_decay, surrogate, detach_reset) -> Options:
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir: `graph` must be a nir.NIRGraph, got {type(graph).__name__}.")
    check_choice(convention, "convention", tuple(CONVENTIONS), "from_nir")
    if reset is not None:
        check_choice(reset, "reset", RESET_MODES, "from_nir")
    if reset_decay is not None and not isinstance(reset_decay, bool):
        raise TypeError(f"from_nir: `reset_decay` must be a bool or None, got {reset_decay!r}.")
    if surrogate is not None and not isinstance(surrogate, AbstractSurrogate):
        raise TypeError(
            f"from_nir: `surrogate` must be an eqslax surrogate or None, got "
            f"{type(surrogate).__name__}."
        )
    if detach_reset is not None and not isinstance(detach_reset, bool):
        raise TypeError(f"from_nir: `detach_reset` must be a bool or None, got {detach_reset!r}.")
    rules = CONVENTIONS[convention]
    if surrogate is None and rules.surrogate is not None:
        surrogate = rules.surrogate()
    detach_reset = rules.detach_reset if detach_reset is None else detach_reset
    if dt is None:
        written = (graph.metadata or {}).get(DT_KEY) if convention == "eqslax" else None
        dt = CONVENTIONS[convention].dt if written is None else float(written)
    dt = check_dt(dt, "from_nir")
    return Options(dt, rules, reset, reset_decay, surrogate, detach_reset)


def _projection_weight(flat, projection, layers, shapes) -> tuple[np.ndarray, np.ndarray | None]:
    """`(weight, bias)` of one side connection, checked against the layers it joins."""
    n_in = int(np.prod(layers[projection.source].out_shape))
    n_out = int(np.prod(shapes[projection.target]))
    if projection.node is None:
        if n_in != n_out:
            raise ValueError(
                f"from_nir: a direct edge joins layer {projection.source} ({n_in} outputs) to "
                f"layer {projection.target} ({n_out} inputs); sizes must match."
            )
        return np.eye(n_out), None
    node = flat.nodes[projection.node]
    weight = np.asarray(node.weight, dtype=np.float64)
    if weight.shape != (n_out, n_in):
        raise ValueError(
            f"from_nir: node {projection.node!r} ({type(node).__name__}) has weight shape "
            f"{weight.shape} but joins {n_in} outputs to {n_out} inputs."
        )
    bias = np.reshape(node.bias, (n_out,)) if isinstance(node, nir.Affine) else None
    return weight, bias


def _fold_into_previous(layers, k, names, sources, bias, gain):
    """Add `bias` to, then scale by `gain`, the `Linear` layer before layer `k`:
    both act on everything summed into layer `k` (exact when nothing else reads it)."""
    what = "an Affine side connection's bias" if gain is None else "an LI's Euler gain"
    previous = layers[k - 1].module if k > 0 else None
    if not isinstance(previous, eqx.nn.Linear) or (k - 1) in sources:
        raise ValueError(
            f"from_nir: node {names[k]!r} receives {what}, which eqslax folds into the "
            f"Linear/Affine layer just before it; that layer is missing or also feeds a side "
            f"connection."
        )
    weight = np.asarray(previous.weight, dtype=np.float64)
    total = np.zeros(weight.shape[0]) if previous.bias is None else np.asarray(previous.bias)
    total = total + (0.0 if bias is None else bias)
    scale = np.ones(weight.shape[0]) if gain is None else np.reshape(gain, (-1,))
    n_out, n_in = weight.shape
    linear = eqx.nn.Linear(n_in, n_out, key=jax.random.PRNGKey(0))
    dtype = previous.weight.dtype
    linear = eqx.tree_at(
        lambda m: (m.weight, m.bias),
        linear,
        (jnp.asarray(weight * scale[:, None], dtype), jnp.asarray(total * scale, dtype)),
    )
    layers[k - 1] = Layer(linear, layers[k - 1].out_shape)


def _layers(flat, names, options) -> tuple[list[Layer], list[tuple[int, ...]]]:
    """Each chain node converted; `shapes[k]` is the input shape of layer `k`."""
    declared = flat.nodes[flat.input].input_type["input"]
    shapes = [first_input_shape(flat.nodes[names[0]], declared)]
    layers = []
    for name in names:
        layer = node_to_layer(flat.nodes[name], options, f"node {name!r}", shapes[-1])
        layers.append(layer)
        shapes.append(layer.out_shape)
    return layers, shapes


def _side_weights(flat, names, projections, layers, shapes) -> dict:
    """`{(target, source): weight}`, parallel connections summed; biases and LI gains
    folded (this rewrites `layers`)."""
    weights: dict = {}
    biases: dict = {}
    for projection in projections:
        weight, bias = _projection_weight(flat, projection, layers, shapes)
        edge = (projection.target, projection.source)
        weights[edge] = weights.get(edge, 0.0) + weight
        if bias is not None:
            biases[projection.target] = biases.get(projection.target, 0.0) + bias
    sources = {p.source for p in projections}
    for k, layer in enumerate(layers):
        gain = layer.input_gain
        if k in biases or gain is not None:
            _fold_into_previous(layers, k, names, sources, biases.get(k), gain)
        if gain is not None:
            column = np.reshape(gain, (-1, 1))
            for edge in [edge for edge in weights if edge[0] == k]:
                weights[edge] = weights[edge] * column
    return weights


def _connect(layers, shapes, weights) -> Connect:
    cat: dict = {}
    for target, source in sorted(weights):
        cat.setdefault(target, []).append(source)
    model = Connect(
        [layer.module for layer in layers],
        cat=cat or None,
        in_shape=shapes[0],
        key=jax.random.PRNGKey(0) if cat else None,
    )
    if not cat:
        return model
    dtype = jnp.result_type(float)
    new = tuple(
        eqx.tree_at(lambda p: p.weight, p, jnp.asarray(weights[edge], dtype))
        for p, edge in zip(model.projections, model.edges)
    )
    return eqx.tree_at(lambda m: m.projections, model, new)


def _check_output(flat, names, model) -> None:
    declared = flat.nodes[flat.output].output_type.get("output")
    if declared is None or np.size(declared) == 0:
        return
    out = tuple(int(s) for s in np.ravel(declared))
    if strip_batch_axes(out) != strip_batch_axes(tuple(model.out_shape)):
        raise ValueError(
            f"from_nir: the Output node {flat.output!r} declares shape {out} but the "
            f"last layer {names[-1]!r} produces {tuple(model.out_shape)}."
        )


def from_nir(
    graph: nir.NIRGraph,
    *,
    dt: float | None = None,
    convention: str = "eqslax",
    reset: str | None = None,
    reset_decay: bool | None = None,
    surrogate: AbstractSurrogate | None = None,
    detach_reset: bool | None = None,
) -> Connect:
    r"""Build a `Connect` that computes what `graph` describes.

    The graph must be a chain from its `Input` to its `Output` (sub-graphs are
    inlined) of `Affine`/`Linear` (-> `eqx.nn.Linear`), `Conv1d`/`Conv2d`
    (-> `eqx.nn.Conv1d`/`Conv2d`), `Flatten`, `IF`, `LIF`, `LI` and `CubaLIF` nodes and
    `to_nir`'s `Recurrent` sub-graphs (-> `Recurrent(neuron)`), plus side connections:
    `Linear`/`Affine` nodes (or direct edges) from one chain node to another. These
    become `cat` projections, read at the same step when they point forward and at the
    previous step when they close a cycle
    (the edge that closes it in a depth-first walk from the input that visits successors
    in name order; `to_nir`'s names make that walk follow the layers). An
    `Affine` side connection's bias is folded into the `Linear` layer before its target.

    Neurons are read with forward Euler and step `dt` (see `eqslax.nir`):
    $\lambda = 1 - \Delta t/\tau$, input gain $g = R\Delta t/\tau$
    (`IF`: $R\Delta t$; `CubaLIF`: $w_\mathrm{in}\Delta t/\tau_\mathrm{syn}
    \cdot R\Delta t/\tau_\mathrm{mem}$); gains within `1e-6` of one count as one. A
    spiking node's gain divides its threshold (the same spikes, the membrane in units of
    $g$); an `LI`'s gain scales the weights into it. `v_leak` must be 0.
    eqslax fires at $v \ge \vartheta$ where NIR writes $v > \vartheta$ (the
    two differ only at equality).

    **Arguments:**

    - `graph`: a `nir.NIRGraph` (`nir.read(path)`; or use `load_nir`).
    - `dt`: the step the file was written with. Default: the graph's `eqslax.dt`
      metadata under `convention="eqslax"`, else the convention's (`1e-4`; Spyx `1`).
    - `convention`: whose reading of the nodes to use:

      * `"eqslax"`: NIR's own semantics; a spiking node resets to `v_reset = 0` at the
        spike (`reset="zero"`, `reset_decay=True`) unless its metadata
        (`eqslax.reset`, `eqslax.reset_decay`, written by `to_nir`) says otherwise.
      * `"snntorch"`: files from `snntorch.export_to_nir`: `Leaky`/`Synaptic`
        defaults, `reset="subtract"` of the previous step's spike (`reset_decay=False`);
        four-node recurrent sub-graphs read as `RLeaky`/`RSynaptic`. It also trains
        like snnTorch: the reset is detached (`detach_reset=True`; snnTorch cuts the
        reset's gradient) and the surrogate is snnTorch's default `ATan`,
        `Arctan(alpha=2)`: $\sigma'(x) = \frac{\alpha/2}{1 + (\pi\alpha x/2)^2}$
        with $\alpha = 2$, $x = v - \vartheta$.
      * `"spyx"`: files from `spyx.nir.to_nir`: `r` and `w_in` ignored (Spyx writes
        `r = beta`), `dt = 1`, `reset="subtract"`, `reset_decay=False`. Spyx's
        neurons emit the spike of the carried membrane, so Spyx's spikes lag eqslax's by
        one step per layer. Only the first layer's membranes agree; each deeper layer
        receives its input one step later, so its membranes lag one more step. Spyx's
        `CuBaLIF` subtracts its reset twice, which no eqslax neuron does.
    - `reset`, `reset_decay`: override the reset of every spiking node.
    - `surrogate`: spike function of the spiking neurons (default: the convention's,
      `Arctan(2)` for snnTorch, else `FastSigmoid()`).
    - `detach_reset`: cut the reset's gradient (default: the convention's, `True` for
      snnTorch, else `False`).

    **Returns:** a `Connect`; constants are per neuron and frozen (neuron defaults).
    Unsupported node types raise `TypeError` naming the node; parameters or topology
    eqslax cannot express raise `ValueError` naming the node.
    """
    options = _options(graph, dt, convention, reset, reset_decay, surrogate, detach_reset)
    flat = flatten(graph, options.convention)
    names, projections = chain(flat)
    layers, shapes = _layers(flat, names, options)
    weights = _side_weights(flat, names, projections, layers, shapes)
    model = _connect(layers, shapes, weights)
    _check_output(flat, names, model)
    return model


def load_nir(
    path: str | os.PathLike,
    *,
    dt: float | None = None,
    convention: str = "eqslax",
    reset: str | None = None,
    reset_decay: bool | None = None,
    surrogate: AbstractSurrogate | None = None,
    detach_reset: bool | None = None,
) -> Connect:
    """`from_nir(nir.read(path), ...)`: read a NIR HDF5 file (NIR's type checks on).

    NIR 1.0's own type inference takes a convolution's input channels from
    `weight.shape[1]` and one kernel size for both axes, so it rejects correct files with
    a grouped or non-square convolution; those are read without it, and `from_nir`
    checks every shape itself.

    A missing file raises `FileNotFoundError`; a file that is not a complete NIR file
    (junk, truncated, or an HDF5 file of something else) raises `ValueError`; both name
    the file, as do the errors `from_nir` raises about its nodes.
    """
    graph = _read(path)
    try:
        return from_nir(
            graph,
            dt=dt,
            convention=convention,
            reset=reset,
            reset_decay=reset_decay,
            surrogate=surrogate,
            detach_reset=detach_reset,
        )
    except (TypeError, ValueError) as error:
        raise type(error)(f"load_nir({os.fspath(path)!r}): {error}") from error


def _read(path) -> nir.NIRGraph:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"load_nir: `path` must be a str or os.PathLike, got {type(path).__name__}."
        )
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"load_nir: no NIR file at {name!r}.")
    try:
        return nir.read(name)
    except Exception as error:  # h5py and NIR raise OSError, KeyError, TypeError, ...
        graph = _read_past_conv_inference(name, error)
        if graph is not None:
            return graph
        raise ValueError(
            f"load_nir: {name!r} is not a valid or complete NIR file "
            f"({type(error).__name__}: {error})."
        ) from error


def _nodes(graph):
    for node in graph.nodes.values():
        yield node
        if isinstance(node, nir.NIRGraph):
            yield from _nodes(node)


def _read_past_conv_inference(name: str, error: Exception) -> nir.NIRGraph | None:
    """NIR's own type inference rejects grouped and non-square convolutions (it takes
    `weight.shape[1]` for the input channels and one kernel size); such a file is read
    without it, and `from_nir` checks every shape itself. `None` for any other failure."""
    if not (isinstance(error, ValueError) and "Type inference" in str(error)):
        return None
    try:
        graph = nir.read(name, type_check=False)
    except Exception:
        return None
    return graph if any(nir_infers_wrong_types(n) for n in _nodes(graph)) else None
