"""Pair-based STDP and reward-modulated STDP: traces against explicit pair sums."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import random_spikes

import eqslax
from eqslax._rules._stdp import STDP, RewardSTDP, pair_eligibility

A_PLUS, A_MINUS, PRE_DECAY, POST_DECAY = 0.3, 0.2, 0.8, 0.6
STEPS = 15


def pair_sum(pre, post):
    """Delta W_ij = sum over all spike pairs (t_pre of j, t_post of i), Delta = t_post - t_pre:
    A+ PRE_DECAY^Delta if Delta > 0, -A- POST_DECAY^(-Delta) if Delta < 0 and nothing for
    equal-time pairs (Delta = 0)."""
    pre, post = np.asarray(pre), np.asarray(post)
    change = np.zeros((post.shape[1], pre.shape[1]))
    for i in range(post.shape[1]):
        for j in range(pre.shape[1]):
            for t_post in np.flatnonzero(post[:, i]):
                for t_pre in np.flatnonzero(pre[:, j]):
                    delta = t_post - t_pre
                    if delta > 0:
                        change[i, j] += A_PLUS * PRE_DECAY**delta
                    elif delta < 0:
                        change[i, j] -= A_MINUS * POST_DECAY ** (-delta)
    return change


def traced(pre, post, eligibility_decay=0.0):
    p, d = pair_eligibility(
        pre, post, jnp.asarray(PRE_DECAY), jnp.asarray(POST_DECAY), jnp.asarray(eligibility_decay)
    )
    return A_PLUS * p - A_MINUS * d


def rule(**kwargs):
    kwargs.setdefault("bounds", "none")
    return STDP(A_PLUS, A_MINUS, PRE_DECAY, POST_DECAY, **kwargs)


def network(key):
    """Two Linear -> LIF layers; the second layer's presynaptic spikes are the first's."""
    k1, k2 = jax.random.split(key)
    first = eqx.nn.Linear(6, 5, key=k1)
    first = eqx.tree_at(lambda m: m.weight, first, 3.0 * jnp.abs(first.weight))
    second = eqx.nn.Linear(5, 3, key=k2)
    second = eqx.tree_at(lambda m: m.weight, second, 3.0 * jnp.abs(second.weight))
    return eqslax.Connect([first, eqslax.LIF(5, 0.8), second, eqslax.LIF(3, 0.8)])


def batch(key, size=4):
    return random_spikes(key, (size, STEPS, 6), 0.4), jnp.arange(size) % 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_traces_equal_explicit_pair_sum(seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    pre, post = random_spikes(k1, (STEPS, 4), 0.3), random_spikes(k2, (STEPS, 3), 0.3)
    coincident = np.asarray(pre)[:, None, :] * np.asarray(post)[:, :, None]
    assert coincident.sum() > 0  # equal-time pairs occur and must count for nothing
    expected = pair_sum(pre, post)
    np.testing.assert_allclose(traced(pre, post), expected, rtol=1e-12, atol=1e-15)


def test_single_pair_window():
    """One pair, Delta = 3 steps: A+ lambda+^3 before, -A- lambda-^3 after, 0 at once."""
    pre = jnp.zeros((10, 1)).at[2, 0].set(1.0)
    for t_post, expected in [(5, A_PLUS * PRE_DECAY**3), (0, -A_MINUS * POST_DECAY**2), (2, 0.0)]:
        post = jnp.zeros((10, 1)).at[t_post, 0].set(1.0)
        np.testing.assert_allclose(traced(pre, post)[0, 0], expected, rtol=1e-14)


def test_update_is_batch_mean_of_pair_sums_for_every_linear_layer():
    """-grads = Delta W: mean over the batch of each sample's pair sum, with the layer's
    input as presynaptic and its neuron's spikes as postsynaptic trains; nothing else moves."""
    model = network(jax.random.key(0))
    xs, ys = batch(jax.random.key(1))
    grads = rule().grad(model, eqslax.PerStep(), xs, ys)
    recordings = [eqslax.record(model, x)[1] for x in xs]
    first = np.mean([pair_sum(x, r.layers[1]) for x, r in zip(xs, recordings)], axis=0)
    second = np.mean([pair_sum(r.layers[1], r.layers[3]) for r in recordings], axis=0)
    assert np.abs(second).max() > 0.1  # the second layer really spiked
    np.testing.assert_allclose(-grads.layers[0].weight, first, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(-grads.layers[2].weight, second, rtol=1e-12, atol=1e-15)
    others = [grads.layers[0].bias, grads.layers[2].bias]
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in others)


