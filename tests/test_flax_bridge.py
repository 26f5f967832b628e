"""Flax bridge: eqslax models as Flax RNN cells and Flax cells as eqslax neurons.

Each side is checked against its own native run: outputs, carries, gradients and one
optimiser step must agree, and eqslax -> Flax -> eqslax must give the parameters back.
Runtime: about 35 s of CPU time, most of it compiling.
"""

import importlib
import subprocess
import sys

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import assert_tree_allclose, feedforward

import eqslax
from eqslax.flax_bridge import (
    FlaxNeuron,
    FlaxState,
    LinenCell,
    NNXCell,
    NNXNeuron,
    from_flax_params,
    to_flax_params,
)

KEY = jax.random.key(0)
BATCH, STEPS, N_IN = 4, 50, 5
SURROGATE = eqslax.FastSigmoid()

# Connect([Linear, neuron, Linear, neuron]), 5 -> 8 -> 3: the two parity networks. The
# CuBaLIF twin trains its decays, so neuron parameters cross the bridge too.
NETWORKS = {
    "LIF": lambda key: feedforward(key, (N_IN, 8, 3), eqslax.LIF),
    "CuBaLIF-train-decay": lambda key: feedforward(
        key, (N_IN, 8, 3), eqslax.CuBaLIF, train_decay=True
    ),
}
networks = pytest.mark.parametrize("make", NETWORKS.values(), ids=NETWORKS.keys())


def inputs(key, batch=BATCH, steps=STEPS, features=N_IN):
    return jax.random.uniform(key, (batch, steps, features), jnp.float64)


def eqslax_outputs(model, xs):
    """The native eqslax run of a batch: vmap over the batch, scan over time."""
    return jax.vmap(lambda x: eqslax.simulate(model, x))(xs)


def value_and_grad(objective, params):
    """``(aux, d objective / d params)`` for ``objective(params) -> (value, aux)``, jitted."""
    (_, aux), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(params)
    return aux, grads


def eqslax_value_and_grad(model, objective):
    """Gradient with respect to the trainable leaves, the way eqslax rules take it."""
    params, static = eqx.partition(model, eqslax.trainable_mask(model))
    return value_and_grad(lambda p: objective(eqx.combine(p, static)), params)


class FlaxLIF(nn.RNNCellBase):
    r"""A spiking cell in Flax style, explicit carry (Slax Fig. 3):
    :math:`v_t = \lambda u_{t-1} + W x_t + b`, :math:`s_t = H(v_t - \vartheta)`,
    :math:`u_t = v_t - \vartheta s_t`."""

    features: int
    decay: float = 0.9
    threshold: float = 1.0

    @nn.compact
    def __call__(self, u, x):
        v = self.decay * u + nn.Dense(self.features, param_dtype=jnp.float64)(x)
        s = SURROGATE(v - self.threshold)
        return v - self.threshold * s, s

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros((*input_shape[:-1], self.features), jnp.float64)

    @property
    def num_feature_axes(self):
        return 1


# ---------------------------------------------------------------- optional dependency


def test_import_eqslax_does_not_import_flax():
    code = "import sys, eqslax; print(sorted(m for m in sys.modules if m.split('.')[0] == 'flax'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_bridge_without_flax_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flax", None)
    for name in [n for n in sys.modules if n.startswith("eqslax.flax_bridge")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r'pip install "eqslax\[flax\]"'):
        importlib.import_module("eqslax.flax_bridge")


# ---------------------------------------------------------------- eqslax -> Flax


@networks
def test_linen_params_are_the_trainable_leaves(make):
    model = make(KEY)
    cell = LinenCell(model)
    carry = cell.initialize_carry(KEY, (N_IN,))
    params = cell.init(KEY, carry, jnp.zeros(N_IN))["params"]
    names = {k: sorted(v) for k, v in params["layers"].items()}
    expected = {"0": ["bias", "weight"], "2": ["bias", "weight"]}
    if isinstance(model.layers[1], eqslax.CuBaLIF):  # train_decay: both decays, not ϑ
        expected |= {"1": ["decay", "synapse_decay"], "3": ["decay", "synapse_decay"]}
    assert list(params) == ["layers"] and names == expected
    assert params["layers"]["2"]["weight"] is model.layers[2].weight


