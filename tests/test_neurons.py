"""Neurons: each one against its equations written out by hand, then the contracts that
every neuron keeps (transformations, frozen parameters, reset gradients, input checks)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import (
    DECAYS,
    NEURON_FACTORIES,
    NEURON_IDS,
    NEURON_SIZE,
    THRESHOLDS,
    assert_tree_allclose,
    neuron_input,
    unroll,
)

import eqslax

registry = pytest.mark.parametrize("make", NEURON_FACTORIES, ids=NEURON_IDS)
KEY = jax.random.key(0)


def H(x):
    """Heaviside step with H(0) = 1: a neuron fires when it reaches its threshold."""
    return jnp.where(x >= 0, 1.0, 0.0)


def sigmoid(x):
    return 1.0 / (1.0 + jnp.exp(-x))


def after_reset(mode, v, s, amount):
    """The three resets: subtract the threshold, go to zero, or keep the membrane."""
    if mode == "subtract":
        return v - amount * s
    if mode == "zero":
        return v * (1.0 - s)
    return v


# Each function below replays a neuron's paper equations for the inputs `xs` and returns,
# per step, the expected state fields and output. Parameters are read from the neuron.


def lif_by_hand(neuron, xs):
    lam = neuron.decay if isinstance(neuron, eqslax.LIF) else 1.0  # IF: no leak
    theta = neuron.threshold
    u = v = s = jnp.zeros(NEURON_SIZE)
    steps = []
    for x in xs:
        if neuron.reset_decay:
            # Slax/OTPE: v_t = λ u_{t-1} + I_t, then u_t = reset(v_t, s_t) at once.
            v = lam * u + x
            s = H(v - theta)
            u = after_reset(neuron.reset, v, s, theta)
            steps.append(({"v": u}, s))
        else:
            # snnTorch: v_t = λ v_{t-1} - ϑ s_{t-1} + I_t, the reset of s_{t-1} undecayed.
            if neuron.reset == "subtract":
                v = lam * v - theta * s + x
            elif neuron.reset == "zero":
                v = lam * v * (1.0 - s) + x
            else:
                v = lam * v + x
            s = H(v - theta)
            steps.append(({"v": v}, s))
    return steps


def li_by_hand(neuron, xs):
    v = jnp.zeros(NEURON_SIZE)
    steps = []
    for x in xs:
        v = neuron.decay * v + x
        steps.append(({"v": v}, v))
    return steps


def cuba_by_hand(neuron, xs):
    alpha, lam, theta = neuron.synapse_decay, neuron.decay, neuron.threshold
    i = u = jnp.zeros(NEURON_SIZE)
    steps = []
    for x in xs:
        i = alpha * i + x
        v = lam * u + i
        s = H(v - theta)
        u = v - theta * s
        steps.append(({"i": i, "v": u}, s))
    return steps


def alif_by_hand(neuron, xs):
    lam, theta = neuron.decay, neuron.threshold
    rho, beta = neuron.adaptation_decay, neuron.adaptation
    u = v = s = a = jnp.zeros(NEURON_SIZE)
    steps = []
    for x in xs:
        A = theta + beta * a  # threshold from the spikes up to t-1
        if neuron.reset_decay:
            v = lam * u + x
            s = H(v - A)
            u = v - theta * s  # the reset removes the base threshold
            a = rho * a + s
            steps.append(({"v": u, "a": a}, s))
        else:
            # e-prop: v_t = λ v_{t-1} + I_t - ϑ s_{t-1}; the state keeps (v_t, a_{t-1}).
            v = lam * v + x - theta * s
            s = H(v - A)
            steps.append(({"v": v, "a": a}, s))
            a = rho * a + s
    return steps


def rlif_by_hand(neuron, xs):
    lam, theta, W = neuron.decay, neuron.threshold, neuron.recurrent_weight
    u = s = jnp.zeros(NEURON_SIZE)
    steps = []
    for x in xs:
        v = lam * u + x + W @ s
        s = H(v - theta)
        u = v - theta * s
        steps.append(({"v": u, "s": s}, s))
    return steps


def recurrent_by_hand(neuron, xs):
    """Feed x_t + W y_{t-1} to the wrapped neuron's own hand-written trajectory."""
    inner, W = neuron.neuron, neuron.weight
    by_hand = BY_HAND[type(inner)]
    inputs, steps = [], []
    y = jnp.zeros(NEURON_SIZE)
    for x in xs:
        inputs.append(x + W @ y)
        _, y = by_hand(inner, jnp.stack(inputs))[-1]
        steps.append(({"output": y}, y))
    return steps


