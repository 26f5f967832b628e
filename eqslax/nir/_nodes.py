"""One NIR node -> one eqslax layer, with the discretisation of the chosen convention."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import nir
import numpy as np

from .._delay import Delay
from .._flatten import Flatten
from .._neurons import IF, LI, LIF, CuBaLIF, Recurrent
from .._neurons._base import RESET_MODES
from ._conv import conv_in_shape, conv_layer
from ._conventions import (
    Convention,
    check_positive_gain,
    decay_from_tau,
    leak_potential_is_zero,
    unit_gain,
)
from ._export import RESET_DECAY_KEY, RESET_KEY
from ._recurrent import is_recurrent_graph, recurrent_parts

SUPPORTED_NODES = (
    "Affine, Linear, Conv1d, Conv2d, Flatten, Delay, IF, LIF, LI, CubaLIF, Input, Output and "
    "NIRGraph"
)


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything that decides how a node is read."""

    dt: float
    convention: Convention
    reset: str | None
    reset_decay: bool | None
    surrogate: object
    detach_reset: bool = False


@dataclasses.dataclass
class Layer:
    """An imported layer; `input_gain` multiplies everything summed into it (an LI with
    a non-unit Euler gain, folded into the incoming weights by the caller)."""

    module: eqx.Module
    out_shape: tuple[int, ...]
    input_gain: np.ndarray | None = None


def _floats(value) -> jnp.ndarray:
    return jnp.asarray(np.asarray(value), dtype=jnp.result_type(float))


