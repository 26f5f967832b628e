"""``eqslax.neurobench``: NeuroBench's golden values, a network counted
by hand, graphs with ``cat`` edges and nesting, Randman end to end, Mackey-Glass and SHD.

Runtime: about 26 s of CPU time, 28-36 s wall on 2 shared CPU cores (mostly XLA compiling one
recorded pass per model).
"""

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqslax
from eqslax import neurobench as nb
from eqslax.data import randman

KEY = jax.random.key(0)
STATIC = [nb.ParameterCount, nb.Footprint, nb.ConnectionSparsity]
ACTIVITY = [nb.SynapticOperations, nb.MembraneUpdates, nb.ActivationSparsity]


def _run(model, xs):
    """The activity metrics of ``model`` on one batch ``xs`` (targets unused)."""
    ys = jnp.zeros(xs.shape[0], jnp.int32)
    return nb.Benchmark(model, [(xs, ys)], metrics=[[], ACTIVITY]).run(quiet=True)


def _linear(n_in, n_out, key, weight=None, bias=False, scale=1.0):
    layer = eqx.nn.Linear(n_in, n_out, use_bias=bias, key=key)
    weight = scale * layer.weight if weight is None else jnp.asarray(weight, layer.weight.dtype)
    return eqx.tree_at(lambda m: m.weight, layer, weight)


def _sequential(sizes, key, dtype):
    """NeuroBench's static-test network: Linear (with bias) then LIF, for each size pair."""
    layers = []
    for k, (n_in, n_out) in zip(jax.random.split(key, len(sizes)), zip(sizes, sizes[1:])):
        layers.append(eqx.nn.Linear(n_in, n_out, key=k, dtype=dtype))
        layers.append(eqslax.LIF(n_out, decay=0.9))
    return eqslax.Connect(layers)


# --- golden values of NeuroBench's own tests -------------------------


def test_golden_snn_synaptic_operations_and_membrane_updates():
    # Linear(20 -> 5, no bias) + Leaky(beta = 0.9) on ones (batch 5, time 10, 20).
    model = eqslax.Connect([_linear(20, 5, KEY), eqslax.LIF(5, decay=0.9)])
    results = _run(model, jnp.ones((5, 10, 20)))
    assert results["SynapticOperations"] == {
        "Effective_MACs": 0.0,
        "Effective_ACs": 1000.0,  # 20 * 5 per step, 10 steps, per sample
        "Dense": 1000.0,
    }
    assert results["MembraneUpdates"] == 50.0  # 5 neurons x 10 steps


def test_golden_ann_synaptic_operations():
    keys = jax.random.split(KEY, 4)
    x = jnp.ones((1, 1, 20)).at[..., :10].set(5.0)  # values 5 make every call a MAC
    two = eqslax.Connect(
        [
            _linear(20, 25, keys[0]),
            eqx.nn.Lambda(jax.nn.sigmoid),
            _linear(25, 25, keys[1]),
            eqx.nn.Lambda(jax.nn.relu),
        ]
    )
    ops = _run(two, x)["SynapticOperations"]
    assert (ops["Effective_MACs"], ops["Effective_ACs"]) == (1125.0, 0.0)
    sizes = [(20, 20), (20, 25), (25, 25), (25, 25)]
    layers = []
    for k, (n_in, n_out) in zip(keys, sizes):
        layers += [_linear(n_in, n_out, k), eqx.nn.Lambda(jax.nn.sigmoid)]
    ops = _run(eqslax.Connect(layers), x)["SynapticOperations"]
    assert ops["Effective_MACs"] == 400 + 500 + 625 + 625


@pytest.mark.parametrize(
    "conv, in_shape, expected",
    [
        (eqx.nn.Conv2d, (1, 3, 3), 9),
        (eqx.nn.Conv2d, (1, 12, 12), 900),  # (12 - 2)^2 positions x 9 weights
        (eqx.nn.Conv1d, (5, 10), 150),  # 5 channels x 5 taps x 6 positions
    ],
)
def test_golden_convolution_synaptic_operations(conv, in_shape, expected):
    layer = conv(in_shape[0], 1, 3 if conv is eqx.nn.Conv2d else 5, use_bias=False, key=KEY)
    model = eqslax.Connect([layer, eqx.nn.Lambda(jax.nn.relu)], in_shape=in_shape)
    x = jnp.ones((1, 1) + in_shape)
    x = x.at[(0, 0) + (0,) * len(in_shape)].set(4.0)  # one non-binary entry: MACs
    ops = _run(model, x)["SynapticOperations"]
    assert (ops["Effective_MACs"], ops["Effective_ACs"], ops["Dense"]) == (expected, 0.0, expected)


