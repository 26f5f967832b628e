"""eqslax -> NIR: one node per layer, one `Linear` node per `cat` projection."""

import io
import math
import os

import equinox as eqx
import nir
import numpy as np

from .._checkpoint import atomic_write
from .._connect import Connect
from .._dcls import DCLSDelay
from .._delay import Delay
from .._flatten import Flatten
from .._neurons import ALIF, IF, LI, LIF, AbstractNeuron, CuBaLIF, Recurrent
from ._conv import CONV_LAYERS, conv_node
from ._conventions import resistance, time_constant
from ._recurrent import recurrent_graph

SUPPORTED_LAYERS = (
    "eqx.nn.Linear, eqx.nn.Conv1d, eqx.nn.Conv2d, Flatten, Delay, IF, LIF, LI, CuBaLIF, "
    "Recurrent(IF/LIF/LI/CuBaLIF) and nested Connect"
)
NEURONS = (IF, LIF, LI, CuBaLIF)

# Keys of the node metadata that carry what NIR cannot say: the reset eqslax applies.
RESET_KEY = "eqslax.reset"
RESET_DECAY_KEY = "eqslax.reset_decay"
DT_KEY = "eqslax.dt"


def check_dt(dt, owner: str) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating)):
        raise TypeError(f"{owner}: `dt` must be a positive float, got {dt!r}.")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"{owner}: `dt` must be a positive finite step, got {dt!r}.")
    return float(dt)


def _array(value, shape) -> np.ndarray:
    """A parameter as a writable NumPy array of the population shape (NIR types by shape)."""
    value = np.asarray(value)
    return np.array(np.broadcast_to(value, shape), dtype=value.dtype)


def _decay(layer, name: str, where: str) -> np.ndarray:
    decay = np.clip(_array(getattr(layer, name), layer.shape), 0.0, 1.0)
    if np.any(decay >= 1.0):
        raise ValueError(
            f"to_nir: {where} ({type(layer).__name__}) has `{name}` = 1, which has no finite "
            f"NIR time constant; use IF for a neuron without leak."
        )
    return decay


def _reset_metadata(layer) -> dict:
    return {RESET_KEY: layer.reset, RESET_DECAY_KEY: bool(layer.reset_decay)}


def _neuron_node(layer, dt: float, where: str) -> nir.NIRNode:
    shape = layer.shape
    zeros = np.zeros(shape)
    if isinstance(layer, IF):
        threshold = _array(layer.threshold, shape)
        return nir.IF(
            r=np.full(shape, 1.0 / dt),
            v_threshold=threshold,
            v_reset=zeros,
            metadata=_reset_metadata(layer),
        )
    decay = _decay(layer, "decay", where)
    if isinstance(layer, LI):
        return nir.LI(tau=time_constant(decay, dt), r=resistance(decay), v_leak=zeros)
    threshold = _array(layer.threshold, shape)
    if isinstance(layer, LIF):
        return nir.LIF(
            tau=time_constant(decay, dt),
            r=resistance(decay),
            v_leak=zeros,
            v_threshold=threshold,
            v_reset=zeros,
            metadata=_reset_metadata(layer),
        )
    synapse_decay = _decay(layer, "synapse_decay", where)
    return nir.CubaLIF(
        tau_syn=time_constant(synapse_decay, dt),
        tau_mem=time_constant(decay, dt),
        r=resistance(decay),
        v_leak=zeros,
        v_threshold=threshold,
        v_reset=zeros,
        w_in=resistance(synapse_decay),
        metadata=_reset_metadata(layer),
    )


def _no_alif(where: str) -> TypeError:
    return TypeError(
        f"to_nir: {where} (ALIF) has no NIR node. NIR's neurons (IF, LIF, CubaLIF, LI, "
        f"CubaLI) have a fixed threshold; ALIF's threshold rises with each spike "
        f"(A_t = threshold + adaptation * a_(t-1), a_t = adaptation_decay * a_(t-1) + s_t), "
        f"and no NIR node carries that state. eqslax does not write an approximation that "
        f"would fire differently."
    )


