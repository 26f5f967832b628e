r"""``simulate(schedule=...)``: stepping every layer inside one scan and running one
layer at a time over the whole sequence give the same outputs, final states and
gradients (float64, rtol 1e-12) on graphs without recurrent edges."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes

import eqslax

STEPS = 20
RTOL = 1e-12


def _scaled_linear(key, n_in, n_out):
    linear = eqx.nn.Linear(n_in, n_out, key=key)
    return eqx.tree_at(lambda m: m.weight, linear, linear.weight * 3.0)


def _skip_graph(key):
    """Linear-LIF-Linear-ALIF-Linear-LIF with skip edges 0 -> 2, 1 -> 4 and 1 -> 5."""
    k = jax.random.split(key, 4)
    layers = [
        _scaled_linear(k[0], 5, 6),
        eqslax.LIF(6, 0.9, 0.7),
        _scaled_linear(k[1], 6, 4),
        eqslax.ALIF(4, 0.9, 0.6, 0.95, 0.3),
        _scaled_linear(k[2], 4, 3),
        eqslax.LIF(3, 0.8, 0.7),
    ]
    return eqslax.Connect(layers, cat={2: [0], 4: [1], 5: [1]}, key=k[3])


def _nested_graph(key):
    """A feed-forward Connect nested as one layer of another."""
    k = jax.random.split(key, 2)
    inner = feedforward(k[0], (6, 4))
    return eqslax.Connect([_scaled_linear(k[1], 5, 6), inner, eqslax.LIF(4, 0.9, 0.7)])


GRAPHS = {
    "feedforward": lambda key: feedforward(key, (5, 7, 6, 3)),
    "skip": _skip_graph,
    "nested": _nested_graph,
}


def _objective(schedule, xs, weights):
    """A loss touching every output and every final-state leaf."""

    def f(model):
        final, ys = eqslax.simulate(model, xs, schedule=schedule)
        leaves = jtu.tree_leaves(final)
        return jnp.sum(ys * weights) + sum(jnp.sum(jnp.tanh(leaf)) for leaf in leaves)

    return f


@pytest.mark.parametrize("name", list(GRAPHS))
def test_layerwise_equals_step(name):
    k = jax.random.split(jax.random.key(0), 3)
    model = GRAPHS[name](k[0])
    xs = random_spikes(k[1], (STEPS, 5), 0.4)
    final, ys = eqslax.simulate(model, xs, schedule="step")
    assert float(jnp.mean(ys)) > 0.0, "the random graph must spike for the test to mean much"
    for schedule in ("layerwise", "auto"):
        final_s, ys_s = eqslax.simulate(model, xs, schedule=schedule)
        assert_tree_allclose(ys_s, ys, rtol=RTOL, atol=0)
        assert jtu.tree_structure(final_s) == jtu.tree_structure(final)
        assert_tree_allclose(final_s, final, rtol=RTOL, atol=1e-15)
    weights = jax.random.normal(k[2], ys.shape)
    grad = eqx.filter_jit(eqx.filter_grad(_objective("step", xs, weights)))(model)
    grad_layerwise = eqx.filter_jit(eqx.filter_grad(_objective("layerwise", xs, weights)))(model)
    assert_tree_allclose(grad_layerwise, grad, rtol=RTOL, atol=1e-14)
    assert max(float(jnp.max(jnp.abs(g))) for g in jtu.tree_leaves(grad)) > 0.0


def test_layerwise_with_checkpoint_and_given_state():
    k = jax.random.split(jax.random.key(5), 3)
    model = _skip_graph(k[0])
    xs = random_spikes(k[1], (STEPS, 5), 0.4)
    start, _ = eqslax.simulate(model, xs[:7])
    final, ys = eqslax.simulate(model, xs, state=start)
    final_l, ys_l = eqslax.simulate(model, xs, state=start, schedule="layerwise", checkpoint=True)
    assert_tree_allclose(ys_l, ys, rtol=RTOL, atol=0)
    assert_tree_allclose(final_l, final, rtol=RTOL, atol=1e-15)


def _recurrent_graph(key):
    k = jax.random.split(key, 3)
    layers = [_scaled_linear(k[0], 5, 6), eqslax.LIF(6, 0.9, 0.7)]
    layers += [_scaled_linear(k[1], 6, 3), eqslax.LIF(3, 0.9, 0.7)]
    return eqslax.Connect(layers, cat={2: [0], 0: [3]}, key=k[2])


def test_recurrent_graph_auto_is_step_and_layerwise_raises():
    k = jax.random.split(jax.random.key(2), 2)
    model = _recurrent_graph(k[0])
    xs = random_spikes(k[1], (STEPS, 5), 0.4)
    final, ys = eqslax.simulate(model, xs)
    final_a, ys_a = eqslax.simulate(model, xs, schedule="auto")
    assert_tree_allclose(ys_a, ys, rtol=RTOL, atol=0)
    assert_tree_allclose(final_a, final, rtol=RTOL, atol=0)
    with pytest.raises(ValueError, match=r"layerwise.*cat=\{0: \[3\]\}"):
        eqslax.simulate(model, xs, schedule="layerwise")


def test_unknown_schedule_is_rejected():
    model = feedforward(jax.random.key(0), (5, 3))
    xs = random_spikes(jax.random.key(1), (STEPS, 5))
    with pytest.raises(ValueError, match=r"`schedule`.*'step'.*got 'layer'"):
        eqslax.simulate(model, xs, schedule="layer")


def test_a_bare_neuron_accepts_every_schedule():
    neuron = eqslax.LIF(5, 0.9, 0.7)
    xs = 1.5 * random_spikes(jax.random.key(1), (STEPS, 5))
    final, ys = eqslax.simulate(neuron, xs)
    for schedule in ("layerwise", "auto"):
        final_s, ys_s = eqslax.simulate(neuron, xs, schedule=schedule)
        assert_tree_allclose((final_s, ys_s), (final, ys), rtol=0, atol=0)


@pytest.mark.parametrize("schedule", ["step", "layerwise"])
@pytest.mark.parametrize("unroll", [2, 3])
def test_unroll_changes_no_value(schedule, unroll):
    """`unroll` only reshapes the loop: outputs, final state and gradients stay the same
    (3 does not divide the 20 steps: the remainder iteration is exercised too)."""
    k = jax.random.split(jax.random.key(3), 3)
    model = _skip_graph(k[0])
    xs = random_spikes(k[1], (STEPS, 5), 0.4)
    final, ys = eqslax.simulate(model, xs, schedule=schedule)
    final_u, ys_u = eqslax.simulate(model, xs, schedule=schedule, unroll=unroll)
    assert_tree_allclose((final_u, ys_u), (final, ys), rtol=RTOL, atol=1e-15)
    labels = jnp.array([1, 0])
    batch = jnp.stack([xs, xs[::-1]])
    loss = eqslax.Accumulated()
    grads = eqslax.BPTT(schedule=schedule).grad(model, loss, batch, labels)
    grads_u = eqslax.BPTT(schedule=schedule, unroll=unroll).grad(model, loss, batch, labels)
    assert_tree_allclose(grads_u, grads, rtol=RTOL, atol=1e-14)


@pytest.mark.parametrize("unroll", [0, -2, True])
def test_bad_unroll_is_rejected(unroll):
    model = feedforward(jax.random.key(0), (5, 3))
    xs = random_spikes(jax.random.key(1), (STEPS, 5))
    with pytest.raises(ValueError, match=r"simulate: `unroll` must be a positive integer"):
        eqslax.simulate(model, xs, unroll=unroll)
    with pytest.raises(ValueError, match=r"BPTT: `unroll` must be a positive integer"):
        eqslax.BPTT(unroll=unroll)
