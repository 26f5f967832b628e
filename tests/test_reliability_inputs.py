"""Bad inputs rejected at construction: each case asserts the error type and that the
message names the class (or file, or node), the argument and what was given.

Hyperparameters (surrogate widths and slopes, neuron thresholds, decays and time
constants, STDP amplitudes), ``Connect(cat=...)`` edges and NIR files/graphs. Only
concrete values are checked; traced values must keep working (last tests).
"""

import math

import equinox as eqx
import h5py
import jax
import jax.numpy as jnp
import nir
import numpy as np
import pytest

import eqslax
from eqslax.nir import from_nir, load_nir, save_nir, to_nir

NAN, INF = math.nan, math.inf

HYPERPARAMETER_CASES = [
    # (constructor, argument, value, pattern that must appear in the message)
    (lambda v: eqslax.Gaussian(v), "std", 0.0, r"Gaussian: `std` must be > 0, got 0\.0"),
    (lambda v: eqslax.Gaussian(v), "std", -0.5, r"Gaussian: `std` must be > 0, got -0\.5"),
    (lambda v: eqslax.FastSigmoid(v), "slope", -1.0, r"FastSigmoid: `slope` must be > 0, got -1"),
    (lambda v: eqslax.FastSigmoid(v), "slope", INF, r"FastSigmoid: `slope` must be finite.*inf"),
    (lambda v: eqslax.Boxcar(v), "width", -1.0, r"Boxcar: `width` must be > 0, got -1"),
    (lambda v: eqslax.Boxcar(v), "width", 0.0, r"Boxcar: `width` must be > 0, got 0"),
    (lambda v: eqslax.Arctan(v), "alpha", -1.0, r"Arctan: `alpha` must be > 0, got -1"),
    (lambda v: eqslax.Sigmoid(v), "slope", NAN, r"Sigmoid: `slope` must be finite and > 0.*nan"),
    (lambda v: eqslax.Exponential(v), "slope", 0.0, r"Exponential: `slope` must be > 0"),
    (lambda v: eqslax.Triangle(width=v), "width", 0.0, r"Triangle: `width` must be > 0"),
    (lambda v: eqslax.Triangle(gamma=v), "gamma", NAN, r"Triangle: `gamma` must be finite"),
    (lambda v: eqslax.MultiGaussian(lens=v), "lens", 0.0, r"MultiGaussian: `lens` must be > 0"),
    (lambda v: eqslax.LIF(3, threshold=v), "threshold", NAN, r"LIF: `threshold` must be finite"),
    (lambda v: eqslax.LIF(3, threshold=v), "threshold", 0.0, r"LIF: `threshold` must be > 0"),
    (lambda v: eqslax.LIF(3, decay=v), "decay", NAN, r"LIF: `decay` must be finite"),
    (lambda v: eqslax.LIF(3, decay=v), "decay", INF, r"LIF: `decay` must be finite.*inf"),
    (lambda v: eqslax.IF(3, threshold=v), "threshold", INF, r"IF: `threshold` must be finite"),
    (lambda v: eqslax.LI(3, decay=v), "decay", NAN, r"LI: `decay` must be finite"),
    (lambda v: eqslax.ALIF(3, adaptation_decay=v), "adaptation_decay", NAN, "ALIF"),
    (lambda v: eqslax.CuBaLIF(3, synapse_decay=v), "synapse_decay", NAN, "CuBaLIF"),
    (lambda v: eqslax.RLIF(3, key=jax.random.key(0), decay=v), "decay", NAN, "RLIF"),
    (lambda v: eqslax.Izhikevich(3, a=v), "a", NAN, r"Izhikevich: `a` must be finite"),
    (lambda v: eqslax.Izhikevich(3, dt=v), "dt", INF, r"Izhikevich: `dt` must be finite"),
    (lambda v: eqslax.LTC(3, key=jax.random.key(0), threshold=v), "threshold", NAN, "LTC"),
    (lambda v: eqslax.STDP(potentiation=v), "potentiation", NAN, r"STDP: `potentiation`"),
    (lambda v: eqslax.STDP(depression=v), "depression", INF, r"STDP: `depression` must be finite"),
    (lambda v: eqslax.STDP(pre_decay=v), "pre_decay", NAN, r"STDP: `pre_decay` must be finite"),
    (lambda v: eqslax.STDP(minimum=v), "minimum", NAN, r"STDP: `minimum` must be not NaN"),
    (lambda v: eqslax.RewardSTDP(learning_rate=v), "learning_rate", NAN, "Rew"),
]


