"""Latency (time-to-first-spike) coding."""

import beartype
import jax.numpy as jnp
from jaxtyping import Array, Float, jaxtyped

from ._checks import check_number, check_steps

_METHODS = ("linear", "log")


@jaxtyped(typechecker=beartype.beartype)
def latency(
    x: Float[Array, " *shape"],
    n_steps: int,
    *,
    method: str = "linear",
    threshold: float = 0.0,
    tau: float = 1.0,
) -> Float[Array, " steps *shape"]:
    r"""Latency code: one spike per input above threshold, earlier for larger inputs.

    Every input $x_i > \vartheta$ spikes exactly once, at step $\lfloor t_i \rfloor$;
    inputs $x_i \le \vartheta$ never spike. The spike time is

    - `method="linear"`: $t_i = (T - 1)(1 - \mathrm{clip}(x_i, 0, 1))$, so $x = 1$ spikes at
      step 0 and inputs just above $\vartheta$ near step $T - 1$;
    - `method="log"`: $t_i = \tau \ln\!\big(x_i / (x_i - \vartheta)\big)$, the time a
      leaky integrator $\tau \dot v = -v + x_i$ from $v = 0$ takes to reach $\vartheta$
      (requires $\vartheta > 0$), clipped to $T - 1$ so that every input above threshold
      spikes inside the window.

    **Arguments:**

    - `x`: dense input of any shape (for `"linear"`, values in $[0, 1]$; others are
      clipped).
    - `n_steps`: the number of steps $T$ (a positive int).
    - `method`: `"linear"` or `"log"`.
    - `threshold`: $\vartheta \ge 0$ (`"linear"`) or $> 0$ (`"log"`).
    - `tau`: the time constant $\tau > 0$ of `"log"`, in steps.

    **Returns:** spikes in {0, 1} of shape `(n_steps, *x.shape)` and the dtype of `x`.
    """
    check_steps("latency", n_steps)
    if method not in _METHODS:
        raise ValueError(f"latency: `method` must be one of {_METHODS}, got {method!r}")
    threshold = check_number("latency", "threshold", threshold, positive=method == "log")
    tau = check_number("latency", "tau", tau, positive=True)
    above = x > threshold
    if method == "linear":
        times = (n_steps - 1) * (1.0 - jnp.clip(x, 0.0, 1.0))
    else:
        safe = jnp.where(above, x, 2.0 * threshold)  # keeps the log finite where unused
        times = tau * jnp.log(safe / (safe - threshold))
    step = jnp.clip(jnp.floor(times), 0, n_steps - 1).astype(jnp.int32)
    steps = jnp.arange(n_steps).reshape((n_steps,) + (1,) * x.ndim)
    return ((steps == step) & above).astype(x.dtype)
