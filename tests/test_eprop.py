"""e-prop (Bellec et al. 2020): identities with BPTT, ALIF eligibility, feedback modes."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_tree_allclose

import eqslax
from eqslax._rules._eprop import EProp

N_IN, N_HIDDEN, N_OUT, STEPS = 5, 4, 3, 12
KAPPA = 0.8

# Per-step MSE on the readout: dl/dy_t = y_t - y*_t, the paper's regression signal.
MSE = eqslax.PerStep(fn=lambda y, c: 0.5 * jnp.sum((y - jax.nn.one_hot(c, y.shape[-1])) ** 2))


def network(key, *hidden, readout=None):
    """``Linear -> hidden[0] -> ... -> Linear -> LI(kappa)``, input weights scaled to spike."""
    sizes = [N_IN] + [N_HIDDEN] * len(hidden) + [N_OUT]
    keys = jax.random.split(key, len(sizes))
    layers = []
    for index, neuron in enumerate([*hidden, readout or eqslax.LI(N_OUT, KAPPA)]):
        linear = eqx.nn.Linear(sizes[index], sizes[index + 1], key=keys[index])
        if index < len(hidden):
            linear = eqx.tree_at(lambda m: m.weight, linear, 3.0 * linear.weight)
        layers += [linear, neuron]
    return eqslax.Connect(layers)


def batch(key, size=3):
    xs = jax.random.bernoulli(key, 0.4, (size, STEPS, N_IN)).astype(jnp.float64)
    return xs, jnp.arange(size) % N_OUT


def max_relative_error(reference, other) -> float:
    pairs = zip(jax.tree_util.tree_leaves(reference), jax.tree_util.tree_leaves(other))
    return max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in pairs)


def zero_recurrent(neuron):
    return eqx.tree_at(
        lambda m: m.recurrent_weight, neuron, jnp.zeros_like(neuron.recurrent_weight)
    )


DECAYS = np.array([0.5, 0.7, 0.8, 0.95])
KEY = jax.random.key(7)

# (hidden neuron, rule[, readout]) for which e-prop must equal BPTT. Conditions: one hidden
# layer without recurrent weights, the LI readout, symmetric feedback, a per-step loss,
# and the same reset treatment in both: the reset detached in the model
# (detach_reset=True, the paper's reset-free eligibility), or kept in the eligibility.
EXACT = {
    "LIF-detached": (eqslax.LIF(N_HIDDEN, DECAYS, detach_reset=True), EProp()),
    "LIF-trained-leaks-and-threshold": (
        eqslax.LIF(N_HIDDEN, DECAYS, detach_reset=True, train_decay=True, train_threshold=True),
        EProp(),
        eqslax.LI(N_OUT, KAPPA, train_decay=True),
    ),
    "LIF-reset-in-eligibility": (eqslax.LIF(N_HIDDEN, DECAYS), EProp(reset_in_eligibility=True)),
    "ALIF-detached": (eqslax.ALIF(N_HIDDEN, DECAYS, detach_reset=True), EProp()),
    "ALIF-eprop-form": (
        eqslax.ALIF(N_HIDDEN, DECAYS, detach_reset=True, reset_decay=False),
        EProp(),
    ),
    "RLIF-zero-recurrent-weights": (
        zero_recurrent(eqslax.RLIF(N_HIDDEN, DECAYS, detach_reset=True, key=KEY)),
        EProp(),
    ),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_equals_bptt_for_one_feedforward_layer(name):
    """e-prop = BPTT (rtol 1e-10): with no recurrence the dropped paths through future
    activity are empty, and filtering e by the readout leak kappa is exactly the
    readout's temporal path. For an RLIF with W_rec = 0 every dropped path carries a
    factor of W_rec, so its recurrent-weight gradient is exact too."""
    neuron, rule, *readout = EXACT[name]
    model = network(jax.random.key(0), neuron, readout=readout[0] if readout else None)
    xs, ys = batch(jax.random.key(1))
    expected = eqslax.BPTT().grad(model, MSE, xs, ys)
    actual = rule.grad(model, MSE, xs, ys)
    assert_tree_allclose(actual, expected, rtol=1e-10, atol=1e-13)
    assert float(jnp.max(jnp.abs(expected.layers[0].weight))) > 1e-3  # a real gradient


def test_deep_signal_is_passed_back_at_the_same_step():
    """Two hidden layers: L^1_t = W^2T (L^2_t * dz^2_t/dI^2_t), eligibility filtered by
    kappa. Exact when the upper layer is memoryless (decay 0, detached reset) and its
    surrogate derivative is constant, so that psi^2 at t equals psi^2 at t'."""
    upper = eqslax.LIF(N_HIDDEN, 0.0, detach_reset=True, surrogate=eqslax.StraightThrough())
    model = network(jax.random.key(2), eqslax.LIF(N_HIDDEN, DECAYS, detach_reset=True), upper)
    xs, ys = batch(jax.random.key(3))
    assert_tree_allclose(EProp().grad(model, MSE, xs, ys), eqslax.BPTT().grad(model, MSE, xs, ys))


