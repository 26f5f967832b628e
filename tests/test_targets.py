"""Targets of any shape: per-sequence labels, per-step labels, real-valued per-step targets."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes

import eqslax

B, T, N_IN, N_OUT = 2, 4, 4, 3
CE = optax.softmax_cross_entropy_with_integer_labels


def batch(key):
    k = jax.random.split(key, 3)
    xs = random_spikes(k[0], (B, T, N_IN), 0.4)
    labels = jax.random.randint(k[1], (B, T), 0, N_OUT)
    values = jax.random.normal(k[2], (B, T, N_OUT))
    return xs, labels, values


TASKS = {
    "per-step-labels": (eqslax.PerStep(), 1),
    "regression": (eqslax.PerStep(optax.l2_loss), 2),
}


def targets(task, labels, values):
    return labels if task == "per-step-labels" else values


def deferred(steps):
    """A transformation that sums the per-step gradients and applies their mean, as one
    SGD step of rate 1, after the last of ``steps`` steps (zero updates before)."""

    def init(params):
        return (jtu.tree_map(jnp.zeros_like, params), jnp.asarray(0))

    def update(grads, state, params=None):
        total, count = state
        total = jtu.tree_map(jnp.add, total, grads)
        count = count + 1
        last = count == steps
        updates = jtu.tree_map(lambda a: jnp.where(last, -a / steps, 0.0), total)
        return updates, (total, count)

    return optax.GradientTransformation(init, update)


def sgd_step(model, grads, lr=1.0):
    return eqx.apply_updates(model, jtu.tree_map(lambda g: -lr * g, grads))


def test_loss_values_follow_their_definitions():
    outputs = jax.random.normal(jax.random.key(0), (T, N_OUT))
    labels = jnp.arange(T) % N_OUT
    values = jax.random.normal(jax.random.key(1), (T, N_OUT))
    expected = np.mean([CE(outputs[t], labels[t]) for t in range(T)])
    np.testing.assert_allclose(eqslax.PerStep()(outputs, labels), expected, rtol=1e-12)
    expected = np.mean([0.5 * np.sum((outputs[t] - values[t]) ** 2) for t in range(T)])
    np.testing.assert_allclose(eqslax.PerStep(optax.l2_loss)(outputs, values), expected, rtol=1e-12)
    # A label repeated at every step is the one label per sequence.
    np.testing.assert_allclose(
        eqslax.PerStep()(outputs, jnp.full(T, 2)), eqslax.PerStep()(outputs, 2), rtol=1e-12
    )
    loss = eqslax.PerStep(optax.l2_loss)
    assert loss.targets == eqslax.Targets("value", per_sequence=False, per_step=True)
    assert jnp.array_equal(loss.target_at(values, 3), values[3])
    assert eqslax.PerStep().target_at(jnp.asarray(1), 3) == 1


@pytest.mark.parametrize("task", list(TASKS))
def test_rtrl_equals_bptt(task):
    """Per-step updates accumulated to the end (`deferred`) make
    train_online one deferred step: with RTRL it is one BPTT step."""
    loss, _ = TASKS[task]
    model = feedforward(jax.random.key(1), (N_IN, 3, N_OUT))
    xs, labels, values = batch(jax.random.key(2))
    ys = targets(task, labels, values)
    expected = sgd_step(model, eqslax.BPTT().grad(model, loss, xs, ys))
    online = eqslax.train_online(model, eqslax.RTRL(), loss, deferred(T))
    new, _, _, value = online(model, online.init(model), xs, ys)
    assert_tree_allclose(eqx.filter(new, eqx.is_array), eqx.filter(expected, eqx.is_array))
    _, _, aux = eqslax.BPTT().update(model, None, loss, xs, ys)
    np.testing.assert_allclose(value, aux.loss, rtol=1e-10)


@pytest.mark.parametrize("task", list(TASKS))
def test_ostl_equals_bptt_for_one_layer(task):
    loss, _ = TASKS[task]
    model = feedforward(jax.random.key(3), (N_IN, N_OUT))
    xs, labels, values = batch(jax.random.key(4))
    ys = targets(task, labels, values)
    expected = sgd_step(model, eqslax.BPTT().grad(model, loss, xs, ys))
    online = eqslax.train_online(model, eqslax.OSTL(), loss, deferred(T))
    new, _, _, _ = online(model, online.init(model), xs, ys)
    assert_tree_allclose(eqx.filter(new, eqx.is_array), eqx.filter(expected, eqx.is_array))


@pytest.mark.parametrize("task", list(TASKS))
def test_eprop_equals_bptt_in_its_exact_setting(task):
    """One hidden LIF layer (reset detached), leaky readout, symmetric feedback."""
    loss, _ = TASKS[task]
    k = jax.random.split(jax.random.key(5), 2)
    hidden = eqx.nn.Linear(N_IN, 4, key=k[0])
    hidden = eqx.tree_at(lambda m: m.weight, hidden, 3.0 * hidden.weight)
    model = eqslax.Connect(
        [
            hidden,
            eqslax.LIF(4, np.array([0.5, 0.7, 0.8, 0.95]), detach_reset=True),
            eqx.nn.Linear(4, N_OUT, key=k[1]),
            eqslax.LI(N_OUT, 0.8),
        ]
    )
    xs, labels, values = batch(jax.random.key(6))
    ys = targets(task, labels, values)
    grads = eqslax.BPTT().grad(model, loss, xs, ys)
    assert float(jnp.max(jnp.abs(grads.layers[0].weight))) > 1e-4
    expected = sgd_step(model, grads)
    online = eqslax.train_online(model, eqslax.EProp(), loss, deferred(T))
    new, _, _, _ = online(model, online.init(model), xs, ys)
    assert_tree_allclose(eqx.filter(new, eqx.is_array), eqx.filter(expected, eqx.is_array))


@pytest.mark.parametrize("task", list(TASKS))
def test_fptt_one_segment_and_truncated_bptt_equal_bptt(task):
    loss, _ = TASKS[task]
    model = feedforward(jax.random.key(7), (N_IN, 3, N_OUT))
    xs, labels, values = batch(jax.random.key(8))
    ys = targets(task, labels, values)
    grads = eqslax.BPTT().grad(model, loss, xs, ys)
    assert_tree_allclose(eqslax.TruncatedBPTT(T).grad(model, loss, xs, ys), grads)
    for rule in (None, eqslax.RTRL()):
        step = eqslax.train_fptt(model, eqslax.FPTT(segments=1, rule=rule), loss, optax.sgd(1.0))
        new, _, _, _ = step(model, step.init(model), xs, ys)
        assert_tree_allclose(new, sgd_step(model, grads))


def test_fptt_reads_each_segments_own_targets():
    """Two segments: the second segment's targets change the result (they are not
    replaced by the first segment's)."""
    loss = eqslax.PerStep(optax.l2_loss)
    model = feedforward(jax.random.key(9), (N_IN, 3, N_OUT))
    xs, _, values = batch(jax.random.key(10))
    half = eqslax.train_fptt(model, eqslax.FPTT(segments=2), loss, optax.sgd(0.5))
    both, _, _, _ = half(model, half.init(model), xs, values)
    other = values.at[:, T // 2 :].set(0.0)
    both_other, _, _, _ = half(model, half.init(model), xs, other)
    assert not jnp.allclose(both.layers[0].weight, both_other.layers[0].weight)


def test_evaluate_and_fit_report_mse_and_r2():
    model = eqslax.feedforward((N_IN, 4, 1), key=jax.random.key(11), readout="li")
    k = jax.random.split(jax.random.key(12), 2)
    xs = jax.random.uniform(k[0], (8, T, N_IN))
    ys = jax.random.normal(k[1], (8, T, 1))
    loss = eqslax.PerStep(optax.l2_loss)
    scores = eqslax.evaluate(model, loss, xs, ys, batch_size=4)
    outputs = jax.vmap(lambda x: eqslax.simulate(model, x)[1])(xs)
    residual = np.asarray(outputs - ys)
    assert scores["mse"] == pytest.approx(np.mean(residual**2), rel=1e-10)
    spread = np.sum((np.asarray(ys) - np.mean(np.asarray(ys))) ** 2)
    assert scores["r2"] == pytest.approx(1 - np.sum(residual**2) / spread, rel=1e-10)
    assert set(scores) == {"loss", "mse", "r2"}

    step = eqslax.train_offline(model, loss, optax.adam(1e-2))
    data = eqslax.data.Splits(xs, ys, xs, ys)
    _, history = eqslax.fit(model, step, data, epochs=2, batch_size=4, key=k[0], progress=False)
    for name in ("train_mse", "train_r2", "test_mse", "test_r2"):
        assert len(history[name]) == 2 and np.all(np.isfinite(history[name]))
    assert "train_accuracy" not in history


def test_per_step_label_accuracy_counts_steps():
    outputs = jax.nn.one_hot(jnp.array([[0, 1, 2, 0]]), 3)
    labels = jnp.array([[0, 1, 0, 0]])
    assert float(eqslax.accuracy(eqslax.PerStep(), outputs, labels)) == pytest.approx(0.75)
    assert eqslax.task_metrics(eqslax.PerStep(), outputs, labels) == {"accuracy": 0.75}