def test_sgd_of_one_adds_the_weight_change():
    model = network(jax.random.key(0))
    xs, ys = batch(jax.random.key(1))
    stdp = rule()
    change = jax.tree_util.tree_map(jnp.negative, stdp.grad(model, eqslax.PerStep(), xs, ys))
    step = eqslax.train_offline(model, eqslax.PerStep(), optax.sgd(1.0), rule=stdp)
    new, _, _, _ = step(model, step.init(model), xs, ys)
    np.testing.assert_allclose(
        new.layers[0].weight, model.layers[0].weight + change.layers[0].weight
    )


def test_additive_bounds_clip_weights():
    model = network(jax.random.key(0))
    step = eqslax.train_offline(
        model,
        eqslax.PerStep(),
        optax.sgd(1.0),
        rule=rule(bounds="additive", minimum=0.2, maximum=1.0),
    )
    state = step.init(model)
    for index in range(3):
        model, state, _, _ = step(model, state, *batch(jax.random.key(10 + index)))
    for weight in (model.layers[0].weight, model.layers[2].weight):
        assert float(weight.min()) >= 0.2 and float(weight.max()) <= 1.0
    assert np.isclose(model.layers[0].weight, 1.0).any()  # the bound was reached


def test_multiplicative_bounds_shrink_potentiation_near_maximum():
    """A+ (w_max - w) P: the step shrinks linearly to 0 as w -> w_max, never crossing it."""
    stdp = rule(bounds="multiplicative", minimum=-1.0, maximum=2.0)
    weight = jnp.array([[0.0, 1.0, 1.9]])
    potentiation = jnp.ones_like(weight)
    change = stdp.weight_change(weight, potentiation, jnp.zeros_like(weight))
    np.testing.assert_allclose(change, A_PLUS * (2.0 - weight))
    depression = stdp.weight_change(weight, jnp.zeros_like(weight), potentiation)
    np.testing.assert_allclose(depression, -A_MINUS * (weight + 1.0))
    for _ in range(50):
        weight = weight + stdp.weight_change(weight, potentiation, jnp.zeros_like(weight))
    assert float(weight.max()) < 2.0 and float(weight.min()) > 1.99


def constant_reward(value):
    return lambda outputs, label: jnp.asarray(value, outputs.dtype)


def reward_rule(reward, **kwargs):
    return RewardSTDP(rule(), reward=reward, **kwargs)


@eqx.filter_jit
def update(r_stdp, model, xs, ys):
    """One update from the rule's initial state: ``(grads, new rule state)``."""
    grads, state, _ = r_stdp.update(model, r_stdp.init(model), eqslax.PerStep(), xs, ys)
    return grads, state


def test_reward_equal_to_baseline_changes_nothing():
    model = network(jax.random.key(0))
    xs, ys = batch(jax.random.key(1))
    r_stdp = reward_rule(constant_reward(0.7), initial_baseline=0.7)
    grads, state = update(r_stdp, model, xs, ys)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(grads))
    np.testing.assert_allclose(state.baseline, 0.7)


