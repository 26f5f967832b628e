"""Online drivers, and a neuron that only this file knows about."""

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes
from jaxtyping import Array, Float

import eqslax


class QuadraticState(eqx.Module):
    v: Float[Array, " n"]
    w: Float[Array, " n"]


class QuadraticIF(eqslax.AbstractSpikingPopulation):
    """A two-variable neuron the library has never seen:
    w_t = 0.5 w_{t-1} + 0.1 s_{t-1}-free recovery; v_t = a u_{t-1} - w_t + I_t + 0.05 u_{t-1}^2."""

    shape: tuple[int, ...] = eqx.field(static=True)
    a: Float[Array, ""]
    threshold: Float[Array, ""]
    surrogate: eqslax.AbstractSurrogate
    reset: str = eqx.field(static=True)
    detach_reset: bool = eqx.field(static=True)
    reset_decay: bool = eqx.field(static=True)
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, shape: int | Sequence[int]):
        self.shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.a = jnp.asarray(0.7)
        self.threshold = jnp.asarray(1.0)
        self.surrogate = eqslax.Arctan()
        self.reset, self.detach_reset, self.reset_decay = "subtract", False, True
        self.frozen = ("threshold",)  # `a` is trained

    def init_state(self):
        zeros = jnp.zeros(self.shape)
        return QuadraticState(v=zeros, w=zeros)

    def __call__(self, state, x):
        w = 0.5 * state.w + 0.2 * state.v
        v = self.param("a") * state.v - w + x + 0.05 * state.v**2
        s, v = self.spike(v, self.param("threshold"))
        return QuadraticState(v=v, w=w), s


def problem(key, sizes):
    k = jax.random.split(key, 2)
    xs = random_spikes(k[1], (3, 9, sizes[0]), 0.4)
    return feedforward(k[0], sizes, neuron=QuadraticIF), xs, jnp.arange(3) % sizes[-1]


def test_a_test_only_neuron_works_with_rtrl_and_ostl_unchanged():
    loss = eqslax.PerStep()
    model, xs, ys = problem(jax.random.key(0), (6, 5, 3))
    bptt = eqslax.BPTT().grad(model, loss, xs, ys)
    assert jnp.linalg.norm(bptt.layers[1].a) > 0
    assert_tree_allclose(eqslax.RTRL().grad(model, loss, xs, ys), bptt)
    ostl = eqslax.OSTL().grad(model, loss, xs, ys)
    assert_tree_allclose(ostl.layers[2], bptt.layers[2])
    assert_tree_allclose(ostl.layers[3], bptt.layers[3])
    one, xs1, ys1 = problem(jax.random.key(1), (6, 3))
    assert_tree_allclose(
        eqslax.OSTL().grad(one, loss, xs1, ys1), eqslax.BPTT().grad(one, loss, xs1, ys1)
    )


def test_deferred_online_training_equals_offline_training_with_per_step_loss():
    model, xs, ys = problem(jax.random.key(2), (6, 5, 3))
    optimizer = optax.adam(1e-2)
    offline = eqslax.train_offline(model, eqslax.PerStep(), optimizer)
    deferred = eqslax.train_online_deferred(model, eqslax.RTRL(), eqslax.PerStep(), optimizer)
    a, sa, out_a, loss_a = offline(model, offline.init(model), xs, ys)
    b, sb, out_b, loss_b = deferred(model, deferred.init(model), xs, ys)
    assert_tree_allclose(a, b)
    assert_tree_allclose(sa.optimizer, sb.optimizer)
    assert jnp.allclose(loss_a, loss_b) and jnp.array_equal(out_a, out_b)


def test_online_training_applies_one_update_per_step():
    """With SGD, the online driver equals a hand loop: step, gradient of ℓ_t, update."""
    model, xs, ys = problem(jax.random.key(3), (6, 3))
    rule, loss, lr = eqslax.OSTL(), eqslax.PerStep(), 0.05
    step = eqslax.train_online(model, rule, loss, optax.sgd(lr))
    got, _, outputs, _ = step(model, step.init(model), xs, ys)

    params, static = eqx.partition(model, eqslax.trainable_mask(model))
    states, traces = jax.vmap(lambda x: rule.start(model, x[0]))(xs)

    @eqx.filter_jit
    def hand_step(current, states, traces, x):
        return jax.vmap(lambda s, tr, x, c: rule.step(current, s, tr, x, c, loss))(
            states, traces, x, ys
        )

    for t in range(xs.shape[1]):
        states, traces, g, y, _ = hand_step(eqx.combine(params, static), states, traces, xs[:, t])
        params = jax.tree_util.tree_map(lambda p, g: p - lr * jnp.mean(g, 0), params, g)
        assert jnp.array_equal(outputs[:, t], y)
    assert_tree_allclose(got, eqx.combine(params, static))


def test_online_drivers_check_their_arguments():
    model, xs, ys = problem(jax.random.key(4), (6, 3))
    with pytest.raises(TypeError, match="rule"):
        eqslax.train_online(model, eqslax.BPTT(), eqslax.PerStep(), optax.sgd(0.1))
    with pytest.raises(ValueError, match="per-step loss"):
        eqslax.train_online(model, eqslax.OSTL(), eqslax.Accumulated(), optax.sgd(0.1))
    rlif = eqslax.Connect(
        [eqx.nn.Linear(6, 3, key=jax.random.key(0)), eqslax.RLIF(3, key=jax.random.key(1))]
    )
    with pytest.raises(ValueError, match="layer 1"):
        eqslax.train_online(rlif, eqslax.OSTL(), eqslax.PerStep(), optax.sgd(0.1))


