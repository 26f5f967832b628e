"""``eqslax.nir``: round trips through NIR, the discretisation formulas, peers' files.

The formulas under test (forward Euler with step dt, see ``eqslax.nir``):

    export   tau = dt / (1 - lambda),  r = 1 / (1 - lambda),  v_leak = 0
             tau_syn = dt / (1 - alpha),  w_in = 1 / (1 - alpha),  IF: r = 1 / dt
    import   lambda = 1 - dt / tau,  gain g = r dt / tau  (threshold / g; LI: weights * g)

Runtime: about 15 s of CPU time (51 tests).
"""

import importlib
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest
from helpers import random_spikes

import eqslax
from eqslax.nir import from_nir, load_nir, save_nir, to_nir

T = 100
DECAYS = np.array([0.9, 0.8, 0.95, 0.7, 0.85, 0.9])
THRESHOLDS = np.array([1.0, 0.8, 1.2, 1.0, 0.9, 1.1])


def _linear(key, n_in, n_out, bias=True, scale=3.0):
    linear = eqx.nn.Linear(n_in, n_out, use_bias=bias, key=key)
    return eqx.tree_at(lambda m: m.weight, linear, linear.weight * scale)


def _lif(**options):
    return eqslax.LIF(6, DECAYS, THRESHOLDS, **options)


def _model(name):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    if name == "lif-subtract":
        return eqslax.Connect([_linear(k[0], 4, 6), _lif(), _linear(k[1], 6, 3), eqslax.LIF(3)])
    if name == "lif-zero-undecayed":
        return eqslax.Connect([_linear(k[0], 4, 6), _lif(reset="zero", reset_decay=False)])
    if name == "if-no-reset-bias-free":
        return eqslax.Connect([_linear(k[0], 4, 6, bias=False), eqslax.IF(6, 2.0, reset="none")])
    if name == "cubalif-li":
        cuba = eqslax.CuBaLIF(6, 0.6, DECAYS, THRESHOLDS, reset_decay=False)
        return eqslax.Connect([_linear(k[0], 4, 6), cuba, _linear(k[1], 6, 3), eqslax.LI(3, 0.8)])
    if name == "skip":
        layers = [_linear(k[0], 4, 6), _lif(), _linear(k[1], 6, 6), _lif()]
        layers += [_linear(k[2], 6, 3), eqslax.LI(3, 0.9)]
        return eqslax.Connect(layers, cat={3: [1], 5: [1]}, key=k[3])
    if name == "recurrent":
        layers = [_linear(k[0], 4, 6), _lif(), _linear(k[1], 6, 3), eqslax.LIF(3, 0.9)]
        return eqslax.Connect(layers, cat={1: [1, 3], 3: [1]}, key=k[2])
    if name == "skip-into-cycle":  # the skip enters the cycle 2 -> 3 -> 2 at layer 3
        layers = [_linear(k[0], 4, 6), _lif(), _lif(), _lif()]
        return eqslax.Connect(layers, cat={2: [3], 3: [1]}, key=k[2])
    if name == "nested-recurrent":
        inner = eqslax.Connect([_lif(reset="zero")], cat={0: [0]}, key=k[3])
        layers = [_linear(k[0], 4, 6), inner, _linear(k[1], 6, 3), eqslax.LIF(3, 0.9)]
        return eqslax.Connect(layers, cat={1: [3]}, key=k[2])
    raise AssertionError(name)


MODELS = [
    "lif-subtract",
    "lif-zero-undecayed",
    "if-no-reset-bias-free",
    "cubalif-li",
    "skip",
    "recurrent",
    "skip-into-cycle",
    "nested-recurrent",
]


def _inputs(n_in=4):
    return random_spikes(jax.random.PRNGKey(1), (T, n_in), rate=0.4)