def strip_batch_axes(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop leading axes of size 1 (a batch axis that torch exporters write)."""
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def _population_shape(node, fields, in_shape, where) -> tuple[int, ...]:
    """Parameters are per neuron (their shape) or shared (scalars, size one)."""
    shapes = {tuple(np.shape(getattr(node, f))) for f in fields}
    shapes = {s for s in shapes if int(np.prod(s)) != 1}
    if not shapes:
        return strip_batch_axes(in_shape) if in_shape else (1,)
    if len(shapes) > 1:
        raise ValueError(f"from_nir: {where} has parameters of different shapes {shapes}.")
    (shape,) = shapes
    if in_shape is not None and strip_batch_axes(in_shape) != strip_batch_axes(shape):
        raise ValueError(
            f"from_nir: {where} has {shape} neurons but receives an input of shape {in_shape}."
        )
    return shape if in_shape is None else tuple(in_shape)


def _param(node, field: str, shape) -> np.ndarray:
    value = np.asarray(getattr(node, field), dtype=np.float64)
    return value.reshape(shape) if value.size == int(np.prod(shape)) else value.reshape(())


def _reset(node, options: Options, where: str) -> tuple[str, bool]:
    """Explicit argument, else the node's eqslax metadata, else the convention."""
    metadata = node.metadata or {}
    reset = options.reset or metadata.get(RESET_KEY) or options.convention.reset
    reset = reset.decode() if isinstance(reset, bytes) else str(reset)
    if reset not in RESET_MODES:
        raise ValueError(f"from_nir: {where} asks for reset {reset!r}; known: {RESET_MODES}.")
    reset_decay = options.reset_decay
    if reset_decay is None:
        reset_decay = metadata.get(RESET_DECAY_KEY, options.convention.reset_decay)
    if reset == "zero" and np.any(np.asarray(node.v_reset) != 0):
        raise ValueError(
            f"from_nir: {where} resets to v_reset = {node.v_reset}; eqslax's zero reset "
            f"needs v_reset = 0."
        )
    return reset, bool(reset_decay)


def _gain(options: Options, *factors) -> np.ndarray:
    if not options.convention.euler_gain:
        return np.ones(())
    gain = np.ones(())
    for factor in factors:
        gain = gain * np.asarray(factor, dtype=np.float64)
    return unit_gain(gain)


def _spiking(kind, node, options, where, shape, gain, **decays):
    """A spiking population; the input gain g is folded into the threshold, which keeps
    every spike: the membrane is read in units of g (v' = v / g, threshold' = threshold / g)."""
    reset, reset_decay = _reset(node, options, where)
    threshold = _param(node, "v_threshold", shape) / gain
    return kind(
        shape,
        **{name: _floats(value) for name, value in decays.items()},
        threshold=_floats(threshold),
        surrogate=options.surrogate,
        detach_reset=options.detach_reset,
        reset=reset,
        reset_decay=reset_decay,
    )


def _neuron(node, options: Options, where: str, in_shape) -> Layer:
    dt = options.dt
    if isinstance(node, nir.IF):
        shape = _population_shape(node, ("r", "v_threshold"), in_shape, where)
        gain = check_positive_gain(_gain(options, _param(node, "r", shape), dt), where)
        layer = _spiking(IF, node, options, where, shape, gain)
        return Layer(layer, shape)
    if isinstance(node, nir.CubaLIF):
        fields = ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in")
        shape = _population_shape(node, fields, in_shape, where)
        p = {f: _param(node, f, shape) for f in fields}
        leak_potential_is_zero(p["v_leak"], where)
        alpha = decay_from_tau(p["tau_syn"], dt, where, "tau_syn")
        decay = decay_from_tau(p["tau_mem"], dt, where, "tau_mem")
        gain = _gain(options, p["w_in"] * dt / p["tau_syn"], p["r"] * dt / p["tau_mem"])
        check_positive_gain(gain, where)
        layer = _spiking(
            CuBaLIF, node, options, where, shape, gain, synapse_decay=alpha, decay=decay
        )
        return Layer(layer, shape)
    fields = ("tau", "r", "v_leak") + (("v_threshold",) if isinstance(node, nir.LIF) else ())
    shape = _population_shape(node, fields, in_shape, where)
    p = {f: _param(node, f, shape) for f in fields}
    leak_potential_is_zero(p["v_leak"], where)
    decay = decay_from_tau(p["tau"], dt, where, "tau")
    gain = check_positive_gain(_gain(options, p["r"] * dt / p["tau"]), where)
    if isinstance(node, nir.LIF):
        layer = _spiking(LIF, node, options, where, shape, gain, decay=decay)
        return Layer(layer, shape)
    unit = bool(np.all(gain == 1.0))
    return Layer(LI(shape, _floats(decay)), shape, None if unit else np.broadcast_to(gain, shape))


def _weights(node, where: str, in_shape) -> Layer:
    weight = np.asarray(node.weight)
    if weight.ndim != 2:
        raise ValueError(f"from_nir: {where} has a weight of shape {weight.shape}; need 2-D.")
    n_out, n_in = weight.shape
    if in_shape is not None and int(np.prod(in_shape)) != n_in:
        raise ValueError(
            f"from_nir: {where} takes {n_in} inputs but receives shape {tuple(in_shape)}."
        )
    has_bias = isinstance(node, nir.Affine)
    linear = eqx.nn.Linear(n_in, n_out, use_bias=has_bias, key=jax.random.PRNGKey(0))
    linear = eqx.tree_at(lambda m: m.weight, linear, _floats(weight))
    if has_bias:
        linear = eqx.tree_at(lambda m: m.bias, linear, _floats(np.reshape(node.bias, (n_out,))))
    return Layer(linear, (n_out,))


def _flatten(node, where: str, in_shape) -> Layer:
    """A `Flatten` to one vector per sample (leading batch axes of size 1 dropped)."""
    declared = node.input_type.get("input")
    shape = in_shape if declared is None else strip_batch_axes(tuple(int(s) for s in declared))
    out = node.output_type.get("output")
    if shape is None or (
        out is not None and len(strip_batch_axes(tuple(int(s) for s in out))) != 1
    ):
        raise ValueError(
            f"from_nir: {where} (Flatten) must flatten a known input shape to one vector; "
            f"input {declared}, output {out}."
        )
    if in_shape is not None and int(np.prod(in_shape)) != int(np.prod(shape)):
        raise ValueError(f"from_nir: {where} flattens {shape} but receives {tuple(in_shape)}.")
    shape = tuple(shape if in_shape is None else in_shape)
    return Layer(Flatten(shape), (int(np.prod(shape)),))


def _delay(node, options: Options, where: str, in_shape) -> Layer:
    """NIR's `Delay`, $y(t) = x(t - \\tau)$, as `Delay` by $\\tau / \\Delta t$ steps, which
    must be whole (to a relative 1e-6) and non-negative."""
    tau = np.asarray(node.delay, dtype=np.float64)
    steps = tau / options.dt
    whole = np.round(steps)
    off = np.abs(steps - whole) > 1e-6 * np.maximum(1.0, np.abs(whole))
    if not np.all(np.isfinite(steps)) or np.any(off):
        raise ValueError(
            f"from_nir: {where} (Delay) delays by {tau.tolist()}, not whole multiples of "
            f"dt = {options.dt}; eqslax's Delay counts whole steps. Pass the dt the graph "
            f"was written with."
        )
    if np.any(whole < 0):
        raise ValueError(f"from_nir: {where} (Delay) has a negative delay {tau.tolist()}.")
    shape = tuple(in_shape) if in_shape is not None else strip_batch_axes(tau.shape or (1,))
    delays = whole.astype(np.int64).reshape(shape) if whole.size > 1 else int(whole.max())
    return Layer(Delay(shape, delays), shape)


def _recurrent(graph, options: Options, where: str, in_shape) -> Layer:
    """A sub-graph `to_nir` wrote for `Recurrent(neuron)`."""
    node, weight = recurrent_parts(graph, where)
    inner = _neuron(node, options, f"{where}'s neuron", in_shape)
    if inner.input_gain is not None:
        raise ValueError(
            f"from_nir: {where}'s neuron (LI) has an input gain != 1 under this convention, "
            f"which eqslax would fold into W_rec and the layer before; read the file with "
            f"convention='eqslax'."
        )
    n = int(np.prod(inner.out_shape))
    if weight.shape != (n, n):
        raise ValueError(
            f"from_nir: {where}'s recurrent weight has shape {weight.shape}; its neuron has "
            f"{n} units, so it must be {(n, n)}."
        )
    return Layer(Recurrent(inner.module, weight=_floats(weight)), inner.out_shape)


def node_to_layer(node, options: Options, where: str, in_shape) -> Layer:
    """Convert one node; `in_shape` is the shape it receives (`None`: not known)."""
    if isinstance(node, (nir.Linear, nir.Affine)):
        return _weights(node, where, in_shape)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return Layer(*conv_layer(node, where, in_shape))
    if is_recurrent_graph(node):
        return _recurrent(node, options, where, in_shape)
    if isinstance(node, (nir.IF, nir.LIF, nir.LI, nir.CubaLIF)):
        return _neuron(node, options, where, in_shape)
    if isinstance(node, nir.Flatten):
        return _flatten(node, where, in_shape)
    if isinstance(node, nir.Delay):
        return _delay(node, options, where, in_shape)
    raise TypeError(
        f"from_nir: {where} has type {type(node).__name__}, which eqslax cannot import; "
        f"supported nodes: {SUPPORTED_NODES}."
    )


def _expected_shape(node) -> tuple[int, ...] | None:
    if isinstance(node, (nir.Linear, nir.Affine)):
        return (int(np.shape(node.weight)[-1]),)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return conv_in_shape(node)
    if is_recurrent_graph(node):
        node = node.nodes.get("neuron")
        if node is None:
            return None
    shapes = {np.shape(v) for v in vars(node).values() if isinstance(v, np.ndarray)}
    shapes = {s for s in shapes if int(np.prod(s)) != 1}
    return shapes.pop() if len(shapes) == 1 else None


def first_input_shape(node, declared) -> tuple[int, ...] | None:
    """The network input shape: the Input node's, without a leading batch axis that the
    first layer does not have (torch exporters write one)."""
    declared = None if declared is None else tuple(int(s) for s in np.ravel(declared))
    expected = _expected_shape(node)
    if expected is None and declared is not None and isinstance(node, (nir.Conv1d, nir.Conv2d)):
        rank = 2 if isinstance(node, nir.Conv1d) else 3  # (channels, *spatial)
        return declared[len(declared) - rank :] if len(declared) > rank else declared
    if expected is None:
        return None if declared is None else strip_batch_axes(declared)
    if declared is None or strip_batch_axes(declared) == strip_batch_axes(expected):
        return expected
    return declared