@pytest.mark.parametrize(
    "build,name,value,pattern",
    HYPERPARAMETER_CASES,
    ids=[f"{i}-{c[1]}={c[2]}" for i, c in enumerate(HYPERPARAMETER_CASES)],
)
def test_bad_hyperparameter_is_rejected_naming_it(build, name, value, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        build(value)
    message = str(info.value)
    assert f"`{name}`" in message
    assert repr(value) in message or str(value) in message


def test_per_unit_array_names_the_first_bad_index():
    decay = np.full(8, 0.5)
    decay[5] = np.nan
    with pytest.raises(
        ValueError, match=r"LIF: `decay` must be finite.*shape \(8,\).*index \(5,\)"
    ):
        eqslax.LIF(8, decay=decay)


def test_stdp_bounds_may_be_infinite_but_not_nan():
    rule = eqslax.STDP(bounds="none", minimum=-INF, maximum=INF)
    assert float(rule.maximum) == INF


def _layers():
    k0, k1 = jax.random.split(jax.random.key(0))
    return [eqx.nn.Linear(4, 5, key=k0), eqslax.LIF(5), eqx.nn.Linear(5, 3, key=k1)]


CAT_CASES = [
    ({1: [True]}, TypeError, r"ints.*True.*bool.*edge 1: \[True\]"),
    ({True: [0]}, TypeError, r"ints.*True.*bool"),
    # the signature's type check (`Mapping[int, Sequence[int]]`) rejects these first
    ({1: True}, TypeError, r"cat(.|\n)*\{1: True\}"),
    ({1: "0"}, TypeError, r"cat(.|\n)*\{1: '0'\}"),
    ({1: [0.5]}, TypeError, r"cat(.|\n)*\{1: \[0\.5\]\}"),
    ({1: [1, 1]}, ValueError, r"edge 1 -> 1 twice \(1: \[1, 1\]\)"),
    ({2: [0, 1, 0]}, ValueError, r"edge 0 -> 2 twice"),
]


@pytest.mark.parametrize("cat,error,pattern", CAT_CASES, ids=[str(c[0]) for c in CAT_CASES])
def test_bad_cat_edge_is_rejected_naming_the_edge(cat, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        eqslax.Connect(_layers(), cat=cat, key=jax.random.key(1))
    assert "cat" in str(info.value)


@pytest.fixture(scope="module")
def nir_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nir")
    model = eqslax.Connect([eqx.nn.Linear(3, 4, key=jax.random.key(0)), eqslax.LIF(4)])
    good = folder / "good.nir"
    save_nir(good, model)
    data = good.read_bytes()
    files = {
        "junk": b"not an hdf5 file " * 8,
        "truncated": data[: len(data) // 2],
        "empty": b"",
    }
    for name, payload in files.items():
        (folder / f"{name}.nir").write_bytes(payload)
    with h5py.File(folder / "foreign.nir", "w") as f:
        f["numbers"] = np.arange(3)
    return folder, model


@pytest.mark.parametrize("name", ["junk", "truncated", "empty", "foreign"])
def test_unreadable_nir_file_is_named(nir_files, name):
    folder, _ = nir_files
    path = folder / f"{name}.nir"
    with pytest.raises(ValueError, match="not a valid or complete NIR file") as info:
        load_nir(path)
    assert str(path) in str(info.value)


def test_missing_nir_file_is_named(nir_files):
    folder, _ = nir_files
    with pytest.raises(FileNotFoundError, match="absent.nir"):
        load_nir(folder / "absent.nir")


def _nodes_and_edges(model):
    graph = to_nir(model)
    return dict(graph.nodes), list(graph.edges)


def test_edge_to_a_missing_node_names_the_node(nir_files):
    _, model = nir_files
    nodes, edges = _nodes_and_edges(model)
    graph = nir.NIRGraph(nodes=nodes, edges=[*edges, ("layer0", "ghost")], type_check=False)
    with pytest.raises(ValueError, match=r"'layer0' -> 'ghost'.*node 'ghost', which is not"):
        from_nir(graph)


def test_nan_weight_names_the_node(nir_files):
    _, model = nir_files
    nodes, edges = _nodes_and_edges(model)
    weight = np.array(nodes["layer0"].weight)
    weight[1, 2] = np.nan
    nodes["layer0"] = nir.Affine(weight=weight, bias=np.array(nodes["layer0"].bias))
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(ValueError, match=r"node 'layer0' \(Affine\).*`weight`.*index \(1, 2\)"):
        from_nir(graph)


def test_nan_time_constant_names_the_node(nir_files):
    _, model = nir_files
    nodes, edges = _nodes_and_edges(model)
    lif = nodes["layer1"]
    nodes["layer1"] = nir.LIF(
        tau=np.full_like(lif.tau, np.nan), r=lif.r, v_leak=lif.v_leak, v_threshold=lif.v_threshold
    )
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(ValueError, match=r"node 'layer1' \(LIF\).*`tau`"):
        from_nir(graph)


def test_load_nir_names_the_file_for_node_errors(nir_files, tmp_path):
    _, model = nir_files
    nodes, edges = _nodes_and_edges(model)
    nodes["layer0"] = nir.Affine(
        weight=np.full_like(nodes["layer0"].weight, np.inf), bias=np.array(nodes["layer0"].bias)
    )
    path = tmp_path / "inf.nir"
    nir.write(str(path), nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    with pytest.raises(ValueError, match=r"inf\.nir.*node 'layer0'"):
        load_nir(path)


def test_good_nir_file_still_loads(nir_files):
    folder, model = nir_files
    loaded = load_nir(folder / "good.nir")
    np.testing.assert_allclose(loaded.layers[0].weight, model.layers[0].weight)


def test_traced_hyperparameters_are_not_checked():
    """Under jit/vmap/tree_at the values are not inspected; construction keeps working."""
    slopes = jnp.array([1.0, 25.0])
    derivative = jax.vmap(lambda k: eqslax.FastSigmoid(k).derivative(jnp.asarray(0.1)))(slopes)
    np.testing.assert_allclose(derivative, 1.0 / (1.0 + slopes * 0.1) ** 2, rtol=1e-6)
    decays = jax.jit(jax.vmap(lambda d: eqslax.LIF(3, decay=d).decay))(jnp.array([0.5, 0.7]))
    np.testing.assert_allclose(decays, [[0.5] * 3, [0.7] * 3] if decays.ndim == 2 else [0.5, 0.7])
    std = jax.jit(lambda s: eqslax.Gaussian(s).std)(jnp.asarray(0.3))
    assert float(std) == pytest.approx(0.3)
    moved = eqx.tree_at(lambda m: m.threshold, eqslax.LIF(3), jnp.asarray(2.0))
    assert float(moved.threshold) == 2.0