@pytest.mark.parametrize(
    "neuron",
    [eqslax.LIF(N_HIDDEN, DECAYS), eqslax.RLIF(N_HIDDEN, DECAYS, detach_reset=True, key=KEY)],
    ids=["reset-derivative-dropped", "recurrent-weights"],
)
def test_approximation_biases_only_hidden_layers(neuron):
    """Dropping the reset derivative or recurrent paths changes the hidden gradient,
    never the readout's, which is always exact."""
    model = network(jax.random.key(0), neuron)
    xs, ys = batch(jax.random.key(1))
    expected = eqslax.BPTT().grad(model, MSE, xs, ys)
    actual = EProp().grad(model, MSE, xs, ys)
    assert_tree_allclose(actual.layers[2:], expected.layers[2:])
    assert max_relative_error(expected.layers[0].weight, actual.layers[0].weight) > 1e-3


def test_random_feedback_changes_hidden_gradients_only():
    model = network(jax.random.key(0), EXACT["LIF-detached"][0])
    xs, ys = batch(jax.random.key(1))
    rule = EProp("random", key=jax.random.key(5))
    feedback = rule.init(model).feedback
    assert feedback.shape == (N_HIDDEN, N_OUT)
    assert_tree_allclose(EProp("random", key=jax.random.key(5)).init(model).feedback, feedback)
    assert_tree_allclose(rule.init_traces(model, model.init_state()).feedback, feedback)
    symmetric = EProp().grad(model, MSE, xs, ys)
    randomised = rule.grad(model, MSE, xs, ys)
    assert_tree_allclose(randomised.layers[2:], symmetric.layers[2:])
    assert max_relative_error(symmetric.layers[0].weight, randomised.layers[0].weight) > 0.1


def test_adaptive_feedback_follows_readout_updates():
    """B <- B + dW_out^T - mu (B - W_out_old^T): the mismatch shrinks by (1 - mu)."""
    model = network(jax.random.key(0), EXACT["LIF-detached"][0])
    xs, ys = batch(jax.random.key(1))
    mu = 0.25
    rule = EProp("adaptive", key=jax.random.key(5), feedback_decay=mu)
    state = rule.init(model)
    old = model.layers[2].weight
    change = 0.1 * jax.random.normal(jax.random.key(9), old.shape)
    moved = eqx.tree_at(lambda m: m.layers[2].weight, model, old + change)
    _, new_state, _ = rule.update(moved, state, MSE, xs, ys)
    expected = state.feedback + change.T - mu * (state.feedback - old.T)
    np.testing.assert_allclose(new_state.feedback, expected, rtol=1e-12)
    np.testing.assert_allclose(new_state.readout, old + change)
    np.testing.assert_allclose(
        new_state.feedback - (old + change).T, (1 - mu) * (state.feedback - old.T), atol=1e-14
    )
    with pytest.raises(ValueError, match="adaptive"):
        eqslax.train_online(model, rule, MSE, optax.sgd(0.1))


