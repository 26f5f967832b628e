r"""Bridges between eqslax and Flax, both ways (needs `pip install "eqslax[flax]"`).

**eqslax -> Flax.** `LinenCell` (`flax.linen`) and `NNXCell`
(`flax.nnx`) make an eqslax neuron or `Connect` an RNN cell for `linen.RNN` /
`nnx.RNN`. Its trainable leaves (`eqslax.trainable_mask`) become Flax parameters,
named by their path (`to_flax_params`); frozen leaves and structure stay constants.
The carry is the eqslax state record with batch axes in front; a batched input is
stepped with `jax.vmap` over its leading axes, since eqslax modules are unbatched.

**Flax -> eqslax.** `FlaxNeuron` (a linen cell) and `NNXNeuron` (an NNX
cell) are eqslax neurons: the Flax parameters are trainable leaves, the carry is the
state (`FlaxState`), shapes are given or inferred with `jax.eval_shape`. Cells
with hidden mutable state (batch statistics, RNG counters) are rejected when wrapped.

Round trip: `from_flax_params(model, to_flax_params(model))` is `model`, and
`FlaxNeuron(LinenCell(model), params=to_flax_params(model))` computes what `model`
computes.
"""

try:
    import flax.linen  # noqa: F401
    import flax.nnx  # noqa: F401
except ImportError as error:
    raise ImportError(
        'eqslax.flax_bridge needs Flax, an optional extra of eqslax: pip install "eqslax[flax]"'
    ) from error

from ._from_flax import FlaxNeuron as FlaxNeuron, FlaxState as FlaxState, NNXNeuron as NNXNeuron
from ._params import from_flax_params as from_flax_params, to_flax_params as to_flax_params
from ._to_flax import LinenCell as LinenCell, NNXCell as NNXCell