def _outputs(model, xs):
    return np.asarray(eqslax.simulate(model, xs)[1])


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("via", ["memory", "file"])
@pytest.mark.parametrize("name", MODELS)
def test_round_trip_reproduces_outputs(name, via, tmp_path):
    """eqslax -> NIR -> eqslax computes the same outputs over 100 steps."""
    model = _model(name)
    if via == "memory":
        back = from_nir(to_nir(model))
    else:
        path = tmp_path / "model.nir"
        nir.write(path, to_nir(model))
        back = from_nir(nir.read(path))
    xs = _inputs()
    expected, got = _outputs(model, xs), _outputs(back, xs)
    assert np.abs(expected).sum() > 10  # the network is active, the test can fail
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_round_trip_keeps_parameters_and_resets():
    model = _model("cubalif-li")
    back = from_nir(to_nir(model))
    cuba, li = back.layers[1], back.layers[3]
    assert isinstance(cuba, eqslax.CuBaLIF) and isinstance(li, eqslax.LI)
    assert (cuba.reset, cuba.reset_decay) == ("subtract", False)
    np.testing.assert_allclose(cuba.decay, DECAYS, rtol=1e-14)
    np.testing.assert_allclose(cuba.synapse_decay, np.full(6, 0.6), rtol=1e-14)
    np.testing.assert_allclose(cuba.threshold, THRESHOLDS, rtol=0)
    np.testing.assert_allclose(li.decay, np.full(3, 0.8), rtol=1e-14)
    for before, after in [(model.layers[0], back.layers[0]), (model.layers[2], back.layers[2])]:
        np.testing.assert_array_equal(after.weight, before.weight)
        np.testing.assert_array_equal(after.bias, before.bias)


def test_round_trip_keeps_the_edges():
    model = _model("recurrent")
    back = from_nir(to_nir(model))
    assert back.edges == model.edges == ((1, 1), (1, 3), (3, 1))
    for before, after in zip(model.projections, back.projections):
        np.testing.assert_array_equal(after.weight, before.weight)
        assert after.bias is None


def test_save_and_load_write_through_a_temporary_file(tmp_path):
    model = _model("skip")
    path = tmp_path / "model.nir"
    path.write_bytes(b"old contents")
    save_nir(path, model, dt=1e-3)
    assert os.listdir(tmp_path) == ["model.nir"]  # no temporary file left behind
    assert nir.read(path).metadata["eqslax.dt"] == 1e-3
    xs = _inputs()
    np.testing.assert_allclose(_outputs(load_nir(path), xs), _outputs(model, xs), atol=1e-12)


# ---------------------------------------------------------------- graph layout and types


@pytest.mark.parametrize("name", MODELS)
def test_graphs_pass_nir_type_checking(name):
    graph = to_nir(_model(name))
    assert graph.check_types()
    rebuilt = nir.NIRGraph(nodes=dict(graph.nodes), edges=list(graph.edges), type_check=True)
    assert set(rebuilt.edges) == set(graph.edges)  # inference found nothing to add


def test_type_checking_is_not_vacuous():
    """A transposed weight (Slax's export bug) is rejected by the same check."""
    graph = to_nir(_model("lif-subtract"))
    nodes = dict(graph.nodes)
    nodes["layer0"] = nir.Affine(weight=nodes["layer0"].weight.T.copy(), bias=np.zeros(4))
    with pytest.raises(ValueError, match="type"):
        nir.NIRGraph(nodes=nodes, edges=list(graph.edges), type_check=True)


def test_recurrent_edges_are_cycles_and_nested_connects_are_subgraphs():
    graph = to_nir(_model("nested-recurrent"))
    assert {("layer3", "projection0"), ("projection0", "layer1")} <= set(graph.edges)
    inner = graph.nodes["layer1"]
    assert isinstance(inner, nir.NIRGraph)
    assert {("layer0", "projection0"), ("projection0", "layer0")} <= set(inner.edges)
    assert set(inner.inputs) == {"input"} and set(inner.outputs) == {"output"}
    assert isinstance(graph.nodes["layer0"], nir.Affine)
    assert isinstance(to_nir(_model("if-no-reset-bias-free")).nodes["layer0"], nir.Linear)


