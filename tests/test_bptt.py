"""BPTT and truncated BPTT: the reference gradients, pinned to hand-written unrolls."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes

import eqslax


@pytest.fixture
def problem():
    k = jax.random.split(jax.random.key(3), 3)
    model = feedforward(k[0], (6, 5, 3))
    xs = random_spikes(k[1], (4, 12, 6), 0.4)
    ys = jnp.array([0, 1, 2, 1])
    return model, xs, ys


def unrolled_loss(model, xs, ys):
    """(1/B) sum_b (1/T) sum_t CE(y_t, c_b), unrolled as a Python loop."""
    total = 0.0
    for x, c in zip(xs, ys):
        state = model.init_state()
        for t in range(x.shape[0]):
            state, y = model(state, x[t])
            total += optax.softmax_cross_entropy_with_integer_labels(y, c) / x.shape[0]
    return total / xs.shape[0]


def test_bptt_equals_grad_of_hand_unrolled_loss(problem):
    model, xs, ys = problem
    expected = eqx.filter_grad(unrolled_loss)(model, xs, ys)
    expected = eqx.filter(expected, eqslax.trainable_mask(model))
    assert_tree_allclose(eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys), expected)


def test_bptt_checkpoint_is_the_same_gradient(problem):
    model, xs, ys = problem
    assert_tree_allclose(
        eqslax.BPTT(checkpoint=True).grad(model, eqslax.PerStep(), xs, ys),
        eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys),
    )


def _skip_graph(key):
    k = jax.random.split(key, 3)
    linear = eqx.tree_at(
        lambda m: m.weight, eqx.nn.Linear(6, 5, key=k[0]), replace_fn=lambda w: 3 * w
    )
    layers = [linear, eqslax.LIF(5, 0.9, 0.7), eqx.nn.Linear(5, 3, key=k[1])]
    layers.append(eqslax.LIF(3, 0.8, 0.7))
    return eqslax.Connect(layers, cat={2: [0], 3: [1]}, key=k[2])


@pytest.mark.parametrize("graph", ["feedforward", "skip"])
def test_bptt_layerwise_schedule_is_the_same_gradient(problem, graph):
    model, xs, ys = problem
    if graph == "skip":
        model = _skip_graph(jax.random.key(11))
    expected = eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys)
    for schedule in ("layerwise", "auto"):
        grads = eqslax.BPTT(schedule=schedule).grad(model, eqslax.PerStep(), xs, ys)
        assert_tree_allclose(grads, expected, rtol=1e-12, atol=1e-14)


def test_bptt_schedule_is_checked():
    with pytest.raises(ValueError, match=r"BPTT: `schedule`.*got 'scan'"):
        eqslax.BPTT(schedule="scan")
    k = jax.random.split(jax.random.key(4), 2)
    layers = [eqx.nn.Linear(6, 3, key=k[0]), eqslax.LIF(3, 0.9, 0.7)]
    recurrent = eqslax.Connect(layers, cat={0: [1]}, key=k[1])
    xs = random_spikes(k[1], (2, 5, 6))
    with pytest.raises(ValueError, match=r"layerwise.*cat=\{0: \[1\]\}"):
        eqslax.BPTT(schedule="layerwise").grad(recurrent, eqslax.PerStep(), xs, jnp.array([0, 1]))


def test_truncated_bptt_with_full_window_equals_bptt(problem):
    model, xs, ys = problem
    full = eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys)
    assert_tree_allclose(
        eqslax.TruncatedBPTT(window=xs.shape[1]).grad(model, eqslax.PerStep(), xs, ys),
        full,
        rtol=1e-13,
    )


def test_truncated_bptt_window_one_is_instantaneous_gradient(problem):
    """k = 1: each step's loss sees its own step only, i.e. the state is a constant."""
    model, xs, ys = problem

    def instantaneous(model):
        total = 0.0
        for x, c in zip(xs, ys):
            state = model.init_state()
            for t in range(x.shape[0]):
                state, y = model(jax.lax.stop_gradient(state), x[t])
                total += optax.softmax_cross_entropy_with_integer_labels(y, c) / x.shape[0]
        return total / xs.shape[0]

    expected = eqx.filter(eqx.filter_grad(instantaneous)(model), eqslax.trainable_mask(model))
    got = eqslax.TruncatedBPTT(window=1).grad(model, eqslax.PerStep(), xs, ys)
    assert_tree_allclose(got, expected)
    full = eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys)
    assert not jnp.allclose(got.layers[0].weight, full.layers[0].weight)


def test_truncated_bptt_needs_a_per_step_loss(problem):
    model, xs, ys = problem
    with pytest.raises(ValueError, match="per-step"):
        eqslax.TruncatedBPTT(window=3).grad(model, eqslax.Accumulated(), xs, ys)


