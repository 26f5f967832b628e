"""From a [`eqslax.compare.Rule`][] to its training step, and what one batch costs it."""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu

from .._mask import with_mask
from .._rules import BPTT, FPTT, TruncatedBPTT
from .._rules._fptt import train_fptt
from .._train import train_offline
from .._train_online import train_online, train_online_deferred
from ._registry import Rule


def make_step(spec: Rule, model, loss, lr: float | None = None):
    """The training step of `spec` for `model` (one of the four drivers)."""
    optimizer = spec.make_optimizer(lr)
    if spec.driver == "online":
        return train_online(model, spec.rule, loss, optimizer)
    if spec.driver == "deferred":
        return train_online_deferred(model, spec.rule, loss, optimizer)
    if spec.driver == "fptt":
        return train_fptt(model, spec.rule, loss, optimizer)
    return train_offline(model, loss, optimizer, spec.rule)


def updates_per_batch(spec: Rule, steps: int) -> int:
    """Optimiser updates one batch of `steps` time steps makes: $T$ online, $K$ for
    FPTT with $K$ segments, 1 otherwise."""
    if spec.driver == "online":
        return steps
    if spec.driver == "fptt":
        return spec.rule.segments
    return 1


def backward_steps_per_batch(spec: Rule, steps: int) -> int:
    """Time steps traversed backwards (reverse mode through time) per batch: $T$ for
    BPTT, truncated BPTT and FPTT's in-segment BPTT; 0 for forward-mode (online) rules."""
    if isinstance(spec.rule, BPTT | TruncatedBPTT):
        return steps
    if isinstance(spec.rule, FPTT) and spec.rule.rule is None:
        return steps
    return 0


def stack(trees):
    """Stack the array leaves of equally structured trees along a new leading axis."""
    arrays = [eqx.filter(t, eqx.is_array) for t in trees]
    static = eqx.filter(trees[0], eqx.is_array, inverse=True)
    return eqx.combine(jtu.tree_map(lambda *xs: jnp.stack(xs), *arrays), static)


def unstack(tree, index: int):
    """Member `index` of a tree stacked by `stack`."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(jtu.tree_map(lambda x: x[index], arrays), static)


def compiled_step(step, models, states, xs, ys, vmapped: bool, mask=None):
    """Lower and compile the step once (vmapped over seeds when `vmapped`), called as
    `compiled(models, states, xs, ys, mask)` with a mask like `mask` (or `None`): returns
    the compiled callable, its compile time in seconds and XLA's memory estimate (bytes
    of arguments plus temporaries, or `None` where the backend reports none)."""
    import time

    def run(model, state, xs, ys, mask):
        return with_mask(step.run, model, state, xs, ys, mask=mask)

    function = eqx.filter_jit(eqx.filter_vmap(run) if vmapped else run)
    start = time.perf_counter()
    compiled = function.lower(models, states, xs, ys, mask).compile()
    seconds = time.perf_counter() - start
    try:
        memory = compiled.compiled.memory_analysis()
        bytes_ = int(memory.temp_size_in_bytes + memory.argument_size_in_bytes)
    except Exception:  # not every backend reports memory
        bytes_ = None
    return compiled, seconds, bytes_


def init_states(step, models, vmapped: bool):
    if vmapped:
        return eqx.filter_vmap(step.init)(models)
    return step.init(models)
