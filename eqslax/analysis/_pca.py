r"""Training trajectories in the plane of their two principal components
(Li et al. 2018, §7).

For checkpoints $\theta_i$ of one or several trajectories and a reference end
point $\theta_n$, the rows of $M$ are $\theta_i - \theta_n$. The two
leading right singular vectors $u_1, u_2$ of $M - \bar M$ (mean-centred, as
PCA) span the plane; checkpoint $i$ sits at
$(\langle\theta_i - \theta_n, u_1\rangle, \langle\theta_i - \theta_n, u_2\rangle)$,
so the reference is the origin and `loss_surface` around $\theta_n$ along
$u_1, u_2$ is the landscape under the trajectories.
"""

from collections.abc import Sequence

import beartype
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PyTree, jaxtyped

from .._parameters import trainable


@jaxtyped(typechecker=beartype.beartype)
def flatten_params(model: PyTree) -> Float[Array, " params"]:
    """The trainable leaves of `model` (`eqslax.trainable`) as one vector, in
    `jax.flatten_util.ravel_pytree` order."""
    vector, _ = ravel_pytree(trainable(model))
    if vector.size == 0:
        raise ValueError("flatten_params: `model` has no trainable parameters.")
    return vector


@jaxtyped(typechecker=beartype.beartype)
def unflatten_params(vector: Float[ArrayLike, " params"], model: PyTree) -> PyTree:
    """The inverse of `flatten_params`: a PyTree shaped like
    `eqslax.trainable(model)` holding `vector`."""
    template, unravel = ravel_pytree(trainable(model))
    vector = jnp.asarray(vector)
    if vector.shape != template.shape:
        raise ValueError(
            f"unflatten_params: `vector` must have shape {template.shape} (the trainable "
            f"parameters of `model`), got {vector.shape}."
        )
    return unravel(vector)


class TrajectoryPCA(eqx.Module):
    """The PCA plane of training trajectories.

    - `components`: `(2, params)`, the unit directions $u_1, u_2$ as flat
      vectors (`flatten_params` order), each signed so that its largest-magnitude
      entry is positive.
    - `directions`: the same as two PyTrees shaped like `eqslax.trainable(model)`,
      ready for `loss_surface`; `None` when no model was given to shape them.
    - `explained_variance_ratio`: $s_k^2 / \\sum_j s_j^2$ for $k = 1, 2$.
    - `coordinates`: one `(steps, 2)` array per trajectory.
    """

    components: Float[Array, "2 params"]
    directions: tuple[PyTree, PyTree] | None
    explained_variance_ratio: Float[Array, "2"]
    coordinates: tuple[Float[Array, "_steps 2"], ...]


def _is_vectors(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "ndim")


def _split_trajectories(trajectories) -> list:
    """One trajectory (models or a `(steps, params)` array) or several, as a list."""
    if _is_vectors(trajectories):
        return [trajectories]
    if not isinstance(trajectories, Sequence) or len(trajectories) == 0:
        raise TypeError(
            "trajectory_pca: `trajectories` must be a list of models, a (steps, params) "
            f"array, or a list of those; got {type(trajectories).__name__}."
        )
    first = trajectories[0]
    several = (_is_vectors(first) and first.ndim == 2) or (
        isinstance(first, Sequence) and not _is_vectors(first)
    )
    return list(trajectories) if several else [trajectories]


def _as_matrix(trajectory, index: int) -> tuple[Array, PyTree | None]:
    """`(steps, params)` and, if the trajectory holds models, its first model."""
    if _is_vectors(trajectory):
        matrix = jnp.asarray(trajectory)
        if matrix.ndim != 2 or not jnp.issubdtype(matrix.dtype, jnp.floating):
            raise ValueError(
                f"trajectory_pca: trajectory {index} must be a float (steps, params) array, "
                f"got {matrix.dtype} of shape {matrix.shape}."
            )
        return matrix, None
    if len(trajectory) == 0:
        raise ValueError(f"trajectory_pca: trajectory {index} is empty.")
    return jnp.stack([flatten_params(model) for model in trajectory]), trajectory[0]


def _as_vector(reference) -> Array:
    if _is_vectors(reference):
        return jnp.asarray(reference)
    return flatten_params(reference)