@networks
def test_linen_rnn_matches_eqslax(make):
    """Same outputs, final carries and gradients over 50 steps under linen.RNN."""
    model = make(KEY)
    xs = inputs(jax.random.key(1))
    weights = jax.random.normal(jax.random.key(2), (BATCH, STEPS, 3))
    rnn = nn.RNN(LinenCell(model), return_carry=True)
    params = rnn.init(KEY, xs)["params"]

    def flax_objective(p):
        carry, ys = rnn.apply({"params": p}, xs)
        return jnp.sum(ys * weights), (carry, ys)

    def eqslax_objective(m):
        state, ys = eqslax_outputs(m, xs)
        return jnp.sum(ys * weights), (state, ys)

    (carry, ys), flax_grads = value_and_grad(flax_objective, params)
    (state, expected), native = eqslax_value_and_grad(model, eqslax_objective)
    assert 0.05 < float(expected.mean()) < 0.95  # the network spikes, but not always
    np.testing.assert_array_equal(ys, expected)
    assert_tree_allclose(carry, state)

    bridged = from_flax_params(model, flax_grads["cell"])
    bridged = eqx.filter(bridged, eqslax.trainable_mask(model))
    assert float(jnp.abs(native.layers[0].weight).max()) > 1e-3
    assert_tree_allclose(bridged, native, rtol=1e-6, atol=1e-9)


def test_nnx_rnn_matches_eqslax():
    model = NETWORKS["CuBaLIF-train-decay"](KEY)
    xs = inputs(jax.random.key(1))
    rnn = nnx.RNN(NNXCell(model))

    def nnx_objective(r):
        ys = r(xs)
        return jnp.sum(ys**2), ys

    def eqslax_objective(m):
        ys = eqslax_outputs(m, xs)[1]
        return jnp.sum(ys**2), ys

    (_, ys), grads = nnx.jit(nnx.value_and_grad(nnx_objective, has_aux=True))(rnn)
    expected, native = eqslax_value_and_grad(model, eqslax_objective)
    np.testing.assert_array_equal(ys, expected)

    flax_grads = grads.to_pure_dict()["cell"]["params"]
    bridged = eqx.filter(from_flax_params(model, flax_grads), eqslax.trainable_mask(model))
    assert_tree_allclose(bridged, native, rtol=1e-6, atol=1e-9)


