r"""Counting NeuroBench's workload quantities from an `Activity`, one batch at a time.

For a linear map $W$ whose input at step $t$ is $x_t$, NeuroBench runs a
copy of the layer with binarised weights $[W \ne 0]$, no bias, on the binarised input
$[x_t \ne 0]$ and sums the output; for a dense layer

$$
\mathrm{ops}_t = \sum_i \sum_j [W_{ij} \ne 0]\,[x_{t,j} \ne 0],
$$

and the same with all-ones weights and inputs gives the dense count
($n_{in} n_{out}$ per step). Each call of a layer, i.e. each step on the whole
batch, counts as accumulates (AC) when every input entry of the batch is in
$\{-1, 0, 1\}$ and as multiply-accumulates (MAC) otherwise.

Per sample the counts are small integers computed on the device (`int32`); the sums
over steps, layers and samples are done on the host in 64-bit integers, so large models
do not overflow.

With a `mask` (time,) of a padded sequence only its real steps count: their operations,
their activations, their membrane updates and their dense operations. A padded step
never makes a call count as MAC (it is left out of the AC/MAC decision).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .._neurons import AbstractNeuron
from ._activity import Activity, record_activity


class BatchCounts(eqx.Module):
    """NeuroBench's activity counts summed over one batch (plain Python integers).

    **Fields:** `samples`; `effective_macs`, `effective_acs` and `dense` synaptic
    operations; `activations_nonzero` and `activations_total` (all activation
    outputs, all steps); `membrane_updates`.
    """

    samples: int
    effective_macs: int
    effective_acs: int
    dense: int
    activations_nonzero: int
    activations_total: int
    membrane_updates: int


def _conv_ops(conv, x, all_ones: bool):
    """Summed output of the binary (or all-ones) copy of a convolution on one step `x`."""
    weight = jnp.ones_like(conv.weight) if all_ones else conv.weight != 0
    binary = eqx.tree_at(lambda c: c.weight, conv, weight.astype(x.dtype))
    if binary.bias is not None:
        binary = eqx.tree_at(lambda c: c.bias, binary, jnp.zeros_like(binary.bias, x.dtype))
    # Each output entry is an exact small integer; summing after the cast keeps it exact.
    return jnp.sum(jnp.round(binary(x)).astype(jnp.int32))


def _map_counts(linear_map, mask):
    """Effective ops per step (time,), binary-input flags (time,) and dense ops per step;
    padded steps have no ops and count as binary."""
    x = linear_map.inputs
    layer = linear_map.layer
    nonzero = (x != 0).astype(x.dtype)
    binary = jnp.all((x == 0) | (x == 1) | (x == -1), axis=tuple(range(1, x.ndim)))
    if isinstance(layer, eqx.nn.Conv):
        effective = jax.vmap(lambda xt: _conv_ops(layer, xt, False))(nonzero)
        dense = _conv_ops(layer, jnp.ones_like(x[0]), True)
    else:
        weight = layer.weight if isinstance(layer, eqx.nn.Linear) else layer
        connected = (weight != 0).astype(x.dtype)
        per_output = nonzero.reshape(x.shape[0], -1) @ connected.T  # (time, out), exact
        effective = jnp.sum(jnp.round(per_output).astype(jnp.int32), axis=1)
        dense = jnp.int32(weight.size)
    if mask is not None:
        effective, binary = jnp.where(mask, effective, 0), binary | ~mask
    return effective, binary, dense


def _neuron_counts(neuron, mask):
    out = neuron.outputs
    real = jnp.ones(out.shape[0], bool) if mask is None else mask
    steps = real.reshape(real.shape + (1,) * (out.ndim - 1))
    nonzero = jnp.count_nonzero((out != 0) & steps).astype(jnp.int32)
    total = jnp.sum(real).astype(jnp.int32) * jnp.int32(out[0].size)
    if neuron.membrane is None:
        updates = jnp.zeros((), jnp.int32)
    else:
        v = neuron.membrane
        # NeuroBench: every unit at the first call, then the units whose membrane changed.
        changed = jnp.count_nonzero((v[1:] != v[:-1]) & steps[1:]).astype(jnp.int32)
        updates = jnp.int32(v[0].size) + changed
    return nonzero, total, updates


def sample_counts(activity: Activity, mask: Array | None = None) -> dict[str, Array]:
    """Per-sample counts: `effective` (maps, time), `binary` (maps, time), `dense`
    (maps,) per step, `steps` (the real steps), and `nonzero`, `total`, `updates`
    (neurons,); with a `mask` (time,) only its real steps count."""
    steps = activity.outputs.shape[0]
    maps = [_map_counts(m, mask) for m in activity.maps]
    cells = [_neuron_counts(n, mask) for n in activity.neurons]

    def stack(values, shape, dtype):
        return jnp.stack(values) if values else jnp.zeros(shape, dtype)

    return {
        "effective": stack([m[0] for m in maps], (0, steps), jnp.int32),
        "binary": stack([m[1] for m in maps], (0, steps), bool),
        "dense": stack([m[2] for m in maps], (0,), jnp.int32),
        "steps": jnp.int32(steps) if mask is None else jnp.sum(mask).astype(jnp.int32),
        "nonzero": stack([c[0] for c in cells], (0,), jnp.int32),
        "total": stack([c[1] for c in cells], (0,), jnp.int32),
        "updates": stack([c[2] for c in cells], (0,), jnp.int32),
    }


@eqx.filter_jit
def run_batch(model, xs, with_counts: bool, mask=None):
    """Outputs (batch, time, *out) and, if asked, the per-sample counts, in one pass;
    with a `mask` (batch, time) the outputs of padded steps are zero."""

    def one(x, m):
        activity = record_activity(model, x)
        outputs = activity.outputs
        if m is not None:
            outputs = jnp.where(m.reshape(m.shape + (1,) * (outputs.ndim - 1)), outputs, 0)
        return outputs, sample_counts(activity, m) if with_counts else None

    return jax.vmap(one)(xs, mask)


def reduce_counts(counts: dict[str, Array]) -> BatchCounts:
    """Sum per-sample counts over a batch with NeuroBench's per-call AC/MAC rule."""
    effective = np.asarray(counts["effective"], np.int64)  # (batch, maps, time)
    binary = np.all(np.asarray(counts["binary"]), axis=0)  # one decision per call
    per_call = effective.sum(axis=0)
    samples = effective.shape[0]
    dense = np.asarray(counts["dense"], np.int64).sum(axis=1)  # per step, per sample
    return BatchCounts(
        samples=int(samples),
        effective_macs=int(per_call[~binary].sum()),
        effective_acs=int(per_call[binary].sum()),
        dense=int((dense * np.asarray(counts["steps"], np.int64)).sum()),
        activations_nonzero=int(np.asarray(counts["nonzero"], np.int64).sum()),
        activations_total=int(np.asarray(counts["total"], np.int64).sum()),
        membrane_updates=int(np.asarray(counts["updates"], np.int64).sum()),
    )


def activity_counts(
    model: AbstractNeuron,
    xs: Float[Array, "batch time *in"],
    mask: Bool[Array, "batch time"] | None = None,
) -> BatchCounts:
    """NeuroBench's activity counts of `model` on one batch `xs` (batch, time, *in),
    summed over the batch (jitted, vmapped over the batch); with a `mask` of padded
    sequences only the real steps count."""
    _, counts = run_batch(model, xs, True, mask)
    return reduce_counts(counts)