def ltc_by_hand(neuron, xs):
    b0, beta = neuron.threshold, neuron.adaptation
    v = s = b = jnp.zeros(NEURON_SIZE)
    steps = []
    for x in xs:
        alpha = sigmoid(
            neuron.input_membrane_weight @ x + neuron.membrane_weight @ v + neuron.membrane_bias
        )
        rho = sigmoid(
            neuron.input_adaptation_weight @ x
            + neuron.adaptation_weight @ b
            + neuron.adaptation_bias
        )
        b = rho * b + (1.0 - rho) * s
        theta = b0 + beta * b
        v = alpha * v + (1.0 - alpha) * x  # the paper's form, not Slax's (2α - 1) v
        s = H(v - theta)
        v = after_reset(neuron.reset, v, s, theta)
        steps.append(({"v": v, "s": s, "b": b}, s))
    return steps


def izhikevich_by_hand(neuron, xs):
    a, b, c, d, dt = neuron.a, neuron.b, neuron.c, neuron.d, neuron.dt
    v = c * jnp.ones(NEURON_SIZE)
    u = b * v
    steps = []
    for current in xs:
        dv = 0.04 * v**2 + 5 * v + 140 - u + current
        du = a * (b * v - u)
        v, u = v + dt * dv, u + dt * du
        fired = v >= 30.0
        v = jnp.where(fired, c, v)  # if v >= 30 mV: v <- c, u <- u + d
        u = jnp.where(fired, u + d, u)
        steps.append(({"v": v, "u": u}, fired.astype(float)))
    return steps


BY_HAND = {
    eqslax.IF: lif_by_hand,
    eqslax.LIF: lif_by_hand,
    eqslax.LI: li_by_hand,
    eqslax.CuBaLIF: cuba_by_hand,
    eqslax.ALIF: alif_by_hand,
    eqslax.RLIF: rlif_by_hand,
    eqslax.Recurrent: recurrent_by_hand,
    eqslax.LTC: ltc_by_hand,
    eqslax.Izhikevich: izhikevich_by_hand,
}


def test_registry_covers_every_neuron():
    exported = {
        obj
        for obj in vars(eqslax).values()
        if isinstance(obj, type)
        and issubclass(obj, eqslax.AbstractNeuron)
        and not obj.__name__.startswith("Abstract")
        and obj.__module__.startswith("eqslax._neurons")
    }
    in_registry = {type(make(KEY)) for make in NEURON_FACTORIES}
    assert exported <= in_registry, exported - in_registry
    assert in_registry == set(BY_HAND)


@registry
def test_trajectory_follows_the_equations(make):
    neuron = make(KEY)
    xs = neuron_input(jax.random.key(1), neuron, 6)
    state = neuron.init_state()
    outputs = []
    for t, (expected_state, expected_output) in enumerate(BY_HAND[type(neuron)](neuron, xs)):
        state, out = neuron(state, xs[t])
        outputs.append(out)
        for name, value in expected_state.items():
            np.testing.assert_allclose(
                getattr(state, name), value, rtol=1e-12, atol=1e-12, err_msg=f"{name}, t={t}"
            )
        np.testing.assert_allclose(out, expected_output, rtol=1e-12, atol=1e-12)
    if not isinstance(neuron, eqslax.LI):
        # The resets must have been exercised: some spikes before the last step.
        assert float(jnp.sum(jnp.stack(outputs[:-1]))) > 0


# A second, independent implementation of LIF in plain numpy, over a long random input.


