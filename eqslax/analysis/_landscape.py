r"""Loss landscapes: the loss along one or two directions in parameter space
(Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of Neural
Nets").

$$
f(\alpha) = L(\theta^* + \alpha\,\delta), \qquad
f(\alpha, \beta) = L(\theta^* + \alpha\,\delta + \beta\,\eta)
$$

A direction is a PyTree shaped like `eqslax.trainable(model)`: a filter-normalised
random one (`random_direction`), the difference of two models
(`direction_between`) or a principal component of training trajectories
(`eqslax.analysis.trajectory_pca`).
"""

from collections.abc import Callable

import beartype
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree, jaxtyped

from .._parameters import trainable, trainable_mask
from ._similarity import check_matching, leaves_by_path


def _row_norms(x: Array) -> Array:
    """Frobenius norm of every filter (slice along the leading, output-unit axis)."""
    return jnp.sqrt(jnp.sum(x * x, axis=tuple(range(1, x.ndim)), keepdims=True))


def _rescale(d: Array, norm_d: Array, norm_theta: Array) -> Array:
    # The floor only matters for an all-zero draw; elsewhere the ratio is exact.
    return d * (norm_theta / jnp.maximum(norm_d, jnp.finfo(d.dtype).tiny))


def _filter_normalised(theta: Array, d: Array, ignore_1d: bool) -> Array:
    if theta.ndim <= 1:
        if ignore_1d:
            return jnp.zeros_like(theta)
        return _rescale(d, jnp.linalg.norm(jnp.ravel(d)), jnp.linalg.norm(jnp.ravel(theta)))
    return _rescale(d, _row_norms(d), _row_norms(theta))


def _params(model: PyTree, owner: str) -> PyTree:
    params = trainable(model)
    if not jtu.tree_leaves(params):
        raise ValueError(f"{owner}: `model` has no trainable parameters.")
    return params


@jaxtyped(typechecker=beartype.beartype)
def random_direction(model: PyTree, key: PRNGKeyArray, *, ignore_1d: bool = True) -> PyTree:
    r"""A Gaussian direction $d \sim \mathcal N(0, I)$ rescaled filter by filter
    to the norms of the model's weights:

    $$
    d_{f} \leftarrow d_{f}\,\frac{\lVert\theta_{f}\rVert}{\lVert d_{f}\rVert}
    $$

    A *filter* is a slice along the leading axis of a weight with two or more axes: a
    row (one output neuron) of an `eqx.nn.Linear` weight `(out, in)`, an output
    channel of a convolution kernel.

    **Arguments:**

    - `model`: the trainable leaves (`eqslax.trainable(model)`) get a direction.
    - `key`: PRNG key for one Gaussian draw over all trainable entries (in
      `jax.tree_util` leaf order).
    - `ignore_1d`: leaves with at most one axis (biases, per-neuron leaks or
      thresholds when trained) get direction zero (default, as Li et al.); with
      `False` they get a Gaussian draw rescaled to the leaf's norm as a whole.

    **Returns:** a PyTree shaped like `eqslax.trainable(model)`.
    """
    return _draw_direction(_params(model, "random_direction"), key, ignore_1d)


@eqx.filter_jit
def _draw_direction(params: PyTree, key: PRNGKeyArray, ignore_1d: bool) -> PyTree:
    leaves, treedef = jtu.tree_flatten(params)
    sizes = [leaf.size for leaf in leaves]
    # One draw for the whole model, cut into leaves: a single PRNG call compiles fast.
    dtype = jnp.result_type(*leaves)
    pieces = jnp.split(jax.random.normal(key, (sum(sizes),), dtype), np.cumsum(sizes)[:-1])
    directions = [
        _filter_normalised(leaf, piece.reshape(leaf.shape).astype(leaf.dtype), ignore_1d)
        for leaf, piece in zip(leaves, pieces)
    ]
    return jtu.tree_unflatten(treedef, directions)


@jaxtyped(typechecker=beartype.beartype)
def direction_between(model_a: PyTree, model_b: PyTree) -> PyTree:
    r"""$\theta_b - \theta_a$ over the trainable leaves. With it,
    `loss_line(f, model_a, direction_between(model_a, model_b), alphas)` is the linear
    interpolation $L((1-\alpha)\theta_a + \alpha\theta_b)$."""
    params_a = _params(model_a, "direction_between")
    params_b = _params(model_b, "direction_between")
    check_matching(
        leaves_by_path(params_a),
        leaves_by_path(params_b),
        "model_a",
        "model_b",
        "direction_between",
    )
    return jtu.tree_map(lambda a, b: b - a, params_a, params_b)


