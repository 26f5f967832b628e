"""Spiking Randman datasets: T-Randman, R-Randman and the unit-split mixed variant."""

import functools
import math

import beartype
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, jaxtyped

from ._manifold import _check_manifold_numbers, _uniform, make_manifold

_ENCODINGS = ("time", "rate", "mixed")
_RATE_MODES = ("shuffle", "bernoulli")
# Largest float32 below one: the +1e-7 in the standardisation is below half an ulp once a
# unit's range reaches 2, so y == 1 can happen in float32 and is clamped away.
_BELOW_ONE = float(np.nextafter(np.float32(1.0), np.float32(0.0)))


@jaxtyped(typechecker=beartype.beartype)
class RandmanSplit(eqx.Module):
    r"""A Randman dataset split into train and test samples (same manifolds for both).

    Spike rasters are batch-major `(batch, time, units)` with values in {0, 1}; labels are
    int32 class indices. Train and test batches have their own axis names because their
    sizes differ.

    **Fields:**

    - `train_x`, `test_x`: spike rasters.
    - `train_y`, `test_y`: class labels in `0..n_classes-1`.
    - `train_values`, `test_values`: the standardised manifold values $y \in [0, 1)$ that
      were encoded, `(batch, units)`.
    - `train_latents`, `test_latents`: the latent coordinates $x \in [0, 1)^D$ that were
      drawn, `(batch, manifold_dim)`.
    - `roles`: `(units,)` bool, `True` where a unit is rate-coded.
    - `p_effective`: the realised fraction of rate-coded units, $N_r / N$.
    - `n_classes`: number of classes.
    """

    train_x: Float[Array, "train_batch time units"]
    train_y: Int[Array, " train_batch"]
    test_x: Float[Array, "test_batch time units"]
    test_y: Int[Array, " test_batch"]
    train_values: Float[Array, "train_batch units"]
    test_values: Float[Array, "test_batch units"]
    train_latents: Float[Array, "train_batch dim"]
    test_latents: Float[Array, "test_batch dim"]
    roles: Bool[Array, " units"]
    p_effective: float = eqx.field(static=True)
    n_classes: int = eqx.field(static=True)