def test_online_ostl_learns_randman():
    from eqslax.data import randman

    data = randman(jax.random.key(0), n_classes=3, samples_per_class=40, n_steps=20)
    model = eqslax.feedforward((20, 32, 3), key=jax.random.key(1), readout="li")
    step = eqslax.train_online(model, eqslax.OSTL(), eqslax.PerStep(), optax.adam(5e-3))
    _, history = eqslax.fit(
        model, step, data, epochs=8, batch_size=16, key=jax.random.key(2), progress=False
    )
    assert history["test_accuracy"][-1] > 0.6, history


@pytest.mark.parametrize("rule", [eqslax.OSTL(), eqslax.OTTT()], ids=["ostl", "ottt"])
def test_both_deferred_accumulations_give_the_same_gradient(rule):
    """Per-sample running sums (vmap of scans) == batch sums at every step (scan of vmaps)."""
    k = jax.random.split(jax.random.key(5), 2)
    model = feedforward(k[0], (6, 5, 3), decay=0.7)
    xs, ys = random_spikes(k[1], (3, 9, 6), 0.4), jnp.arange(3)
    loss = eqslax.PerStep()
    total, outputs, _ = eqx.filter_jit(rule._run_batch)(model, loss, xs, ys)
    per_sample, outs, _ = eqx.filter_jit(jax.vmap(lambda x, y: rule.run(model, loss, x, y)))(xs, ys)
    batch, steps = xs.shape[:2]
    assert_tree_allclose(
        jax.tree_util.tree_map(lambda g: g / (batch * steps), total),
        jax.tree_util.tree_map(lambda g: jnp.mean(g, 0) / steps, per_sample),
    )
    assert jnp.array_equal(outputs, outs)


class RefractoryState(eqx.Module):
    v: Float[Array, " n"]
    count: Array  # int32: steps left in the refractory period


class RefractoryLIF(eqslax.AbstractSpikingPopulation):
    """LIF whose input is blocked for 2 steps after a spike, counted by an integer leaf."""

    shape: tuple[int, ...] = eqx.field(static=True)
    decay: Float[Array, ""]
    threshold: Float[Array, ""]
    surrogate: eqslax.AbstractSurrogate
    reset: str = eqx.field(static=True)
    detach_reset: bool = eqx.field(static=True)
    reset_decay: bool = eqx.field(static=True)
    frozen: tuple[str, ...] = eqx.field(static=True)

    def __init__(self, shape: int, detach_reset: bool = True):
        self.shape = (shape,)
        self.decay, self.threshold = jnp.asarray(0.8), jnp.asarray(1.0)
        self.surrogate = eqslax.FastSigmoid()
        self.reset, self.detach_reset, self.reset_decay = "subtract", detach_reset, True
        self.frozen = ("decay", "threshold")

    def init_state(self):
        return RefractoryState(v=jnp.zeros(self.shape), count=jnp.zeros(self.shape, jnp.int32))

    def __call__(self, state, x):
        v = self.param("decay") * state.v + jnp.where(state.count > 0, 0.0, x)
        s, v = self.spike(v, self.param("threshold"))
        count = jnp.where(s > 0.5, 2, jnp.maximum(state.count - 1, 0)).astype(jnp.int32)
        return RefractoryState(v=v, count=count), s


def refractory_problem(key, sizes, readout=False):
    k = jax.random.split(key, 3)
    model = feedforward(k[0], sizes, neuron=RefractoryLIF)
    if readout:
        layers = [*model.layers, eqx.nn.Linear(sizes[-1], 3, key=k[2]), eqslax.LI(3, decay=0.7)]
        model = eqslax.Connect(layers)
    return model, random_spikes(k[1], (3, 12, sizes[0]), 0.5), jnp.arange(3) % 3


def test_integer_state_leaves_are_constants_to_every_layerwise_rule():
    loss = eqslax.PerStep()
    model, xs, ys = refractory_problem(jax.random.key(4), (6, 3))
    bptt = eqslax.BPTT().grad(model, loss, xs, ys)
    assert jnp.linalg.norm(bptt.layers[0].weight) > 0
    assert_tree_allclose(eqslax.OSTL().grad(model, loss, xs, ys), bptt)
    state, traces = eqslax.OSTL().start(model, xs[0, 0])
    state, *_ = eqslax.OSTL().step(model, state, traces, xs[0, 0], ys[0], loss)
    assert state.layers[1].count.dtype == jnp.int32
    deep, xs2, ys2 = refractory_problem(jax.random.key(5), (6, 4, 3))
    for rule in (eqslax.OTTT(), eqslax.OTPE(), eqslax.ApproxOTPE()):
        grads = rule.grad(deep, loss, xs2, ys2)
        leaves = jax.tree_util.tree_leaves(grads)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves), type(rule).__name__
        assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves), type(rule).__name__
    net, xs3, ys3 = refractory_problem(jax.random.key(6), (6, 4), readout=True)
    assert_tree_allclose(
        eqslax.EProp().grad(net, loss, xs3, ys3), eqslax.BPTT().grad(net, loss, xs3, ys3)
    )