def test_linen_adam_step_matches_eqslax_step():
    """One adam step in Flax land equals one through an eqslax rule and eqx.apply_updates."""
    model = NETWORKS["CuBaLIF-train-decay"](KEY)
    xs = inputs(jax.random.key(1), steps=20)
    labels = jnp.array([0, 1, 2, 1])
    loss = eqslax.PerStep()
    optimizer = optax.adam(1e-2)

    grads = eqslax.BPTT().grad(model, loss, xs, labels)
    trainable = eqslax.trainable(model)
    updates, _ = optimizer.update(grads, optimizer.init(trainable), trainable)
    eqslax_after = eqx.apply_updates(model, updates)

    rnn = nn.RNN(LinenCell(model))
    params = rnn.init(KEY, xs)["params"]

    def flax_loss(p):
        logits = rnn.apply({"params": p}, xs)
        labels_t = jnp.broadcast_to(labels[:, None], logits.shape[:2])
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels_t))

    flax_grads = jax.jit(jax.grad(flax_loss))(params)
    updates, _ = optimizer.update(flax_grads, optimizer.init(params), params)
    flax_after = optax.apply_updates(params, updates)["cell"]

    assert not np.allclose(flax_after["layers"]["0"]["weight"], model.layers[0].weight)
    assert_tree_allclose(flax_after, to_flax_params(eqslax_after), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- Flax -> eqslax


@pytest.fixture(scope="module")
def lstm():
    """A linen LSTM cell, 5 -> 3, wrapped once (initialising it is the slow part)."""
    cell = nn.LSTMCell(3, param_dtype=jnp.float64)
    return cell, FlaxNeuron(cell, N_IN, key=KEY)


def test_linen_lstm_matches_native_run(lstm):
    cell, neuron = lstm
    xs = inputs(jax.random.key(1), steps=20)
    assert (neuron.in_shape, neuron.out_shape) == ((N_IN,), (3,))

    state, ys = eqslax_outputs(neuron, xs)
    carry, expected = nn.RNN(cell, return_carry=True).apply({"params": {"cell": neuron.params}}, xs)
    assert_tree_allclose(ys, expected)
    assert_tree_allclose(state.carry, carry)


def test_flax_style_lif_cell_matches_native_run_and_eqslax_lif():
    cell = FlaxLIF(8)
    neuron = FlaxNeuron(cell, N_IN, key=KEY)
    dense = neuron.params["Dense_0"]
    dense = {"kernel": 3.0 * dense["kernel"], "bias": dense["bias"]}  # make it spike
    neuron = eqx.tree_at(lambda n: n.params["Dense_0"], neuron, dense)
    xs = inputs(jax.random.key(1))

    state, ys = eqslax_outputs(neuron, xs)
    carry, native = nn.RNN(cell, return_carry=True).apply({"params": {"cell": neuron.params}}, xs)
    np.testing.assert_array_equal(ys, native)
    assert_tree_allclose(state.carry, carry)

    # The same equations written with eqslax layers: W = kernelᵀ.
    linear = eqx.nn.Linear(N_IN, 8, key=KEY)
    linear = eqx.tree_at(
        lambda layer: (layer.weight, layer.bias), linear, (dense["kernel"].T, dense["bias"])
    )
    twin = eqslax.Connect([linear, eqslax.LIF(8, 0.9, 1.0)])
    assert 0.05 < float(ys.mean()) < 0.95
    np.testing.assert_array_equal(ys, eqslax_outputs(twin, xs)[1])


def test_nnx_lstm_matches_native_run():
    module = nnx.LSTMCell(N_IN, 6, param_dtype=jnp.float64, rngs=nnx.Rngs(0))
    neuron = NNXNeuron(module, N_IN)
    xs = inputs(jax.random.key(1), steps=20)
    state, ys = eqslax_outputs(neuron, xs)
    carry, expected = nnx.RNN(module, return_carry=True)(xs)
    assert_tree_allclose(ys, expected)
    assert_tree_allclose(state.carry, carry)


def test_flax_neuron_in_connect_rtrl_equals_bptt():
    """A wrapped spiking cell inside Connect: RTRL's forward-mode JVPs go through it and
    give BPTT's gradient."""
    neuron = FlaxNeuron(FlaxLIF(6), N_IN, key=KEY)
    kernel = jnp.abs(neuron.params["Dense_0"]["kernel"])  # excitatory, so that all units fire
    neuron = eqx.tree_at(lambda n: n.params["Dense_0"]["kernel"], neuron, kernel)
    model = eqslax.Connect([neuron, eqx.nn.Linear(6, 3, key=KEY)])
    xs = 0.5 * inputs(jax.random.key(1), batch=3, steps=9)
    labels = jnp.array([0, 1, 2])
    spikes = eqslax.record(model, xs[0])[1].layers[0]
    assert 0.05 < float(spikes.mean()) < 0.95

    bptt = eqslax.BPTT().grad(model, eqslax.PerStep(), xs, labels)
    rtrl = eqslax.RTRL().grad(model, eqslax.PerStep(), xs, labels)
    assert float(jnp.abs(bptt.layers[0].params["Dense_0"]["kernel"]).max()) > 1e-3
    assert_tree_allclose(rtrl, bptt, rtol=1e-10, atol=1e-13)


def test_flax_neuron_sgd_step_matches_native_step(lstm):
    cell, neuron = lstm
    xs = inputs(jax.random.key(1), steps=10)
    labels = jnp.array([0, 1, 2, 1])
    optimizer = optax.sgd(0.5)

    grads = eqslax.BPTT().grad(neuron, eqslax.PerStep(), xs, labels)
    updates, _ = optimizer.update(grads, optimizer.init(eqslax.trainable(neuron)))
    eqslax_after = eqx.apply_updates(neuron, updates).params

    rnn = nn.RNN(cell)

    def native_loss(p):
        logits = rnn.apply({"params": {"cell": p}}, xs)
        labels_t = jnp.broadcast_to(labels[:, None], logits.shape[:2])
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels_t))

    native_grads = jax.jit(jax.grad(native_loss))(neuron.params)
    updates, _ = optimizer.update(native_grads, optimizer.init(neuron.params))
    native_after = optax.apply_updates(neuron.params, updates)

    assert not np.allclose(native_after["hi"]["kernel"], neuron.params["hi"]["kernel"])
    assert_tree_allclose(eqslax_after, native_after)


# ---------------------------------------------------------------- round trips


