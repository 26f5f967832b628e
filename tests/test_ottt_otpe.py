"""OTTT, OTPE and Approximate OTPE against the identities they must satisfy.

Each identity holds exactly (float64, rtol 1e-10) under the stated conditions; each
comes with a control showing that dropping the condition breaks it. Then the Slax
regression thresholds on a 64-50-10 network and an online-training smoke test.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes

import eqslax
from eqslax._rules._otpe import OTPE, ApproxOTPE
from eqslax._rules._ottt import OTTT

LOSS = eqslax.PerStep()


def batch(key, n_in, n_classes=3, size=3, steps=12):
    """Random input spikes ``(batch, time, n_in)`` and integer labels."""
    k_x, k_y = jax.random.split(key)
    return random_spikes(k_x, (size, steps, n_in)), jax.random.randint(k_y, (size,), 0, n_classes)


def with_neurons(model, *neurons):
    """``model`` with its populations replaced, in order (per-layer decays and resets)."""
    for index, neuron in enumerate(neurons):
        model = eqx.tree_at(lambda m, i=index: m.layers[2 * i + 1], model, neuron)
    return model


def relative_error(a, b) -> float:
    r""":math:`\max_\text{leaf} \lVert a - b\rVert_\infty / \lVert b\rVert_\infty`."""
    return max(
        float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y)))
        for x, y in zip(jtu.tree_leaves(a), jtu.tree_leaves(b))
    )


def assert_identity(a, b):
    """Equal to 1e-10, and not trivially: every compared leaf is nonzero."""
    for leaf in jtu.tree_leaves(b):
        assert float(jnp.max(jnp.abs(leaf))) > 1e-6
    assert_tree_allclose(a, b, rtol=1e-10, atol=1e-13)


def grads(rule, model, data):
    return rule.grad(model, LOSS, *data)


# OTTT ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_decay", [True, False])
def test_ottt_equals_bptt_for_one_layer_with_detached_reset(reset_decay):
    # v_t = λ u_{t-1} + W x_t + b with a detached reset: ds_t/dW = σ'_t ⊗ â_t exactly,
    # the bias with its trace r_t = λ r_{t-1} + 1; trained threshold and decay too.
    lif = eqslax.LIF(
        4,
        np.array([0.5, 0.7, 0.9, 0.95]),
        np.array([0.8, 1.0, 1.1, 1.2]),
        detach_reset=True,
        reset_decay=reset_decay,
        train_threshold=True,
        train_decay=True,
    )
    model = with_neurons(feedforward(jax.random.PRNGKey(0), [6, 4]), lif)
    data = batch(jax.random.PRNGKey(1), 6, n_classes=4)
    exact = grads(eqslax.BPTT(), model, data)
    assert_identity(grads(OTTT(), model, data), exact)
    if reset_decay:
        # Control: the untraced bias of the reference code is not the gradient.
        compat = grads(OTTT(bias_trace=False), model, data)
        assert_tree_allclose(compat.layers[0].weight, exact.layers[0].weight, rtol=1e-10)
        assert relative_error(compat.layers[0].bias, exact.layers[0].bias) > 1e-2


def deep_detached():
    """Three layers, every reset detached, per-neuron and shared leaks, trained
    threshold (layer 1) and decay (layer 3)."""
    return with_neurons(
        feedforward(jax.random.PRNGKey(2), [6, 5, 4, 3]),
        eqslax.LIF(5, np.linspace(0.6, 0.95, 5), detach_reset=True, train_threshold=True),
        eqslax.LIF(4, 0.7, detach_reset=True, reset_decay=False),
        eqslax.LIF(3, np.array([0.5, 0.8, 0.9]), detach_reset=True, train_decay=True),
    )


def test_ottt_equals_ostl_in_every_layer_with_detached_resets():
    # With every reset detached ∂u_t/∂u_{t-1} = λ, OSTL's eligibility is 1 ⊗ â.
    model, data = deep_detached(), batch(jax.random.PRNGKey(3), 6)
    assert_identity(grads(OTTT(), model, data), grads(eqslax.OSTL(), model, data))


def test_trace_shapes_follow_the_leaks():
    # OTTT: â is (n_in,) for a shared leak and (n, n_in) once each neuron has its own.
    # OTPE: R̂ is (n, n_in); a hidden layer takes one (mean) leak of the next layer.
    model = with_neurons(
        feedforward(jax.random.PRNGKey(0), [6, 5, 3]),
        eqslax.LIF(5, 0.8),
        eqslax.LIF(3, np.array([0.5, 0.8, 0.9])),
    )
    state = model.init_state()
    ottt = OTTT().init_traces(model, state).layers
    assert ottt[0].input.shape == (6,) and ottt[0].bias.shape == ()
    assert ottt[1].input.shape == (3, 5) and ottt[1].bias.shape == (3,)
    otpe = OTPE().init_traces(model, state).layers
    assert otpe[0].estimate.weight.shape == (5, 6) and otpe[0].average.norm.shape == ()
    approx = ApproxOTPE().init_traces(model, state).layers
    assert approx[0].second.input.shape == (6,) and approx[1].second.input.shape == (3, 5)


# OTPE ----------------------------------------------------------------------------------


def two_layers(output_detached=True):
    """Hidden LIF in the undecayed-reset form with its reset gradient, per-neuron leaks
    and a trained threshold; output LIF in the decayed-reset form with leak 0.85, given
    per neuron (OTPE's hidden estimate takes their mean)."""
    return with_neurons(
        feedforward(jax.random.PRNGKey(4), [6, 5, 3]),
        eqslax.LIF(5, np.linspace(0.6, 0.95, 5), reset_decay=False, train_threshold=True),
        eqslax.LIF(3, np.full(3, 0.85), detach_reset=output_detached),
    )


def test_otpe_hidden_with_ostl_output_equals_bptt():
    # dv²_t/dθ¹ = W² R̂¹_t with R̂¹_t = λ₂ R̂¹_{t-1} + ds¹_t/dθ¹ when the output reset is
    # detached; the last layer (no receiving population) is OSTL.
    model, data = two_layers(), batch(jax.random.PRNGKey(5), 6)
    exact = grads(eqslax.BPTT(), model, data)
    assert_identity(grads(OTPE(), model, data), exact)
    # Controls: OSTL drops the path and a wrong R̂ leak mis-weights it.
    ostl, wrong_leak = grads(eqslax.OSTL(), model, data), grads(OTPE(leak=0.5), model, data)
    assert relative_error(ostl.layers[0], exact.layers[0]) > 1e-2
    assert relative_error(wrong_leak.layers[0], exact.layers[0]) > 1e-2


def test_reset_gradients_make_ottt_and_otpe_approximate():
    # With the output reset's gradient on, ∂v²_t/∂v²_{t-1} = λ(1 - ϑσ'_t) ≠ λ: OTPE's
    # hidden layer and OTTT's output layer are off; OTPE's (OSTL) output stays exact.
    model = two_layers(output_detached=False)
    data = batch(jax.random.PRNGKey(5), 6)
    exact = grads(eqslax.BPTT(), model, data)
    otpe, ottt = grads(OTPE(), model, data), grads(OTTT(), model, data)
    assert relative_error(otpe.layers[0], exact.layers[0]) > 1e-3
    assert_tree_allclose(otpe.layers[2], exact.layers[2], rtol=1e-10)
    assert relative_error(ottt.layers[2], exact.layers[2]) > 1e-3


def test_zero_leak_gives_ostl_and_ottt():
    # λ_{l+1} = 0: R̂ = dy/dθ and ḡ = σ'_t, i.e. OSTL; ẑ = â, i.e. OTTT.
    model, data = deep_detached(), batch(jax.random.PRNGKey(3), 6)
    assert_identity(grads(OTPE(leak=0.0), model, data), grads(eqslax.OSTL(), model, data))
    assert_identity(grads(ApproxOTPE(leak=0.0), model, data), grads(OTTT(), model, data))
    # With a hidden reset gradient on, leak 0 still reduces OTPE to OSTL.
    model, data = two_layers(), batch(jax.random.PRNGKey(5), 6)
    assert_identity(grads(OTPE(leak=0.0), model, data), grads(eqslax.OSTL(), model, data))


def test_approx_otpe_equals_otpe_equals_bptt_with_constant_surrogate():
    # σ' = c: ḡ = c and ds¹_τ/dW¹ = c â_τ, so R̂ = c ẑ; detached resets make it exact.
    surrogate = eqslax.CustomSurrogate(lambda x: 0.3 * jnp.ones_like(x))
    model = with_neurons(
        feedforward(jax.random.PRNGKey(8), [6, 5, 3]),
        eqslax.LIF(5, 0.8, detach_reset=True, surrogate=surrogate, train_threshold=True),
        eqslax.LIF(3, 0.8, detach_reset=True, surrogate=surrogate),
    )
    data = batch(jax.random.PRNGKey(9), 6)
    exact = grads(eqslax.BPTT(), model, data)
    assert_identity(grads(OTPE(), model, data), exact)
    assert_identity(grads(ApproxOTPE(), model, data), exact)
    # With a per-neuron leaky readout the factorisation still matches OTPE in every layer.
    model = eqslax.Connect([*model.layers, eqslax.LI(3, np.array([0.6, 0.8, 0.95]))])
    assert_identity(grads(ApproxOTPE(), model, data), grads(OTPE(), model, data))


def test_front_otpe_output_layer_equals_bptt_for_a_leaky_readout():
    # o_t = κ o_{t-1} + s²_t, loss on o_t: do_t/dθ² = R̂²_t with leak κ, exactly, for
    # per-neuron κ and with the output reset gradient on.
    kappa = np.array([0.6, 0.8, 0.95])
    base = feedforward(jax.random.PRNGKey(10), [6, 5, 3], decay=0.8)
    model = eqslax.Connect([*base.layers, eqslax.LI(3, kappa)])
    data = batch(jax.random.PRNGKey(11), 6)
    exact = grads(eqslax.BPTT(), model, data)
    front = grads(OTPE(), model, data)
    assert_identity(front.layers[2], exact.layers[2])
    # Control: without the readout leak (κ = 0 in the estimate) the output layer is off.
    assert relative_error(grads(OTPE(leak=0.0), model, data).layers[2], exact.layers[2]) > 1e-2


# Slax regression thresholds ------------------------------------------------------------


def time_coded(key, size, steps, units):
    """T-Randman-like input: every unit fires exactly once, at a random step."""
    times = jax.random.randint(key, (size, units), 0, steps)
    return (jnp.arange(steps)[None, :, None] == times[:, None, :]).astype(jnp.float64)


def cosine(a, b) -> float:
    a, b = jnp.concatenate([x.ravel() for x in a]), jnp.concatenate([x.ravel() for x in b])
    return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def layer(tree, index):
    return jtu.tree_leaves(tree.layers[index])


def test_slax_regression_thresholds():
    # Slax's test set-up: 64-50-10 LIF, λ = sigmoid(2), T = 20, batch 32, reset gradient on.
    model = feedforward(jax.random.PRNGKey(0), [64, 50, 10], decay=float(jax.nn.sigmoid(2.0)))
    data = (
        time_coded(jax.random.PRNGKey(0), 32, 20, 64),
        jax.random.randint(jax.random.PRNGKey(1), (32,), 0, 10),
    )
    exact = grads(eqslax.BPTT(), model, data)
    ottt, otpe, ostl = (grads(rule, model, data) for rule in (OTTT(), OTPE(), eqslax.OSTL()))
    assert cosine(layer(ottt, 2), layer(exact, 2)) > 0.99
    assert cosine(layer(otpe, 0), layer(exact, 0)) > 0.85
    # The paper's claim: the postsynaptic estimate aligns the hidden layer better.
    assert cosine(layer(otpe, 0), layer(exact, 0)) > cosine(layer(ostl, 0), layer(exact, 0))


# Training and errors -------------------------------------------------------------------


@pytest.mark.parametrize("rule", [OTTT(), OTPE(), ApproxOTPE()], ids=lambda r: type(r).__name__)
def test_online_training_lowers_the_loss(rule):
    # Parameters updated after every time step; each call reports the mean step loss.
    # An LI output layer makes the per-step cross-entropy smooth in the parameters.
    model = with_neurons(
        feedforward(jax.random.PRNGKey(12), [8, 12, 3]), eqslax.LIF(12, 0.8), eqslax.LI(3, 0.8)
    )
    xs, ys = batch(jax.random.PRNGKey(13), 8, size=8, steps=10)
    train = eqslax.train_online(model, rule, LOSS, optax.adam(1e-3))
    state, losses = train.init(model), []
    for _ in range(6):
        model, state, _, value = train(model, state, xs, ys)
        losses.append(float(value))
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < 0.9 * losses[0]


def test_errors_name_the_layer():
    net = feedforward(jax.random.PRNGKey(0), [4, 3, 2], neuron=eqslax.IF)
    state = net.init_state()
    with pytest.raises(ValueError, match=r"OTTT: layer 1 \(IF\) has no `decay`"):
        OTTT().init_traces(net, state)
    with pytest.raises(ValueError, match=r"OTPE: layer 3 \(IF\) has no `decay`"):
        OTPE().init_traces(net, state)
    OTTT(leak=1.0).init_traces(net, state)  # an explicit leak is enough

    alif = with_neurons(
        feedforward(jax.random.PRNGKey(0), [4, 3]), eqslax.ALIF(3, train_threshold=True)
    )
    with pytest.raises(ValueError, match=r"ApproxOTPE: layer 1 \(ALIF\) .* 2 state"):
        ApproxOTPE().init_traces(alif, alif.init_state())

    base = feedforward(jax.random.PRNGKey(0), [4, 3])
    readout = eqslax.Connect([*base.layers, eqslax.LI(3, train_decay=True)])
    with pytest.raises(ValueError, match=r"layer 2 \(LI readout\)"):
        OTPE().init_traces(readout, readout.init_state())

    edges = eqslax.Connect(base.layers, cat={0: [1]}, key=jax.random.PRNGKey(1))
    with pytest.raises(ValueError, match="cat"):
        OTTT().init_traces(edges, edges.init_state())

    with pytest.raises(ValueError, match=r"`leak` must lie in \[0, 1\], got 1.5"):
        OTPE(leak=1.5)
    with pytest.raises(ValueError, match=r"`presynaptic_leak` must lie in \[0, 1\]"):
        ApproxOTPE(presynaptic_leak=-0.1)