# ---------------------------------------------------------------- the formulas


def test_export_formulas_by_hand():
    lif = eqslax.LIF(2, jnp.array([0.9, 0.5]), 1.5, reset="zero")
    node = to_nir(lif, dt=1e-3).nodes["layer0"]
    np.testing.assert_allclose(node.tau, [0.01, 0.002], rtol=1e-12)  # 1e-3 / 0.1, 1e-3 / 0.5
    np.testing.assert_allclose(node.r, [10.0, 2.0], rtol=1e-12)  # 1 / 0.1, 1 / 0.5
    np.testing.assert_array_equal(node.v_leak, [0.0, 0.0])
    np.testing.assert_array_equal(node.v_threshold, [1.5, 1.5])
    np.testing.assert_array_equal(node.v_reset, [0.0, 0.0])
    assert node.metadata == {"eqslax.reset": "zero", "eqslax.reset_decay": True}

    cuba = to_nir(eqslax.CuBaLIF(1, 0.75, 0.5), dt=2e-3).nodes["layer0"]
    np.testing.assert_allclose(cuba.tau_syn, [8e-3])  # 2e-3 / 0.25
    np.testing.assert_allclose(cuba.w_in, [4.0])  # 1 / 0.25
    np.testing.assert_allclose(cuba.tau_mem, [4e-3])  # 2e-3 / 0.5
    np.testing.assert_allclose(cuba.r, [2.0])
    np.testing.assert_allclose(to_nir(eqslax.IF(1), dt=1e-3).nodes["layer0"].r, [1000.0])
    li = to_nir(eqslax.LI(1, 0.75), dt=1.0).nodes["layer0"]
    np.testing.assert_allclose([li.tau, li.r], [[4.0], [4.0]])
    assert to_nir(lif).metadata == {"eqslax.dt": 1e-4}


def _graph(*nodes, shape=(2,), type_check=True):
    """input -> nodes[0] -> ... -> output."""
    names = [f"n{i}" for i in range(len(nodes))]
    all_nodes = {"input": nir.Input(np.array(shape)), **dict(zip(names, nodes))}
    all_nodes["output"] = nir.Output(np.array(nodes[-1].output_type["output"]))
    chain = ["input", *names, "output"]
    return nir.NIRGraph(all_nodes, list(zip(chain[:-1], chain[1:])), type_check=type_check)


def _nir_lif(tau, r, threshold=1.0, **extra):
    n = np.size(tau)
    return nir.LIF(
        tau=np.full(n, tau, float),
        r=np.full(n, r, float),
        v_leak=extra.pop("v_leak", np.zeros(n)),
        v_threshold=np.full(n, threshold, float),
        **extra,
    )


def test_import_formulas_by_hand():
    lif = from_nir(_graph(_nir_lif([0.02, 0.02], 20.0)), dt=1e-3).layers[0]
    np.testing.assert_allclose(lif.decay, [0.95, 0.95], rtol=1e-12)  # 1 - 1e-3 / 0.02
    np.testing.assert_allclose(lif.threshold, [1.0, 1.0], rtol=0)  # gain 20 * 1e-3 / 0.02 = 1
    halved = from_nir(_graph(_nir_lif([0.02, 0.02], 10.0)), dt=1e-3).layers[0]
    np.testing.assert_allclose(halved.threshold, [2.0, 2.0], rtol=1e-12)  # gain 1/2

    cuba_node = nir.CubaLIF(
        tau_syn=np.array([4e-3]),
        tau_mem=np.array([1e-2]),
        r=np.array([10.0]),
        v_leak=np.zeros(1),
        v_threshold=np.array([0.5]),
        w_in=np.array([2.0]),
    )
    cuba = from_nir(_graph(cuba_node, shape=(1,)), dt=1e-3).layers[0]
    np.testing.assert_allclose(cuba.synapse_decay, [0.75])  # 1 - 1e-3 / 4e-3
    np.testing.assert_allclose(cuba.decay, [0.9])  # 1 - 1e-3 / 1e-2
    np.testing.assert_allclose(cuba.threshold, [1.0])  # 0.5 / (2 * 1e-3 / 4e-3 * 1)

    if_node = nir.IF(r=np.array([500.0]), v_threshold=np.array([1.0]))
    if_layer = from_nir(_graph(if_node, shape=(1,)), dt=1e-3).layers[0]
    np.testing.assert_allclose(if_layer.threshold, [2.0])  # gain 500 * 1e-3 = 1/2

    spyx = from_nir(_graph(_nir_lif([4.0, 4.0], 0.75)), convention="spyx").layers[0]
    np.testing.assert_allclose(spyx.decay, [0.75, 0.75])  # dt = 1: 1 - 1/4; r = beta ignored
    np.testing.assert_allclose(spyx.threshold, [1.0, 1.0])