def test_golden_activation_sparsity():
    relu = eqx.nn.Lambda(jax.nn.relu)
    half = jnp.ones((1, 1, 20)).at[..., :10].set(-1.0)
    single = eqslax.Connect([relu], in_shape=20)
    # The same module four times; a reshape in front is no activation and is not counted.
    repeated = eqslax.Connect([eqx.nn.Lambda(jnp.ravel), relu, relu, relu, relu], in_shape=20)
    for model in (single, repeated):
        assert _run(model, jnp.ones((1, 1, 20)))["ActivationSparsity"] == 0.0
        assert _run(model, half)["ActivationSparsity"] == 0.5
    sigmoid = eqslax.Connect([eqx.nn.Lambda(jax.nn.sigmoid)], in_shape=20)
    assert _run(sigmoid, jnp.ones((1, 1, 20)))["ActivationSparsity"] == 0.0


def test_golden_static_metrics():
    sizes = (20, 256, 256, 256, 35)
    model = _sequential(sizes, KEY, jnp.float32)
    weights = sum(a * b for a, b in zip(sizes, sizes[1:]))
    biases = sum(sizes[1:])
    assert nb.ParameterCount()(model) == weights + biases == 145955
    # float32 parameters plus, per LIF, its frozen decay and threshold (buffers); the
    # surrogate's slope is not part of the model's footprint.
    buffers = 4 * 2 * jnp.zeros(()).dtype.itemsize
    assert nb.Footprint()(model) == 4 * 145955 + buffers

    def set_weights(fn):
        return jax.tree.map(
            lambda leaf: fn(leaf) if eqx.is_inexact_array(leaf) and leaf.ndim == 2 else leaf,
            model,
        )

    sparsity = nb.ConnectionSparsity()
    assert sparsity(set_weights(jnp.zeros_like)) == 1.0
    assert sparsity(set_weights(jnp.ones_like)) == 0.0
    assert sparsity(model) == 0.0  # random weights
    # NeuroBench's "half": the first half of the rows of every weight set to zero.
    halved = set_weights(lambda w: jnp.ones_like(w).at[: w.shape[0] // 2].set(0.0))
    assert abs(sparsity(halved) - 0.5) < 0.001
    assert sparsity(halved) == round((128 * 20 + 2 * 128 * 256 + 17 * 256) / weights, 4)


def test_golden_accuracy_mse_smape_r2():
    n = 10
    labels = jnp.arange(1, n + 1)
    accuracy = nb.ClassificationAccuracy()

    def score(metric, preds, targets):
        batch = nb.WorkloadBatch(preds=preds, targets=targets, samples=n, counts=None)
        return metric.compute(metric.update(metric.init(), batch))

    assert score(accuracy, jnp.zeros(n, int), labels) == 0.0
    assert score(accuracy, jnp.ones(n, int), labels) == pytest.approx(0.1)
    half = jnp.array([0 if i % 2 == 0 else i + 1 for i in range(n)])
    assert score(accuracy, half, labels) == pytest.approx(0.5)
    assert score(accuracy, labels, labels) == 1.0

    i = jnp.arange(n, dtype=float)
    assert score(nb.MSE(), 1.1 * i, i) == pytest.approx(sum((0.1 * k) ** 2 for k in range(n)) / n)
    expected = 200 / n * sum(0.1 * (k + 1) / (2.1 * (k + 1)) for k in range(n))
    assert score(nb.SMAPE(), 1.1 * (i + 1), i + 1) == pytest.approx(expected)
    # R2: two columns 0..9, predicted 1.1 i and 1.1 (i + 1); Var(0..9) = 8.25.
    targets = jnp.stack([i, i], axis=1)
    preds = jnp.stack([1.1 * i, 1.1 * (i + 1)], axis=1)
    x_r2 = 1 - sum((0.1 * k) ** 2 for k in range(n)) / (8.25 * n)
    y_r2 = 1 - sum((1.1 + 0.1 * k) ** 2 for k in range(n)) / (8.25 * n)
    assert score(nb.R2(), preds, targets) == pytest.approx((x_r2 + y_r2) / 2)
    # NeuroBench's sMAPE quirk: one 0/0 entry makes the batch score 200.
    assert score(nb.SMAPE(), i, i) == 200.0


# --- a small network counted by hand --------------------------------------------------------

# 2 inputs -> Linear W1 -> 3 LIF -> Linear W2 -> 2 LIF, decay 0.5, threshold 1, 4 steps.
W1 = [[1.5, 0.0], [0.6, 0.6], [0.0, 0.0]]  # nonzeros per input column: 2, 1
W2 = [[1.2, 0.0, 0.8], [0.5, 0.9, 0.0]]  # nonzeros per input column: 2, 1, 1
X = [[1, 0], [0, 0], [1, 1], [0, 1]]
S1 = [[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0]]
S2 = [[1, 0], [0, 0], [1, 1], [0, 0]]
# Membranes after each step (u_t = 0.5 u_{t-1} + I_t - s_t):
V1 = [[0.5, 0.6, 0.0], [0.25, 0.3, 0.0], [0.625, 0.35, 0.0], [0.3125, 0.775, 0.0]]
V2 = [[0.2, 0.5], [0.1, 0.25], [0.25, 0.525], [0.125, 0.2625]]


def _hand_network():
    k1, k2 = jax.random.split(KEY)
    return eqslax.Connect(
        [
            _linear(2, 3, k1, W1),
            eqslax.LIF(3, decay=0.5, threshold=1.0),
            _linear(3, 2, k2, W2),
            eqslax.LIF(2, decay=0.5, threshold=1.0),
        ]
    )


def test_hand_counted_network():
    model = _hand_network()
    x = jnp.asarray(X, float)
    _, rec = eqslax.record(model, x)
    np.testing.assert_array_equal(rec.layers[1], S1)
    np.testing.assert_array_equal(rec.layers[3], S2)
    np.testing.assert_allclose(rec.states.layers[1].v, V1, atol=1e-12)
    np.testing.assert_allclose(rec.states.layers[3].v, V2, atol=1e-12)

    # Effective ops of a step: sum over nonzero inputs j of the nonzeros in column j.
    ops1 = [2, 0, 2 + 1, 1]  # inputs [1,0], [0,0], [1,1], [0,1]
    ops2 = [2, 0, 2 + 1, 0]  # spikes S1
    dense = 4 * (2 * 3 + 3 * 2)
    # Membrane updates: all units at step 1, then units whose membrane changed (the
    # third hidden unit never receives input and stays at 0).
    updates = (3 + 2 + 2 + 2) + (2 + 2 + 2 + 2)
    spikes, activations = sum(map(sum, S1 + S2)), 4 * (3 + 2)

    quiet = jnp.zeros((4, 2))  # a second sample: no input at all
    results = _run(model, jnp.stack([x, quiet]))
    assert results["SynapticOperations"] == {
        "Effective_MACs": 0.0,
        "Effective_ACs": (sum(ops1) + sum(ops2) + 0) / 2,
        "Dense": float(dense),
    }
    assert results["MembraneUpdates"] == (updates + (3 + 2)) / 2
    assert results["ActivationSparsity"] == (2 * activations - spikes) / (2 * activations)


def test_one_graded_input_makes_that_call_a_mac_for_the_whole_batch():
    """NeuroBench decides AC or MAC per call of a layer, i.e. per step on the batch."""
    model = _hand_network()
    x = jnp.asarray(X, float)
    graded = jnp.zeros((4, 2)).at[2, 0].set(0.5)  # W1 x = [0.75, 0.3, 0]: no spike follows
    ops = _run(model, jnp.stack([x, graded]))["SynapticOperations"]
    # Layer 1 at step 3 sees [1, 1] and [0.5, 0]: 3 + 2 ops, all MACs. Every other call
    # is binary: layer 1 at steps 1, 2, 4 (2 + 0 + 1) and layer 2 (2 + 0 + 3 + 0).
    assert ops["Effective_MACs"] == (3 + 2) / 2
    assert ops["Effective_ACs"] == ((2 + 0 + 1) + (2 + 0 + 3 + 0)) / 2


# --- graphs: nesting, skip and recurrent edges, recurrent neurons --------------------------


def _sparse_projection(model, index):
    """Zero half of a projection's weights so that its counts are not all-or-nothing."""
    w = model.projections[index].weight
    mask = (jnp.arange(w.size).reshape(w.shape) % 2).astype(w.dtype)
    return eqx.tree_at(lambda m: m.projections[index].weight, model, w * mask)


def test_nested_graph_with_a_recurrent_edge_counts_like_the_flat_graph():
    k = jax.random.split(KEY, 5)
    a, b = _linear(4, 6, k[0], bias=True, scale=3.0), _linear(6, 3, k[1], bias=True, scale=3.0)
    nested = eqslax.Connect(
        [eqslax.Connect([a, eqslax.LIF(6)]), eqslax.Connect([b, eqslax.LIF(3)])],
        cat={1: [1]},  # the output of block 1 feeds its own input at the next step
        key=k[2],
    )
    nested = _sparse_projection(nested, 0)
    flat = eqslax.Connect([a, eqslax.LIF(6), b, eqslax.LIF(3)], cat={2: [3]}, key=k[3])
    flat = eqx.tree_at(lambda m: m.projections[0], flat, nested.projections[0])
    xs = jax.random.bernoulli(k[4], 0.5, (3, 12, 4)).astype(float)
    got = _run(nested, xs)
    assert got == _run(flat, xs)

    # By hand from the recording: the projection P reads block 1's output one step
    # earlier, and b reads block 0's spikes plus that projection (graded values: MACs).
    projection = nested.projections[0]
    _, rec = jax.vmap(lambda x: eqslax.record(nested, x))(xs)
    out = rec.layers[1]
    previous = jnp.concatenate([jnp.zeros_like(out[:, :1]), out[:, :-1]], axis=1)
    projection_ops = jnp.sum((previous != 0) * jnp.sum(projection.weight != 0, axis=0))
    b_input = rec.layers[0] + jax.vmap(jax.vmap(projection))(previous)
    b_ops = 3 * jnp.sum(b_input != 0)  # b has no zero weight
    input_ops = 6 * jnp.sum(xs)
    ops = got["SynapticOperations"]
    total = float(input_ops + projection_ops + b_ops) / 3
    assert ops["Effective_ACs"] + ops["Effective_MACs"] == pytest.approx(total)
    assert ops["Effective_MACs"] > 0 and projection_ops > 0
    assert ops["Dense"] == 12 * (4 * 6 + 3 * 6 + 6 * 3)


def test_skip_edge_and_recurrent_neuron():
    k = jax.random.split(KEY, 4)
    model = eqslax.Connect(
        [
            _linear(4, 6, k[0], scale=3.0),
            eqslax.LIF(6),
            _linear(6, 5, k[1], scale=3.0),
            eqslax.RLIF(5, key=k[2]),
        ],
        cat={3: [1]},  # the hidden spikes skip to the RLIF's input, same step
        key=k[3],
    )
    model = _sparse_projection(model, 0)
    xs = jax.random.bernoulli(k[0], 0.5, (2, 10, 4)).astype(float)
    ops = _run(model, xs)["SynapticOperations"]
    _, rec = jax.vmap(lambda x: eqslax.record(model, x))(xs)
    hidden, out = rec.layers[1], rec.layers[3]
    skip = jnp.sum((hidden != 0) * jnp.sum(model.projections[0].weight != 0, axis=0))
    # W_rec has a zero diagonal: 4 nonzeros per column, input s_{t-1} (none at step 1).
    recurrent = 4 * jnp.sum(out[:, :-1])
    by_hand = jnp.sum(xs) * 6 + jnp.sum(hidden) * 5 + skip + recurrent
    assert ops["Effective_ACs"] == pytest.approx(float(by_hand) / 2)
    assert ops["Dense"] == 10 * (4 * 6 + 6 * 5 + 6 * 5 + 5 * 5)
    assert recurrent > 0 and skip > 0
    # Zero weights: the RLIF diagonal and half of the projection.
    zeros = 5 + 15
    assert nb.ConnectionSparsity()(model) == round(zeros / (24 + 30 + 30 + 25), 4)


def test_hidden_linear_layers_are_refused():
    hidden = eqx.nn.Sequential([_linear(3, 3, KEY), eqx.nn.Lambda(jax.nn.relu)])
    model = eqslax.Connect([hidden], in_shape=3)
    with pytest.raises(ValueError, match="Sequential"):
        nb.record_activity(model, jnp.ones((2, 3)))


# --- the harness on Randman -----------------------------------------------------------------


@pytest.fixture(scope="module")
def randman_setup():
    data = randman(jax.random.key(1), n_classes=3, n_units=10, n_steps=20, samples_per_class=20)
    model = eqslax.feedforward((10, 16, 3), key=jax.random.key(2))
    return data, model


def test_benchmark_on_randman_agrees_with_eqslax(randman_setup, capsys):
    data, model = randman_setup
    metrics = [STATIC, [nb.ClassificationAccuracy, *ACTIVITY]]
    post = [nb.ChooseMaxCount()]
    one = nb.Benchmark(model, data, postprocessors=post, metrics=metrics).run(quiet=True)
    small = nb.Benchmark(model, data, postprocessors=post, metrics=metrics, batch_size=6)
    batched = small.run(quiet=True)
    for name, value in one.items():  # batch-size invariant: same T and layers in every batch
        assert batched[name] == (pytest.approx(value) if isinstance(value, float) else value)

    xs, ys = data.test_x, data.test_y
    _, rec = jax.vmap(lambda x: eqslax.record(model, x))(xs)
    expected = eqslax.accuracy(eqslax.PerStep(), rec.outputs, ys)  # argmax of summed outputs
    assert one["ClassificationAccuracy"] == pytest.approx(float(expected))
    spikes = jnp.concatenate([rec.layers[1].reshape(-1), rec.layers[3].reshape(-1)])
    assert one["ActivationSparsity"] == pytest.approx(1 - float(jnp.mean(spikes)))
    assert one["SynapticOperations"]["Dense"] == 20 * (10 * 16 + 16 * 3)
    assert one["SynapticOperations"]["Effective_MACs"] == 0.0  # spikes in, spikes between
    assert 0 < one["SynapticOperations"]["Effective_ACs"] < one["SynapticOperations"]["Dense"]
    assert one["ParameterCount"] == 10 * 16 + 16 + 16 * 3 + 3
    assert set(nb.neurobench_metrics(model, xs, ys, quiet=False)) == {
        "Footprint",
        "ConnectionSparsity",
        "ParameterCount",
        "ClassificationAccuracy",
        "ActivationSparsity",
        "SynapticOperations",
        "MembraneUpdates",
    }
    assert "neurobench: 12 samples in 1 batches" in capsys.readouterr().err


def test_benchmark_rejects_bad_arguments(randman_setup):
    data, model = randman_setup
    with pytest.raises(TypeError, match="workload metric"):
        nb.Benchmark(model, data, metrics=[[], ["accuracy"]])
    with pytest.raises(ValueError, match="two lists"):
        nb.Benchmark(model, data, metrics=[nb.Footprint])
    with pytest.raises(ValueError, match="same shape"):
        nb.Benchmark(model, data, metrics=[[], [nb.ClassificationAccuracy]]).run(quiet=True)
    with pytest.raises(ValueError, match="pair"):
        nb.Benchmark(model, [data.test_x], metrics=[[], []]).run(quiet=True)
    with pytest.raises(ValueError, match="shape"):
        nb.Benchmark(model, [(data.test_x[..., :5], data.test_y)], metrics=[[], []]).run(quiet=True)


def test_a_padded_batch_gives_the_metrics_of_its_samples_at_their_own_lengths(randman_setup):
    """Three samples of 20, 13 and 7 steps padded to 24: the padded batch (as `Batches`
    with a mask, and as a masked `ArrayLoader` in batches of 2) scores what the samples
    score one by one; ActivationSparsity, a per-batch ratio, equals the ratio of their
    pooled counts. Without the mask the padded steps count."""
    data, model = randman_setup
    lengths = (20, 13, 7)
    samples = [np.asarray(data.test_x[i, :n]) for i, n in enumerate(lengths)]
    labels = np.asarray(data.test_y[:3])
    xs, mask = eqslax.data.pad_sequences(samples, length=24)
    post = [nb.ChooseMaxCount()]
    additive = [nb.ClassificationAccuracy, nb.SynapticOperations, nb.MembraneUpdates]
    metrics = [[], [*additive, nb.ActivationSparsity]]

    def bench(data):
        return nb.Benchmark(model, data, postprocessors=post, metrics=metrics).run(quiet=True)

    one_by_one = bench([(jnp.asarray(x)[None], labels[i : i + 1]) for i, x in enumerate(samples)])
    padded = bench(nb.Batches(jnp.asarray(xs), labels, 8, mask=jnp.asarray(mask)))
    loader = bench(eqslax.data.ArrayLoader(xs, labels, 2, mask=mask))
    for name in ("ClassificationAccuracy", "SynapticOperations", "MembraneUpdates"):
        # the accuracy is a float32 batch mean; the counts are exact integers over 3
        rel = 1e-6 if name == "ClassificationAccuracy" else 1e-12
        assert padded[name] == pytest.approx(one_by_one[name], rel=rel), name
        assert loader[name] == pytest.approx(one_by_one[name], rel=rel), name
    counts = [nb.activity_counts(model, jnp.asarray(x)[None]) for x in samples]
    zeros = sum(c.activations_total - c.activations_nonzero for c in counts)
    pooled = zeros / sum(c.activations_total for c in counts)
    assert padded["ActivationSparsity"] == pytest.approx(pooled, rel=1e-12)
    assert one_by_one["SynapticOperations"]["Dense"] == sum(lengths) * (10 * 16 + 16 * 3) / 3
    unmasked = bench(nb.Batches(jnp.asarray(xs), labels, 8))
    assert unmasked["SynapticOperations"]["Dense"] == 24 * (10 * 16 + 16 * 3)
    masked = nb.neurobench_metrics(model, jnp.asarray(xs), labels, mask=jnp.asarray(mask))
    assert masked["MembraneUpdates"] == pytest.approx(one_by_one["MembraneUpdates"], rel=1e-12)


# --- Mackey-Glass ---------------------------------------------------------------------------


def test_mackey_glass_equilibrium_stability_and_chaos():
    # x* = 1 solves beta x / (1 + x^10) = gamma x for beta / gamma = 2.
    assert np.abs(nb.mackey_glass_series(200, tau=2, history=1.0) - 1.0).max() < 1e-12
    settled = nb.mackey_glass_series(1501, tau=2, steps_per_delay=200)
    assert np.abs(settled[-100:] - 1.0).max() < 1e-6  # stable below tau ~ 4.7
    chaotic = nb.mackey_glass_series(1501)
    assert chaotic[0] == 0.7206597  # the constant past, sampled at t = 0
    assert 0.3 < chaotic.min() and chaotic.max() < 1.4
    assert chaotic[750:].std() > 0.15  # no equilibrium, no decay
    nudged = nb.mackey_glass_series(1501, history=0.7206597 + 1e-9)
    gap = np.abs(nudged - chaotic)
    assert gap[:20].max() < 1e-7 and gap.max() > 0.1  # sensitive dependence
    np.testing.assert_array_equal(nb.mackey_glass_series(1501), chaotic)  # deterministic


def test_mackey_glass_scheme_is_fourth_order():
    reference = nb.mackey_glass_series(30, steps_per_delay=1700 * 8)
    errors = [
        np.abs(nb.mackey_glass_series(30, steps_per_delay=m) - reference).max()
        for m in (34, 68, 136, 272)
    ]
    order = np.log2(errors[0] / errors[-1]) / 3
    assert 3.5 < order < 4.5


def test_mackey_glass_split(tmp_path):
    split = nb.mackey_glass(window=3)
    assert split.series.shape == (1501,)
    assert split.train_x.shape == (750, 3, 1) and split.test_x.shape == (750, 3, 1)
    assert split.train_y.shape == (750, 1) and split.test_y.shape == (750, 1)
    s = split.series
    np.testing.assert_array_equal(split.train_x[0, :, 0], [0.0, 0.0, s[0]])  # zero padded
    np.testing.assert_array_equal(split.train_x[10, :, 0], s[8:11])
    np.testing.assert_array_equal(split.train_y[:, 0], s[1:751])
    np.testing.assert_array_equal(split.test_x[0, :, 0], s[748:751])
    np.testing.assert_array_equal(split.test_y[-1, 0], s[1500])
    assert "generated" in split.source

    long = np.linspace(0.0, 1.0, 2000)
    np.save(tmp_path / "mg_17.npy", long)
    loaded = nb.mackey_glass(file=tmp_path / "mg_17.npy", start_offset=5)
    np.testing.assert_array_equal(loaded.series, long[5:1506])
    with pytest.raises(FileNotFoundError):
        nb.mackey_glass(file=tmp_path / "missing.npy")


# --- SHD ------------------------------------------------------------------------------------


@pytest.fixture
def shd_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "shd_test.h5"
    samples = [
        ([0.05, 0.05, 0.55, 0.95, 1.2], [3, 3, 699, 0, 5]),  # the last event is past 1 s
        ([0.25], [10]),
        ([], []),
    ]
    with h5py.File(path, "w") as file:
        times = file.create_dataset("spikes/times", (3,), dtype=h5py.vlen_dtype(np.float32))
        units = file.create_dataset("spikes/units", (3,), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(samples):
            times[i] = np.asarray(t, np.float32)
            units[i] = np.asarray(u, np.uint16)
        file.create_dataset("labels", data=np.array([7, 19, 0], np.uint8))
    return path


def test_load_shd_bins_counts_and_drops(shd_file):
    xs, ys = nb.load_shd(shd_file, 10, max_time=1.0)
    assert xs.shape == (3, 10, 700) and xs.dtype == np.float32
    np.testing.assert_array_equal(ys, [7, 19, 0])
    assert ys.dtype == np.int32
    expected = np.zeros((3, 10, 700), np.float32)
    expected[0, 0, 3] = 2  # two events of channel 3 in the first 0.1 s
    expected[0, 5, 699] = 1
    expected[0, 9, 0] = 1  # the event at 1.2 s is dropped
    expected[1, 2, 10] = 1
    np.testing.assert_array_equal(xs, expected)
    binary, _ = nb.load_shd(shd_file, 10, max_time=1.0, binarize=True)
    np.testing.assert_array_equal(binary, np.minimum(expected, 1))
    # Per sample: each sample's own span [0, t_last] in 10 bins, nothing dropped.
    own, _ = nb.load_shd(shd_file, 10, bin_mode="per_sample")
    assert own[0, 0, 3] == 2 and own[0, 4, 699] == 1 and own[0, 7, 0] == 1
    assert own[0, 9, 5] == 1 and own[1, 9, 10] == 1 and own.sum() == 6
    picked, labels = nb.load_shd(shd_file, 10, max_time=1.0, index=[2, 0])
    np.testing.assert_array_equal(picked, expected[[2, 0]])
    np.testing.assert_array_equal(labels, [0, 7])


def test_shd_batches_and_errors(shd_file, tmp_path, monkeypatch):
    batches = nb.SHDBatches(shd_file, 10, 2, max_time=1.0)
    assert len(batches) == 2
    got = list(batches)
    assert [x.shape[0] for x, _ in got] == [2, 1]
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), [7, 19, 0])
    shuffled = np.concatenate([y for _, y in nb.SHDBatches(shd_file, 10, 2, key=KEY)])
    assert sorted(shuffled.tolist()) == [0, 7, 19]
    with pytest.raises(FileNotFoundError, match="gunzip"):
        nb.load_shd(tmp_path / "shd_train.h5", 10)
    with pytest.raises(ValueError, match="bin_mode"):
        nb.load_shd(shd_file, 10, bin_mode="tonic")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match="pip install h5py"):
        nb.load_shd(shd_file, 10)
