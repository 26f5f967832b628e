"""Running a model over time: one `jax.lax.scan` over the leading time axis, or
(schedule `"layerwise"`) one layer after another over the whole sequence."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PyTree

from ._checks import check_float_array
from ._connect import Connect, ConnectState
from ._neurons import AbstractNeuron


def check_model(model, owner: str) -> None:
    if not isinstance(model, AbstractNeuron):
        raise TypeError(
            f"{owner}: `model` must be an eqslax neuron or Connect, got {type(model).__name__}."
        )


def check_sequence(model: AbstractNeuron, xs, owner: str, name: str = "xs") -> None:
    """`xs` must be `(time, *model.in_shape)` floats."""
    check_model(model, owner)
    check_float_array(xs, name, model.in_shape, owner, leading="time")


def initial_state(model: AbstractNeuron, x_struct) -> PyTree:
    """`model.init_state()` cast to the dtypes one step produces for this input dtype,
    so that the scan carry keeps a fixed type (e.g. float32 parameters, float64 data)."""
    state = model.init_state()
    new_state, _ = eqx.filter_eval_shape(model, state, x_struct)
    return jtu.tree_map(lambda s, n: jnp.asarray(s, n.dtype), state, new_state)


def step_fn(model: AbstractNeuron, checkpoint: bool = False):
    """`(state, x) -> (state, y)`, optionally rematerialised in the backward pass."""

    def step(state, x):
        return model(state, x)

    return jax.checkpoint(step) if checkpoint else step


def _tracing(*trees) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jtu.tree_leaves(trees))


SCHEDULES = ("step", "layerwise", "auto")


def _recurrent_edges(model) -> list[tuple[int, int]]:
    return [(k, i) for k, i in model.edges if i >= k] if isinstance(model, Connect) else []


def resolve_schedule(model: AbstractNeuron, schedule: str, owner: str) -> str:
    """`"step"` or `"layerwise"`: `"auto"` is layerwise for a `Connect`
    whose every edge is a skip edge (source before target), step otherwise. A bare
    neuron is one layer, so every schedule is the step schedule for it."""
    if schedule not in SCHEDULES:
        raise ValueError(
            f"{owner}: `schedule` must be one of {', '.join(map(repr, SCHEDULES))}, "
            f"got {schedule!r}."
        )
    recurrent = _recurrent_edges(model)
    if schedule == "layerwise" and recurrent:
        k, i = recurrent[0]
        raise ValueError(
            f"{owner}: `schedule='layerwise'` needs a graph without recurrent edges, but "
            f"edge cat={{{k}: [{i}]}} feeds layer {i}'s previous output into layer {k}; "
            f"use schedule='step' or 'auto'."
        )
    if not isinstance(model, Connect):
        return "step"
    if schedule == "auto":
        return "step" if recurrent else "layerwise"
    return schedule


def check_unroll(unroll, owner: str) -> None:
    """`unroll` is `jax.lax.scan`'s: a positive number of steps per loop iteration."""
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise ValueError(
            f"{owner}: `unroll` must be a positive integer (steps per loop iteration), "
            f"got {unroll!r}."
        )


def _layer_over_time(layer, state, hs, checkpoint, unroll=1):
    """One layer over the whole sequence: a scan for a neuron, one batched call
    (`jax.vmap` over time) for a stateless module."""
    if isinstance(layer, AbstractNeuron):
        return jax.lax.scan(step_fn(layer, checkpoint), state, hs, unroll=unroll)
    return None, jax.vmap(layer)(hs)


def layerwise_layers(
    model: Connect, xs: Array, state: ConnectState, checkpoint: bool = False, unroll: int = 1
) -> tuple[ConnectState, tuple[Array, ...]]:
    r"""Every layer's outputs over time, computed layer by layer, for a `Connect`
    without recurrent edges: layer $k$ receives
    $y^{k-1}_{1..T} + \sum_{i<k} P^{k,i} y^i_{1..T}$ for all steps at once. The same
    values as stepping `Connect.forward` $T$ times from `state`."""
    outputs: list[Array] = []
    states = []
    hs = xs
    for k, layer in enumerate(model.layers):
        if any(target == k for target, _ in model.edges):
            add = lambda h, ys, k=k: model.edge_input(k, h, lambda i: ys[i])  # noqa: E731
            hs = jax.vmap(add)(hs, tuple(outputs))
        layer_state, hs = _layer_over_time(layer, state.layers[k], hs, checkpoint, unroll)
        states.append(layer_state)
        outputs.append(hs)
    return ConnectState(layers=tuple(states), delayed={}), tuple(outputs)