def _euler_reference(weight, bias, tau, r, dt, xs, threshold=None):
    """NIR's ODE, v' = (-v + r I) / tau, by forward Euler; threshold: reset to 0 at v >= it."""
    v, outputs = np.zeros(weight.shape[0]), []
    for x in np.asarray(xs):
        v = (1 - dt / tau) * v + (r * dt / tau) * (weight @ x + bias)
        if threshold is None:
            outputs.append(v.copy())
        else:
            s = (v >= threshold).astype(float)
            v = v * (1 - s)
            outputs.append(s)
    return np.array(outputs)


@pytest.mark.parametrize("neuron", ["LI", "LIF"])
def test_import_is_the_euler_step_of_the_nir_ode(neuron):
    """Gains off one (r = 1, the common non-discrete convention) are folded in exactly:
    LI into its incoming weights, LIF into its threshold; LIF resets to v_reset = 0."""
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(3, 4)), rng.normal(size=3)
    tau, r, dt = np.array([0.01, 0.02, 0.005]), np.ones(3), 1e-3
    if neuron == "LI":
        node, threshold = nir.LI(tau=tau, r=r, v_leak=np.zeros(3)), None
    else:
        threshold = np.array([0.1, 0.05, 0.2])
        node = nir.LIF(tau=tau, r=r, v_leak=np.zeros(3), v_threshold=threshold)
    model = from_nir(_graph(nir.Affine(weight=weight, bias=bias), node, shape=(4,)), dt=dt)
    xs = _inputs()
    expected = _euler_reference(weight, bias, tau, r, dt, xs, threshold)
    assert np.abs(expected).sum() > 10
    np.testing.assert_allclose(_outputs(model, xs), expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- peers' conventions


def test_resets_follow_metadata_then_convention_then_arguments():
    graph = _graph(_nir_lif([0.02, 0.02], 20.0))  # no eqslax metadata: NIR's zero reset
    layer = from_nir(graph, dt=1e-3).layers[0]
    assert (layer.reset, layer.reset_decay) == ("zero", True)
    layer = from_nir(graph, dt=1e-3, convention="snntorch").layers[0]
    assert (layer.reset, layer.reset_decay) == ("subtract", False)
    layer = from_nir(graph, dt=1e-3, reset="none", reset_decay=False).layers[0]
    assert (layer.reset, layer.reset_decay) == ("none", False)
    tagged = to_nir(eqslax.LIF(2, 0.9, reset="subtract", reset_decay=False))
    layer = from_nir(tagged).layers[0]
    assert (layer.reset, layer.reset_decay) == ("subtract", False)


def _snntorch_lif(beta, threshold, dt=1e-4):
    """snnTorch's export_nir numbers for Leaky: tau = dt / (1 - beta), r = tau / dt;
    scalar (0-d) parameters as its exporter writes for a scalar beta."""
    tau = np.float32(dt / (1 - beta))
    return nir.LIF(
        tau=np.array(tau),
        r=np.array(tau / np.float32(dt)),
        v_leak=np.array(0.0),
        v_threshold=np.array(threshold),
    )


def _snntorch_reference(fc1, fc2, beta, threshold, xs):
    """snnTorch's Leaky (subtractive reset, reset_delay=True) for two layers:
    mem_t = beta mem_{t-1} + I_t - threshold H(mem_{t-1} - threshold); spk_t = H(mem_t - thr)."""
    mems = [np.zeros(fc1[0].shape[0]), np.zeros(fc2[0].shape[0])]
    out = []
    for x in np.asarray(xs):
        h = x
        for index, (w, b) in enumerate((fc1, fc2)):
            mem = mems[index]
            reset = (mem >= threshold).astype(float)
            mem = beta * mem + (w @ h + b) - threshold * reset
            mems[index] = mem
            h = (mem >= threshold).astype(float)
        out.append(h)
    return np.array(out)


def test_snntorch_convention_reproduces_leaky():
    rng = np.random.default_rng(1)
    fc1 = (rng.normal(size=(6, 4)) * 1.5, rng.normal(size=6) * 0.1)
    fc2 = (rng.normal(size=(3, 6)) * 1.5, rng.normal(size=3) * 0.1)
    beta, threshold = 0.875, 1.0
    nodes = {
        "input": nir.Input(np.array([1, 4])),  # torch exporters keep the batch axis
        "0": nir.Affine(weight=fc1[0], bias=fc1[1]),
        "1": _snntorch_lif(beta, threshold),
        "2": nir.Affine(weight=fc2[0], bias=fc2[1]),
        "3": _snntorch_lif(beta, threshold),
        "output": nir.Output(np.array([1, 3])),
    }
    edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")]
    model = from_nir(nir.NIRGraph(nodes, edges, type_check=False), convention="snntorch")
    assert model.in_shape == (4,) and model.layers[1].shape == (6,)
    xs = _inputs()
    expected = _snntorch_reference(fc1, fc2, beta, threshold, xs)
    assert expected.sum() > 10
    np.testing.assert_array_equal(_outputs(model, xs), expected)


def _snntorch_atan_spike(alpha=2.0):
    """snnTorch's default ATan: H(x) forward, (alpha/2) / (1 + (pi alpha x / 2)^2) back."""

    @jax.custom_jvp
    def spike(x):
        return (x >= 0).astype(x.dtype)

    @spike.defjvp
    def _(primals, tangents):
        (x,), (dx,) = primals, tangents
        return spike(x), dx * (alpha / 2) / (1 + (jnp.pi * alpha * x / 2) ** 2)

    return spike


def _snntorch_loss(params, beta, threshold, xs, label):
    """snnTorch's Leaky trained as snnTorch trains it: the reset term detached.

    Both layers share ``beta`` and ``threshold``."""
    spike = _snntorch_atan_spike()
    (w1, b1), (w2, b2) = params

    def step(mems, x):
        h, new = x, []
        for mem, (w, b) in zip(mems, ((w1, b1), (w2, b2))):
            reset = jax.lax.stop_gradient(spike(mem - threshold))
            mem = beta * mem + (w @ h + b) - threshold * reset
            new.append(mem)
            h = spike(mem - threshold)
        return new, h

    _, out = jax.lax.scan(step, [jnp.zeros(b1.shape), jnp.zeros(b2.shape)], xs)
    return jnp.mean(jax.vmap(eqslax.PerStep().step, in_axes=(0, None))(out, label))


def test_snntorch_convention_trains_like_snntorch():
    rng = np.random.default_rng(2)
    fc1 = (rng.normal(size=(6, 4)) * 1.5, rng.normal(size=6) * 0.1)
    fc2 = (rng.normal(size=(3, 6)) * 1.5, rng.normal(size=3) * 0.1)
    beta, threshold = 0.875, 1.0
    nodes = {
        "input": nir.Input(np.array([1, 4])),
        "0": nir.Affine(weight=fc1[0], bias=fc1[1]),
        "1": _snntorch_lif(beta, threshold),
        "2": nir.Affine(weight=fc2[0], bias=fc2[1]),
        "3": _snntorch_lif(beta, threshold),
        "output": nir.Output(np.array([1, 3])),
    }
    edges = [("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "output")]
    graph = nir.NIRGraph(nodes, edges, type_check=False)
    model = from_nir(graph, convention="snntorch")
    assert model.layers[1].detach_reset and isinstance(model.layers[1].surrogate, eqslax.Arctan)
    xs, label = _inputs()[None], jnp.array([1])
    got = eqslax.BPTT().grad(model, eqslax.PerStep(), xs, label)
    params = tuple((jnp.asarray(w), jnp.asarray(b)) for w, b in (fc1, fc2))
    read_beta = model.layers[1].decay  # 0.875 after the float32 tau in the file
    want = jax.grad(_snntorch_loss)(params, read_beta, threshold, xs[0], label[0])
    for layer, (w, b) in zip((got.layers[0], got.layers[2]), want):
        np.testing.assert_allclose(layer.weight, w, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(layer.bias, b, rtol=1e-10, atol=1e-13)
    assert float(jnp.linalg.norm(want[0][0])) > 0
    # told otherwise, it trains as told
    other = from_nir(graph, convention="snntorch", detach_reset=False, surrogate=eqslax.Sigmoid())
    assert not other.layers[1].detach_reset and isinstance(
        other.layers[1].surrogate, eqslax.Sigmoid
    )
    assert not from_nir(graph).layers[1].detach_reset
    with pytest.raises(TypeError, match="detach_reset"):
        from_nir(graph, convention="snntorch", detach_reset=1)


def test_snntorch_recurrent_synaptic_subgraph():
    """RSynaptic as snnTorch writes it: {input -> lif <-> w_rec, lif -> output}, w_rec with
    a bias (folded into the layer before): syn_t = a syn + I_t + W s_{t-1} + b."""
    rng = np.random.default_rng(2)
    dt, alpha, beta, n = 1e-4, 0.5, 0.875, 5
    fc = rng.normal(size=(n, 4)) * 1.5
    w_rec, b_rec = rng.normal(size=(n, n)) * 0.5, rng.normal(size=n) * 0.1
    tau_syn, tau_mem = np.full(n, dt / (1 - alpha)), np.full(n, dt / (1 - beta))
    cuba = nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        r=tau_mem / dt,
        v_leak=np.zeros(n),
        v_threshold=np.ones(n),
        w_in=tau_syn / dt,
    )
    sub = nir.NIRGraph(
        {
            "input": nir.Input(np.array([n])),
            "lif": cuba,
            "w_rec": nir.Affine(weight=w_rec, bias=b_rec),
            "output": nir.Output(np.array([n])),
        },
        [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
    )
    graph = nir.NIRGraph(
        {
            "input": nir.Input(np.array([4])),
            "fc": nir.Linear(weight=fc),
            "rsyn": sub,
            "output": nir.Output(np.array([n])),
        },
        [("input", "fc"), ("fc", "rsyn"), ("rsyn", "output")],
    )
    model = from_nir(graph, convention="snntorch")
    syn, mem, spk, expected = np.zeros(n), np.zeros(n), np.zeros(n), []
    xs = _inputs()
    for x in np.asarray(xs):
        reset = (mem >= 1.0).astype(float)
        syn = alpha * syn + fc @ x + w_rec @ spk + b_rec
        mem = beta * mem + syn - reset
        spk = (mem >= 1.0).astype(float)
        expected.append(spk)
    assert np.sum(expected) > 10
    np.testing.assert_array_equal(_outputs(model, xs), np.array(expected))


def _spyx_graph(beta, w_rec, fc, n):
    """Spyx's RLIF export: tau = dt / (1 - beta), r = beta, dt = 1, and the sub-graph's
    input wired to the recurrent weight: {input -> w_rec <-> lif, lif -> output}."""
    lif = nir.LIF(
        tau=np.full(n, 1 / (1 - beta)),
        r=np.full(n, beta),
        v_leak=np.zeros(n),
        v_threshold=np.ones(n),
    )
    sub = nir.NIRGraph(
        {
            "rlif.input": nir.Input(np.array([n])),
            "rlif.lif": lif,
            "rlif.w_rec": nir.Linear(weight=w_rec.T.copy()),
            "rlif.output": nir.Output(np.array([n])),
        },
        [
            ("rlif.input", "rlif.w_rec"),
            ("rlif.w_rec", "rlif.lif"),
            ("rlif.lif", "rlif.w_rec"),
            ("rlif.lif", "rlif.output"),
        ],
    )
    return nir.NIRGraph(
        {
            "input": nir.Input(np.array([4])),
            "fc": nir.Linear(weight=fc),
            "rlif": sub,
            "output": nir.Output(np.array([n])),
        },
        [("input", "fc"), ("fc", "rlif"), ("rlif", "output")],
    )


def test_spyx_convention_reproduces_rlif_membranes():
    """Spyx's RLIF: s = H(V - 1); V <- beta V + x + s @ W - s. Its spikes are those of the
    carried membrane, one step behind eqslax's; the membranes agree."""
    rng = np.random.default_rng(3)
    n, beta = 5, 0.75
    fc, w_rec = rng.normal(size=(n, 4)) * 1.5, rng.normal(size=(n, n)) * 0.5
    model = from_nir(_spyx_graph(beta, w_rec, fc, n), convention="spyx")
    assert model.edges == ((1, 1),)  # input -> lif, lif <-> w_rec, as Spyx means it
    xs = _inputs()
    v, membranes, spikes = np.zeros(n), [], []
    for x in np.asarray(xs):
        s = (v >= 1.0).astype(float)
        v = beta * v + fc @ x + s @ w_rec - s
        membranes.append(v)
        spikes.append(s)
    _, recording = eqslax.record(model, xs)
    np.testing.assert_allclose(recording.states.layers[1].v, np.array(membranes), atol=1e-12)
    np.testing.assert_array_equal(recording.outputs[:-1], np.array(spikes)[1:])
    assert np.sum(spikes) > 10
    literal = from_nir(_spyx_graph(beta, w_rec, fc, n), dt=1.0)  # NIR read literally
    assert literal.edges == ((1, 2),)  # w_rec applied to input + spikes: another network


# ---------------------------------------------------------------- errors


def test_unsupported_layers_are_named():
    model = eqslax.Connect([eqx.nn.Linear(3, 2, key=jax.random.PRNGKey(0)), eqslax.ALIF(2)])
    with pytest.raises(TypeError, match=r"model\.layers\[1\] \(ALIF\)"):
        to_nir(model)
    with pytest.raises(TypeError, match="Izhikevich"):
        to_nir(eqslax.Izhikevich(2))
    with pytest.raises(ValueError, match=r"`decay` = 1.*IF"):
        to_nir(eqslax.LIF(2, 1.0))


@pytest.mark.parametrize(
    "node",
    [
        nir.Threshold(threshold=np.ones(2)),
        nir.Scale(scale=np.ones(2)),
        nir.CubaLI(tau_syn=np.ones(2), tau_mem=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)),
    ],
    ids=lambda node: type(node).__name__,
)
def test_unsupported_nodes_are_named(node):
    with pytest.raises(TypeError, match=rf"node 'n0' has type {type(node).__name__}"):
        from_nir(_graph(node, type_check=False))


@pytest.mark.parametrize(
    "node, match",
    [
        (_nir_lif([0.02, 0.02], 20.0, v_leak=np.ones(2)), "v_leak"),
        (_nir_lif([0.02, 0.02], 20.0, v_reset=np.full(2, -0.5)), "v_reset"),
        (_nir_lif([1e-4, 1e-4], 20.0), "dt"),
        (nir.LI(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2)), "Euler gain"),
    ],
    ids=["v_leak", "v_reset", "tau<dt", "LI-gain-without-weights"],
)
def test_parameters_eqslax_cannot_express_are_named(node, match):
    with pytest.raises(ValueError, match=rf"node 'n0'.*{match}"):
        from_nir(_graph(node), dt=1e-3)


def _topology(edges, outputs=("output",)):
    lif = _nir_lif([0.02, 0.02], 20.0)
    nodes = {
        "input": nir.Input(np.array([2])),
        "a": lif,
        "b": nir.LIF(tau=lif.tau, r=lif.r, v_leak=lif.v_leak, v_threshold=lif.v_threshold),
        "c": nir.Linear(weight=np.eye(2)),
        **{name: nir.Output(np.array([2])) for name in outputs},
    }
    return nir.NIRGraph(nodes, edges, type_check=False)


def test_topologies_eqslax_cannot_express_are_named():
    parallel = _topology([("input", "a"), ("input", "b"), ("a", "c"), ("b", "c"), ("c", "output")])
    with pytest.raises(ValueError, match=r"node '[ab]' \(LIF\) is off the main path"):
        from_nir(parallel, dt=1e-3)
    skip_input = _topology(
        [("input", "a"), ("a", "b"), ("b", "c"), ("input", "c"), ("c", "output")]
    )
    with pytest.raises(ValueError, match=r"the input feeds node 'c' \(Linear\)"):
        from_nir(skip_input, dt=1e-3)
    two_outputs = _topology(
        [("input", "a"), ("a", "b"), ("b", "c"), ("c", "output"), ("a", "extra")],
        outputs=("output", "extra"),
    )
    with pytest.raises(ValueError, match="exactly one Output node"):
        from_nir(two_outputs, dt=1e-3)


def test_direct_side_edges_are_identity_projections():
    side = _topology([("input", "a"), ("a", "b"), ("b", "c"), ("a", "c"), ("c", "output")])
    model = from_nir(side, dt=1e-3)
    assert model.edges == ((2, 0),)
    np.testing.assert_array_equal(model.projections[0].weight, np.eye(2))


def test_bad_arguments_are_explained():
    graph = to_nir(_model("lif-subtract"))
    with pytest.raises(ValueError, match="`dt` must be a positive"):
        to_nir(_model("lif-subtract"), dt=0.0)
    with pytest.raises(ValueError, match="`dt` must be a positive"):
        from_nir(graph, dt=-1.0)
    with pytest.raises(ValueError, match="`convention` must be one of"):
        from_nir(graph, convention="norse")
    with pytest.raises(ValueError, match="`reset` must be one of"):
        from_nir(graph, reset="hard")


# ---------------------------------------------------------------- optional dependency


def test_import_eqslax_does_not_import_nir():
    code = (
        "import sys, eqslax; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nir', 'h5py')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_bridge_without_nir_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    for name in [n for n in sys.modules if n.startswith("eqslax.nir")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r'pip install "eqslax\[nir\]"'):
        importlib.import_module("eqslax.nir")


def test_flatten_round_trip_and_torch_style_import():
    k = jax.random.split(jax.random.key(5), 2)
    model = eqslax.Connect(
        [eqslax.Flatten((2, 3)), eqx.nn.Linear(6, 4, key=k[0]), eqslax.LIF(4, decay=0.8)]
    )
    model = eqx.tree_at(lambda m: m.layers[1].weight, model, model.layers[1].weight * 3)
    back = from_nir(to_nir(model))
    assert isinstance(back.layers[0], eqslax.Flatten) and back.layers[0].in_shape == (2, 3)
    xs = random_spikes(k[1], (50, 2, 3), rate=0.4)
    expected = _outputs(model, xs)
    assert expected.sum() > 5
    np.testing.assert_array_equal(_outputs(back, xs), expected)
    # torch's nn.Flatten(start_dim=1) on a batch of one, as snnTorch's exporter writes it
    graph = to_nir(model)
    graph.nodes["layer0"] = nir.Flatten({"input": np.array([1, 2, 3])}, start_dim=1)
    np.testing.assert_array_equal(_outputs(from_nir(graph), xs), expected)
    with pytest.raises(ValueError, match="Flatten: `x` must have shape"):
        eqslax.Flatten((2, 3))(jnp.zeros(6))
