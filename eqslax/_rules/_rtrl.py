"""Real-time recurrent learning (Williams & Zipser 1989): exact, forward in time."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from ._online import AbstractOnlineRule, split_trainable


class RTRLTraces(eqx.Module):
    """The influence matrix :math:`M_t = dh_t/d\\theta` (state size x parameter count)."""

    influence: Float[Array, "state params"]


class RTRL(AbstractOnlineRule):
    r"""Exact RTRL over a whole model, any architecture the core can build.

    With the model's state :math:`h` and trainable parameters :math:`\theta` flattened,
    one step :math:`(h_t, y_t) = f(h_{t-1}, x_t; \theta)` and

    .. math::
        M_t = \frac{\partial f_h}{\partial h} M_{t-1} + \frac{\partial f_h}{\partial\theta},
        \qquad
        \nabla_\theta \ell_t = \frac{\partial \ell}{\partial y_t}\Big(
            \frac{\partial f_y}{\partial h} M_{t-1} + \frac{\partial f_y}{\partial\theta}\Big)

    Both brackets are forward-mode JVPs of the step along the tangents
    :math:`(M_{t-1} e_p, e_p)`, one per parameter :math:`p`, evaluated in chunks of
    ``chunk_size`` columns to bound memory. The influence starts at
    :math:`M_0 = \partial h_0/\partial\theta` (nonzero when the initial state depends on a
    trainable parameter), so the gradient through :math:`h_0` is kept as in BPTT.
    Memory :math:`O(SP)` per sample, independent of the sequence length; compute
    :math:`O(P)` JVPs per step. With a per-step loss and no mid-sequence updates,
    ``grad`` equals BPTT's exactly.
    """

    chunk_size: int = eqx.field(static=True, default=512)

    def init_traces(self, model, state):
        r""":math:`M_0 = \partial h_0 / \partial\theta`: zero unless the initial state
        depends on a parameter (``Izhikevich`` starts at :math:`v_0 = c, u_0 = bc`)."""
        params, static = split_trainable(model)
        flat_p, unravel_p = ravel_pytree(params)
        flat_state = ravel_pytree(state)[0]

        def initial(p):
            h0 = eqx.combine(unravel_p(p), static).init_state()
            # cast to the carried dtypes, as `initial_state` does
            h0 = jax.tree_util.tree_map(lambda h, s: jnp.asarray(h, s.dtype), h0, state)
            return ravel_pytree(h0)[0]

        if not flat_p.size:
            return RTRLTraces(jnp.zeros((flat_state.size, 0), flat_state.dtype))
        return RTRLTraces(jax.jacfwd(initial)(flat_p).astype(flat_state.dtype))

    def step(self, model, state, traces, x, label, loss):
        params, static = split_trainable(model)
        flat_p, unravel_p = ravel_pytree(params)
        flat_h, unravel_h = ravel_pytree(state)

        def f(h, p):
            new_state, y = eqx.combine(unravel_p(p), static)(unravel_h(h), x)
            return ravel_pytree(new_state)[0], y

        (h_new, y), linear = jax.linearize(f, flat_h, flat_p)
        influence, dy = self._propagate(linear, traces.influence, flat_p)
        value, g_y = jax.value_and_grad(lambda y: loss.step(y, label))(y)
        grad = jnp.tensordot(g_y, dy, axes=g_y.ndim)
        return unravel_h(h_new), RTRLTraces(influence), unravel_p(grad), y, value

    def _propagate(self, linear, influence, flat_p):
        """Columns ``p`` of ``[M_t; dy/dθ]`` = ``linear(M_{t-1} e_p, e_p)``, in chunks."""
        n = flat_p.size
        size = min(self.chunk_size, n)
        chunks = -(-n // size)
        index = jnp.arange(chunks * size).reshape(chunks, size)  # padded with p >= n

        def column(p):
            e = jax.nn.one_hot(p, n, dtype=flat_p.dtype)  # zero for padding
            m = jnp.where(p < n, influence[:, jnp.minimum(p, n - 1)], 0.0)
            return linear(m, e)

        dh, dy = jax.lax.map(jax.vmap(column), index)
        dh = dh.reshape(-1, *dh.shape[2:])[:n]
        dy = dy.reshape(-1, *dy.shape[2:])[:n]
        return jnp.moveaxis(dh, 0, -1), jnp.moveaxis(dy, 0, -1)
