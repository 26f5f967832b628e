r"""Delay layers: `Delay` (per-channel integer delays in a ring buffer) and `DCLSDelay`
(learnable per-synapse delays through a normalised Gaussian kernel, Hammouamri et al. 2023).

Pinned: a delay of $d$ steps is the input sequence shifted by $d$ (zeros first); RTRL equals
BPTT through networks with either layer (float64, rtol 1e-10); the layer-local rules refuse
them naming the layer; as $\sigma \to 0$ at integer positions `DCLSDelay` equals fixed
integer delays; its gradient with respect to the positions equals central finite
differences (float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose, random_spikes

import eqslax

LOSS = eqslax.PerStep()


def run(model, xs):
    return eqslax.simulate(model, xs)[1]


def shifted(xs, delays):
    """`xs` (time, n) with column i moved `delays[i]` steps later, zeros first."""
    out = np.zeros_like(xs)
    for i, d in enumerate(delays):
        out[d:, i] = xs[: len(xs) - d, i]
    return out


def test_delay_equals_the_shifted_input_sequence():
    delays = [0, 1, 3, 5]
    xs = jax.random.normal(jax.random.key(0), (12, 4))
    ys = run(eqslax.Delay(4, delays), xs)
    np.testing.assert_array_equal(ys, shifted(np.asarray(xs), delays))
    # one delay for every unit, and a population of two axes
    np.testing.assert_array_equal(run(eqslax.Delay(4, 2), xs), shifted(np.asarray(xs), [2] * 4))
    grid = jax.random.normal(jax.random.key(1), (9, 2, 3))
    d = np.array([[0, 1, 2], [3, 0, 4]])
    got = run(eqslax.Delay((2, 3), d), grid).reshape(9, 6)
    np.testing.assert_array_equal(got, shifted(np.asarray(grid).reshape(9, 6), d.ravel()))


def test_delay_state_is_a_ring_buffer():
    layer = eqslax.Delay(3, [0, 2, 1])
    state = layer.init_state()
    assert isinstance(state, eqslax.DelayState)
    assert state.buffer.shape == (3, 3) and state.position.dtype == jnp.int32
    for t in range(7):
        state, _ = layer(state, jnp.full(3, float(t)))
        assert int(state.position) == (t + 1) % 3
    assert eqslax.trainable(layer).delays is None  # integer delays are never trained


@pytest.mark.parametrize(
    "delays,match",
    [
        (-1, ">= 0 steps"),
        (1.5, "whole numbers"),
        ([1, 2], "does not broadcast"),
        (True, "integers"),
    ],
)
def test_delay_arguments_are_checked(delays, match):
    with pytest.raises((ValueError, TypeError), match=match):
        eqslax.Delay(3, delays)


def delayed_network(key):
    """Delays at the input and between the layers, with a trainable leak."""
    k = jax.random.split(key, 3)
    linear = eqx.nn.Linear(5, 4, key=k[0])
    linear = eqx.tree_at(lambda m: m.weight, linear, 3 * linear.weight)
    layers = [
        eqslax.Delay(5, [0, 1, 2, 0, 3]),
        linear,
        eqslax.LIF(4, decay=0.8, train_decay=True),
        eqslax.Delay(4, [1, 0, 2, 1]),
        eqx.nn.Linear(4, 3, key=k[1]),
        eqslax.LI(3, 0.7),
    ]
    return eqslax.Connect(layers)


def test_rtrl_equals_bptt_through_delays():
    model = delayed_network(jax.random.key(2))
    xs = random_spikes(jax.random.key(3), (2, 10, 5), 0.5)
    ys = jnp.array([0, 2])
    bptt = eqslax.BPTT().grad(model, LOSS, xs, ys)
    assert float(jnp.max(jnp.abs(bptt.layers[1].weight))) > 1e-3
    assert bptt.layers[0].delays is None
    assert_tree_allclose(eqslax.RTRL().grad(model, LOSS, xs, ys), bptt)


@pytest.mark.parametrize("rule", [eqslax.OSTL(), eqslax.OTTT(), eqslax.EProp()])
def test_layerwise_rules_refuse_a_delay_naming_it(rule):
    model = delayed_network(jax.random.key(4))
    xs = random_spikes(jax.random.key(5), (2, 6, 5), 0.5)
    name = type(rule).__name__
    with pytest.raises(ValueError, match=rf"{name}: layer 0 \(Delay\) delays its input"):
        rule.grad(model, LOSS, xs, jnp.array([0, 1]))


# ------------------------------------------------------------------ DCLSDelay


def dcls(key, n_in=3, n_out=2, max_delay=4, sigma=1.0, position=None):
    layer = eqslax.DCLSDelay(n_in, n_out, max_delay, sigma=sigma, key=key)
    if position is not None:
        layer = eqx.tree_at(lambda m: m.position, layer, jnp.asarray(position, jnp.float64))
    return layer


def test_dcls_kernel_is_a_normalised_gaussian():
    layer = dcls(jax.random.key(6), position=[[0.3, 2.0, 3.9], [1.5, 0.0, 4.0]], sigma=0.8)
    taps = np.arange(5)
    p = np.asarray(layer.position)[..., None]
    expected = np.exp(-((taps - p) ** 2) / (2 * 0.8**2))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(layer.kernel(), expected, rtol=1e-13)


def test_dcls_at_integer_positions_with_small_sigma_is_fixed_integer_delays():
    """Per synapse: $y_{j,t} = b_j + \\sum_i W_{ji} x_{i, t-P_{ji}}$; with the same delay
    on every synapse of input $i$ it is `Connect([Delay(d), Linear])`."""
    k = jax.random.split(jax.random.key(7), 2)
    position = np.array([[0, 3, 1], [4, 2, 2]])
    layer = dcls(k[0], position=position, sigma=1e-2)
    xs = jax.random.normal(k[1], (11, 3))
    ys = np.asarray(run(layer, xs))
    w, b = np.asarray(layer.weight), np.asarray(layer.bias)
    expected = np.stack(
        [
            b[j]
            + sum(w[j, i] * shifted(np.asarray(xs), [position[j, i]] * 3)[:, i] for i in range(3))
            for j in range(2)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(ys, expected, rtol=1e-14, atol=1e-14)
    per_input = np.array([2, 0, 3])
    layer = dcls(k[0], position=np.broadcast_to(per_input, (2, 3)), sigma=1e-2)
    linear = eqx.nn.Linear(3, 2, key=k[0])
    linear = eqx.tree_at(lambda m: (m.weight, m.bias), linear, (layer.weight, layer.bias))
    fixed = eqslax.Connect([eqslax.Delay(3, per_input), linear])
    np.testing.assert_allclose(run(layer, xs), run(fixed, xs), rtol=1e-14, atol=1e-14)
    # rounding positions gives the same one-hot layer
    off = dcls(k[0], position=position + 0.3, sigma=2.0).rounded()
    np.testing.assert_array_equal(off.position, position)
    np.testing.assert_allclose(run(off, xs), ys, rtol=1e-14, atol=1e-14)


def test_dcls_position_gradient_equals_central_differences():
    k = jax.random.split(jax.random.key(8), 2)
    position = np.array([[0.4, 2.3, 3.1], [1.7, 0.8, 2.6]])
    model = eqslax.Connect([dcls(k[0], position=position, sigma=0.9), eqslax.LI(2, 0.7)])
    xs = jax.random.normal(k[1], (12, 3))

    def loss(p):
        m = eqx.tree_at(lambda m: m.layers[0].position, model, p)
        return jnp.sum(jnp.sin(run(m, xs)))

    grad = jax.grad(loss)(jnp.asarray(position))
    eps = 1e-5
    fd = np.zeros_like(position)
    for index in np.ndindex(position.shape):
        step = np.zeros_like(position)
        step[index] = eps
        fd[index] = (loss(position + step) - loss(position - step)) / (2 * eps)
    assert np.abs(grad).min() > 1e-3
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)


def test_rtrl_equals_bptt_through_learnable_delays():
    k = jax.random.split(jax.random.key(9), 3)
    layer = dcls(k[0], n_in=4, n_out=3, max_delay=3, sigma=0.7)
    layer = eqx.tree_at(lambda m: m.weight, layer, 4 * layer.weight)
    model = eqslax.Connect(
        [layer, eqslax.LIF(3, 0.6), eqx.nn.Linear(3, 2, key=k[1]), eqslax.LI(2, 0.8)]
    )
    xs = random_spikes(k[2], (2, 9, 4), 0.5)
    ys = jnp.array([1, 0])
    bptt = eqslax.BPTT().grad(model, LOSS, xs, ys)
    assert float(jnp.max(jnp.abs(bptt.layers[0].position))) > 1e-4
    assert bptt.layers[0].sigma is None  # the width is annealed, never trained
    assert_tree_allclose(eqslax.RTRL().grad(model, LOSS, xs, ys), bptt)
    with pytest.raises(ValueError, match=r"OSTL: layer 0 \(DCLSDelay\)"):
        eqslax.OSTL().grad(model, LOSS, xs, ys)


def test_fixed_positions_are_not_trained():
    layer = eqslax.DCLSDelay(3, 2, 4, train_position=False, key=jax.random.key(10))
    trainable = eqslax.trainable(layer)
    assert trainable.position is None and trainable.sigma is None
    assert trainable.weight is not None
    assert float(layer.sigma) == 2.0  # default: half the window


def test_sigma_schedule_and_annealing():
    values = [eqslax.delay_sigma(e, 20, initial=4.0, final=0.5) for e in range(20)]
    assert values[0] == 4.0 and values[5] == pytest.approx(0.5) and values[-1] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(values, values[1:]))
    np.testing.assert_allclose(values[2], 4.0 * (0.5 / 4.0) ** 0.4)
    model = eqslax.Connect([dcls(jax.random.key(11)), eqslax.LI(2)])
    annealed = eqslax.anneal_delays(model, 0.25)
    assert float(annealed.layers[0].sigma) == 0.25
    rounded = eqslax.round_delays(model)
    np.testing.assert_array_equal(rounded.layers[0].position, jnp.round(model.layers[0].position))
    with pytest.raises(ValueError, match="`sigma`"):
        eqslax.DCLSDelay(3, 2, 4, sigma=0.0, key=jax.random.key(0))


def test_delay_randman_classes_differ_only_in_relative_delays():
    data = eqslax.data.delay_randman(
        jax.random.key(0),
        n_classes=3,
        n_units=6,
        n_steps=20,
        max_delay=5,
        jitter=2,
        samples_per_class=20,
        dtype=jnp.float64,
    )
    xs = np.concatenate([data.train_x, data.test_x])
    ys = np.concatenate([data.train_y, data.test_y])
    values = np.concatenate([data.train_values, data.test_values])
    assert xs.shape == (60, 20, 6) and np.all(xs.sum(axis=1) == 1)  # one spike per unit
    assert np.bincount(ys).tolist() == [20, 20, 20]
    steps = xs.argmax(axis=1)
    shifted = steps - np.minimum(np.floor(values * 2), 1)  # onset + delay of the unit
    relative = shifted - shifted[:, :1]
    patterns = []
    for c in range(3):
        rows = relative[ys == c]
        assert np.all(rows == rows[0])  # one pattern of relative delays per class
        patterns.append(tuple(rows[0]))
        delays = shifted[ys == c][0] - shifted[ys == c][0].min()
        assert sorted(delays) == [0, 1, 2, 3, 4, 5]  # the same set of delays in every class
    assert len(set(patterns)) == 3
    onsets = shifted.min(axis=1)
    assert onsets.min() == 0 and onsets.max() > 5  # absolute time varies from sample to sample