@networks
def test_round_trip_is_the_identity_on_parameters(make):
    model = make(KEY)
    xs = inputs(jax.random.key(1), batch=1, steps=20)[0]
    assert_tree_allclose(from_flax_params(model, to_flax_params(model)), model, 0, 0)

    via_linen = FlaxNeuron(LinenCell(model), params=to_flax_params(model))
    assert_tree_allclose(via_linen.params, to_flax_params(model), 0, 0)
    assert_tree_allclose(via_linen.cell.to_eqslax(via_linen.params), model, 0, 0)

    via_nnx = NNXNeuron(NNXCell(model))
    assert_tree_allclose(via_nnx.params["params"], to_flax_params(model), 0, 0)
    assert_tree_allclose(via_nnx.to_nnx().to_eqslax(), model, 0, 0)

    expected = eqslax.simulate(model, xs)[1]
    for bridged in (via_linen, via_nnx):
        np.testing.assert_array_equal(eqslax.simulate(bridged, xs)[1], expected)


def test_trained_params_map_back():
    model = NETWORKS["LIF"](KEY)
    params = jax.tree.map(lambda p: p + 1.0, to_flax_params(model))
    trained = LinenCell(model).to_eqslax(params)
    np.testing.assert_array_equal(trained.layers[0].weight, model.layers[0].weight + 1.0)
    np.testing.assert_array_equal(trained.layers[1].decay, model.layers[1].decay)  # frozen


# ---------------------------------------------------------------- rejected input


class LinenWithBatchNorm(nn.RNNCellBase):
    @nn.compact
    def __call__(self, carry, x):
        return carry, nn.BatchNorm(use_running_average=False)(x)

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(input_shape)

    @property
    def num_feature_axes(self):
        return 1


class LinenWithDropout(nn.RNNCellBase):
    @nn.compact
    def __call__(self, carry, x):
        return carry, nn.Dropout(0.5, deterministic=False)(x)

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        return jnp.zeros(input_shape)

    @property
    def num_feature_axes(self):
        return 1


class NNXWithState(nnx.Module):
    def __init__(self, layer):
        self.layer = layer

    def __call__(self, carry, x):
        return carry, self.layer(x)

    def initialize_carry(self, input_shape, rngs=None):
        return jnp.zeros(input_shape)


def test_cells_with_hidden_mutable_state_are_rejected():
    with pytest.raises(ValueError, match="batch_stats"):
        FlaxNeuron(LinenWithBatchNorm(), 3, key=KEY)
    with pytest.raises(ValueError, match="PRNG"):
        FlaxNeuron(LinenWithDropout(), 3, key=KEY)
    with pytest.raises(ValueError, match="BatchStat"):
        NNXNeuron(NNXWithState(nnx.BatchNorm(3, rngs=nnx.Rngs(0))), 3)
    with pytest.raises(ValueError, match="RngCount"):
        NNXNeuron(NNXWithState(nnx.Dropout(0.5, rngs=nnx.Rngs(0))), 3)


def test_bad_arguments_are_explained(lstm):
    model = NETWORKS["LIF"](KEY)
    lstm, neuron = lstm
    with pytest.raises(TypeError, match="model"):
        LinenCell(eqx.nn.Linear(2, 2, key=KEY))
    with pytest.raises(ValueError, match=r"\(\*batch, \*\(5,\)\)"):
        LinenCell(model).initialize_carry(KEY, (4, 6))
    with pytest.raises(ValueError, match="pass `in_shape`"):
        FlaxNeuron(lstm, key=KEY)
    with pytest.raises(ValueError, match="pass `params`, or `key`"):
        FlaxNeuron(lstm, 3)
    with pytest.raises(ValueError, match="layout"):
        FlaxNeuron(lstm, N_IN, params={"ii": {"kernel": jnp.zeros((N_IN, 3))}})
    with pytest.raises(ValueError, match=r"`out_shape` is \(5,\)"):
        FlaxNeuron(lstm, N_IN, params=neuron.params, out_shape=5)
    with pytest.raises(TypeError, match="cell"):
        FlaxNeuron(nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0)), 3)
    with pytest.raises(TypeError, match="initialize_carry"):
        NNXNeuron(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), 3)
    with pytest.raises(ValueError, match="missing"):
        from_flax_params(model, {"layers": {"0": to_flax_params(model)["layers"]["0"]}})
    with pytest.raises(ValueError, match=r"must have shape \(8, 5\)"):
        params = to_flax_params(model)
        params["layers"]["0"]["weight"] = jnp.zeros((5, 8))
        from_flax_params(model, params)
    assert isinstance(neuron.init_state(), FlaxState)
    with pytest.raises(ValueError, match="batch axis"):
        neuron(neuron.init_state(), jnp.zeros((2, N_IN)))