def _check_direction(direction: PyTree, params: PyTree, name: str, owner: str) -> None:
    check_matching(leaves_by_path(direction), leaves_by_path(params), name, "model", owner)
    if jtu.tree_structure(direction) != jtu.tree_structure(params):
        raise ValueError(
            f"{owner}: `{name}` must be shaped like eqslax.trainable(model), got a PyTree of "
            f"structure {jtu.tree_structure(direction)}."
        )


def _check_axis(values, name: str, owner: str) -> Array:
    values = jnp.asarray(values)
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValueError(
            f"{owner}: `{name}` must be a non-empty 1-D array of coefficients, got shape "
            f"{values.shape}."
        )
    return values


def _check_chunk(chunk_size, owner: str) -> None:
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0
    ):
        raise ValueError(
            f"{owner}: `chunk_size` must be None or a positive int, got {chunk_size!r}."
        )


@eqx.filter_jit
def _losses_at(loss_of_model, model, directions, points, chunk_size):
    """`loss_of_model(θ + Σ_k points[:, k] d_k)` for every row of `points`."""
    params, static = eqx.partition(model, trainable_mask(model))

    def at(point):
        def shift(p, *ds):
            return (p + sum(c * d for c, d in zip(point, ds))).astype(p.dtype)

        shifted = jtu.tree_map(shift, params, *directions)
        value = loss_of_model(eqx.combine(shifted, static))
        if jnp.shape(value) != ():
            raise ValueError(
                f"loss landscape: `loss_of_model` must return a scalar, got shape "
                f"{jnp.shape(value)}."
            )
        return value

    if chunk_size is None:
        return jax.vmap(at)(points)
    return jax.lax.map(at, points, batch_size=chunk_size)


@jaxtyped(typechecker=beartype.beartype)
def loss_line(
    loss_of_model: Callable[[PyTree], Array],
    model: PyTree,
    direction: PyTree,
    alphas: Float[ArrayLike, " alphas"],
    *,
    chunk_size: int | None = None,
) -> Float[Array, " alphas"]:
    r"""$f(\alpha_i) = L(\theta^* + \alpha_i\,\delta)$ for each `alphas[i]`.

    **Arguments:**

    - `loss_of_model`: `model -> scalar`, deterministic (a fixed batch and key),
      e.g. `lambda m: sequence_loss(m, loss, xs, ys)[0]`.
    - `model`: the centre $\theta^*$.
    - `direction`: $\delta$, shaped like `eqslax.trainable(model)`.
    - `alphas`: the coefficients, 1-D.
    - `chunk_size`: `None` evaluates every point at once with `jax.vmap`; an int
      evaluates that many at a time (`jax.lax.map`), bounding memory.
    """
    owner = "loss_line"
    _check_direction(direction, _params(model, owner), "direction", owner)
    alphas = _check_axis(alphas, "alphas", owner)
    _check_chunk(chunk_size, owner)
    return _losses_at(loss_of_model, model, (direction,), alphas[:, None], chunk_size)


@jaxtyped(typechecker=beartype.beartype)
def loss_surface(
    loss_of_model: Callable[[PyTree], Array],
    model: PyTree,
    direction_1: PyTree,
    direction_2: PyTree,
    alphas: Float[ArrayLike, " alphas"],
    betas: Float[ArrayLike, " betas"],
    *,
    chunk_size: int | None = None,
) -> Float[Array, "alphas betas"]:
    r"""$f(\alpha_i, \beta_j) = L(\theta^* + \alpha_i\,\delta + \beta_j\,\eta)$ on
    the grid `alphas` × `betas`; `surface[i, j]` belongs to `(alphas[i],
    betas[j])` (`indexing="ij"`; transpose it for `matplotlib.contour`).

    Arguments as `loss_line`; `chunk_size` counts grid points (Slax uses 100).
    """
    owner = "loss_surface"
    params = _params(model, owner)
    _check_direction(direction_1, params, "direction_1", owner)
    _check_direction(direction_2, params, "direction_2", owner)
    alphas = _check_axis(alphas, "alphas", owner)
    betas = _check_axis(betas, "betas", owner)
    _check_chunk(chunk_size, owner)
    grid_a, grid_b = jnp.meshgrid(alphas, betas, indexing="ij")
    points = jnp.stack([grid_a.ravel(), grid_b.ravel()], axis=1)
    values = _losses_at(loss_of_model, model, (direction_1, direction_2), points, chunk_size)
    return values.reshape(alphas.shape[0], betas.shape[0])