def _scan_simulate(model, xs, state, checkpoint, schedule="step", unroll=1):
    if schedule == "layerwise":
        final, layers = layerwise_layers(model, xs, state, checkpoint, unroll)
        return final, layers[-1]
    return jax.lax.scan(step_fn(model, checkpoint), state, xs, unroll=unroll)


_jit_simulate = eqx.filter_jit(_scan_simulate)


def _simulate(model, xs, state, checkpoint, schedule, unroll=1):
    # Inside a caller's jit/grad, a nested jit boundary costs XLA an extra (T, B, n)
    # buffer in the backward pass (benchmarks/bptt_speed); scan inline there instead.
    if _tracing(model, xs, state):
        return _scan_simulate(model, xs, state, checkpoint, schedule, unroll)
    return _jit_simulate(model, xs, state, checkpoint, schedule, unroll)


def simulate(
    model: AbstractNeuron,
    xs: Float[Array, "time *in"],
    *,
    state: PyTree | None = None,
    checkpoint: bool = False,
    schedule: str = "step",
    unroll: int = 1,
) -> tuple[PyTree, Array]:
    r"""Run `model` over a sequence: $(h_t, y_t) = f(h_{t-1}, x_t)$, $t = 1..T$.

    **Arguments:**

    - `model`: a neuron or `Connect` (unbatched).
    - `xs`: inputs of shape `(time, *model.in_shape)`; for a batch use
      `jax.vmap(lambda x: simulate(model, x))`.
    - `state`: the state before the first step (default `model.init_state()`).
    - `checkpoint`: recompute each step in the backward pass (`jax.checkpoint`),
      trading compute for activation memory.
    - `schedule`: the order of the computation; every schedule gives the same
      outputs, final state and gradients.

      - `"step"` (default): one scan over time, every layer inside each step.
      - `"layerwise"`: for a `Connect` without recurrent edges (every `cat`
        source before its target): one layer at a time over the whole sequence, a
        stateless layer (`eqx.nn.Linear`, ...) as one batched call over all steps
        and a neuron as a scan of its own. Raises `ValueError` on a recurrent edge.
      - `"auto"`: `"layerwise"` for a `Connect` without recurrent edges,
        `"step"` otherwise.

    - `unroll`: steps per iteration of each time loop (`jax.lax.scan`'s `unroll`):
      larger values give XLA more to fuse at the cost of compile time; the values
      do not change. `benchmarks/bptt_speed --unrolls` measures the best per size.

    **Returns:** `(final_state, ys)` with `ys` of shape `(time, *model.out_shape)`.
    """
    check_sequence(model, xs, "simulate")
    schedule = resolve_schedule(model, schedule, "simulate")
    check_unroll(unroll, "simulate")
    if state is None:
        state = initial_state(model, xs[0])
    return _simulate(model, xs, state, checkpoint, schedule, unroll)


class Recording(eqx.Module):
    """Everything a run produced, stacked over time: `outputs` (time, *out),
    `layers` (one array per layer of a `Connect`, else `(outputs,)`) and
    `states` (the state after every step, each leaf with a leading time axis)."""

    outputs: Array
    layers: tuple[Array, ...]
    states: PyTree


def step_layers(model: AbstractNeuron, state: PyTree, x: Array) -> tuple[PyTree, tuple]:
    """One step returning every layer's output: a `Connect`'s layers, or the
    neuron's own output as a 1-tuple."""
    if isinstance(model, Connect):
        return model.forward(state, x)
    state, y = model(state, x)
    return state, (y,)


def _scan_record(model, xs, state):
    def step(state, x):
        state, layers = step_layers(model, state, x)
        return state, (layers, state)

    final, (layers, states) = jax.lax.scan(step, state, xs)
    return final, Recording(outputs=layers[-1], layers=layers, states=states)


_jit_record = eqx.filter_jit(_scan_record)


def _record(model, xs, state):
    if _tracing(model, xs, state):
        return _scan_record(model, xs, state)
    return _jit_record(model, xs, state)


def record(
    model: AbstractNeuron,
    xs: Float[Array, "time *in"],
    *,
    state: PyTree | None = None,
) -> tuple[PyTree, Recording]:
    """Like `simulate`, keeping every layer's output and every state over time
    (for raster plots, membrane traces and rate regularisers)."""
    check_sequence(model, xs, "record")
    if state is None:
        state = initial_state(model, xs[0])
    return _record(model, xs, state)
