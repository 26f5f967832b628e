"""OSTL: exact where the theory says, a clear error where it cannot apply."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes

import eqslax


def grads(rule, model, key, n_in=6, batch=3, steps=10):
    xs = random_spikes(key, (batch, steps, n_in), 0.4)
    ys = jnp.arange(batch) % 3
    return rule.grad(model, eqslax.PerStep(), xs, ys)


@pytest.mark.parametrize(
    "neuron,options",
    [
        (eqslax.LIF, {}),
        (eqslax.LIF, {"reset": "zero", "reset_decay": False}),
        (eqslax.CuBaLIF, {"train_decay": True}),
        (eqslax.ALIF, {"adaptation": 0.4}),
        (
            eqslax.LIF,
            {"train_decay": True, "train_threshold": True, "decay": jnp.linspace(0.5, 0.9, 3)},
        ),
    ],
)
def test_ostl_equals_bptt_for_a_single_layer(neuron, options):
    k = jax.random.split(jax.random.key(0), 2)
    model = feedforward(k[0], (6, 3), neuron=neuron, **options)
    assert_tree_allclose(grads(eqslax.OSTL(), model, k[1]), grads(eqslax.BPTT(), model, k[1]))


def test_ostl_last_layer_of_a_deep_network_equals_bptt():
    k = jax.random.split(jax.random.key(1), 2)
    model = feedforward(k[0], (6, 5, 4, 3))
    ostl, bptt = grads(eqslax.OSTL(), model, k[1]), grads(eqslax.BPTT(), model, k[1])
    assert_tree_allclose(ostl.layers[4], bptt.layers[4])
    assert_tree_allclose(ostl.layers[5], bptt.layers[5])
    # the hidden layers are biased: the identity is not vacuous
    assert not jnp.allclose(ostl.layers[0].weight, bptt.layers[0].weight, rtol=1e-3)


def test_ostl_all_layers_equal_bptt_when_upper_layers_are_memoryless():
    k = jax.random.split(jax.random.key(2), 2)
    model = feedforward(k[0], (6, 5, 4, 3))
    model = eqx.tree_at(
        lambda m: (m.layers[3].decay, m.layers[5].decay), model, (jnp.array(0.0), jnp.array(0.0))
    )
    assert_tree_allclose(grads(eqslax.OSTL(), model, k[1]), grads(eqslax.BPTT(), model, k[1]))


def test_ostl_equals_rtrl_on_one_layer_of_a_test_only_neuron():
    k = jax.random.split(jax.random.key(3), 2)
    model = eqslax.Connect([eqx.nn.Linear(6, 3, key=k[0]), eqslax.LIF(3)])
    model = eqx.tree_at(lambda m: m.layers[0].weight, model, model.layers[0].weight * 3)
    assert_tree_allclose(grads(eqslax.OSTL(), model, k[1]), grads(eqslax.RTRL(), model, k[1]))


@pytest.mark.parametrize(
    "bad,layer",
    [
        ("rlif", "layer 1 (RLIF)"),
        ("cat", "`cat` edges"),
        ("no-linear", "layer 0"),
    ],
)
def test_ostl_names_the_layer_it_cannot_handle(bad, layer):
    k = jax.random.split(jax.random.key(4), 3)
    if bad == "rlif":
        model = eqslax.Connect([eqx.nn.Linear(6, 3, key=k[0]), eqslax.RLIF(3, key=k[1])])
    elif bad == "cat":
        model = eqslax.Connect(
            [eqx.nn.Linear(6, 3, key=k[0]), eqslax.LIF(3)], cat={1: [1]}, key=k[1]
        )
    else:
        model = eqslax.Connect([eqx.nn.Lambda(jnp.tanh), eqslax.LIF(6)], in_shape=6)
    with pytest.raises(ValueError, match=layer.replace("(", r"\(").replace(")", r"\)")):
        grads(eqslax.OSTL(), model, k[2])
