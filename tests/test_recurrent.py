"""`Recurrent(neuron)`: the recurrent layer by composition, equal to RLIF and to a `cat`
self-edge, and RTRL == BPTT through it."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose, random_spikes

import eqslax

N_IN, N_HIDDEN, N_OUT = 6, 5, 3
STEPS = 50

NEURONS = {
    "lif": lambda: eqslax.LIF(N_HIDDEN, decay=0.8, train_decay=True),
    "alif": lambda: eqslax.ALIF(N_HIDDEN, adaptation=0.3, reset_decay=False, train_threshold=True),
    "cubalif": lambda: eqslax.CuBaLIF(N_HIDDEN, synapse_decay=0.7, decay=0.8, train_decay=True),
}


def scaled(weight, key, scale):
    return scale * jax.random.uniform(key, weight.shape, weight.dtype, -1.0, 1.0)


def recurrent_model(neuron, key):
    """Linear -> Recurrent(neuron) -> Linear -> LI, weights large enough to spike."""
    k = jax.random.split(key, 4)
    w_rec = scaled(jnp.zeros((N_HIDDEN, N_HIDDEN)), k[0], 1.5)
    return eqslax.Connect(
        [
            eqx.nn.Linear(N_IN, N_HIDDEN, key=k[1]),
            eqslax.Recurrent(neuron, weight=w_rec),
            eqx.nn.Linear(N_HIDDEN, N_OUT, key=k[2]),
            eqslax.LI(N_OUT),
        ]
    )


def upscale_input(model, key):
    w = model.layers[0].weight
    return eqx.tree_at(lambda m: m.layers[0].weight, model, scaled(w, key, 2.0))


def test_rlif_is_recurrent_lif():
    k = jax.random.split(jax.random.key(0), 3)
    rlif = eqslax.RLIF(N_HIDDEN, decay=0.8, threshold=1.0, key=k[0])
    rlif = eqx.tree_at(lambda r: r.recurrent_weight, rlif, 2.0 * rlif.recurrent_weight)
    lif = eqslax.LIF(N_HIDDEN, decay=0.8, threshold=1.0)
    composed = eqslax.Recurrent(lif, weight=rlif.recurrent_weight)
    xs = 1.5 * jax.random.uniform(k[1], (STEPS, N_HIDDEN))
    _, ys_rlif = eqslax.simulate(rlif, xs)
    _, ys_composed = eqslax.simulate(composed, xs)
    assert 0 < float(ys_rlif.sum()) < ys_rlif.size, "the identity needs spikes and silences"
    np.testing.assert_array_equal(ys_rlif, ys_composed)

    weights = jax.random.normal(k[2], xs.shape)

    def loss(model):
        _, ys = eqslax.simulate(model, xs)
        return jnp.sum(weights * ys)

    g_rlif = eqx.filter_grad(loss)(rlif)
    g_composed = eqx.filter_grad(loss)(composed)
    assert float(jnp.abs(g_rlif.recurrent_weight).max()) > 0
    np.testing.assert_allclose(g_composed.weight, g_rlif.recurrent_weight, rtol=1e-10, atol=1e-13)


def test_rlif_initial_weight_matches_recurrent_without_self_connections():
    recurrent = eqslax.Recurrent(eqslax.LIF(4), key=jax.random.key(1), self_connections=False)
    np.testing.assert_array_equal(jnp.diag(recurrent.weight), 0.0)
    assert float(jnp.abs(recurrent.weight).min(initial=1.0, where=~jnp.eye(4, dtype=bool))) > 0


@pytest.mark.parametrize("name", sorted(NEURONS))
def test_recurrent_equals_connect_self_edge(name):
    """`Recurrent(f)` at layer k == `f` at layer k with a `cat` self-edge k -> k."""
    k = jax.random.split(jax.random.key(2), 4)
    composed = upscale_input(recurrent_model(NEURONS[name](), k[0]), k[1])
    layers = list(composed.layers)
    layers[1] = composed.layers[1].neuron
    edge = eqslax.Connect(layers, cat={1: [1]}, key=k[2])
    edge = eqx.tree_at(lambda m: m.projections[0].weight, edge, composed.layers[1].weight)
    xs = random_spikes(k[3], (STEPS, N_IN), 0.4)
    _, recording = eqslax.record(composed, xs)
    _, expected = eqslax.record(edge, xs)
    hidden = recording.layers[1]
    assert 0 < float(hidden.sum()) < hidden.size, "the identity needs spikes and silences"
    np.testing.assert_array_equal(hidden, expected.layers[1])
    np.testing.assert_allclose(recording.outputs, expected.outputs, rtol=1e-12, atol=1e-12)

    weights = jax.random.normal(k[3], recording.outputs.shape)

    def loss(model):
        return jnp.sum(weights * eqslax.simulate(model, xs)[1])

    g = eqx.filter_grad(loss)(composed)
    g_edge = eqx.filter_grad(loss)(edge)
    np.testing.assert_allclose(g.layers[1].weight, g_edge.projections[0].weight, rtol=1e-10)
    assert_tree_allclose(g.layers[1].neuron, g_edge.layers[1], rtol=1e-10, atol=1e-13)
    assert_tree_allclose(g.layers[0], g_edge.layers[0], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", sorted(NEURONS))
def test_rtrl_equals_bptt_through_recurrent(name):
    k = jax.random.split(jax.random.key(3), 3)
    model = upscale_input(recurrent_model(NEURONS[name](), k[0]), k[1])
    xs = random_spikes(k[2], (3, 9, N_IN), 0.4)
    ys = jnp.arange(3) % N_OUT
    loss = eqslax.PerStep()
    bptt = eqslax.BPTT().grad(model, loss, xs, ys)
    rtrl = eqslax.RTRL().grad(model, loss, xs, ys)
    assert_tree_allclose(rtrl, bptt, rtol=1e-10, atol=1e-13)
    assert float(jnp.abs(bptt.layers[1].weight).max()) > 0, "W_rec got no gradient"


def test_recurrent_rejects_bad_arguments():
    with pytest.raises(TypeError, match="`neuron`|'neuron'"):
        eqslax.Recurrent(eqx.nn.Linear(3, 3, key=jax.random.key(0)), key=jax.random.key(0))
    with pytest.raises(ValueError, match="`key`"):
        eqslax.Recurrent(eqslax.LIF(3))
    with pytest.raises(ValueError, match=r"`weight`.*\(3, 3\).*\(3, 4\)"):
        eqslax.Recurrent(eqslax.LIF(3), weight=jnp.zeros((3, 4)))
