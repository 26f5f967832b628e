"""``eqslax.nir`` for convolutions, recurrent layers, delays and ALIF.

- ``eqx.nn.Conv1d``/``Conv2d`` <-> NIR ``Conv1d``/``Conv2d`` (weight, bias, stride,
  padding, dilation, groups, input_shape), inside a Connect with Flatten.
- ``Recurrent(neuron)`` <-> the sub-graph ``input -> neuron -> output`` with the cycle
  ``neuron -> recurrent (Linear) -> neuron``.
- ``Delay`` <-> NIR ``Delay`` with tau = d * dt (a tau that is not a whole number of
  steps is refused, naming the node); ``DCLSDelay`` (per-synapse delays) has no node.
- ALIF has no NIR node: exporting it is refused, naming the layer.

Every round trip (in memory and through a file) gives the same outputs on random inputs
to 1e-12, in float64.

Runtime: about 35 s of CPU time (39 tests).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest
from helpers import random_spikes

import eqslax
from eqslax.nir import from_nir, load_nir, save_nir, to_nir

T = 40


def _round_trip(model, via, tmp_path):
    if via == "memory":
        return from_nir(to_nir(model))
    path = tmp_path / "model.nir"
    save_nir(path, model)
    return load_nir(path)


def _assert_same_outputs(model, back, seed=1):
    xs = random_spikes(jax.random.PRNGKey(seed), (T, *model.in_shape), rate=0.4)
    expected = np.asarray(eqslax.simulate(model, xs)[1])
    got = np.asarray(eqslax.simulate(back, xs)[1])
    assert np.abs(expected).sum() > 10  # the network is active: the test can fail
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- convolutions

CONVS = {
    # name: (spatial dims, in_shape, Conv keyword arguments)
    "1d": (1, (2, 12), dict(kernel_size=3, padding=1)),
    "1d-stride-dilation-groups": (
        1,
        (4, 13),
        dict(kernel_size=3, stride=2, padding=2, dilation=2, groups=2),
    ),
    "1d-same-no-bias": (1, (2, 9), dict(kernel_size=4, padding="SAME", use_bias=False)),
    "2d": (2, (1, 7, 7), dict(kernel_size=3)),
    "2d-everything": (
        2,
        (2, 9, 8),
        dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2),
    ),
    "2d-same": (2, (2, 6, 6), dict(kernel_size=3, padding="SAME")),
}


def _conv_model(name):
    dims, in_shape, options = CONVS[name]
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    make = eqx.nn.Conv1d if dims == 1 else eqx.nn.Conv2d
    conv = make(in_shape[0], 4, key=k[0], **options)
    conv = eqx.tree_at(lambda m: m.weight, conv, 3.0 * jnp.abs(conv.weight))
    shape = jax.eval_shape(conv, jax.ShapeDtypeStruct(in_shape, jnp.float64)).shape
    n = int(np.prod(shape))
    linear = eqx.nn.Linear(n, 5, key=k[1])
    linear = eqx.tree_at(lambda m: m.weight, linear, 3.0 * linear.weight)
    layers = [conv, eqslax.LIF(shape, 0.8), eqslax.Flatten(shape), linear, eqslax.LI(5)]
    return eqslax.Connect(layers, in_shape=in_shape)


@pytest.mark.parametrize("via", ["memory", "file"])
@pytest.mark.parametrize("name", list(CONVS))
def test_conv_round_trip_reproduces_outputs(name, via, tmp_path):
    model = _conv_model(name)
    back = _round_trip(model, via, tmp_path)
    _assert_same_outputs(model, back)
    before, after = model.layers[0], back.layers[0]
    assert type(after) is type(before)
    for field in ("stride", "padding", "dilation", "groups", "kernel_size", "use_bias"):
        assert getattr(after, field) == getattr(before, field), field
    np.testing.assert_array_equal(after.weight, before.weight)
    if before.use_bias:
        np.testing.assert_array_equal(after.bias, before.bias)


def test_conv_nodes_carry_the_layer():
    graph = to_nir(_conv_model("2d-everything"))
    node = graph.nodes["layer0"]
    assert isinstance(node, nir.Conv2d)
    assert node.stride == (2, 1) and node.dilation == (1, 2) and node.groups == 2
    assert node.padding == (1, 0) and tuple(node.input_shape) == (9, 8)
    assert node.weight.shape == (4, 1, 3, 2)  # PyTorch's layout: (C_out, C_in / groups, k)
    assert tuple(node.input_type["input"]) == (2, 9, 8)
    assert tuple(node.output_type["output"]) == (4, 5, 6)
    assert isinstance(graph.nodes["layer2"], nir.Flatten)
    assert graph.check_types()
    node = to_nir(_conv_model("1d-same-no-bias")).nodes["layer0"]
    assert isinstance(node, nir.Conv1d) and node.padding == "same"
    assert node.metadata == {"eqslax.use_bias": False} and not node.bias.any()


def _peer_conv_graph(input_shape, declared, padding=1, stride=1):
    """A graph as a PyTorch exporter writes it: 1-channel input with a batch axis."""
    weight = np.abs(np.random.default_rng(0).normal(size=(2, 1, 3, 3)))
    nodes = {
        "input": nir.Input(input_type=np.array(declared)),
        "conv": nir.Conv2d(input_shape, weight, stride, padding, 1, 1, np.zeros(2)),
        "lif": nir.LIF(
            tau=np.full((2, 6, 6), 2e-4),
            r=np.full((2, 6, 6), 2.0),
            v_leak=np.zeros((2, 6, 6)),
            v_threshold=np.ones((2, 6, 6)),
        ),
        "output": nir.Output(output_type=np.array((2, 6, 6))),
    }
    edges = [("input", "conv"), ("conv", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes, edges, type_check=False)


@pytest.mark.parametrize("input_shape", [(6, 6), None])
@pytest.mark.parametrize("declared", [(1, 6, 6), (1, 1, 6, 6)])
def test_a_one_channel_conv_keeps_its_channel_axis(input_shape, declared):
    model = from_nir(_peer_conv_graph(input_shape, declared))
    assert model.in_shape == (1, 6, 6) and model.out_shape == (2, 6, 6)
    assert isinstance(model.layers[0], eqx.nn.Conv2d)
    assert model.layers[1].decay.shape == (2, 6, 6)


def test_conv_export_errors_name_the_layer():
    k = jax.random.PRNGKey(0)
    asymmetric = eqx.nn.Conv1d(1, 2, 2, padding=((0, 1),), key=k)
    with pytest.raises(ValueError, match=r"layers\[0\].*\(0, 1\).*symmetric"):
        to_nir(eqslax.Connect([asymmetric], in_shape=(1, 8)))
    reflect = eqx.nn.Conv1d(1, 2, 3, padding=1, padding_mode="REFLECT", key=k)
    with pytest.raises(ValueError, match=r"layers\[0\].*REFLECT.*zeros"):
        to_nir(eqslax.Connect([reflect], in_shape=(1, 8)))
    with pytest.raises(ValueError, match=r"\(Conv2d\).*shape of its input.*Connect"):
        to_nir(eqx.nn.Conv2d(1, 2, 3, key=k))
    strided_same = eqx.nn.Conv1d(1, 2, 2, stride=2, padding="SAME", key=k)
    with pytest.raises(ValueError, match=r"\(0, 1\).*symmetric"):  # SAME pads (0, 1) here
        to_nir(eqslax.Connect([strided_same], in_shape=(1, 7)))
    even = eqslax.Connect([strided_same], in_shape=(1, 8))  # SAME pads nothing here
    assert to_nir(even).nodes["layer0"].padding == 0


def test_conv_import_errors_name_the_node():
    with pytest.raises(ValueError, match="'conv'.*same.*stride"):
        from_nir(_peer_conv_graph((6, 6), (1, 6, 6), padding="same", stride=2))
    with pytest.raises(ValueError, match="'conv'.*declares input.*\\(1, 6, 6\\).*\\(1, 5, 5\\)"):
        from_nir(_peer_conv_graph((6, 6), (1, 5, 5)))


# ---------------------------------------------------------------- recurrent layers


def _recurrent_model(neuron):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    first = eqx.nn.Linear(4, 6, key=k[0])
    first = eqx.tree_at(lambda m: m.weight, first, 3.0 * first.weight)
    recurrent = eqslax.Recurrent(neuron, key=k[1])
    recurrent = eqx.tree_at(lambda m: m.weight, recurrent, 2.0 * recurrent.weight)
    layers = [first, recurrent, eqx.nn.Linear(6, 3, key=k[2]), eqslax.LI(3, 0.9)]
    return eqslax.Connect(layers)


NEURONS = {
    "lif": lambda: eqslax.LIF(6, np.linspace(0.7, 0.95, 6)),
    "lif-zero-reset": lambda: eqslax.LIF(6, 0.9, reset="zero", reset_decay=False),
    "cubalif": lambda: eqslax.CuBaLIF(6, 0.6, 0.85),
    "if": lambda: eqslax.IF(6, 1.5),
    "li": lambda: eqslax.LI(6, 0.8),
}


@pytest.mark.parametrize("via", ["memory", "file"])
@pytest.mark.parametrize("name", list(NEURONS))
def test_recurrent_round_trip_reproduces_outputs(name, via, tmp_path):
    model = _recurrent_model(NEURONS[name]())
    back = _round_trip(model, via, tmp_path)
    _assert_same_outputs(model, back)
    assert isinstance(back.layers[1], eqslax.Recurrent) and not back.edges
    assert type(back.layers[1].neuron) is type(model.layers[1].neuron)
    np.testing.assert_array_equal(back.layers[1].weight, model.layers[1].weight)


def test_a_recurrent_layer_is_a_subgraph_with_a_cycle():
    model = _recurrent_model(NEURONS["lif"]())
    graph = to_nir(model).nodes["layer1"]
    assert isinstance(graph, nir.NIRGraph)
    assert graph.metadata == {"eqslax.layer": "Recurrent"}
    assert {("neuron", "recurrent"), ("recurrent", "neuron")} <= set(graph.edges)
    assert isinstance(graph.nodes["recurrent"], nir.Linear)
    assert isinstance(graph.nodes["neuron"], nir.LIF)
    np.testing.assert_array_equal(graph.nodes["recurrent"].weight, model.layers[1].weight)


def test_without_eqslax_metadata_the_subgraph_is_a_cat_self_edge():
    """A peer's file (snnTorch's RLeaky writes this sub-graph) reads as the same model."""
    model = _recurrent_model(NEURONS["lif"]())
    graph = to_nir(model)
    graph.nodes["layer1"].metadata = {}
    back = from_nir(graph)
    assert back.edges == ((1, 1),) and isinstance(back.layers[1], eqslax.LIF)
    _assert_same_outputs(model, back)


def test_recurrent_errors():
    k = jax.random.PRNGKey(0)
    square = eqslax.Recurrent(eqslax.LIF((2, 3)), key=k)
    with pytest.raises(ValueError, match=r"layers\[0\] \(Recurrent\).*\(2, 3\).*1-D"):
        to_nir(eqslax.Connect([square]))
    graph = to_nir(_recurrent_model(NEURONS["lif"]()))
    inner = graph.nodes["layer1"]
    inner.edges = [e for e in inner.edges if e != ("recurrent", "neuron")]
    with pytest.raises(ValueError, match="'layer1'.*eqslax.layer.*not the layout"):
        from_nir(graph)


# ---------------------------------------------------------------- ALIF


KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize(
    ("model", "where"),
    [
        (eqslax.ALIF(5), "`model`"),
        (eqslax.Connect([eqx.nn.Linear(3, 5, key=KEY), eqslax.ALIF(5)]), "layers[1]"),
        (eqslax.Recurrent(eqslax.ALIF(5), key=KEY), "layers[0].neuron"),
    ],
    ids=["alone", "in-a-connect", "recurrent"],
)
def test_alif_has_no_nir_node(model, where):
    with pytest.raises(TypeError, match="ALIF") as error:
        to_nir(model)
    message = str(error.value)
    assert where in message and "no NIR node" in message and "threshold" in message


# ---------------------------------------------------------------- delays


def _delay_model():
    k = jax.random.split(jax.random.PRNGKey(3), 2)
    linear = eqx.nn.Linear(4, 5, key=k[0])
    linear = eqx.tree_at(lambda m: m.weight, linear, 3.0 * linear.weight)
    layers = [
        eqslax.Delay(4, [0, 2, 1, 3]),
        linear,
        eqslax.LIF(5, 0.8),
        eqslax.Delay(5, 1),
        eqx.nn.Linear(5, 3, key=k[1]),
        eqslax.LI(3),
    ]
    return eqslax.Connect(layers)


@pytest.mark.parametrize("via", ["memory", "file"])
def test_delay_round_trip_reproduces_outputs(via, tmp_path):
    model = _delay_model()
    back = _round_trip(model, via, tmp_path)
    _assert_same_outputs(model, back)
    for k in (0, 3):
        assert isinstance(back.layers[k], eqslax.Delay)
        np.testing.assert_array_equal(back.layers[k].delays, model.layers[k].delays)


def test_a_delay_node_counts_time_in_dt():
    graph = to_nir(_delay_model(), dt=1e-3)
    node = graph.nodes["layer0"]
    assert isinstance(node, nir.Delay)
    np.testing.assert_allclose(node.delay, [0.0, 2e-3, 1e-3, 3e-3])
    back = from_nir(graph)
    np.testing.assert_array_equal(back.layers[0].delays, [0, 2, 1, 3])
    # a peer's node: Input -> Delay -> Output, delays given in seconds
    peer = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "delay": nir.Delay(delay=np.array([0.0, 0.5, 1.5])),
            "output": nir.Output(output_type=np.array([3])),
        },
        edges=[("input", "delay"), ("delay", "output")],
    )
    np.testing.assert_array_equal(from_nir(peer, dt=0.5).layers[0].delays, [0, 1, 3])
    with pytest.raises(ValueError, match=r"'delay'.*Delay.*not whole multiples of dt = 0.4"):
        from_nir(peer, dt=0.4)


def test_learnable_delays_have_no_nir_node():
    model = eqslax.Connect([eqslax.DCLSDelay(3, 2, 4, key=KEY), eqslax.LI(2)])
    with pytest.raises(TypeError, match=r"layers\[0\] \(DCLSDelay\) has one delay per synapse"):
        to_nir(model)