def _recurrent_node(layer: Recurrent, dt: float, where: str) -> nir.NIRGraph:
    neuron = layer.neuron
    if isinstance(neuron, ALIF):
        raise _no_alif(f"{where}.neuron")
    if not isinstance(neuron, NEURONS):
        raise TypeError(
            f"to_nir: {where}.neuron ({type(neuron).__name__}) has no NIR node; a Recurrent "
            f"layer exports with an IF, LIF, LI or CuBaLIF neuron."
        )
    return recurrent_graph(layer, _neuron_node(neuron, dt, f"{where}.neuron"), where)


def _layer_node(layer, dt: float, where: str, in_shape=None) -> nir.NIRNode:
    """`layer`'s node; `in_shape` is the shape it receives (a convolution needs it)."""
    if isinstance(layer, Connect):
        return _connect_graph(layer, dt, where, metadata={})
    if isinstance(layer, eqx.nn.Linear):
        if layer.in_features == "scalar" or layer.out_features == "scalar":
            raise ValueError(
                f"to_nir: {where} (eqx.nn.Linear) has a 'scalar' side; NIR's Linear and "
                f"Affine map vectors to vectors. Use in_features=1 / out_features=1."
            )
        weight = np.asarray(layer.weight)
        if layer.bias is None:
            return nir.Linear(weight=np.array(weight))
        return nir.Affine(weight=np.array(weight), bias=np.array(layer.bias))
    if isinstance(layer, NEURONS):
        return _neuron_node(layer, dt, where)
    if isinstance(layer, Recurrent):
        return _recurrent_node(layer, dt, where)
    if isinstance(layer, CONV_LAYERS):
        return conv_node(layer, in_shape, where)
    if isinstance(layer, ALIF):
        raise _no_alif(where)
    if isinstance(layer, Flatten):
        return nir.Flatten({"input": np.array(layer.in_shape)}, start_dim=0, end_dim=-1)
    if isinstance(layer, Delay):
        return nir.Delay(delay=np.asarray(layer.delays, dtype=np.float64) * dt)
    if isinstance(layer, DCLSDelay):
        raise TypeError(
            f"to_nir: {where} (DCLSDelay) has one delay per synapse, and NIR's Delay node "
            f"delays each channel by one amount; eqslax does not write the graph of one Delay "
            f"and Linear per distinct delay that it would take."
        )
    raise TypeError(
        f"to_nir: {where} ({type(layer).__name__}) has no NIR node; eqslax exports "
        f"{SUPPORTED_LAYERS}."
    )


