"""Contract of the layer-wise rules over every layer kind (Linear, Recurrent, Conv) and neuron
(LIF, ALIF, CuBaLIF): each cell either equals BPTT in the rule's exact setting (float64,
rtol 1e-10), with gradients shaped like `trainable(model)` and not all zero, or raises an
error naming the layer and why. The exact settings: one layer (e-prop: one hidden layer and
its leaky readout, MSE; OSTTP is OSTL there, its projection unused), resets detached; a
recurrent layer has a diagonal W_rec for OSTL and OTPE (D-RTRL keeps each unit's
self-connection path) and W_rec = 0 for the rules that treat y_(t-1) as an input only
(OTTT, ApproxOTPE, e-prop). e-prop refuses a convolutional layer, naming it."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest
from helpers import assert_tree_allclose, random_spikes

import eqslax

N_IN, N, STEPS, BATCH = 3, 2, 5, 2

# Every neuron with a detached reset (the exact setting of OTTT and e-prop) and a
# trainable parameter, so that the neuron-parameter path is covered too.
NEURONS = {
    "LIF": lambda n=N: eqslax.LIF(n, decay=0.8, detach_reset=True, train_decay=True),
    "ALIF": lambda n=N: eqslax.ALIF(n, adaptation=0.3, detach_reset=True, train_threshold=True),
    "CuBaLIF": lambda n=N: eqslax.CuBaLIF(
        n, synapse_decay=0.7, detach_reset=True, train_decay=True
    ),
}

# rule, the recurrent weight of its exact setting, whether it needs e-prop's readout, and
# the neurons it refuses (presynaptic traces need a single state when parameters train).
RULES = {
    "OSTL": (eqslax.OSTL(), "diagonal", False, ()),
    "OSTTP": (eqslax.OSTTP(key=jax.random.key(0)), "diagonal", False, ()),
    "OTPE": (eqslax.OTPE(), "diagonal", False, ()),
    "OTTT": (eqslax.OTTT(), "zero", False, ("ALIF", "CuBaLIF")),
    "ApproxOTPE": (eqslax.ApproxOTPE(), "zero", False, ("ALIF", "CuBaLIF")),
    "EProp": (eqslax.EProp(), "zero", True, ()),
}
MSE = eqslax.PerStep(lambda y, c: 0.5 * jnp.sum((y - c) ** 2), target="value")


@functools.cache
def problem(kind, neuron, weight, readout):
    if kind == "Conv":
        return conv_problem(neuron, readout)
    k = jax.random.split(jax.random.key(1), 4)
    linear = eqx.nn.Linear(N_IN, N, key=k[0])
    layer = NEURONS[neuron]()
    linear = eqx.tree_at(lambda m: m.weight, linear, 2.0 * jnp.abs(linear.weight))
    if kind == "Recurrent":
        w = jnp.diag(jnp.array([0.8, -0.6])) if weight == "diagonal" else jnp.zeros((N, N))
        layer = eqslax.Recurrent(layer, weight=w)
    layers = [linear, layer]
    if readout:
        layers += [eqx.nn.Linear(N, 2, key=k[1]), eqslax.LI(2, 0.6)]
    model = eqslax.Connect(layers)
    xs = random_spikes(k[2], (BATCH, STEPS, N_IN), 0.6)
    ys = jax.random.normal(k[3], (BATCH, STEPS, 2)) if readout else jnp.arange(BATCH) % N
    loss = MSE if readout else eqslax.PerStep()
    return model, loss, xs, ys


# A convolutional layer: Conv1d(1 -> N channels, kernel 2) on length 4, then the neuron
# on (N, 3); e-prop's readout follows a Flatten.
CONV_IN, CONV_OUT = (1, 4), (N, 3)


def conv_problem(neuron, readout):
    k = jax.random.split(jax.random.key(2), 4)
    conv = eqx.nn.Conv1d(1, N, 2, key=k[0])
    conv = eqx.tree_at(lambda m: m.weight, conv, 2.0 * jnp.abs(conv.weight))
    layers = [conv, NEURONS[neuron](CONV_OUT)]
    if readout:
        head = [eqx.nn.Linear(6, 2, key=k[1]), eqslax.LI(2, 0.6)]
        layers += [eqslax.Flatten(CONV_OUT), *head]
    model = eqslax.Connect(layers, in_shape=CONV_IN)
    xs = random_spikes(k[2], (BATCH, STEPS, *CONV_IN), 0.6)
    ys = jax.random.normal(k[3], (BATCH, STEPS, *model.out_shape))
    return model, MSE, xs, ys


@functools.cache
def bptt(*key):
    return eqslax.BPTT().grad(*problem(*key))


@pytest.mark.parametrize("neuron", sorted(NEURONS))
@pytest.mark.parametrize("kind", ["Linear", "Recurrent", "Conv"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_every_cell_is_exact_or_refused(name, kind, neuron):
    rule, weight, readout, refused = RULES[name]
    key = (kind, neuron, weight if kind == "Recurrent" else None, readout)
    model, loss, xs, ys = problem(*key)
    if kind == "Conv" and name == "EProp":
        with pytest.raises(ValueError, match=r"EProp: layer 1 \(\w+\) follows a convolution"):
            rule.init_traces(model, model.init_state())
        return
    if neuron in refused:
        with pytest.raises(ValueError, match=rf"{name}: layer 1 \(\w+\) .*state variables"):
            rule.init_traces(model, model.init_state())
        return
    grads = rule.grad(model, loss, xs, ys)
    trainable = eqslax.trainable(model)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(trainable)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(grads)) > 0
    assert_tree_allclose(grads, bptt(*key))
