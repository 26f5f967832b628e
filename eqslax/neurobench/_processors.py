"""NeuroBench's post-processors: from batch-major outputs (batch, time, *out) to predictions."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int


class ChooseMaxCount(eqx.Module):
    r"""The class with the largest total output over time,
    $\hat y = \arg\max_c \sum_t y_{t,c}$ (spike counts; for a membrane readout the
    same as `eqslax.PerStep`'s prediction)."""

    def __call__(self, outputs: Float[Array, "batch time classes"]) -> Int[Array, " batch"]:
        return jnp.argmax(jnp.sum(outputs, axis=1), axis=-1)


class Aggregate(eqx.Module):
    r"""The total output over time, $\sum_t y_t$."""

    def __call__(self, outputs: Float[Array, "batch time ..."]) -> Float[Array, "batch ..."]:
        return jnp.sum(outputs, axis=1)
