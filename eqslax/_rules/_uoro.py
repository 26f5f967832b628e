"""Unbiased online recurrent optimisation (Tallec & Ollivier 2017): a rank-one estimate
of RTRL's influence matrix."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray

from ._online import AbstractOnlineRule, split_trainable
from ._rtrl import flat_step


class UOROTraces(eqx.Module):
    r"""The rank-one influence estimate $\tilde M_t = \tilde h_t \tilde\theta_t^\top$ and
    the key of the next step's noise."""

    state_vector: Float[Array, " state"]
    param_vector: Float[Array, " params"]
    key: PRNGKeyArray


def _fingerprint(x: Array) -> Array:
    """A `uint32` that differs between inputs (the bits of a weighted sum)."""
    weights = 1.0 + jnp.arange(x.size, dtype=jnp.float32)
    total = jnp.sum(jnp.ravel(x).astype(jnp.float32) * weights)
    return jax.lax.bitcast_convert_type(total, jnp.uint32)


class UORO(AbstractOnlineRule):
    r"""UORO: RTRL with the influence $M_t = d h_t / d\theta$ replaced by a rank-one
    estimate $\tilde h_t \tilde\theta_t^\top$ whose expectation over the noise is
    $M_t$ (Tallec & Ollivier 2017). With $D_t = \partial f_h/\partial h$,
    $I_t = \partial f_h/\partial\theta$ and signs $\nu_t \in \{\pm 1\}^S$ drawn
    afresh each step,

    $$
    \tilde h_t = \rho_0 D_t \tilde h_{t-1} + \rho_1 \nu_t, \qquad
    \tilde\theta_t = \tilde\theta_{t-1} / \rho_0 + I_t^\top \nu_t / \rho_1,
    $$

    $$
    \rho_0 = \sqrt{\frac{\lVert\tilde\theta_{t-1}\rVert + \epsilon}
        {\lVert D_t\tilde h_{t-1}\rVert + \epsilon}}, \qquad
    \rho_1 = \sqrt{\frac{\lVert I_t^\top\nu_t\rVert + \epsilon}{\lVert\nu_t\rVert + \epsilon}}
    $$

    ($\rho_0$, $\rho_1$ balance the two factors' norms, which minimises the
    variance; $\rho_1$ is even in $\nu_t$, so the cross terms still vanish in
    expectation). The step gradient is
    $\partial\ell/\partial y_t\,(\partial f_y/\partial h\,\tilde h_{t-1}\,
    \tilde\theta_{t-1}^\top + \partial f_y/\partial\theta)$: one JVP and one VJP of
    the step, so memory $O(S + P)$ and compute a few forward passes per step, against
    RTRL's $O(SP)$. Averaged over noise draws the gradient converges to RTRL's (hence
    to BPTT's for a per-step loss), at the rate $1/\sqrt{\text{draws}}$; one draw is
    noisy, which is the price of its cost.

    The noise of a sample comes from `key`, split at every step and folded with the
    step's input, so samples with different inputs draw different signs. The same
    `key` and data give the same noise in every epoch; give a new `key` to redraw.
    The estimate starts at $\tilde M_0 = 0$, so a dependence of the initial state on
    a parameter (`Izhikevich(train_parameters=True)`) is not followed.
    """

    key: PRNGKeyArray
    epsilon: float = eqx.field(static=True, default=1e-7)

    def __init__(self, key: PRNGKeyArray | None = None, epsilon: float = 1e-7):
        self.key = jax.random.key(0) if key is None else key
        if not epsilon > 0:
            raise ValueError(f"UORO: `epsilon` must be positive, got {epsilon!r}.")
        self.epsilon = epsilon

    def init_traces(self, model, state):
        params, _ = split_trainable(model)
        flat_p = ravel_pytree(params)[0]
        flat_h = ravel_pytree(state)[0]
        return UOROTraces(jnp.zeros_like(flat_h), jnp.zeros_like(flat_p), self.key)

    def step(self, model, state, traces, x, label, loss):
        f, flat_h, flat_p, unravel_h, unravel_p = flat_step(model, state, x)

        h_tilde, theta_tilde = traces.state_vector, traces.param_vector
        # one linearisation serves the JVP along the trace and, transposed, both VJPs
        (h_new, y), linear = jax.linearize(f, flat_h, flat_p)
        d_h, dy_h = linear(h_tilde, jnp.zeros_like(flat_p))
        pullback = jax.linear_transpose(linear, flat_h, flat_p)
        value, g_y = jax.value_and_grad(lambda y: loss.step(y, label))(y)
        key, noise_key = jax.random.split(traces.key)
        noise_key = jax.random.fold_in(noise_key, _fingerprint(x))
        nu = jax.random.rademacher(noise_key, flat_h.shape, flat_h.dtype)
        _, direct = pullback((jnp.zeros_like(h_new), g_y))
        _, nu_i = pullback((nu, jnp.zeros_like(y)))
        grad = jnp.vdot(g_y, dy_h) * theta_tilde + direct
        eps = self.epsilon
        rho0 = jnp.sqrt((jnp.linalg.norm(theta_tilde) + eps) / (jnp.linalg.norm(d_h) + eps))
        rho1 = jnp.sqrt((jnp.linalg.norm(nu_i) + eps) / (jnp.linalg.norm(nu) + eps))
        new_traces = UOROTraces(rho0 * d_h + rho1 * nu, theta_tilde / rho0 + nu_i / rho1, key)
        return unravel_h(h_new), new_traces, unravel_p(grad), y, value