def test_alif_eligibility_by_hand():
    r"""Three steps of e-prop's ALIF (reset_decay=False): with A_t = theta + beta a_t,
    eps^v_t = alpha eps^v_(t-1) + x_t,
    eps^a_t = psi_(t-1) eps^v_(t-1) + (rho - psi_(t-1) beta) eps^a_(t-1),
    e_t = psi_t (eps^v_t - beta eps^a_t), ebar_t = kappa ebar_(t-1) + e_t,
    grad_t = L_t ebar_t with L_t = W_out^T (y_t - y*)."""
    alpha, theta, rho, beta, kappa, slope = 0.9, 1.0, 0.8, 0.5, 0.6, 25.0
    w = np.array([[1.2, 0.3], [0.5, 0.9]])
    b = np.array([0.1, 0.0])
    w_out, b_out = np.array([[0.7, -0.4]]), np.array([0.05])
    xs = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])

    hidden = eqx.nn.Linear(2, 2, key=KEY)
    hidden = eqx.tree_at(lambda m: (m.weight, m.bias), hidden, (jnp.asarray(w), jnp.asarray(b)))
    out = eqx.nn.Linear(2, 1, key=KEY)
    out = eqx.tree_at(lambda m: (m.weight, m.bias), out, (jnp.asarray(w_out), jnp.asarray(b_out)))
    alif = eqslax.ALIF(2, alpha, theta, rho, beta, reset_decay=False)
    model = eqslax.Connect([hidden, alif, out, eqslax.LI(1, kappa)])
    rule = EProp()
    label = jnp.asarray(0)
    state, traces = rule.start(model, jnp.asarray(xs[0]))
    step = eqx.filter_jit(rule.step)

    v, a, z, y = np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(1)
    eps_v, eps_a, ebar = np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2))
    psi_prev = np.zeros(2)
    spikes = 0.0
    for x in xs:
        v = alpha * v + w @ x + b - theta * z
        eps_a = psi_prev[:, None] * eps_v + (rho - psi_prev * beta)[:, None] * eps_a
        a = rho * a + z
        eps_v = alpha * eps_v + x[None, :]
        distance = v - (theta + beta * a)
        z = (distance >= 0).astype(float)
        psi = 1.0 / (1.0 + slope * np.abs(distance)) ** 2
        ebar = kappa * ebar + psi[:, None] * (eps_v - beta * eps_a)
        y = kappa * y + w_out @ z + b_out
        signal = w_out.T @ (y - 1.0)
        psi_prev, spikes = psi, spikes + z.sum()

        state, traces, grads, output, _ = step(model, state, traces, jnp.asarray(x), label, MSE)
        layer = traces.hidden[0]
        np.testing.assert_allclose(output, y, rtol=1e-12)
        np.testing.assert_allclose(layer.eligibility.weight[0], eps_v, rtol=1e-12)  # v row
        np.testing.assert_allclose(layer.eligibility.weight[1], eps_a, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(layer.filtered.weight, ebar, rtol=1e-12)
        np.testing.assert_allclose(grads.layers[0].weight, signal[:, None] * ebar, rtol=1e-12)
    assert spikes >= 2 and np.abs(eps_a).max() > 1e-3  # adaptation actually entered


def two_groups(key, size=32, units=10):
    """Class c drives its half of the inputs at rate 0.4, the other half at 0.05."""
    k1, k2 = jax.random.split(key)
    ys = jax.random.bernoulli(k1, 0.5, (size,)).astype(jnp.int32)
    group = (jnp.arange(units) >= units // 2).astype(jnp.int32)
    rate = jnp.where(group[None, :] == ys[:, None], 0.4, 0.05)
    xs = jax.random.bernoulli(k2, rate[:, None, :], (size, 20, units)).astype(jnp.float64)
    return xs, ys


def test_online_training_reduces_loss():
    """train_online with random feedback: an optimiser step after every time step."""
    model = eqslax.Connect(
        [eqx.nn.Linear(10, 16, key=jax.random.key(5)), eqslax.ALIF(16, 0.9, detach_reset=True)]
        + [eqx.nn.Linear(16, 2, key=jax.random.key(6)), eqslax.LI(2, KAPPA)]
    )
    step = eqslax.train_online(model, EProp("random", key=jax.random.key(8)), MSE, optax.adam(1e-3))
    state = step.init(model)
    losses = []
    for index in range(10):
        xs, ys = two_groups(jax.random.key(100 + index))
        model, state, outputs, loss = step(model, state, xs, ys)
        losses.append(float(loss))
    assert np.mean(losses[-3:]) < 0.5 * losses[0]
    assert float(eqslax.accuracy(MSE, outputs, ys)) >= 0.9


def test_unsupported_networks_name_the_layer():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"last layer \(3, LIF\) must be eqslax.LI"):
        EProp().init(network(key, eqslax.LIF(N_HIDDEN), readout=eqslax.LIF(N_OUT)))
    nested = eqslax.Connect([eqslax.LIF(N_HIDDEN)])
    with pytest.raises(ValueError, match="one scalar decay"):
        EProp().init(
            network(key, eqslax.LIF(N_HIDDEN), readout=eqslax.LI(N_OUT, np.array([0.5, 0.6, 0.7])))
        )
    with pytest.raises(ValueError, match=r"layer 1 \(Connect\)"):
        EProp().init(network(key, nested))
    with pytest.raises(TypeError, match="Connect"):
        EProp().init(eqslax.LIF(3))
    with pytest.raises(ValueError, match="`key` is required"):
        EProp("random")
    with pytest.raises(ValueError, match="`feedback` must be one of"):
        EProp("transposed")
    with pytest.raises(ValueError, match="PerStep"):
        EProp().grad(
            network(key, eqslax.LIF(N_HIDDEN)), eqslax.Accumulated(), *batch(jax.random.key(1))
        )
