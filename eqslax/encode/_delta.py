"""Delta (threshold-crossing) coding."""

import beartype
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, jaxtyped

from ._checks import check_number


@jaxtyped(typechecker=beartype.beartype)
def delta(
    x: Float[Array, " time *shape"],
    threshold: float,
    *,
    off: bool = False,
) -> Float[Array, " time ..."]:
    r"""Delta code: a spike when the input moved more than a threshold since the last event.

    Each input keeps a reference $r$, starting at $r_{-1} = x_0$ (so step 0 never spikes).
    With $d_t = x_t - r_{t-1}$:

    $$s^{on}_t = [d_t > \vartheta], \qquad s^{off}_t = [d_t < -\vartheta], \qquad
    r_t = \begin{cases} x_t & |d_t| > \vartheta \\ r_{t-1} & \text{otherwise,}\end{cases}$$

    as a pixel of an event camera does: the reference moves on every crossing, of either
    sign, whether or not the off channel is returned.

    **Arguments:**

    - `x`: a dense signal, time-major `(time, *shape)`.
    - `threshold`: $\vartheta \ge 0$.
    - `off`: also return the off channel.

    **Returns:** `(time, *shape)` on spikes, or with `off=True` `(time, 2, *shape)` with
    channel 0 the on and channel 1 the off spikes; the dtype of `x`.
    """
    threshold = check_number("delta", "threshold", threshold)
    if x.shape[0] == 0:
        raise ValueError(f"delta: `x` must have at least one step, got shape {x.shape}")

    def step(reference, value):
        change = value - reference
        events = (change > threshold, change < -threshold)
        return jnp.where(events[0] | events[1], value, reference), events

    _, (up, down) = jax.lax.scan(step, x[0], x)
    if not off:
        return up.astype(x.dtype)
    return jnp.stack([up, down], axis=1).astype(x.dtype)