def lif_numpy(decay, threshold, reset_decay, xs):
    carried = np.zeros_like(xs[0])
    s = np.zeros_like(xs[0])
    spikes, membranes = [], []
    for x in xs:
        if reset_decay:
            v = decay * carried + x
            s = (v >= threshold).astype(float)
            carried = v - threshold * s
        else:
            carried = decay * carried - threshold * s + x
            s = (carried >= threshold).astype(float)
        spikes.append(s)
        membranes.append(carried)
    return np.stack(spikes), np.stack(membranes)


@pytest.mark.parametrize("reset_decay", [True, False], ids=["decayed", "undecayed"])
def test_lif_matches_numpy_over_100_steps(reset_decay):
    n = 16
    rng = np.random.default_rng(0)
    decay = rng.uniform(0.5, 1.0, n)
    threshold = rng.uniform(0.5, 1.5, n)
    xs = rng.uniform(-0.5, 1.0, (100, n))
    neuron = eqslax.LIF(n, decay, threshold, reset_decay=reset_decay)

    def record(state, x):
        state, s = neuron(state, x)
        return state, (s, state.v)

    _, (spikes, membranes) = jax.lax.scan(record, neuron.init_state(), jnp.asarray(xs))
    spikes_np, membranes_np = lif_numpy(decay, threshold, reset_decay, xs)
    np.testing.assert_array_equal(spikes, spikes_np)
    np.testing.assert_allclose(membranes, membranes_np, rtol=1e-10, atol=1e-12)
    assert 0.05 < spikes_np.mean() < 0.95  # a regime with both spikes and silence


# Transformations: jit, vmap, grad and forward/reverse mode agree with plain evaluation.


def warm_state(neuron, key, steps=3):
    state, _ = unroll(neuron, neuron.init_state(), neuron_input(key, neuron, steps))
    return state


@registry
def test_jit_equals_eager(make):
    neuron = make(KEY)
    state = warm_state(neuron, jax.random.key(2))
    x = neuron_input(jax.random.key(3), neuron, 1)[0]
    assert_tree_allclose(jax.jit(lambda st, x: neuron(st, x))(state, x), neuron(state, x))


@registry
def test_vmap_equals_loop(make):
    neuron = make(KEY)
    batch = 4
    xs = neuron_input(jax.random.key(4), neuron, 3 * batch).reshape(3, batch, *neuron.in_shape)
    states = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch, *a.shape)), neuron.init_state())
    looped = [neuron.init_state() for _ in range(batch)]
    for x in xs:
        states, outs = jax.vmap(neuron)(states, x)
        for i in range(batch):
            looped[i], out_i = neuron(looped[i], x[i])
            np.testing.assert_allclose(outs[i], out_i, rtol=1e-12, atol=1e-12)
    for i in range(batch):
        assert_tree_allclose(jax.tree.map(lambda a, i=i: a[i], states), looped[i])


def unroll_loss(neuron, xs, weights):
    """A smooth readout of a 10-step unroll, from the neuron's own initial state."""
    _, outputs = unroll(neuron, neuron.init_state(), xs)
    return jnp.sum(weights * outputs)


@registry
def test_grad_equals_under_jit_and_is_finite(make):
    neuron = make(KEY)
    xs = neuron_input(jax.random.key(5), neuron, 10)
    weights = jax.random.normal(jax.random.key(6), xs.shape)
    grads = eqx.filter_grad(unroll_loss)(neuron, xs, weights)
    jit_grads = eqx.filter_jit(eqx.filter_grad(unroll_loss))(neuron, xs, weights)
    assert_tree_allclose(grads, jit_grads, rtol=1e-9, atol=1e-12)
    for leaf in jax.tree.leaves(eqx.filter(grads, eqx.is_array)):
        assert bool(jnp.all(jnp.isfinite(leaf)))


@registry
def test_forward_mode_equals_reverse_mode(make):
    neuron = make(KEY)
    state = warm_state(neuron, jax.random.key(7))
    x = neuron_input(jax.random.key(8), neuron, 1)[0]

    def step(x):
        new_state, out = neuron(state, x)
        return out, new_state

    forward, reverse = jax.jacfwd(step)(x), jax.jacrev(step)(x)
    assert_tree_allclose(forward, reverse)


