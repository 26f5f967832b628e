r"""UORO (Tallec & Ollivier 2017): $\mathbb E[\tilde h_t \tilde\theta_t^\top] = M_t$, so
the mean gradient over noise draws is RTRL's (BPTT's), with error $\propto 1/\sqrt K$."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import eqslax

LOSS = eqslax.PerStep()
DRAWS = 4096


def recurrent_model(key):
    """Linear -> LIF with a `cat` self-edge -> Linear -> LI: a state Jacobian with
    off-diagonal entries, which every diagonal rule misses."""
    k = jax.random.split(key, 3)
    layers = [eqx.nn.Linear(3, 4, key=k[0]), eqslax.LIF(4, decay=0.8)]
    layers += [eqx.nn.Linear(4, 2, key=k[1]), eqslax.LI(2)]
    model = eqslax.Connect(layers, cat={1: [1]}, key=k[2])
    return jax.tree_util.tree_map(
        lambda w: w * 3 if eqx.is_inexact_array(w) and w.ndim == 2 else w, model
    )


@pytest.fixture(scope="module")
def draws():
    k = jax.random.split(jax.random.key(1), 2)
    model = recurrent_model(k[0])
    xs = (jax.random.uniform(k[1], (1, 8, 3)) < 0.5).astype(jnp.float64)
    ys = jnp.array([1])
    reference = ravel_pytree(eqslax.BPTT().grad(model, LOSS, xs, ys))[0]

    @eqx.filter_jit
    def gradients(keys):
        def one(key):
            grads, _, _ = eqslax.UORO(key=key).update(model, None, LOSS, xs, ys)
            return ravel_pytree(grads)[0]

        return jax.vmap(one)(keys)

    samples = gradients(jax.random.split(jax.random.key(7), DRAWS))
    one = ravel_pytree(eqslax.UORO(key=jax.random.key(3)).grad(model, LOSS, xs, ys))[0]
    return (
        np.asarray(samples),
        np.asarray(reference),
        np.asarray(one),
        np.asarray(gradients(jax.random.key(3)[None])[0]),
    )


def test_mean_over_draws_is_the_exact_gradient(draws):
    """Every component of the mean is within 5 standard errors of BPTT's gradient."""
    samples, reference, _, _ = draws
    mean = samples.mean(0)
    stderr = samples.std(0) / np.sqrt(len(samples))
    assert np.linalg.norm(reference) > 0
    live = stderr > 0  # a parameter the noise does not reach is exact
    np.testing.assert_allclose(mean[~live], reference[~live], rtol=1e-10, atol=1e-13)
    assert np.max(np.abs(mean[live] - reference[live]) / stderr[live]) < 5.0
    relative = np.linalg.norm(mean - reference) / np.linalg.norm(reference)
    assert relative < 0.06  # measured 0.025 with 4096 draws


def test_error_falls_like_one_over_root_draws(draws):
    """Mean error of blocks of K draws against BPTT: 16 times the draws, a quarter of
    the error (within a factor of 2)."""
    samples, reference, _, _ = draws

    def error(k):
        blocks = samples[: (len(samples) // k) * k].reshape(-1, k, samples.shape[1])
        return np.mean(np.linalg.norm(blocks.mean(1) - reference, axis=1))

    ratio = error(16) / error(256)
    assert 2.0 < ratio < 8.0, ratio


def test_one_draw_is_an_estimate_and_grad_is_update(draws):
    """One draw points the right way but is not the gradient; `grad` (with its checks)
    and `update` give the same draw for the same key."""
    _, reference, one, same = draws
    np.testing.assert_allclose(one, same, rtol=1e-12)
    samples = draws[0]
    errors = np.linalg.norm(samples - reference, axis=1) / np.linalg.norm(reference)
    assert np.median(errors) > 0.1  # one draw is noisy ...
    cosines = samples @ reference / np.linalg.norm(samples, axis=1) / np.linalg.norm(reference)
    assert np.mean(cosines > 0) > 0.9  # ... but mostly points the right way


def test_bad_epsilon_is_refused():
    with pytest.raises(ValueError, match=r"UORO: `epsilon` must be positive, got 0.0"):
        eqslax.UORO(epsilon=0.0)
