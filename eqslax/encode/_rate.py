"""Rate (Bernoulli) coding."""

import beartype
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, jaxtyped

from ._checks import check_number, check_steps


@jaxtyped(typechecker=beartype.beartype)
def rate(
    x: Float[Array, " *shape"],
    n_steps: int,
    *,
    key: PRNGKeyArray,
    gain: float = 1.0,
) -> Float[Array, " steps *shape"]:
    r"""Rate code: an independent Bernoulli spike per input and step.

    $$P(s_{t,i} = 1) = \mathrm{clip}(g\, x_i,\ 0,\ 1), \qquad t = 0, \dots, T - 1,$$

    independently over $t$ and $i$, so the expected spike count of input $i$ is
    $T\,\mathrm{clip}(g x_i, 0, 1)$.

    **Arguments:**

    - `x`: dense input of any shape, e.g. pixel intensities in $[0, 1]$.
    - `n_steps`: the number of steps $T$ (a positive int).
    - `key`: the random key of the draws.
    - `gain`: $g \ge 0$, scaling the input into a probability.

    **Returns:** spikes in {0, 1} of shape `(n_steps, *x.shape)` and the dtype of `x`.
    """
    check_steps("rate", n_steps)
    gain = check_number("rate", "gain", gain)
    probability = jnp.clip(gain * x, 0.0, 1.0)
    uniform = jax.random.uniform(key, (n_steps, *x.shape), dtype=x.dtype)
    return (uniform < probability).astype(x.dtype)