# Frozen parameters are constants; trainable ones learn.


@registry
def test_frozen_parameters_get_exactly_zero_gradient(make):
    neuron = make(KEY)
    xs = neuron_input(jax.random.key(9), neuron, 10)
    weights = jax.random.normal(jax.random.key(10), xs.shape)
    grads = eqx.filter_grad(unroll_loss)(neuron, xs, weights)
    if isinstance(neuron, eqslax.Recurrent):  # the wrapped population holds the parameters
        neuron, grads = neuron.neuron, grads.neuron
    assert neuron.frozen, "every registry neuron freezes something by default"
    for name in neuron.frozen:
        np.testing.assert_array_equal(getattr(grads, name), 0.0, err_msg=name)


TRAINABLE = [
    (
        lambda: eqslax.LIF(NEURON_SIZE, DECAYS, THRESHOLDS, train_decay=True, train_threshold=True),
        ("decay", "threshold"),
    ),
    (
        lambda: eqslax.ALIF(
            NEURON_SIZE, DECAYS, THRESHOLDS, train_decay=True, train_threshold=True
        ),
        ("decay", "threshold", "adaptation_decay", "adaptation"),
    ),
    (
        lambda: eqslax.CuBaLIF(NEURON_SIZE, decay=DECAYS, train_decay=True),
        ("decay", "synapse_decay"),
    ),
    (lambda: eqslax.LI(NEURON_SIZE, DECAYS, train_decay=True), ("decay",)),
    (
        lambda: eqslax.LTC(NEURON_SIZE, key=KEY, train_threshold=True),
        ("threshold", "adaptation", "input_membrane_weight", "adaptation_weight"),
    ),
    (lambda: eqslax.Izhikevich(NEURON_SIZE, train_parameters=True), ("a", "b", "c", "d")),
]


@pytest.mark.parametrize(
    "make, names", TRAINABLE, ids=["LIF", "ALIF", "CuBaLIF", "LI", "LTC", "Izhikevich"]
)
def test_trainable_parameters_get_a_gradient(make, names):
    neuron = make()
    for name in names:
        assert name not in neuron.frozen
    xs = neuron_input(jax.random.key(11), neuron, 10)
    weights = jax.random.normal(jax.random.key(12), xs.shape)
    grads = eqx.filter_grad(unroll_loss)(neuron, xs, weights)
    for name in names:
        assert float(jnp.max(jnp.abs(getattr(grads, name)))) > 0, name
    mask = eqslax.trainable_mask(neuron)
    assert all(getattr(mask, name) is True for name in names)


# Reset gradients: the carried membrane's local Jacobian against its closed form.