@eqx.filter_jit
def _principal_plane(differences: tuple[Array, ...], keep: Array, center: bool):
    """Leading two right singular vectors of the kept rows (centred if `center`),
    their variance ratios, and every checkpoint's coordinates."""
    rows = jnp.concatenate(differences)
    weights = keep[:, None].astype(rows.dtype)
    if center:
        mean = jnp.sum(weights * rows, axis=0) / jnp.sum(weights)
        rows = rows - mean
    # Zero rows change neither the right singular vectors nor the singular values.
    _, singular, vt = jnp.linalg.svd(weights * rows, full_matrices=False)
    components = vt[:2]
    largest = jnp.take_along_axis(
        components, jnp.argmax(jnp.abs(components), axis=1)[:, None], axis=1
    )
    components = components * jnp.where(largest < 0, -1.0, 1.0).astype(components.dtype)
    ratios = singular[:2] ** 2 / jnp.sum(singular**2)
    return components, ratios, tuple(d @ components.T for d in differences)


def trajectory_pca(
    trajectories,
    reference=None,
    *,
    center: bool = True,
    model: PyTree | None = None,
) -> TrajectoryPCA:
    r"""Fit the PCA plane of one or several training trajectories.

    **Arguments:**

    - `trajectories`: one trajectory or a list of them; a trajectory is a list of
      models (checkpoints in order) or a `(steps, params)` array of
      `flatten_params` vectors.
    - `reference`: the end point $\theta_n$ (a model or a flat vector); default
      the last checkpoint of the first trajectory. Several rules' trajectories are
      compared on one plane by fitting them together around a common reference (e.g.
      BPTT's final model).
    - `center`: subtract the mean row before the SVD (PCA, default) or not.
    - `model`: a template to shape `directions` when the trajectories are arrays.

    Rows equal to the reference carry no direction and are left out of the fit (the
    $i = 0..n-1$ of Li et al.); every checkpoint still gets coordinates. Since
    $u_1, u_2$ are orthonormal, these coordinates are also the least-squares
    coefficients of $\theta_i - \theta_n$ on $[u_1\ u_2]$.
    """
    owner = "trajectory_pca"
    pairs = [_as_matrix(t, k) for k, t in enumerate(_split_trajectories(trajectories))]
    matrices = [m for m, _ in pairs]
    size = matrices[0].shape[1]
    for k, matrix in enumerate(matrices):
        if matrix.shape[1] != size:
            raise ValueError(
                f"{owner}: trajectory {k} has {matrix.shape[1]} parameters, trajectory 0 has "
                f"{size}; all checkpoints must come from the same architecture."
            )
    if model is None:
        model = next((m for _, m in pairs if m is not None), None)
        if model is None and reference is not None and not _is_vectors(reference):
            model = reference
    end = matrices[0][-1] if reference is None else _as_vector(reference)
    if end.shape != (size,):
        raise ValueError(
            f"{owner}: `reference` must have {size} parameters, got shape {end.shape}."
        )
    if size < 2:
        raise ValueError(f"{owner}: needs at least 2 parameters, got {size}.")
    differences = tuple(m - end for m in matrices)
    # Rows equal to the reference are masked rather than dropped, to keep shapes static.
    keep = np.any(np.concatenate([np.asarray(d) for d in differences]) != 0, axis=1)
    if keep.sum() < 2:
        raise ValueError(
            f"{owner}: needs at least 2 checkpoints that differ from the reference, got "
            f"{keep.sum()}."
        )
    components, ratios, coordinates = _principal_plane(differences, jnp.asarray(keep), center)
    if not np.all(np.isfinite(np.asarray(ratios))):
        raise ValueError(f"{owner}: the checkpoints do not vary; there is no plane to fit.")
    directions = None
    if model is not None:
        directions = (
            unflatten_params(components[0], model),
            unflatten_params(components[1], model),
        )
    return TrajectoryPCA(
        components=components,
        directions=directions,
        explained_variance_ratio=ratios,
        coordinates=coordinates,
    )


@jaxtyped(typechecker=beartype.beartype)
def trajectory_grid(
    coordinates: Float[ArrayLike, "_steps 2"] | Sequence[Float[ArrayLike, "_steps 2"]],
    num: int = 100,
    margin: float = 1.05,
) -> tuple[Float[Array, " num"], Float[Array, " num"]]:
    r"""A symmetric grid that holds every trajectory:
    `linspace(-m·max|x|, m·max|x|, num)` for each axis, with `m = margin`.
    Returns `(alphas, betas)` for `loss_surface`."""
    if num < 2:
        raise ValueError(f"trajectory_grid: `num` must be at least 2, got {num}.")
    if not margin > 0:
        raise ValueError(f"trajectory_grid: `margin` must be positive, got {margin}.")
    if _is_vectors(coordinates):
        coordinates = [coordinates]
    points = jnp.concatenate([jnp.asarray(c) for c in coordinates])
    extent = margin * jnp.max(jnp.abs(points), axis=0)
    extent = jnp.where(extent > 0, extent, 1.0)
    return tuple(jnp.linspace(-e, e, num) for e in extent)