@jaxtyped(typechecker=beartype.beartype)
def randman(
    key: PRNGKeyArray,
    *,
    n_classes: int = 10,
    n_units: int = 20,
    n_steps: int = 50,
    manifold_dim: int = 1,
    alpha: float | int = 2.0,
    samples_per_class: int = 200,
    encoding: str = "time",
    p: float | int = 0.5,
    test_fraction: float | int = 0.2,
    rate_mode: str = "shuffle",
    rate_range: tuple[float | int, float | int] = (0.0, 1.0),
    shared_latents: bool = False,
    shared_permutation: bool = False,
    spectrum: str = "jax",
    dtype: DTypeLike = jnp.float32,
) -> RandmanSplit:
    r"""Spiking random-manifold classification data (Zenke & Vogels, 2021).

    Each class $c$ owns a smooth random manifold $M_c: [0,1)^D \to \mathbb{R}^N$
    ([`make_manifold`][]) and its own latents $x \sim U[0,1)^{S \times D}$. The values are
    standardised per class and unit over that class's samples,

    $$y = \frac{v - \min_s v}{\max_s v - \min_s v + 10^{-7}} \in [0, 1),$$

    and encoded over $T$ steps:

    - `"time"` (T-Randman): unit $i$ fires once, at step $\lfloor y_i T \rfloor$.
    - `"rate"` (R-Randman): unit $i$ fires $k_i = \lfloor y_i T \rfloor + 1 \in [1, T]$
      times, on a uniformly random $k_i$-subset of the steps drawn independently per
      (sample, unit). `shared_permutation=True` uses one subset order for every column, as
      Slax does; timing then leaks $y_i$.
    - `"mixed"` (unit-split AR-Randman): $N_r = \lfloor pN + \tfrac12 \rfloor$ units, a fixed
      random subset, are rate-coded and the rest time-coded; `p_effective` $= N_r/N$. With
      the same key, `p=0` equals `"time"` and `p=1` equals `"rate"` bit for bit.

    `rate_mode="bernoulli"` instead makes a rate unit spike at each step independently with
    probability $r_\min + (r_\max - r_\min)\, y_i$, `(r_min, r_max) = rate_range`.

    The $C S$ samples are shuffled across classes, then the first
    $C S - \lfloor f C S + \tfrac12 \rfloor$ form the train split and the rest the test split
    ($f$ = `test_fraction`). Everything is a deterministic function of `key`.

    Defaults (10 classes, 20 units, 50 steps, $D = 1$, $\alpha = 2$, 200 samples per class)
    give an easy task: a 20-128-10 LIF network trained with BPTT passes 90% test accuracy
    within seconds on two CPU cores, for every encoding. Raise `manifold_dim` or
    `n_classes` for harder tasks.

    In float32, $y$ is clamped below one and the spike step to $T - 1$, so rounding can
    never produce $y = 1$ or a step outside $0..T-1$.

    **Arguments:**

    - `key`: PRNG key; manifolds, latents, shuffle and spike placement derive from it.
    - `n_classes`: $C \ge 2$.
    - `n_units`: $N$, the embedding dimension (input units).
    - `n_steps`: $T$, time steps per sample.
    - `manifold_dim`: $D$, the latent dimension; larger is harder.
    - `alpha`: manifold smoothness; larger is smoother and easier.
    - `samples_per_class`: $S$.
    - `encoding`: `"time"`, `"rate"` or `"mixed"`.
    - `p`: rate-coded fraction for `"mixed"`, in [0, 1]; ignored otherwise.
    - `test_fraction`: fraction of samples in the test split, in (0, 1).
    - `rate_mode`: `"shuffle"` (exact counts) or `"bernoulli"`.
    - `rate_range`: `(r_min, r_max)` for `"bernoulli"`, with $0 \le r_\min \le r_\max \le 1$.
    - `shared_latents`: reuse one latent draw for every class (Slax parity).
    - `shared_permutation`: one spike order for all rate columns (Slax parity).
    - `spectrum`: manifold spectrum, `"jax"` (default) or `"numpy"`.
    - `dtype`: floating dtype of the spike rasters.

    **Returns:** a [`RandmanSplit`][].

    Zenke, F. & Vogels, T. P. (2021). The remarkable robustness of surrogate gradient
    learning for instilling complex function in spiking neural networks. *Neural
    Computation* 33(4), 899-925.
    """
    n_test = _validate(
        n_classes=n_classes,
        n_units=n_units,
        n_steps=n_steps,
        manifold_dim=manifold_dim,
        alpha=alpha,
        samples_per_class=samples_per_class,
        encoding=encoding,
        p=p,
        test_fraction=test_fraction,
        rate_mode=rate_mode,
        rate_range=rate_range,
        shared_permutation=shared_permutation,
        spectrum=spectrum,
        dtype=dtype,
    )
    n_rate = {"time": 0, "rate": n_units}.get(encoding, math.floor(p * n_units + 0.5))
    # The encoding never changes which keys are drawn, so manifolds, latents, shuffle and
    # noise coincide across encodings: this is what makes p=0/p=1 equal "time"/"rate".
    manifold_key, sample_key, shuffle_key, encode_key = jax.random.split(key, 4)
    class_key, roles_key = jax.random.split(manifold_key)
    latents, values, labels = _shuffled_values(
        class_key,
        sample_key,
        shuffle_key,
        n_classes=n_classes,
        n_units=n_units,
        manifold_dim=manifold_dim,
        alpha=alpha,
        samples_per_class=samples_per_class,
        shared_latents=shared_latents,
        spectrum=spectrum,
    )
    roles, spikes = _encode(
        roles_key,
        encode_key,
        values,
        jnp.asarray(n_rate, jnp.int32),
        any_rate=n_rate > 0,
        n_steps=n_steps,
        rate_mode=rate_mode,
        rate_range=rate_range,
        shared_permutation=shared_permutation,
    )
    spikes = spikes.astype(dtype)
    n_total = n_classes * samples_per_class
    n_train = n_total - n_test
    return RandmanSplit(
        train_x=spikes[:n_train],
        train_y=labels[:n_train],
        test_x=spikes[n_train:],
        test_y=labels[n_train:],
        train_values=values[:n_train],
        test_values=values[n_train:],
        train_latents=latents[:n_train],
        test_latents=latents[n_train:],
        roles=roles,
        p_effective=n_rate / n_units,
        n_classes=n_classes,
    )


