"""RTRL: exact forward-mode gradients, equal to BPTT on every architecture."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes

import eqslax


def data(key, n_in, batch=3, steps=9):
    xs = random_spikes(key, (batch, steps, n_in), 0.4)
    ys = jnp.arange(batch) % 3
    return xs, ys


def check_rtrl_equals_bptt(model, key, n_in, chunk_size=512):
    xs, ys = data(key, n_in)
    loss = eqslax.PerStep()
    bptt = eqslax.BPTT().grad(model, loss, xs, ys)
    rtrl = eqslax.RTRL(chunk_size=chunk_size).grad(model, loss, xs, ys)
    assert_tree_allclose(rtrl, bptt, rtol=1e-10, atol=1e-13)
    norms = [jnp.linalg.norm(g) for g in jax.tree_util.tree_leaves(bptt)]
    assert min(norms) > 0, "a parameter got no gradient: the identity would be vacuous"


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("reset_decay", [True, False])
def test_rtrl_equals_bptt_feedforward_three_layers(reset, detach_reset, reset_decay):
    k = jax.random.split(jax.random.key(0), 2)
    model = feedforward(
        k[0], (6, 5, 4, 3), reset=reset, detach_reset=detach_reset, reset_decay=reset_decay
    )
    check_rtrl_equals_bptt(model, k[1], 6, chunk_size=17)


def test_rtrl_equals_bptt_with_recurrent_and_skip_edges():
    k = jax.random.split(jax.random.key(1), 4)
    layers = [
        eqx.nn.Linear(6, 5, key=k[0]),
        eqslax.LIF(5, decay=0.8),
        eqx.nn.Linear(5, 3, key=k[1]),
        eqslax.LIF(3, decay=0.7),
    ]
    model = eqslax.Connect(layers, cat={1: [1, 3], 2: [0]}, key=k[2])
    model = jax.tree_util.tree_map(
        lambda w: w * 3 if eqx.is_inexact_array(w) and w.ndim == 2 else w, model
    )
    check_rtrl_equals_bptt(model, k[3], 6)


@pytest.mark.parametrize(
    "neuron",
    [
        lambda n: eqslax.CuBaLIF(n, synapse_decay=0.7, decay=0.8, train_decay=True),
        lambda n: eqslax.ALIF(n, adaptation=0.3),
        lambda n: eqslax.ALIF(n, adaptation=0.3, reset_decay=False, train_threshold=True),
        lambda n: eqslax.LIF(n, train_decay=True, train_threshold=True),
    ],
    ids=["cubalif", "alif", "alif-undecayed", "lif-trained-constants"],
)
def test_rtrl_equals_bptt_multi_state_neurons(neuron):
    k = jax.random.split(jax.random.key(2), 3)
    model = eqslax.Connect(
        [eqx.nn.Linear(6, 5, key=k[0]), neuron(5), eqx.nn.Linear(5, 3, key=k[1]), neuron(3)]
    )
    model = eqx.tree_at(
        lambda m: (m.layers[0].weight, m.layers[2].weight),
        model,
        (model.layers[0].weight * 3, model.layers[2].weight * 3),
    )
    check_rtrl_equals_bptt(model, k[2], 6)


def test_rtrl_equals_bptt_rlif_and_nested_connect():
    k = jax.random.split(jax.random.key(3), 5)
    inner = eqslax.Connect([eqx.nn.Linear(5, 4, key=k[0]), eqslax.RLIF(4, key=k[1])])
    model = eqslax.Connect(
        [
            eqx.nn.Linear(6, 5, key=k[2]),
            eqslax.LIF(5),
            inner,
            eqx.nn.Linear(4, 3, key=k[3]),
            eqslax.LI(3),
        ]
    )
    model = jax.tree_util.tree_map(
        lambda w: w * 3 if eqx.is_inexact_array(w) and w.ndim == 2 else w, model
    )
    check_rtrl_equals_bptt(model, k[4], 6)


def test_rtrl_memory_is_independent_of_sequence_length():
    model = feedforward(jax.random.key(4), (6, 5, 3))
    rule = eqslax.RTRL()
    state = model.init_state()
    traces = rule.init_traces(model, state)
    n_state = 5 + 3
    n_params = 6 * 5 + 5 + 5 * 3 + 3
    assert traces.influence.shape == (n_state, n_params)
