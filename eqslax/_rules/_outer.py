r"""Weight gradients kept as their factors until the batch is summed.

A layer-local rule's weight gradient at one step is a sum of products of a postsynaptic
factor $p$ (the learning signal times a local derivative) and a presynaptic one $a$ (an
input trace), $G = p \otimes a$. Summed over the samples $b$ of a batch (and the output
positions of a convolution), $\sum_b p_b \otimes a_b = P^\top A$ is one matrix product;
written per sample and summed afterwards it costs a $(B, n, n_{in})$ array per step.
[`eqslax.layerwise.Outer`][] holds the factors, and `batch_sum` contracts them.
"""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float, PyTree


class Outer(eqx.Module):
    r"""A weight gradient kept as its factors: $G = \sum_s p_s \otimes a_s$, summed over
    the leading axes $s$ that `post` and `pre` share (none for one sample at one
    position; a convolution's output positions; the samples of a batch once the step is
    `jax.vmap`ped).

    `pre` is either a vector per $s$, `(*lead, n_in)`, so that the sum is one matrix
    product $P^\top A$, or a row per unit, `(*lead, n, n_in)` (an OSTL eligibility or
    per-neuron leaks), $G_{ij} = \sum_s p_{s,i} a_{s,ij}$. `dense()` is $G$ reshaped to
    `shape`, the parameter's own shape.

    **Fields:** `post` $p$ `(*lead, n)`, `pre` $a$, `shape` (static).
    """

    post: Float[Array, "*lead n"]
    pre: Float[Array, "*lead n_in"] | Float[Array, "*lead n n_in"]
    shape: tuple[int, ...] = eqx.field(static=True)

    def dense(self) -> Array:
        """$G$, summed over the leading axes, in the parameter's shape."""
        if self.post.ndim == 1:  # one term: the product itself
            pre = self.pre if self.pre.ndim == 2 else self.pre[None, :]
            return (self.post[:, None] * pre).reshape(self.shape)
        n = self.post.shape[-1]
        post = self.post.reshape(-1, n)
        if self.pre.ndim == self.post.ndim:
            gradient = post.T @ self.pre.reshape(post.shape[0], -1)
        else:
            # A product and a sum, which XLA fuses into one pass over the rows (on CPU
            # faster than the same contraction as a batched `dot`).
            rows = self.pre.reshape(post.shape[0], n, -1)
            gradient = jnp.sum(post[:, :, None] * rows, axis=0)
        return gradient.reshape(self.shape)


def is_outer(node) -> bool:
    return isinstance(node, Outer)


def dense(grads: PyTree) -> PyTree:
    """`grads` with every [`eqslax.layerwise.Outer`][] replaced by its dense gradient."""
    return jtu.tree_map(lambda g: g.dense() if is_outer(g) else g, grads, is_leaf=is_outer)


def batch_sum(grads: PyTree, weights: Array | None = None) -> PyTree:
    r"""$\sum_b w_b\, g_b$ over the leading (batch) axis of per-sample gradients `grads`
    (`weights` `(batch,)`, or all ones when `None`). An [`eqslax.layerwise.Outer`][] is
    contracted as one product: $\sum_b w_b\, p_b \otimes a_b$ with $w$ folded into $p$."""

    def one(g):
        if is_outer(g):
            post = g.post if weights is None else _along(weights, g.post) * g.post
            return Outer(post, g.pre, g.shape).dense()
        return jnp.sum(g, axis=0) if weights is None else jnp.tensordot(weights, g, 1)

    return jtu.tree_map(one, grads, is_leaf=is_outer)


def _along(weights: Array, like: Array) -> Array:
    """`weights` `(batch,)` shaped to broadcast against `like` `(batch, ...)`."""
    return weights.reshape(weights.shape + (1,) * (like.ndim - 1))
