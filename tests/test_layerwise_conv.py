"""Layer-wise rules on convolutional layers (`eqx.nn.Conv1d`/`Conv2d` + an elementwise
neuron, `eqslax.Flatten` before a dense layer): at each output position a convolution is a
dense layer on the unfolded input patch with the weight shared over positions. Pinned in
float64 to BPTT in each rule's exact setting and to the rules on the equivalent dense
(unfolded, Toeplitz) layer."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose, random_spikes

import eqslax

STEPS, BATCH = 6, 2
MSE = eqslax.PerStep(lambda y, c: 0.5 * jnp.sum((y - c) ** 2), target="value")


def conv(dims, key, channels=2, kernel=3, **kwargs):
    make = eqx.nn.Conv1d if dims == 1 else eqx.nn.Conv2d
    layer = make(1, channels, kernel, key=key, **kwargs)
    return eqx.tree_at(lambda m: m.weight, layer, 2.0 * jnp.abs(layer.weight))


IN_SHAPES = {1: (1, 8), 2: (1, 6, 6)}


def one_conv_layer(dims, neuron):
    k = jax.random.split(jax.random.key(0), 3)
    layer = conv(dims, k[0], padding=1 if dims == 1 else 0)
    model = eqslax.Connect([layer, neuron], in_shape=IN_SHAPES[dims])
    xs = random_spikes(k[1], (BATCH, STEPS, *IN_SHAPES[dims]), 0.5)
    ys = jax.random.normal(k[2], (BATCH, STEPS, *model.out_shape))
    return model, xs, ys


def out_shape(dims):
    return (2, 8) if dims == 1 else (2, 4, 4)


def fires(model, xs):
    _, outputs = jax.vmap(lambda x: eqslax.simulate(model, x))(xs)
    return float(outputs.sum())


@pytest.mark.parametrize("dims", [1, 2])
def test_ostl_equals_bptt_for_one_conv_layer(dims):
    # Per position OSTL is exact per layer (the reset's gradient kept); per-channel decays
    # (shape (C, 1[, 1])) and a trained threshold cover the neuron-parameter sums.
    shape = out_shape(dims)
    decay = np.array([0.7, 0.9]).reshape((2,) + (1,) * (dims))
    neuron = eqslax.ALIF(shape, decay=decay, adaptation=0.3, train_threshold=True)
    model, xs, ys = one_conv_layer(dims, neuron)
    assert fires(model, xs) > 0
    grads = eqslax.OSTL().grad(model, MSE, xs, ys)
    assert_tree_allclose(grads, eqslax.BPTT().grad(model, MSE, xs, ys))


@pytest.mark.parametrize("dims", [1, 2])
def test_ottt_equals_bptt_for_one_conv_layer_with_detached_reset(dims):
    neuron = eqslax.LIF(out_shape(dims), decay=0.8, detach_reset=True, train_decay=True)
    model, xs, ys = one_conv_layer(dims, neuron)
    grads = eqslax.OTTT().grad(model, MSE, xs, ys)
    assert_tree_allclose(grads, eqslax.BPTT().grad(model, MSE, xs, ys))


def conv_then_dense(key, hidden, output):
    """Conv2d(1 -> 2, 3x3) on 1x6x6, `hidden` neuron (2, 4, 4), Flatten, Linear(32 -> 3),
    `output` neuron."""
    k = jax.random.split(key, 2)
    linear = eqx.nn.Linear(32, 3, key=k[1])
    linear = eqx.tree_at(lambda m: m.weight, linear, 2.0 * jnp.abs(linear.weight))
    layers = [conv(2, k[0]), hidden, eqslax.Flatten((2, 4, 4)), linear, output]
    return eqslax.Connect(layers, in_shape=(1, 6, 6))


def toeplitz(layer):
    """The dense matrix of the convolution without its bias, `(C_out*P, C_in*H*W)`."""
    zero = jnp.zeros((1, 6, 6))
    no_bias = eqx.tree_at(lambda m: m.bias, layer, jnp.zeros_like(layer.bias))
    return jax.jacfwd(no_bias)(zero).reshape(32, 36)


def unfolded(model, hidden):
    """The same network with the convolution as its dense (Toeplitz) layer."""
    layer = model.layers[0]
    dense = eqx.nn.Linear(36, 32, key=jax.random.key(0))
    dense = eqx.tree_at(
        lambda m: (m.weight, m.bias),
        dense,
        (toeplitz(layer), jnp.repeat(layer.bias.reshape(-1), 16)),
    )
    flat = eqslax.Flatten((1, 6, 6))
    return eqslax.Connect([flat, dense, hidden, *model.layers[3:]], in_shape=(1, 6, 6))


def test_conv_ottt_equals_ottt_on_the_unfolded_dense_layer():
    # OTTT on the Toeplitz layer, with its gradient taken back to the shared weight by the
    # transpose of W -> Toeplitz(W) and summed over positions for the bias, is conv OTTT.
    hidden = eqslax.LIF((2, 4, 4), 0.8, train_threshold=True)
    model = conv_then_dense(jax.random.key(1), hidden, eqslax.LIF(3, 0.7))
    dense = unfolded(model, eqslax.LIF(32, 0.8, train_threshold=True))
    k = jax.random.split(jax.random.key(2), 2)
    xs = random_spikes(k[0], (BATCH, STEPS, 1, 6, 6), 0.5)
    ys = jnp.arange(BATCH) % 3
    _, out_conv = jax.vmap(lambda x: eqslax.simulate(model, x))(xs)
    _, out_dense = jax.vmap(lambda x: eqslax.simulate(dense, x))(xs)
    np.testing.assert_array_equal(out_conv, out_dense)
    assert float(out_conv.sum()) > 0
    got = eqslax.OTTT().grad(model, eqslax.PerStep(), xs, ys)
    flat = eqslax.OTTT().grad(dense, eqslax.PerStep(), xs, ys)
    _, back = jax.vjp(toeplitz, model.layers[0])
    (weight,) = jax.tree_util.tree_leaves(eqx.filter(back(flat.layers[1].weight)[0], eqx.is_array))[
        :1
    ]
    np.testing.assert_allclose(got.layers[0].weight, weight, rtol=1e-10, atol=1e-12)
    bias = flat.layers[1].bias.reshape(2, 16).sum(1).reshape(2, 1, 1)
    np.testing.assert_allclose(got.layers[0].bias, bias, rtol=1e-10, atol=1e-12)
    assert_tree_allclose(got.layers[1], flat.layers[2])
    assert_tree_allclose(got.layers[3:], flat.layers[3:])


def test_otpe_conv_hidden_with_ostl_output_equals_bptt():
    # OTPE's two-layer identity with a convolutional hidden layer: the signal reaches it
    # through Flatten and the transpose of the unfolding.
    hidden = eqslax.LIF((2, 4, 4), 0.8, reset_decay=False, train_threshold=True)
    model = conv_then_dense(jax.random.key(3), hidden, eqslax.LIF(3, 0.85, detach_reset=True))
    k = jax.random.split(jax.random.key(4), 2)
    xs = random_spikes(k[0], (BATCH, STEPS, 1, 6, 6), 0.5)
    ys = jnp.arange(BATCH) % 3
    exact = eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys)
    assert_tree_allclose(eqslax.OTPE().grad(model, eqslax.PerStep(), xs, ys), exact)
    ostl = eqslax.OSTL().grad(model, eqslax.PerStep(), xs, ys)
    error = jnp.max(jnp.abs(ostl.layers[0].weight - exact.layers[0].weight))
    assert error > 1e-2 * jnp.max(jnp.abs(exact.layers[0].weight))


def test_approx_otpe_conv_equals_bptt_with_constant_surrogate():
    surrogate = eqslax.CustomSurrogate(lambda x: 0.3 * jnp.ones_like(x))
    hidden = eqslax.LIF((2, 4, 4), 0.8, detach_reset=True, surrogate=surrogate)
    output = eqslax.LIF(3, 0.8, detach_reset=True, surrogate=surrogate)
    model = conv_then_dense(jax.random.key(5), hidden, output)
    xs = random_spikes(jax.random.key(6), (BATCH, STEPS, 1, 6, 6), 0.5)
    ys = jnp.arange(BATCH) % 3
    exact = eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys)
    assert_tree_allclose(eqslax.ApproxOTPE().grad(model, eqslax.PerStep(), xs, ys), exact)


def test_unsupported_convolutions_are_refused_naming_the_layer():
    hidden = eqslax.LIF((2, 4, 4))
    model = conv_then_dense(jax.random.key(7), hidden, eqslax.LIF(3))
    head = [eqx.nn.Linear(3, 2, key=jax.random.key(8)), eqslax.LI(2)]
    readout = eqslax.Connect([*model.layers, *head], in_shape=(1, 6, 6))
    with pytest.raises(
        ValueError, match=r"EProp: layer 1 \(LIF\) follows a convolution \(layer 0, Conv2d\)"
    ):
        eqslax.EProp().init_traces(readout, readout.init_state())
    grouped = eqx.nn.Conv2d(2, 2, 3, groups=2, key=jax.random.key(9))
    model = eqslax.Connect([grouped, eqslax.LIF((2, 4, 4))], in_shape=(2, 6, 6))
    with pytest.raises(ValueError, match=r"OSTL: layer 0 \(Conv2d\) has groups=2"):
        eqslax.OSTL().init_traces(model, model.init_state())
