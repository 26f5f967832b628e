"""Delay-Randman: a Randman task whose classes differ only in the relative delays between
units."""

import beartype
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike
from jaxtyping import PRNGKeyArray, jaxtyped

from ._randman import _BELOW_ONE, RandmanSplit, _class_values


def _check(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"delay_randman: `{name}` must be an int >= {low}, got {value!r}.")


@jaxtyped(typechecker=beartype.beartype)
def delay_randman(
    key: PRNGKeyArray,
    *,
    n_classes: int = 4,
    n_units: int = 10,
    n_steps: int = 40,
    max_delay: int = 8,
    jitter: int = 3,
    manifold_dim: int = 1,
    alpha: float | int = 2.0,
    samples_per_class: int = 100,
    test_fraction: float | int = 0.2,
    spectrum: str = "jax",
    dtype: DTypeLike = jnp.float32,
) -> RandmanSplit:
    r"""Spiking Randman data in which the classes differ only in the relative delays
    between units: a task for learnable delays ([`eqslax.DCLSDelay`][]).

    One smooth random manifold $M: [0,1)^D \to \mathbb{R}^N$ (as in [`randman`][]),
    shared by every class, gives each sample a base pattern: latents
    $x \sim U[0,1)^D$, values $y = M(x)$ min-max standardised per unit over all samples,
    and base steps $b_i = \lfloor y_i J \rfloor \in \{0..J-1\}$ ($J$ = `jitter`). The
    delays come from one set, $\{\mathrm{round}(kD/(N-1))\}_{k=0}^{N-1}$ spread over
    $0..D$; class $c$ gives them to the units in its own random order, $\delta_{c,i}$.
    A sample of class $c$ with onset $o \sim U\{0..T - J - D\}$ fires each unit once, at

    $$t_i = o + b_i + \delta_{c,i} \in \{0..T-1\}.$$

    Every class has the same manifold, onset distribution and set of delays; only
    *which* unit is delayed by how much, the relative delays
    $\delta_{c,i} - \delta_{c,j}$, tells them apart. The random onset blurs absolute spike
    times, so a network must compare units' timings: delays that bring a class's spikes
    into coincidence at a neuron solve it. Spike counts carry no information (one spike
    per unit).

    Samples are shuffled across classes, then split as [`randman`][] splits them. The
    returned [`RandmanSplit`][] holds the standardised values $y$ and latents; `roles` is
    all `False` (time-coded) and `p_effective` is 0.

    **Arguments:**

    - `key`: PRNG key; manifold, latents, delays, onsets and the shuffle derive from it.
    - `n_classes`: $C \ge 2$.
    - `n_units`: $N \ge 2$.
    - `n_steps`: $T \ge J + D$.
    - `max_delay`: $D \ge 1$, the largest class delay in steps.
    - `jitter`: $J \ge 1$, the spread of the base pattern in steps.
    - `manifold_dim`, `alpha`, `spectrum`: the manifold's, as in [`randman`][].
    - `samples_per_class`: $S$.
    - `test_fraction`: fraction of samples in the test split, in (0, 1).
    - `dtype`: floating dtype of the spike rasters.
    """
    _check("n_classes", n_classes, 2)
    _check("n_units", n_units, 2)
    _check("max_delay", max_delay, 1)
    _check("jitter", jitter, 1)
    _check("samples_per_class", samples_per_class, 1)
    _check("manifold_dim", manifold_dim, 1)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < jitter + max_delay:
        raise ValueError(
            f"delay_randman: `n_steps` must be an int >= jitter + max_delay = "
            f"{jitter + max_delay}, so that every pattern fits; got {n_steps!r}."
        )
    if not 0 < test_fraction < 1:
        raise ValueError(
            f"delay_randman: `test_fraction` must be in (0, 1), got {test_fraction!r}."
        )
    total = n_classes * samples_per_class
    n_test = int(test_fraction * total + 0.5)
    if not 0 < n_test < total:
        raise ValueError(
            f"delay_randman: `test_fraction` {test_fraction} of {total} samples leaves an "
            f"empty split; use more samples or another fraction."
        )
    manifold_key, sample_key, order_key, onset_key, shuffle_key = jax.random.split(key, 5)
    latents, values = _class_values(
        manifold_key,
        sample_key,
        n_classes=1,
        n_units=n_units,
        manifold_dim=manifold_dim,
        alpha=alpha,
        samples_per_class=total,
        shared_latents=False,
        spectrum=spectrum,
    )
    latents, values = latents[0], jnp.minimum(values[0], _BELOW_ONE)
    base = jnp.minimum(jnp.floor(values * jitter), jitter - 1).astype(jnp.int32)
    pool = jnp.round(jnp.arange(n_units) * max_delay / (n_units - 1)).astype(jnp.int32)
    orders = jax.random.split(order_key, n_classes)
    delays = jax.vmap(lambda k: jax.random.permutation(k, pool))(orders)
    labels = jnp.repeat(jnp.arange(n_classes, dtype=jnp.int32), samples_per_class)
    labels = labels[jax.random.permutation(shuffle_key, total)]
    onset = jax.random.randint(onset_key, (total, 1), 0, n_steps - jitter - max_delay + 1)
    steps = onset + base + delays[labels]
    time = jnp.arange(n_steps, dtype=jnp.int32)[None, :, None]
    spikes = (time == steps[:, None, :]).astype(dtype)
    n_train = total - n_test
    return RandmanSplit(
        train_x=spikes[:n_train],
        train_y=labels[:n_train],
        test_x=spikes[n_train:],
        test_y=labels[n_train:],
        train_values=values[:n_train].astype(dtype),
        test_values=values[n_train:].astype(dtype),
        train_latents=latents[:n_train].astype(dtype),
        test_latents=latents[n_train:].astype(dtype),
        roles=jnp.zeros(n_units, dtype=bool),
        p_effective=0.0,
        n_classes=n_classes,
    )
