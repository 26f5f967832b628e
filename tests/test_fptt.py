"""FPTT: the identities of Kag & Saligrama's update and their bookkeeping."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes

import eqslax


@pytest.fixture
def problem():
    k = jax.random.split(jax.random.key(7), 2)
    model = feedforward(k[0], (6, 5, 3))
    xs = random_spikes(k[1], (3, 8, 6), 0.4)
    return model, xs, jnp.array([0, 1, 2])


def sgd_step(model, grads, lr):
    return eqx.apply_updates(model, jtu.tree_map(lambda g: -lr * g, grads))


def test_fptt_with_one_segment_is_one_bptt_step(problem):
    model, xs, ys = problem
    step = eqslax.train_fptt(model, eqslax.FPTT(segments=1), eqslax.PerStep(), optax.sgd(0.1))
    new, state, outputs, loss = step(model, step.init(model), xs, ys)
    expected = sgd_step(model, eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys), 0.1)
    assert_tree_allclose(new, expected)
    assert outputs.shape == (3, 8, 3)


def test_fptt_first_segment_is_a_plain_step(problem):
    """λ = 0 and W̄ = W: the regulariser's gradient vanishes at the first segment."""
    model, xs, ys = problem
    first = xs[:, :2]
    step = eqslax.train_fptt(
        model, eqslax.FPTT(segments=1, alpha=0.3), eqslax.PerStep(), optax.adam(1e-2)
    )
    new, _, _, _ = step(model, step.init(model), first, ys)
    plain = eqslax.train_offline(model, eqslax.PerStep(), optax.adam(1e-2))
    expected, _, _, _ = plain(model, plain.init(model), first, ys)
    assert_tree_allclose(new, expected)


@pytest.mark.parametrize("coefficient", [0.5, 1.0])
def test_fptt_two_segments_follow_the_recursions_by_hand(problem, coefficient):
    model, xs, ys = problem
    alpha, lr, loss = 0.4, 0.2, eqslax.PerStep()
    fptt = eqslax.FPTT(segments=2, alpha=alpha, multiplier_coefficient=coefficient)
    step = eqslax.train_fptt(model, fptt, loss, optax.sgd(lr))
    new, state, _, _ = step(model, step.init(model), xs, ys)

    params, static = eqx.partition(model, eqslax.trainable_mask(model))
    lam = jtu.tree_map(jnp.zeros_like, params)
    wbar = params
    states = jax.vmap(lambda x: model.init_state())(xs)
    for seg in (xs[:, :4], xs[:, 4:]):

        def seg_loss(p, seg=seg, states=states):
            m = eqx.combine(p, static)

            def one(x, c, s):
                total = 0.0
                s = jax.lax.stop_gradient(s)
                for t in range(x.shape[0]):
                    s, y = m(s, x[t])
                    total += loss.step(y, c) / x.shape[0]
                return total, s

            values, finals = jax.vmap(one)(seg, ys, states)
            return jnp.mean(values), finals

        (_, finals), g = jax.value_and_grad(seg_loss, has_aux=True)(params)
        g = jtu.tree_map(
            lambda g, w, wb, m: g + alpha * (w - wb) - coefficient * m, g, params, wbar, lam
        )
        params = jtu.tree_map(lambda w, g: w - lr * g, params, g)
        lam = jtu.tree_map(lambda m, w, wb: m - alpha * (w - wb), lam, params, wbar)
        wbar = jtu.tree_map(lambda wb, w, m: 0.5 * (wb + w) - m / (2 * alpha), wbar, params, lam)
        states = finals
    assert_tree_allclose(new, eqx.combine(params, static))
    assert_tree_allclose(state.rule.multiplier, lam)
    assert_tree_allclose(state.rule.average, wbar)


def test_fptt_combined_with_an_online_rule_trains(problem):
    _, xs, ys = problem
    model = eqslax.feedforward((6, 5, 3), key=jax.random.key(0), readout="li")
    step = eqslax.train_fptt(
        model, eqslax.FPTT(segments=8, rule=eqslax.OSTL()), eqslax.PerStep(), optax.adam(1e-2)
    )
    state = step.init(model)
    new, state, _, first = step(model, state, xs, ys)
    for _ in range(5):
        new, state, _, loss = step(new, state, xs, ys)
    assert jnp.isfinite(loss) and loss < first


def test_fptt_checks_its_arguments(problem):
    model, xs, ys = problem
    with pytest.raises(ValueError, match="segments"):
        eqslax.FPTT(segments=0)
    step = eqslax.train_fptt(model, eqslax.FPTT(segments=3), eqslax.PerStep(), optax.sgd(0.1))
    with pytest.raises(ValueError, match="multiple of `segments`"):
        step(model, step.init(model), xs, ys)
    with pytest.raises(ValueError, match="per-step"):
        eqslax.train_fptt(model, eqslax.FPTT(segments=2), eqslax.Accumulated(), optax.sgd(0.1))
