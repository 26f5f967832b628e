"""Running a model over time: one ``jax.lax.scan`` over the leading time axis."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PyTree

from ._checks import check_float_array
from ._connect import Connect
from ._neurons import AbstractNeuron


def check_model(model, owner: str) -> None:
    if not isinstance(model, AbstractNeuron):
        raise TypeError(
            f"{owner}: `model` must be an eqslax neuron or Connect, got {type(model).__name__}."
        )


def check_sequence(model: AbstractNeuron, xs, owner: str, name: str = "xs") -> None:
    """``xs`` must be ``(time, *model.in_shape)`` floats."""
    check_model(model, owner)
    check_float_array(xs, name, model.in_shape, owner, leading="time")


def initial_state(model: AbstractNeuron, x_struct) -> PyTree:
    """``model.init_state()`` cast to the dtypes one step produces for this input dtype,
    so that the scan carry keeps a fixed type (e.g. float32 parameters, float64 data)."""
    state = model.init_state()
    new_state, _ = eqx.filter_eval_shape(model, state, x_struct)
    return jtu.tree_map(lambda s, n: jnp.asarray(s, n.dtype), state, new_state)


def step_fn(model: AbstractNeuron, checkpoint: bool = False):
    """``(state, x) -> (state, y)``, optionally rematerialised in the backward pass."""

    def step(state, x):
        return model(state, x)

    return jax.checkpoint(step) if checkpoint else step


def _tracing(*trees) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jtu.tree_leaves(trees))


def _scan_simulate(model, xs, state, checkpoint):
    return jax.lax.scan(step_fn(model, checkpoint), state, xs)


_jit_simulate = eqx.filter_jit(_scan_simulate)


def _simulate(model, xs, state, checkpoint):
    # Inside a caller's jit/grad, a nested jit boundary costs XLA an extra (T, B, n)
    # buffer in the backward pass (benchmarks/bptt_speed); scan inline there instead.
    if _tracing(model, xs, state):
        return _scan_simulate(model, xs, state, checkpoint)
    return _jit_simulate(model, xs, state, checkpoint)


def simulate(
    model: AbstractNeuron,
    xs: Float[Array, "time *in"],
    *,
    state: PyTree | None = None,
    checkpoint: bool = False,
) -> tuple[PyTree, Array]:
    r"""Run ``model`` over a sequence: :math:`(h_t, y_t) = f(h_{t-1}, x_t)`, :math:`t = 1..T`.

    **Arguments:**

    - ``model``: a neuron or :class:`Connect` (unbatched).
    - ``xs``: inputs of shape ``(time, *model.in_shape)``; for a batch use
      ``jax.vmap(lambda x: simulate(model, x))``.
    - ``state``: the state before the first step (default ``model.init_state()``).
    - ``checkpoint``: recompute each step in the backward pass (``jax.checkpoint``),
      trading compute for activation memory.

    **Returns:** ``(final_state, ys)`` with ``ys`` of shape ``(time, *model.out_shape)``.
    """
    check_sequence(model, xs, "simulate")
    if state is None:
        state = initial_state(model, xs[0])
    return _simulate(model, xs, state, checkpoint)


class Recording(eqx.Module):
    """Everything a run produced, stacked over time: ``outputs`` (time, *out),
    ``layers`` (one array per layer of a :class:`Connect`, else ``(outputs,)``) and
    ``states`` (the state after every step, each leaf with a leading time axis)."""

    outputs: Array
    layers: tuple[Array, ...]
    states: PyTree


def step_layers(model: AbstractNeuron, state: PyTree, x: Array) -> tuple[PyTree, tuple]:
    """One step returning every layer's output: a :class:`Connect`'s layers, or the
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
    """Like :func:`simulate`, keeping every layer's output and every state over time
    (for raster plots, membrane traces and rate regularisers)."""
    check_sequence(model, xs, "record")
    if state is None:
        state = initial_state(model, xs[0])
    return _record(model, xs, state)
