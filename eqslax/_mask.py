r"""Masks of variable-length sequences: which steps of a padded batch are real.

A batch of sequences of lengths $T_b \le T$ is padded to a common length $T$ and comes
with a boolean `mask` of shape `(batch, time)`, $m_{b,t}$ = step $t$ of sample $b$ is
real. Every loss, rule and training step that takes a `mask` gives padded steps no loss
and no learning signal; a loss that averages over time divides by $T_b$:

$$
\mathcal L = \frac1B \sum_b \frac{1}{T_b}\sum_t m_{b,t}\, \ell(y^{(b)}_t, c^{(b)}_t),
\qquad T_b = \sum_t m_{b,t}.
$$

The network still runs through padded steps (their inputs are usually zeros); with the
padding at the end they cannot reach a real step, so a padded batch gives exactly the
gradient of its samples run one by one at their own lengths.
"""

import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float


def check_mask_shape(mask, batch_time: tuple[int, ...], owner: str, name: str = "mask"):
    """`mask` must be a boolean array of shape `batch_time`; static, free under `jit`."""
    expected = tuple(int(n) for n in batch_time)
    if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
        raise TypeError(
            f"{owner}: `{name}` must be a boolean array of shape {expected} (True = real "
            f"step), got {type(mask).__name__}."
        )
    if tuple(mask.shape) != expected:
        raise ValueError(
            f"{owner}: `{name}` must have shape {expected} like the inputs' leading axes "
            f"(True = real step), got {tuple(mask.shape)}."
        )
    if mask.dtype != jnp.bool_:
        raise TypeError(
            f"{owner}: `{name}` must have dtype bool (True = real step), got {mask.dtype}; "
            f"eqslax.data.pad_sequences returns one."
        )


def check_mask(mask, batch_time: tuple[int, ...], owner: str, name: str = "mask"):
    """`mask` must be a boolean array of shape `batch_time` (`(batch, time)`, or
    `(time,)` for one sample) with at least one real (True) step per sample. A host mask
    is checked here; a traced one gets an `eqx.error_if`, so use the returned mask."""
    check_mask_shape(mask, batch_time, owner, name)
    if isinstance(mask, jax.core.Tracer):
        return eqx.error_if(
            mask, ~jnp.all(jnp.any(mask, axis=-1)), f"{owner}: a sample of `{name}` is all False."
        )
    empty = ~np.any(np.asarray(mask), axis=-1)
    if np.any(empty):
        sample = int(np.argwhere(np.atleast_1d(empty))[0, 0])
        raise ValueError(
            f"{owner}: `{name}` must mark at least one real step (True) per sample, got "
            f"none for sample {sample}."
        )
    return jnp.asarray(mask)


def takes_mask(fn) -> bool:
    """Whether `fn` (a rule's `update`, a step's `run`, a loss) takes a `mask` keyword."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "mask" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def check_takes_mask(fn, what: str, owner: str) -> None:
    """A clear error when a `mask` is given to a user's rule or loss that has none."""
    if not takes_mask(fn):
        raise TypeError(
            f"{owner}: a `mask` was given but {what} takes no `mask` keyword; add "
            f"`mask=None` to its signature and ignore the padded steps, or leave `mask` out."
        )


def with_mask(fn, *args, mask=None, **kwargs):
    """`fn(*args, **kwargs)`, with `mask=mask` only when a mask is given (so a user's
    rule or loss written without masks runs unchanged)."""
    if mask is None:
        return fn(*args, **kwargs)
    return fn(*args, mask=mask, **kwargs)


def time_mean(
    values: Float[Array, "*batch time"], mask: Bool[Array, "*batch time"] | None
) -> Float[Array, "*batch"]:
    r"""$\frac{1}{T_b}\sum_t m_t v_t$ over the last axis ($\frac1T\sum_t v_t$ without
    a mask); 0 where a sample has no real step."""
    if mask is None:
        return jnp.mean(values, axis=-1)
    total = jnp.sum(jnp.where(mask, values, 0), axis=-1)
    return total / jnp.maximum(jnp.sum(mask, axis=-1), 1)


def broadcast_steps(mask: Bool[Array, " time"], outputs: Array) -> Bool[Array, "time ..."]:
    """A per-step mask `(time,)` shaped to broadcast against `outputs` `(time, *out)`."""
    return mask.reshape(mask.shape + (1,) * (outputs.ndim - 1))