# Two compiled stages: the values depend only on the manifold arguments, so every
# encoding of one task reuses the (slower to compile) first stage.
@functools.partial(
    jax.jit,
    static_argnames=(
        "n_classes",
        "n_units",
        "manifold_dim",
        "alpha",
        "samples_per_class",
        "shared_latents",
        "spectrum",
    ),
)
def _shuffled_values(
    class_key: PRNGKeyArray,
    sample_key: PRNGKeyArray,
    shuffle_key: PRNGKeyArray,
    *,
    n_classes: int,
    n_units: int,
    manifold_dim: int,
    alpha: float | int,
    samples_per_class: int,
    shared_latents: bool,
    spectrum: str,
) -> tuple[Float[Array, "batch dim"], Float[Array, "batch units"], Int[Array, " batch"]]:
    """Latents, standardised values and labels of all classes, shuffled together."""
    latents, values = _class_values(
        class_key,
        sample_key,
        n_classes=n_classes,
        n_units=n_units,
        manifold_dim=manifold_dim,
        alpha=alpha,
        samples_per_class=samples_per_class,
        shared_latents=shared_latents,
        spectrum=spectrum,
    )
    n_total = n_classes * samples_per_class
    labels = jnp.repeat(jnp.arange(n_classes, dtype=jnp.int32), samples_per_class)
    order = jax.random.permutation(shuffle_key, n_total)
    latents = latents.reshape(n_total, manifold_dim)[order]
    values = values.reshape(n_total, n_units)[order]
    return latents, values, labels[order]


def _class_values(
    class_key: PRNGKeyArray,
    sample_key: PRNGKeyArray,
    *,
    n_classes: int,
    n_units: int,
    manifold_dim: int,
    alpha: float | int,
    samples_per_class: int,
    shared_latents: bool,
    spectrum: str,
) -> tuple[Float[Array, "classes samples dim"], Float[Array, "classes samples units"]]:
    """Latents and per-class, per-unit min-max standardised manifold values."""

    def one_class(c: Int[Array, ""]) -> tuple[Array, Array]:
        manifold = make_manifold(
            jax.random.fold_in(class_key, c),
            embedding_dim=n_units,
            manifold_dim=manifold_dim,
            alpha=alpha,
            spectrum=spectrum,
        )
        latent_key = sample_key if shared_latents else jax.random.fold_in(sample_key, c)
        x = _uniform(latent_key, (samples_per_class, manifold_dim))
        v = manifold(x)
        low = jnp.min(v, axis=0)
        high = jnp.max(v, axis=0)
        y = (v - low) / (high - low + 1e-7)
        return x, jnp.minimum(y, _BELOW_ONE)

    return jax.vmap(one_class)(jnp.arange(n_classes))