def test_truncated_bptt_rejects_bad_window():
    with pytest.raises(ValueError, match="window"):
        eqslax.TruncatedBPTT(window=0)


@pytest.mark.parametrize(
    "loss",
    [
        eqslax.Accumulated(reduce="sum"),
        eqslax.Accumulated(reduce="max"),
        eqslax.Accumulated(reduce="mean"),
    ],
)
def test_accumulated_losses_reduce_over_time_then_apply_fn(problem, loss):
    model, xs, ys = problem
    outputs = jax.vmap(lambda x: eqslax.simulate(model, x)[1])(xs)
    reduce = {"sum": jnp.sum, "max": jnp.max, "mean": jnp.mean}[loss.reduce]
    expected = jnp.mean(
        optax.softmax_cross_entropy_with_integer_labels(reduce(outputs, axis=1), ys)
    )
    got = jnp.mean(jax.vmap(loss)(outputs, ys))
    assert jnp.allclose(got, expected, rtol=1e-12)


def test_count_mse_and_rate_regulariser(problem):
    model, xs, ys = problem
    _, rec = eqslax.record(model, xs[0])
    counts = rec.outputs.sum(0)
    target = jnp.where(jnp.arange(3) == ys[0], 8.0, 1.0)
    mse = eqslax.Accumulated(eqslax.CountMSE(8.0, 1.0))
    assert jnp.allclose(mse(rec.outputs, ys[0]), jnp.mean((counts - target) ** 2))
    reg = eqslax.RateRegularised(mse, eqslax.spiking_layers(model), strength=0.5, target_rate=0.1)
    penalty = sum(jnp.mean((rec.layers[i].mean(0) - 0.1) ** 2) for i in (1, 3))
    assert eqslax.spiking_layers(model) == (False, True, False, True)
    assert jnp.allclose(
        reg(rec.outputs, ys[0], rec.layers), mse(rec.outputs, ys[0]) + 0.5 * penalty
    )
    grads = eqslax.BPTT().grad(model, reg, xs, ys)
    assert jnp.all(jnp.isfinite(grads.layers[0].weight))


def test_train_offline_frozen_parameters_never_change(problem):
    model, xs, ys = problem
    model = eqx.tree_at(lambda m: m.layers[1], model, eqslax.LIF(5, decay=0.8, train_decay=True))
    step = eqslax.train_offline(model, eqslax.PerStep(), optax.adamw(1e-2, weight_decay=0.5))
    state = step.init(model)
    new = model
    for _ in range(3):
        new, state, outputs, loss = step(new, state, xs, ys)
    assert outputs.shape == (4, 12, 3) and loss.shape == ()
    # frozen: thresholds, the output layer's decay, surrogate slopes
    assert jnp.array_equal(new.layers[1].threshold, model.layers[1].threshold)
    assert jnp.array_equal(new.layers[3].decay, model.layers[3].decay)
    assert jnp.array_equal(new.layers[3].surrogate.slope, model.layers[3].surrogate.slope)
    # trainable: weights and the trained decay
    assert not jnp.array_equal(new.layers[0].weight, model.layers[0].weight)
    assert not jnp.array_equal(new.layers[1].decay, model.layers[1].decay)


def test_train_offline_step_is_one_optimizer_step_on_bptt_gradient(problem):
    model, xs, ys = problem
    optimizer = optax.sgd(0.1)
    step = eqslax.train_offline(model, eqslax.PerStep(), optimizer)
    new, _, _, loss = step(model, step.init(model), xs, ys)
    grads = eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys)
    expected = eqx.apply_updates(model, jax.tree_util.tree_map(lambda g: -0.1 * g, grads))
    assert_tree_allclose(new, expected)
    assert jnp.allclose(loss, unrolled_loss(model, xs, ys))


def test_train_step_rejects_bad_batches(problem):
    model, xs, ys = problem
    step = eqslax.train_offline(model, eqslax.PerStep(), optax.sgd(0.1))
    state = step.init(model)
    # jaxtyping's hook (on in the suite) or the library's own check: both name `xs`
    with pytest.raises((ValueError, TypeError), match="xs"):
        step(model, state, xs[0], ys)
    with pytest.raises(ValueError, match=r"`xs` must have shape \(batch, time, 6\)"):
        step(model, state, xs[..., :5], ys)
    with pytest.raises((ValueError, TypeError), match="ys"):
        step(model, state, xs, ys[:2])
    with pytest.raises(TypeError, match="ys"):
        step(model, state, xs, ys.astype(float))
    with pytest.raises(TypeError, match="optax"):
        eqslax.train_offline(model, eqslax.PerStep(), "adam")
