"""Non-finite values: the check inside every training step, and the host-side search
that names the first offending leaf or data index."""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, Bool, PyTree


def any_nonfinite(*trees: PyTree) -> Bool[Array, ""]:
    """Whether any floating leaf of `trees` holds a NaN or an infinity: one reduction
    per leaf, traceable (used inside every jitted training step)."""
    leaves = [x for t in trees for x in jtu.tree_leaves(eqx.filter(t, eqx.is_inexact_array))]
    if not leaves:
        return jnp.asarray(False)
    return jnp.logical_not(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])))


def first_nonfinite(tree: PyTree) -> str | None:
    """The tree path (`jax.tree_util.keystr`) of the first floating leaf of `tree`
    that holds a NaN or an infinity, or `None` when all are finite (host side)."""
    leaves = jtu.tree_leaves_with_path(eqx.filter(tree, eqx.is_inexact_array))
    for path, leaf in leaves:
        if not bool(jnp.all(jnp.isfinite(leaf))):
            return jtu.keystr(path)
    return None


def check_finite(x, name: str, owner: str) -> None:
    """Raise `ValueError` naming `name` and the first index of a NaN or infinity."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return
    bad = jnp.logical_not(jnp.isfinite(x))
    if not bool(jnp.any(bad)):
        return
    first = np.unravel_index(int(jnp.argmax(bad.reshape(-1))), x.shape)
    index = tuple(int(i) for i in first)
    count = int(jnp.sum(bad))
    raise ValueError(
        f"{owner}: `{name}` holds {count} non-finite value(s) (NaN or inf); the first is "
        f"{float(x[index])} at index {index}. Clean or mask the data before training."
    )