def _connect_graph(model: Connect, dt: float, where: str, metadata: dict) -> nir.NIRGraph:
    names = [f"layer{k}" for k in range(len(model.layers))]
    nodes = {"input": nir.Input(input_type=np.array(model.in_shape))}
    for k, layer in enumerate(model.layers):
        nodes[names[k]] = _layer_node(layer, dt, f"{where}.layers[{k}]", model.shapes[k])
    edges = list(zip(["input", *names], names))
    for index, (projection, (k, i)) in enumerate(zip(model.projections, model.edges)):
        if len(model.shapes[k]) != 1 or len(model.shapes[i + 1]) != 1:
            raise ValueError(
                f"to_nir: {where}.projections[{index}] (cat edge {i} -> {k}) joins populations "
                f"of shapes {model.shapes[i + 1]} and {model.shapes[k]}; NIR needs Flatten nodes "
                f"for that, which eqslax does not write. Use 1-D populations."
            )
        name = f"projection{index}"
        nodes[name] = nir.Linear(weight=np.array(projection.weight))
        edges += [(names[i], name), (name, names[k])]
    nodes["output"] = nir.Output(output_type=np.array(model.out_shape))
    edges.append((names[-1], "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)


def to_nir(
    model: AbstractNeuron | eqx.nn.Linear | eqx.nn.Conv, *, dt: float = 1e-4
) -> nir.NIRGraph:
    r"""Write `model` as a NIR graph (checked by NIR's own type inference).

    Layers become nodes `layer0, layer1, ...` in a chain from `input` to `output`;
    each `cat` projection $P^{k,i}$ becomes a `Linear` node `projection<n>`
    with edges `layer<i> -> projection<n> -> layer<k>` (a cycle when $i \ge k$,
    read back as the previous step); a nested `Connect` becomes a
    sub-graph. `eqx.nn.Linear` is `Affine` with a bias and `Linear` without.
    `eqx.nn.Conv1d`/`Conv2d` are NIR's `Conv1d`/`Conv2d` with the input shape the layer
    receives in the `Connect` (zero padding, equal on both sides of an axis, or XLA's
    `"SAME"` at stride 1; a convolution without a bias writes zeros and
    `eqslax.use_bias = False`). `Recurrent(neuron)` (of an `IF`, `LIF`, `LI` or `CuBaLIF`
    of one axis) is a sub-graph `input -> neuron -> output` with the cycle
    `neuron -> recurrent -> neuron`, $W_{rec}$ the `Linear` node `recurrent`, marked
    `eqslax.layer = "Recurrent"`. `Delay` is NIR's `Delay` node with
    $\tau_i = d_i \Delta t$ (`DCLSDelay`, one delay per synapse, has no node and raises
    `TypeError`). `ALIF` has no NIR node (NIR's neurons have a fixed
    threshold) and raises `TypeError` naming the layer.

    Neurons (forward Euler with step `dt`, see `eqslax.nir`):

    - `LIF`/`LI`: $\tau = \Delta t/(1-\lambda)$, $R = 1/(1-\lambda)$,
      $v_\mathrm{leak} = 0$.
    - `CuBaLIF`: as LIF for the membrane, $\tau_\mathrm{syn} = \Delta t/(1-\alpha)$,
      $w_\mathrm{in} = 1/(1-\alpha)$.
    - `IF`: $R = 1/\Delta t$.
    - `v_threshold` is the threshold and `v_reset = 0`. NIR resets to `v_reset`;
      eqslax's `reset` and `reset_decay` are kept in the node metadata
      (`eqslax.reset`, `eqslax.reset_decay`), which `from_nir` reads and other
      tools ignore. `dt` is kept in the graph metadata (`eqslax.dt`).

    Parameters are written per neuron. Decays of exactly 1 (no leak) have no finite
    $\tau$ and raise `ValueError`. Gradient-only settings (surrogate,
    `detach_reset`, which constants train) are not part of NIR.

    **Arguments:**

    - `model`: a `Connect` or one supported layer
      (`eqx.nn.Linear`, `IF`, `LIF`, `LI`, `CuBaLIF`, `Recurrent`, `Delay`); a convolution only
      inside a `Connect`, which knows its input shape.
    - `dt`: the time step one eqslax step stands for (default `1e-4`, as Slax and
      snnTorch).

    **Returns:** a `nir.NIRGraph`; write it with `nir.write` or `save_nir`.
    """
    dt = check_dt(dt, "to_nir")
    if not isinstance(model, Connect):
        if isinstance(model, ALIF):
            raise _no_alif("`model`")
        if isinstance(model, CONV_LAYERS):
            raise ValueError(
                f"to_nir: `model` ({type(model).__name__}) does not know the shape of its "
                f"input, which NIR's convolutions record; export "
                f"Connect([conv, ...], in_shape=(channels, *spatial))."
            )
        if not isinstance(model, (eqx.nn.Linear, *NEURONS, Recurrent, Delay)):
            raise TypeError(
                f"to_nir: `model` ({type(model).__name__}) has no NIR node; eqslax exports "
                f"{SUPPORTED_LAYERS}."
            )
        model = Connect([model])
    return _connect_graph(model, dt, "model", metadata={DT_KEY: dt})


def save_nir(
    path: str | os.PathLike, model: AbstractNeuron | eqx.nn.Linear, *, dt: float = 1e-4
) -> None:
    """Write `to_nir(model, dt=dt)` to the HDF5 file `path` (via `nir.write`) by way of
    a temporary file and `os.replace`, so that `path` is never left half written."""
    graph = to_nir(model, dt=dt)
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    atomic_write(os.fspath(path), buffer.getvalue())