@pytest.mark.parametrize("detach_reset", [False, True], ids=["attached", "detached"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("reset_decay", [True, False], ids=["decayed", "undecayed"])
def test_lif_reset_jacobian_closed_form(reset_decay, reset, detach_reset):
    lam, theta, x = 0.9, 1.0, 0.1
    neuron = eqslax.LIF(
        1, lam, theta, reset=reset, reset_decay=reset_decay, detach_reset=detach_reset
    )
    carried = jnp.array([1.05])

    def next_carried(carried):
        state, _ = neuron(eqslax.LIFState(v=carried), jnp.array([x]))
        return state.v

    jacobian = jax.jacfwd(next_carried)(carried)[0, 0]
    np.testing.assert_allclose(jacobian, jax.jacrev(next_carried)(carried)[0, 0], rtol=1e-12)

    # The spike whose reset reaches the next carried membrane: this step's in the decayed
    # form, the previous step's (recomputed from the carried v) in the undecayed form.
    v = lam * carried[0] + x if reset_decay else carried[0]
    s = float(v >= theta)
    sigma = float(neuron.surrogate.derivative(v - theta))
    assert s == 1.0 and sigma > 0.1  # near threshold, so the surrogate term matters
    c = 0.0 if detach_reset else {"subtract": theta, "zero": v, "none": 0.0}[reset]
    keep = 1.0 - s if reset == "zero" else 1.0  # a zero reset multiplies by 1 - s
    if reset_decay or reset == "zero":
        expected = lam * (keep - c * sigma)  # λ(1 - cσ'): the reset is decayed (or scales λv)
    else:
        expected = lam - c * sigma  # λ - cσ': the subtracted reset is not decayed
    np.testing.assert_allclose(jacobian, expected, rtol=1e-12, atol=1e-15)
    if detach_reset and reset != "none":
        # No -ϑσ' (or -vσ') term: the detached reset only gates or shifts the value.
        assert jacobian == pytest.approx(lam * keep)


def test_reset_modes_change_the_forward_pass_as_stated():
    x = jnp.array([1.5])
    for reset, expected in [("subtract", 0.5), ("zero", 0.0), ("none", 1.5)]:
        state, s = eqslax.LIF(1, reset=reset)(eqslax.LIF(1).init_state(), x)
        assert float(s[0]) == 1.0
        assert float(state.v[0]) == pytest.approx(expected)


@pytest.mark.parametrize("detach_reset", [False, True], ids=["attached", "detached"])
def test_izhikevich_reset_jacobian_closed_form(detach_reset):
    dt, c, v_scale = 1.0, -65.0, 30.0
    neuron = eqslax.Izhikevich(1, dt=dt, c=c, v_scale=v_scale, detach_reset=detach_reset)
    v, u, current = -25.0, -10.0, 10.0  # Euler lands at 35 mV, just above the peak

    def next_v(v):
        state, _ = neuron(eqslax.IzhikevichState(v=v, u=jnp.array([u])), jnp.array([current]))
        return state.v

    jacobian = jax.jacfwd(next_v)(jnp.array([v]))[0, 0]
    v_euler = v + dt * (0.04 * v**2 + 5 * v + 140 - u + current)
    assert v_euler >= 30.0  # it fires
    euler = 1 + dt * (0.08 * v + 5)  # d v'_t / d v_{t-1}
    sigma = float(neuron.surrogate.derivative((v_euler - 30.0) / v_scale)) / v_scale
    # v_t = v'(1 - s) + c s:  d v_t / d v' = (1 - s) + (c - v') σ' / v_scale.
    expected = 0.0 if detach_reset else (c - v_euler) * sigma * euler
    np.testing.assert_allclose(jacobian, expected, rtol=1e-12, atol=1e-15)


# Properties of the two models added with the LTC-SNN and Izhikevich's.


def test_ltc_gates_couple_units_and_izhikevich_does_not():
    assert eqslax.LTC.elementwise is False
    assert eqslax.Izhikevich.elementwise is True
    neuron = eqslax.LTC(NEURON_SIZE, key=KEY)
    state = warm_state(neuron, jax.random.key(13))

    def membrane(x):
        return neuron(state, x)[0].v

    jacobian = jax.jacfwd(membrane)(jnp.array([0.01, 0.02, 0.03]))  # below threshold
    off_diagonal = jacobian - jnp.diag(jnp.diag(jacobian))
    assert float(jnp.max(jnp.abs(off_diagonal))) > 0


def test_ltc_defaults_are_the_papers():
    neuron = eqslax.LTC(NEURON_SIZE, key=KEY)
    assert float(neuron.threshold) == pytest.approx(0.1)
    assert float(neuron.adaptation) == pytest.approx(1.8)
    assert neuron.reset == "zero"
    assert isinstance(neuron.surrogate, eqslax.MultiGaussian)
    bound = 1 / math.sqrt(2 * NEURON_SIZE)
    assert float(jnp.max(jnp.abs(neuron.membrane_weight))) <= bound
    assert neuron.membrane_weight.shape == (NEURON_SIZE, NEURON_SIZE)


def test_izhikevich_regular_spiking_fires_regularly():
    # Izhikevich (2003) Fig. 2, regular spiking: tonic firing under a step of I = 10.
    neuron = eqslax.Izhikevich(1, dt=0.5)
    xs = jnp.full((2000, 1), 10.0)  # one second
    _, spikes = unroll(neuron, neuron.init_state(), xs)
    n_spikes = int(spikes.sum())
    assert 5 <= n_spikes <= 30, n_spikes
    times = np.flatnonzero(np.asarray(spikes[:, 0]))
    intervals = np.diff(times)
    assert intervals[-1] > intervals[0]  # spike-frequency adaptation


# Bad input: clear errors that name the argument.


@registry
def test_wrong_input_shape_is_rejected(make):
    neuron = make(KEY)
    with pytest.raises(ValueError, match=r"`x`.*\(3,?\).*\(4,\)"):
        neuron(neuron.init_state(), jnp.zeros(4))


@registry
def test_integer_input_is_rejected(make):
    neuron = make(KEY)
    x = jnp.zeros(NEURON_SIZE, dtype=jnp.int32)
    # Under the suite's jaxtyping hook, the annotation check answers first ('x', i32[3]);
    # without it, the neuron's own check does (`x` ... floating ... int32).
    with pytest.raises(TypeError, match=r"`x`.*floating.*int32|'x'(.|\n)*i32\[3\]"):
        neuron(neuron.init_state(), x)
    with pytest.raises(TypeError, match=r"`x`.*floating.*int32"):
        neuron.check_input(x)


@registry
def test_batch_axis_is_rejected_with_a_hint(make):
    neuron = make(KEY)
    with pytest.raises(ValueError, match=r"`x`.*\(3,?\).*\(8, 3\).*vmap"):
        neuron(neuron.init_state(), jnp.zeros((8, NEURON_SIZE)))


BAD_ARGUMENTS = [
    (lambda: eqslax.LIF(3, decay=1.5), "decay"),
    (lambda: eqslax.LIF(3, decay=-0.1), "decay"),
    (lambda: eqslax.LIF(3, threshold=-1.0), "threshold"),
    (lambda: eqslax.LIF(3, threshold=0.0), "threshold"),
    (lambda: eqslax.LIF(3, reset="hard"), "reset"),
    (lambda: eqslax.LIF(3, decay=np.array([0.5, 0.9])), "decay"),
    (lambda: eqslax.IF(3, threshold=-1.0), "threshold"),
    (lambda: eqslax.LI(3, decay=1.5), "decay"),
    (lambda: eqslax.CuBaLIF(3, synapse_decay=1.5), "synapse_decay"),
    (lambda: eqslax.ALIF(3, adaptation_decay=1.5), "adaptation_decay"),
    (lambda: eqslax.ALIF(3, adaptation=-1.0), "adaptation"),
    (lambda: eqslax.RLIF(3, decay=1.5, key=KEY), "decay"),
    (lambda: eqslax.LTC(3, threshold=-0.1, key=KEY), "threshold"),
    (lambda: eqslax.LTC(3, adaptation=-1.0, key=KEY), "adaptation"),
    (lambda: eqslax.LTC(3, reset="hard", key=KEY), "reset"),
    (lambda: eqslax.Izhikevich(3, a=-0.02), "a"),
    (lambda: eqslax.Izhikevich(3, c=np.array([-65.0, -50.0])), "c"),
    (lambda: eqslax.Izhikevich(3, dt=0.0), "dt"),
    (lambda: eqslax.Izhikevich(3, v_scale=-30.0), "v_scale"),
]


@pytest.mark.parametrize(
    "make, name", BAD_ARGUMENTS, ids=[f"{i}-{name}" for i, (_, name) in enumerate(BAD_ARGUMENTS)]
)
def test_bad_constructor_argument_is_named(make, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make()


def test_bad_surrogate_is_rejected():
    # `surrogate` from the constructors' own check, 'surrogate' from the jaxtyping hook.
    for make in (eqslax.LIF, eqslax.Izhikevich):
        with pytest.raises(TypeError, match="[`']surrogate[`']"):
            make(3, surrogate=lambda x: x)
    with pytest.raises(TypeError, match="key"):
        eqslax.LTC(3)