@functools.partial(
    jax.jit,
    static_argnames=("any_rate", "n_steps", "rate_mode", "rate_range", "shared_permutation"),
)
def _encode(
    roles_key: PRNGKeyArray,
    encode_key: PRNGKeyArray,
    values: Float[Array, "batch units"],
    n_rate: Int[Array, ""],
    *,
    any_rate: bool,
    n_steps: int,
    rate_mode: str,
    rate_range: tuple[float | int, float | int],
    shared_permutation: bool,
) -> tuple[Bool[Array, " units"], Bool[Array, "batch time units"]]:
    """Draw the rate-coded unit subset, time-code every unit, then rate-code that subset.

    `n_rate` is traced so that every rate-coded fraction shares one compilation.
    """
    batch, units = values.shape
    # A fixed random subset of `n_rate` units is rate-coded.
    order = jax.random.permutation(roles_key, units)
    roles = jnp.zeros(units, dtype=bool).at[order].set(jnp.arange(units) < n_rate)

    # Float rounding can push y*T up to T for y just below one; the spec's range is 0..T-1.
    steps = jnp.minimum(jnp.floor(values * n_steps), n_steps - 1).astype(jnp.int32)
    time = jnp.arange(n_steps, dtype=jnp.int32)[None, :, None]
    time_spikes = time == steps[:, None, :]
    if not any_rate:
        return roles, time_spikes

    noise_shape = (1, n_steps, 1) if shared_permutation else (batch, n_steps, units)
    noise = _uniform(encode_key, noise_shape)
    if rate_mode == "shuffle":
        # The steps of rank < k in uniform noise are a uniformly random k-subset.
        rank = jnp.argsort(jnp.argsort(noise, axis=1), axis=1)
        rate_spikes = rank < (steps + 1)[:, None, :]
    else:
        r_min, r_max = rate_range
        rate_spikes = noise < r_min + (r_max - r_min) * values[:, None, :]
    return roles, jnp.where(roles, rate_spikes, time_spikes)


def _validate(
    *,
    n_classes: int,
    n_units: int,
    n_steps: int,
    manifold_dim: int,
    alpha: float | int,
    samples_per_class: int,
    encoding: str,
    p: float | int,
    test_fraction: float | int,
    rate_mode: str,
    rate_range: tuple[float | int, float | int],
    shared_permutation: bool,
    spectrum: str,
    dtype: DTypeLike,
) -> int:
    """Check every argument on Python values; return the number of test samples."""
    if n_classes < 2:
        raise ValueError(f"`n_classes` must be an integer >= 2, got {n_classes}.")
    for name, size in (
        ("n_units", n_units),
        ("n_steps", n_steps),
        ("manifold_dim", manifold_dim),
        ("samples_per_class", samples_per_class),
    ):
        if size < 1:
            raise ValueError(f"`{name}` must be a positive integer (>= 1), got {size}.")
    _check_manifold_numbers(alpha, 1e-3, 1000)
    if encoding not in _ENCODINGS:
        raise ValueError(f"`encoding` must be one of {_ENCODINGS}, got {encoding!r}.")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"`p` (rate-coded fraction) must lie in [0, 1], got {p}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"`test_fraction` must lie in the open interval (0, 1), got {test_fraction}."
        )
    if rate_mode not in _RATE_MODES:
        raise ValueError(f"`rate_mode` must be one of {_RATE_MODES}, got {rate_mode!r}.")
    r_min, r_max = rate_range
    if not 0.0 <= r_min <= r_max <= 1.0:
        raise ValueError(
            f"`rate_range` must be (r_min, r_max) with 0 <= r_min <= r_max <= 1, got {rate_range}."
        )
    if shared_permutation and rate_mode != "shuffle":
        raise ValueError(
            "`shared_permutation=True` only applies to `rate_mode='shuffle'`, "
            f"got rate_mode={rate_mode!r}; set shared_permutation=False."
        )
    if spectrum not in ("jax", "numpy"):
        raise ValueError(f"`spectrum` must be 'jax' or 'numpy', got {spectrum!r}.")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"`dtype` must be a floating dtype (e.g. jnp.float32), got {dtype}.")
    n_total = n_classes * samples_per_class
    n_test = math.floor(test_fraction * n_total + 0.5)
    if not 1 <= n_test <= n_total - 1:
        raise ValueError(
            f"`test_fraction={test_fraction}` gives {n_test} of {n_total} samples for the test "
            "split; both splits need at least one sample. Change `test_fraction` or raise "
            "`samples_per_class`."
        )
    return n_test
