r"""OSTTP (Ortner & Pes 2023): OSTL's eligibility, the hidden layers' learning signal a fixed
projection of the target, $g^l_t = -B^l y^*_t$; the output layer keeps OSTL's signal.

Pinned in float64 (rtol 1e-10): a hand-written recursion of its equations on a two-layer
LIF network; with one layer it is OSTL (the projection is never used); with one hidden
layer, `projection=(W_out.T,)`, an LI readout and the linear loss
$\ell_t = -\langle y^*_t, y_t\rangle$ (whose gradient is $-y^*_t$) it is OSTL too, and
under cross-entropy it is not."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes

import eqslax

LOSS = eqslax.PerStep()
LINEAR = eqslax.PerStep(lambda y, c: -jnp.sum(y * c), target="value")


def hand_osttp(model, projection, xs, ys):
    r"""The rule's equations written out for `[Linear, LIF, Linear, LIF]` with subtractive,
    decayed resets: $v_t = \lambda u_{t-1} + W x_t + b$, $s_t = H(v_t - \vartheta)$,
    $u_t = v_t - \vartheta s_t$; eligibility $dv_t/dW = \lambda E_{t-1} + x_t$,
    $dy_t/dW = \sigma'_t\, dv_t/dW$, $E_t = (1 - \vartheta\sigma'_t)\, dv_t/dW$ (the bias
    with $x \equiv 1$); signals $g^2_t = \mathrm{softmax}(s^2_t) - y^*$ and
    $g^1_t = -B y^*$; gradient $\frac{1}{BT}\sum_{b,t} g_t \odot dy_t/d\theta$."""
    linears, neurons = model.layers[0::2], model.layers[1::2]
    batch, steps, _ = xs.shape
    grads = [[np.zeros(lin.weight.shape), np.zeros(lin.bias.shape)] for lin in linears]
    for b in range(batch):
        target = np.eye(model.out_shape[0])[int(ys[b])]
        u = [np.zeros(lin.weight.shape[0]) for lin in linears]
        eligibility = [[np.zeros(lin.weight.shape), np.zeros(lin.bias.shape)] for lin in linears]
        for t in range(steps):
            h, sensitivities = np.asarray(xs[b, t]), []
            for k, (lin, neuron) in enumerate(zip(linears, neurons)):
                decay, threshold = np.asarray(neuron.decay), np.asarray(neuron.threshold)
                v = decay * u[k] + np.asarray(lin.weight) @ h + np.asarray(lin.bias)
                slope = np.asarray(neuron.surrogate.derivative(jnp.asarray(v - threshold)))
                dv_w = decay * eligibility[k][0] + h[None, :]
                dv_b = decay * eligibility[k][1] + 1.0
                sensitivities.append((slope[:, None] * dv_w, slope * dv_b))
                keep = 1.0 - threshold * slope
                eligibility[k] = [keep[:, None] * dv_w, keep * dv_b]
                s = (v >= threshold).astype(float)
                u[k] = v - threshold * s
                h = s
            probabilities = np.exp(h) / np.sum(np.exp(h))
            signals = [-np.asarray(projection) @ target, probabilities - target]
            for k, (g, (dy_w, dy_b)) in enumerate(zip(signals, sensitivities)):
                grads[k][0] += g[:, None] * dy_w / (batch * steps)
                grads[k][1] += g * dy_b / (batch * steps)
    return grads


def problem(key, sizes=(5, 4, 3), batch=3, steps=8):
    k = jax.random.split(key, 2)
    model = feedforward(k[0], sizes, decay=0.8)
    xs = random_spikes(k[1], (batch, steps, sizes[0]), 0.5)
    return model, xs, jnp.arange(batch) % sizes[-1]


def test_osttp_follows_its_equations():
    model, xs, ys = problem(jax.random.key(0))
    rule = eqslax.OSTTP(key=jax.random.key(1))
    grads = rule.grad(model, LOSS, xs, ys)
    projection = jax.random.normal(jax.random.fold_in(jax.random.key(1), 0), (4, 3)) / np.sqrt(3)
    expected = hand_osttp(model, projection, xs, ys)
    for k, (weight, bias) in enumerate(expected):
        np.testing.assert_allclose(grads.layers[2 * k].weight, weight, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(grads.layers[2 * k].bias, bias, rtol=1e-10, atol=1e-13)
    assert np.abs(expected[0][0]).max() > 1e-3  # the hidden layer learns


def test_osttp_given_projection_equals_the_drawn_one():
    model, xs, ys = problem(jax.random.key(2))
    key = jax.random.key(3)
    drawn = eqslax.OSTTP(key=key).grad(model, LOSS, xs, ys)
    projection = (jax.random.normal(jax.random.fold_in(key, 0), (4, 3)) / np.sqrt(3),)
    assert_tree_allclose(eqslax.OSTTP(projection=projection).grad(model, LOSS, xs, ys), drawn)


def test_centered_targets_are_the_projection_without_its_row_means():
    model, xs, ys = problem(jax.random.key(10))
    key = jax.random.key(11)
    projection = jax.random.normal(jax.random.fold_in(key, 0), (4, 3)) / np.sqrt(3)
    centered = (projection - projection.mean(axis=1, keepdims=True),)
    got = eqslax.OSTTP(key=key, centered=True).grad(model, LOSS, xs, ys)
    assert_tree_allclose(got, eqslax.OSTTP(projection=centered).grad(model, LOSS, xs, ys))
    plain = eqslax.OSTTP(key=key).grad(model, LOSS, xs, ys)
    assert not np.allclose(got.layers[0].weight, plain.layers[0].weight, rtol=1e-2)
    spec = eqslax.compare.rule("osttp", options={"centered": True})
    assert spec.rule.centered


def test_osttp_output_layer_is_ostl_and_the_hidden_layers_are_not():
    model, xs, ys = problem(jax.random.key(4), sizes=(5, 4, 4, 3))
    osttp = eqslax.OSTTP(key=jax.random.key(5)).grad(model, LOSS, xs, ys)
    ostl = eqslax.OSTL().grad(model, LOSS, xs, ys)
    assert_tree_allclose(osttp.layers[4:], ostl.layers[4:])
    for k in (0, 2):
        assert not np.allclose(osttp.layers[k].weight, ostl.layers[k].weight, rtol=1e-2)


@pytest.mark.parametrize("neuron", [eqslax.LIF, eqslax.ALIF])
def test_osttp_with_one_layer_is_ostl(neuron):
    """No layer lies below the top: the projection (here the empty tuple, or drawn from a
    key) is never used, and both rules are exact."""
    k = jax.random.split(jax.random.key(6), 2)
    model = feedforward(k[0], (6, 3), neuron=neuron)
    xs = random_spikes(k[1], (3, 10, 6), 0.4)
    ys = jnp.arange(3) % 3
    ostl = eqslax.OSTL().grad(model, LOSS, xs, ys)
    assert_tree_allclose(eqslax.OSTTP(projection=()).grad(model, LOSS, xs, ys), ostl)
    assert_tree_allclose(eqslax.OSTTP(key=jax.random.key(7)).grad(model, LOSS, xs, ys), ostl)
    assert_tree_allclose(ostl, eqslax.BPTT().grad(model, LOSS, xs, ys))


def _readout_problem():
    k = jax.random.split(jax.random.key(8), 4)
    hidden = feedforward(k[0], (5, 4), decay=0.8, train_decay=True).layers
    model = eqslax.Connect([*hidden, eqx.nn.Linear(4, 3, key=k[1]), eqslax.LI(3, 0.7)])
    xs = random_spikes(k[2], (3, 9, 5), 0.5)
    labels = jax.random.randint(k[3], (3, 9), 0, 3)
    return model, xs, labels


def test_osttp_with_transposed_weights_is_ostl_when_the_error_is_minus_the_target():
    """One hidden layer, an LI readout ($\\partial y/\\partial I = 1$) and the linear loss:
    OSTL's hidden signal $W^\\top(g \\odot 1) = -W^\\top y^*_t$ is OSTTP's with
    $B = W^\\top$, at every step (targets change from step to step)."""
    model, xs, labels = _readout_problem()
    targets = jax.nn.one_hot(labels, 3, dtype=jnp.float64)
    rule = eqslax.OSTTP(projection=(model.layers[2].weight.T,))
    ostl = eqslax.OSTL().grad(model, LINEAR, xs, targets)
    assert np.abs(ostl.layers[0].weight).max() > 1e-3
    assert_tree_allclose(rule.grad(model, LINEAR, xs, targets), ostl)
    # under cross-entropy the output error is not -y*, and the two differ
    cross_entropy = rule.grad(model, LOSS, xs, labels)
    ostl = eqslax.OSTL().grad(model, LOSS, xs, labels)
    assert_tree_allclose(cross_entropy.layers[2:], ostl.layers[2:])
    assert not np.allclose(cross_entropy.layers[0].weight, ostl.layers[0].weight, rtol=1e-2)


def test_osttp_arguments_are_checked():
    with pytest.raises(ValueError, match="exactly one of `key`"):
        eqslax.OSTTP()
    with pytest.raises(ValueError, match="exactly one of `key`"):
        eqslax.OSTTP(key=jax.random.key(0), projection=())
    model, xs, ys = problem(jax.random.key(9))
    with pytest.raises(ValueError, match=r"`projection` must hold .* \[\(4, 3\)\]"):
        eqslax.OSTTP(projection=(jnp.zeros((3, 4)),)).grad(model, LOSS, xs, ys)
    with pytest.raises(ValueError, match=r"OSTTP: layer 1 \(RLIF\)"):
        rlif = eqslax.Connect(
            [eqx.nn.Linear(5, 3, key=jax.random.key(0)), eqslax.RLIF(3, key=jax.random.key(1))]
        )
        eqslax.OSTTP(key=jax.random.key(0)).grad(rlif, LOSS, xs, ys)


def test_osttp_is_registered_for_compare():
    spec = eqslax.compare.rule("osttp")
    assert isinstance(spec.rule, eqslax.OSTTP) and spec.driver == "online"