def test_reward_sign_flips_the_change_and_unit_reward_is_stdp():
    """With R - b = +-1, eta = 1 and lambda_e = 0, Delta W = +-STDP's."""
    model = network(jax.random.key(0))
    xs, ys = batch(jax.random.key(1))
    stdp = rule().grad(model, eqslax.PerStep(), xs, ys)
    for value in (1.0, -1.0):
        r_stdp = reward_rule(constant_reward(value), eligibility_decay=0.0, baseline_rate=0.5)
        grads, state = update(r_stdp, model, xs, ys)
        scaled = jax.tree_util.tree_map(lambda g, value=value: value * g, stdp)
        np.testing.assert_allclose(grads.layers[0].weight, scaled.layers[0].weight, rtol=1e-12)
        np.testing.assert_allclose(grads.layers[2].weight, scaled.layers[2].weight, rtol=1e-12)
        np.testing.assert_allclose(state.baseline, 0.5 * value)  # (1 - nu) 0 + nu R


def test_reward_eligibility_sums_decayed_pair_terms():
    """One pair at (t_pre, t_post) = (2, 5) in 10 steps:
    sum_t e_t = A+ lambda+^3 sum_(t=5..9) lambda_e^(t-5)."""
    pre = jnp.zeros((10, 1)).at[2, 0].set(1.0)
    post = jnp.zeros((10, 1)).at[5, 0].set(1.0)
    decay = 0.7
    expected = A_PLUS * PRE_DECAY**3 * sum(decay**k for k in range(5))
    np.testing.assert_allclose(traced(pre, post, decay)[0, 0], expected, rtol=1e-14)


def test_reward_change_is_batch_mean_of_modulated_samples():
    """Per-sample rewards: Delta W = mean_b eta (R_b - b) sum_t e_t^(b)."""
    model = network(jax.random.key(0))
    xs, ys = batch(jax.random.key(1), size=2)

    def reward(outputs, label):  # +2 for the first class, -1 otherwise
        return jnp.where(label == 0, 2.0, -1.0).astype(outputs.dtype)

    r_stdp = reward_rule(reward, initial_baseline=0.5, learning_rate=0.3)
    both, state = update(r_stdp, model, xs, ys)
    single = [update(r_stdp, model, xs[i : i + 1], ys[i : i + 1])[0] for i in range(2)]
    expected = 0.5 * (single[0].layers[0].weight + single[1].layers[0].weight)
    np.testing.assert_allclose(both.layers[0].weight, expected, rtol=1e-12)
    assert float(jnp.max(jnp.abs(single[0].layers[0].weight))) > 0
    np.testing.assert_allclose(state.baseline, 0.9 * 0.5 + 0.1 * 0.5)  # mean reward 0.5


def test_default_reward_is_spike_count_argmax():
    r_stdp = RewardSTDP()
    outputs = jnp.array([[0.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    assert float(r_stdp.reward(outputs, jnp.asarray(1))) == 1.0
    assert float(r_stdp.reward(outputs, jnp.asarray(2))) == -1.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="`bounds` must be one of"):
        STDP(bounds="hard")
    with pytest.raises(ValueError, match="`minimum` must be below `maximum`"):
        STDP(minimum=1.0, maximum=1.0)
    with pytest.raises(ValueError, match="`potentiation` must be >= 0"):
        STDP(potentiation=-0.1)
    with pytest.raises(ValueError, match="`post_decay` must be <= 1"):
        STDP(post_decay=1.5)
    with pytest.raises(ValueError, match="`baseline_rate` must be <= 1"):
        RewardSTDP(baseline_rate=2.0)
    with pytest.raises(TypeError, match="stdp"):
        RewardSTDP(stdp=optax.sgd(1.0))
    recurrent = eqslax.Connect(
        [eqx.nn.Linear(6, 3, key=jax.random.key(0)), eqslax.RLIF(3, key=jax.random.key(1))]
    )
    with pytest.raises(ValueError, match=r"layer 1 \(RLIF\)"):
        STDP().grad(recurrent, eqslax.PerStep(), *batch(jax.random.key(2)))
