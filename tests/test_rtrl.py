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


@pytest.mark.parametrize(
    "neuron",
    [
        lambda n: eqslax.LIF(n, decay=0.8),
        lambda n: eqslax.ALIF(n, adaptation=0.3),
    ],
    ids=["lif", "alif"],
)
def test_diagonal_rtrl_equals_rtrl_on_one_feedforward_layer(neuron):
    k = jax.random.split(jax.random.key(20), 3)
    linear = eqx.nn.Linear(6, 5, key=k[0])
    linear = eqx.tree_at(lambda m: m.weight, linear, linear.weight * 3)
    model = eqslax.Connect([linear, neuron(5)])
    xs, ys = data(k[1], 6)
    loss = eqslax.PerStep()
    full = eqslax.RTRL().grad(model, loss, xs, ys)
    diagonal = eqslax.RTRL(diagonal=True).grad(model, loss, xs, ys)
    assert_tree_allclose(diagonal, full, rtol=1e-10, atol=1e-13)
    assert min(jnp.linalg.norm(g) for g in jax.tree_util.tree_leaves(full)) > 0


def recursion_order(grads):
    """The gradients of [Linear, Recurrent(LIF), Linear] in `masked_recursion`'s order."""
    linear, rec, readout = grads.layers
    return [linear.weight, linear.bias, rec.weight, readout.weight, readout.bias]


def masked_recursion(model, xs, ys):
    """SnAp-1 by hand for [Linear, Recurrent(LIF), Linear] with a per-step loss.

    Per unit i and layer-1 parameter p: v_t = lam u_{t-1} + W x_t + b + R y_{t-1},
    e^v_t = lam e^u_{t-1} + R_ii e^y_{t-1} + dI_i/dp, e^y_t = s' e^v_t,
    e^u_t = (1 - theta s') e^v_t (subtractive reset of the carried membrane). The output
    sensitivity is exact: ds_t/dp = s' (lam e^u_{t-1} + R e^y_{t-1} + dI/dp).
    """
    linear, rec, readout = model.layers
    lif = rec.neuron
    w, b, r = linear.weight, linear.bias, rec.weight
    lam, theta = lif.decay * jnp.ones(5), lif.threshold * jnp.ones(5)
    slope = jax.vmap(jax.grad(lif.surrogate))
    n, n_in = w.shape

    def step(carry, x):
        u, y, eu, ey, label = carry
        immediate = jnp.concatenate(
            [jnp.kron(jnp.eye(n), x[None]), jnp.eye(n), jnp.kron(jnp.eye(n), y[None])], 1
        )
        v = lam * u + w @ x + b + r @ y
        s = (v >= theta).astype(v.dtype)
        ds = slope(v - theta)
        exact = ds[:, None] * (lam[:, None] * eu + r @ ey + immediate)
        ev = lam[:, None] * eu + jnp.diag(r)[:, None] * ey + immediate
        eu, ey = (1 - theta * ds)[:, None] * ev, ds[:, None] * ev
        out = readout.weight @ s + readout.bias
        g_out = jax.nn.softmax(out) - jax.nn.one_hot(label, out.size)
        g = (readout.weight.T @ g_out) @ exact
        parts = (
            g[: n * n_in].reshape(n, n_in),
            g[n * n_in : n * n_in + n],
            g[n * n_in + n :].reshape(n, n),
            jnp.outer(g_out, s),
            g_out,
        )
        return (v - theta * s, s, eu, ey, label), parts

    def sequence(x_seq, label):
        eu = jnp.zeros((n, n * n_in + n + n * n))
        carry = (jnp.zeros(n), jnp.zeros(n), eu, eu, label)
        return jax.tree_util.tree_map(lambda a: a.sum(0), jax.lax.scan(step, carry, x_seq)[1])

    total = jax.tree_util.tree_map(lambda a: a.sum(0), jax.jit(jax.vmap(sequence))(xs, ys))
    return [a / (xs.shape[0] * xs.shape[1]) for a in total]


def test_diagonal_rtrl_on_recurrent_lif_equals_the_masked_recursion():
    k = jax.random.split(jax.random.key(21), 5)
    linear = eqx.nn.Linear(4, 5, key=k[0])
    linear = eqx.tree_at(lambda m: m.weight, linear, linear.weight * 3)
    model = eqslax.Connect(
        [
            linear,
            eqslax.Recurrent(eqslax.LIF(5, decay=0.8), key=k[1]),
            eqx.nn.Linear(5, 3, key=k[2]),
        ]
    )
    model = eqx.tree_at(lambda m: m.layers[1].weight, model, model.layers[1].weight * 2)
    xs, ys = data(k[3], 4)
    loss = eqslax.PerStep()
    diagonal = eqslax.RTRL(diagonal=True).grad(model, loss, xs, ys)
    got = recursion_order(diagonal)
    for g, want in zip(got, masked_recursion(model, xs, ys)):
        assert jnp.allclose(g, want, rtol=1e-10, atol=1e-13), jnp.max(jnp.abs(g - want))
    full = eqslax.BPTT().grad(model, loss, xs, ys)  # == full RTRL (tests above)
    gap = jnp.linalg.norm(full.layers[0].weight - got[0]) / jnp.linalg.norm(full.layers[0].weight)
    assert gap > 1e-3, "the recurrent net is too weakly coupled for the mask to matter"
