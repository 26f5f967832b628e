r"""``Connect``: layers in order each step, with skip and recurrent edges.

The reference is the graph equation of the ``Connect`` docstring written out by hand:

.. math::
    y^k_t = f_k\Big(y^{k-1}_t + \sum_{i<k} P^{k,i} y^i_t + \sum_{i \ge k} P^{k,i} y^i_{t-1}\Big),
    \qquad y^{-1}_t = x_t,\ y^i_0 = 0.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose, random_spikes

import eqslax

N_IN, A, B, C = 5, 7, 6, 4
STEPS = 50
# Skip edges 1 -> 4 and 0 -> 4, recurrent edges 3 -> 2, 3 -> 3 (onto itself) and 5 -> 0
# (from the last layer back into the first).
CAT = {4: [1, 0], 2: [3], 3: [3], 0: [5]}
EDGES = {(4, 1), (4, 0), (2, 3), (3, 3), (0, 5)}


def _linear(key, n_in, n_out, scale=3.0):
    linear = eqx.nn.Linear(n_in, n_out, key=key)
    return eqx.tree_at(lambda m: m.weight, linear, linear.weight * scale)


def _network(key, cat=CAT):
    k0, k1, k2, kp = jax.random.split(key, 4)
    layers = [
        _linear(k0, N_IN, A),
        eqslax.LIF(A, 0.8),
        _linear(k1, A, B),
        eqslax.LIF(B, np.linspace(0.5, 0.95, B)),
        _linear(k2, B, C),
        eqslax.LIF(C, 0.9, np.array([0.5, 1.0, 1.5, 2.0])),
    ]
    return eqslax.Connect(layers, cat=cat, key=kp)


def _lif_step(lif, v_prev, h):
    """Slax-form LIF with subtractive reset, decayed at the next step."""
    v = lif.decay * v_prev + h
    s = lif.surrogate(v - lif.threshold)  # Heaviside forward, surrogate backward
    return v - lif.threshold * s, s


@eqx.filter_jit
def _step_by_hand(model, previous, membranes, x):
    """One step of the graph equation: every layer's output ``y^k_t`` from ``x_t``, the
    outputs of the previous step ``y^i_{t-1}`` and the LIF membranes."""
    projection = dict(zip(model.edges, model.projections))
    membranes = dict(membranes)
    current = []
    for k, layer in enumerate(model.layers):
        h = x if k == 0 else current[k - 1]
        for (target, source), p in projection.items():
            if target == k:
                y = current[source] if source < k else previous[source]
                h = h + p.weight @ y
        if isinstance(layer, eqx.nn.Linear):
            y = layer.weight @ h + layer.bias
        else:
            membranes[k], y = _lif_step(layer, membranes[k], h)
        current.append(y)
    return current, membranes


def _by_hand(model, xs):
    """The graph equation as a Python loop over time; returns every layer's outputs
    (time-major) and the final membranes."""
    sizes = [A, A, B, B, C, C]
    previous = [jnp.zeros(n) for n in sizes]  # y^i_{t-1}, zero before the first step
    membranes = {k: jnp.zeros(sizes[k]) for k in (1, 3, 5)}
    history = []
    for x in xs:
        previous, membranes = _step_by_hand(model, previous, membranes, x)
        history.append(previous)
    outputs = tuple(jnp.stack([step[k] for step in history]) for k in range(len(sizes)))
    return outputs, membranes


@pytest.fixture(scope="module")
def model():
    return _network(jax.random.key(0))


@pytest.fixture(scope="module")
def xs():
    return random_spikes(jax.random.key(1), (STEPS, N_IN))


def test_edges_and_projection_shapes(model):
    assert set(model.edges) == EDGES
    sizes = [N_IN, A, A, B, B, C, C]  # input of layer k is sizes[k], output sizes[k + 1]
    for (target, source), p in zip(model.edges, model.projections):
        assert p.weight.shape == (sizes[target], sizes[source + 1]), (target, source)
        assert p.bias is None, "projections have no bias"


def test_connect_equals_the_graph_equation_by_hand(model, xs):
    _, recording = eqslax.record(model, xs)
    expected, membranes = _by_hand(model, xs)
    for k, (got, want) in enumerate(zip(recording.layers, expected)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"layer {k}")
    for k, v in membranes.items():
        np.testing.assert_allclose(
            recording.states.layers[k].v[-1], v, rtol=1e-6, atol=1e-6, err_msg=f"layer {k}"
        )
    # The comparison is not vacuous: every spiking layer fires, but not at every step.
    for k in (1, 3, 5):
        rate = float(jnp.mean(recording.layers[k]))
        assert 0.0 < rate < 1.0, f"layer {k} fires at rate {rate}"


def test_gradient_equals_the_graph_equation_by_hand(model, xs):
    def loss_connect(model):
        _, ys = eqslax.simulate(model, xs)
        return jnp.sum(ys * jnp.arange(1.0, C + 1))

    def loss_by_hand(model):
        outputs, _ = _by_hand(model, xs)
        return jnp.sum(outputs[-1] * jnp.arange(1.0, C + 1))

    # Decays and thresholds are frozen (read through stop_gradient) in the library but
    # not in the hand-written loop: compare the trained leaves.
    mask = eqslax.trainable_mask(model)
    got = eqx.filter(eqx.filter_jit(eqx.filter_grad(loss_connect))(model), mask)
    want = eqx.filter(eqx.filter_grad(loss_by_hand)(model), mask)
    assert_tree_allclose(got, want, rtol=1e-8, atol=1e-10)
    assert float(jnp.max(jnp.abs(got.layers[0].weight))) > 0.0


def test_gradient_flows_into_every_projection(model, xs):
    def loss(model):
        _, ys = eqslax.simulate(model, xs)
        return jnp.sum(ys)

    grads = eqx.filter_jit(eqx.filter_grad(loss))(model)
    for edge, g in zip(model.edges, grads.projections):
        assert float(jnp.max(jnp.abs(g.weight))) > 0.0, f"no gradient on projection {edge}"
    mask = eqslax.trainable_mask(model)
    assert all(m.weight is True for m in mask.projections), "projections must be trained"


def test_nested_connect_equals_the_flattened_graph():
    k0, k1, k2, k3, ka, kb, kc, kf = jax.random.split(jax.random.key(2), 8)
    l0, n1 = _linear(k0, N_IN, A), eqslax.LIF(A, 0.7)
    l2, n3 = _linear(k1, A, B), eqslax.LIF(B, 0.9)
    l4, n5 = _linear(k2, B, C), eqslax.LIF(C, 0.85)
    # Block 0 has a self-recurrent population, block 1 a recurrent edge 3 -> 2 inside it;
    # the outer graph feeds block 2's output back into block 0 and skips block 0 -> 2.
    block0 = eqslax.Connect([l0, n1], cat={1: [1]}, key=ka)
    block1 = eqslax.Connect([l2, n3], cat={0: [1]}, key=kb)
    block2 = eqslax.Connect([l4, n5])
    nested = eqslax.Connect([block0, block1, block2], cat={0: [2], 2: [0]}, key=kc)
    flat = eqslax.Connect([l0, n1, l2, n3, l4, n5], cat={1: [1], 2: [3], 0: [5], 4: [1]}, key=kf)
    # Give the flat graph the nested graph's projections, edge by edge.
    same = {
        (1, 1): block0.projections[0],
        (2, 3): block1.projections[0],
        (0, 5): nested.projections[nested.edges.index((0, 2))],
        (4, 1): nested.projections[nested.edges.index((2, 0))],
    }
    flat = eqx.tree_at(lambda m: m.projections, flat, tuple(same[edge] for edge in flat.edges))
    assert nested.in_shape == flat.in_shape == (N_IN,)
    assert nested.out_shape == flat.out_shape == (C,)

    xs = random_spikes(jax.random.key(3), (STEPS, N_IN))
    _, ys_nested = eqslax.simulate(nested, xs)
    _, ys_flat = eqslax.simulate(flat, xs)
    np.testing.assert_allclose(ys_nested, ys_flat, rtol=1e-10, atol=1e-12)
    assert 0.0 < float(jnp.mean(ys_flat)) < 1.0, "the output layer never or always fires"


def test_shapes_and_initial_state(model):
    assert model.in_shape == (N_IN,)
    assert model.out_shape == (C,)
    state = model.init_state()
    assert isinstance(state, eqslax.ConnectState)
    assert len(state.layers) == 6
    for k in (0, 2, 4):
        assert state.layers[k] is None, f"linear layer {k} is stateless"
    for k, n in zip((1, 3, 5), (A, B, C)):
        assert isinstance(state.layers[k], eqslax.LIFState)
        np.testing.assert_array_equal(state.layers[k].v, np.zeros(n))
    # Sources of recurrent edges (i >= k) carry their last output; skip sources do not.
    assert sorted(state.delayed) == [3, 5]
    np.testing.assert_array_equal(state.delayed[3], np.zeros(B))
    np.testing.assert_array_equal(state.delayed[5], np.zeros(C))


def test_a_step_returns_the_same_state_structure(model, xs):
    state = model.init_state()
    new_state, y = model(state, xs[0])
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    assert y.shape == (C,)


def _layers():
    k0, k1 = jax.random.split(jax.random.key(4))
    return [eqx.nn.Linear(N_IN, A, key=k0), eqslax.LIF(A), eqx.nn.Linear(A, B, key=k1)]


@pytest.mark.parametrize(
    "cat,match",
    [
        ({3: [0]}, r"index 3 .*0\.\.2"),
        ({1: [5]}, r"index 5 .*0\.\.2"),
        ({1: [-1]}, r"index -1 .*0\.\.2"),
    ],
)
def test_cat_index_out_of_range_names_the_index(cat, match):
    with pytest.raises(ValueError, match=match):
        eqslax.Connect(_layers(), cat=cat, key=jax.random.key(0))


def test_shape_mismatch_names_the_layer():
    layers = [eqx.nn.Linear(N_IN, A, key=jax.random.key(0)), eqslax.LIF(A + 1)]
    with pytest.raises(ValueError, match=rf"layer 1 \(LIF\).*\({A + 1},\).*\({A},\)"):
        eqslax.Connect(layers)


def test_first_layer_shape_mismatch_with_in_shape():
    with pytest.raises(ValueError, match=r"layer 0 .*\(5,\).*\(3,\).*network input"):
        eqslax.Connect([eqx.nn.Linear(5, 2, key=jax.random.key(0))], in_shape=3)


def test_non_module_layer_names_the_layer():
    with pytest.raises(TypeError, match=r"layer 1 .*function"):
        eqslax.Connect([eqx.nn.Linear(N_IN, A, key=jax.random.key(0)), jnp.tanh])


def test_cat_without_key():
    with pytest.raises(ValueError, match="`key`"):
        eqslax.Connect(_layers(), cat={0: [2]})


def test_layer_without_declared_shape_needs_in_shape():
    with pytest.raises(ValueError, match=r"layer 0 .*in_shape"):
        eqslax.Connect([eqx.nn.Lambda(jnp.tanh), eqslax.LIF(3)])
    model = eqslax.Connect([eqx.nn.Lambda(jnp.tanh), eqslax.LIF(3)], in_shape=3)
    assert model.in_shape == (3,) and model.out_shape == (3,)


def test_empty_layers():
    with pytest.raises(ValueError, match="`layers`"):
        eqslax.Connect([])
