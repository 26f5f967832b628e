r"""``simulate`` and ``record``: one scan of :math:`(h_t, y_t) = f(h_{t-1}, x_t)` over time."""

import pathlib
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import pytest
from helpers import assert_tree_allclose, feedforward, random_spikes

import eqslax

STEPS = 24
SIZES = (6, 8, 3)


@pytest.fixture(scope="module")
def network():
    return feedforward(jax.random.key(0), SIZES)


@pytest.fixture(scope="module")
def xs():
    return random_spikes(jax.random.key(1), (STEPS, SIZES[0]))


def _models():
    """A bare neuron, a neuron with internal state besides the membrane and a graph."""
    return {
        "LIF": eqslax.LIF(SIZES[0], np.linspace(0.5, 0.95, SIZES[0]), 0.7),
        "ALIF": eqslax.ALIF(SIZES[0], 0.9, 0.6, 0.95, 0.3),
        "Connect": feedforward(jax.random.key(0), SIZES),
    }


MODELS = _models()


@eqx.filter_jit
def _step(model, state, x):
    return model(state, x)


def _loop(model, xs, state=None):
    """:math:`h_t, y_t = f(h_{t-1}, x_t)` as a Python loop over time."""
    state = model.init_state() if state is None else state
    ys = []
    for x in xs:
        state, y = _step(model, state, x)
        ys.append(y)
    return state, jnp.stack(ys)


@pytest.mark.parametrize("name", list(MODELS))
def test_simulate_equals_a_python_loop(name, xs):
    model = MODELS[name]
    inputs = 1.5 * xs
    final, ys = eqslax.simulate(model, inputs)
    final_loop, ys_loop = _loop(model, inputs)
    assert ys.shape == (STEPS, *model.out_shape)
    np.testing.assert_allclose(ys, ys_loop, rtol=1e-12, atol=1e-12)
    assert_tree_allclose(final, final_loop)
    assert 0.0 < float(jnp.mean(ys)) < 1.0, "the model never or always fires"


def test_record_matches_every_layer(network, xs):
    final, recording = eqslax.record(network, xs)
    state = network.init_state()
    layers, states = [], []
    for x in xs:
        state, outputs = eqx.filter_jit(type(network).forward)(network, state, x)
        layers.append(outputs)
        states.append(state)
    assert len(recording.layers) == len(network.layers)
    for k, got in enumerate(recording.layers):
        want = jnp.stack([outputs[k] for outputs in layers])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"layer {k}")
    final_sim, ys = eqslax.simulate(network, xs)
    np.testing.assert_allclose(recording.outputs, ys, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(recording.layers[-1], ys, rtol=1e-12, atol=1e-12)
    # ``states`` is the state after every step, each leaf with a leading time axis.
    stacked = jtu.tree_map(lambda *leaves: jnp.stack(leaves), *states)
    assert_tree_allclose(recording.states, stacked)
    assert_tree_allclose(final, final_sim)


def test_record_of_a_single_neuron(xs):
    model = MODELS["LIF"]
    _, recording = eqslax.record(model, 1.5 * xs)
    _, ys = _loop(model, 1.5 * xs)
    assert len(recording.layers) == 1
    np.testing.assert_allclose(recording.layers[0], ys, rtol=1e-12, atol=1e-12)
    assert recording.states.v.shape == (STEPS, SIZES[0])


def test_vmap_over_a_batch_equals_per_sample_runs(network):
    batch = random_spikes(jax.random.key(2), (4, STEPS, SIZES[0]))
    finals, ys = jax.vmap(lambda x: eqslax.simulate(network, x))(batch)
    assert ys.shape == (4, STEPS, SIZES[-1])
    for b in range(4):
        final_b, ys_b = eqslax.simulate(network, batch[b])
        np.testing.assert_allclose(ys[b], ys_b, rtol=1e-12, atol=1e-12, err_msg=f"sample {b}")
        assert_tree_allclose(jtu.tree_map(lambda leaf, b=b: leaf[b], finals), final_b)
    assert not np.allclose(ys[0], ys[1]), "samples should differ"


def _loss(model, xs, checkpoint):
    _, ys = eqslax.simulate(model, xs, checkpoint=checkpoint)
    return jnp.sum(ys * jnp.arange(1.0, SIZES[-1] + 1))


def test_checkpoint_gives_the_same_values_and_gradients(network, xs):
    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(_loss))
    value, grads = value_and_grad(network, xs, False)
    value_ckpt, grads_ckpt = value_and_grad(network, xs, True)
    assert float(value) == float(value_ckpt)
    assert_tree_allclose(grads, grads_ckpt)
    assert float(jnp.max(jnp.abs(grads.layers[0].weight))) > 0.0, "vacuous: zero gradient"
    np.testing.assert_array_equal(
        eqslax.simulate(network, xs, checkpoint=True)[1], eqslax.simulate(network, xs)[1]
    )


def test_gradient_matches_the_python_loop(network, xs):
    def loss_loop(model):
        _, ys = _loop(model, xs)
        return jnp.sum(ys * jnp.arange(1.0, SIZES[-1] + 1))

    got = eqx.filter_jit(eqx.filter_grad(_loss))(network, xs, False)
    assert_tree_allclose(got, eqx.filter_grad(loss_loop)(network), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(MODELS))
def test_state_argument_continues_a_run(name, xs):
    """Two halves, the second started from the first's final state, equal the whole."""
    model = MODELS[name]
    inputs = 1.5 * xs
    final, ys = eqslax.simulate(model, inputs)
    middle, ys_first = eqslax.simulate(model, inputs[: STEPS // 2])
    final_halves, ys_second = eqslax.simulate(model, inputs[STEPS // 2 :], state=middle)
    np.testing.assert_allclose(jnp.concatenate([ys_first, ys_second]), ys, rtol=1e-12, atol=1e-12)
    assert_tree_allclose(final_halves, final)
    # Starting the second half from rest instead differs: the state matters.
    _, ys_fresh = eqslax.simulate(model, inputs[STEPS // 2 :])
    assert not np.allclose(ys_fresh, ys_second)

    _, recording = eqslax.record(model, inputs[STEPS // 2 :], state=middle)
    np.testing.assert_allclose(recording.outputs, ys_second, rtol=1e-12, atol=1e-12)


@pytest.fixture
def no_compilation(monkeypatch):
    """Make any scan (i.e. the start of tracing the unroll) fail loudly."""

    def scan(*args, **kwargs):
        raise AssertionError("the input was not checked before tracing the scan")

    monkeypatch.setattr(jax.lax, "scan", scan)


RUNNERS = {"simulate": eqslax.simulate, "record": eqslax.record}


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_wrong_width_is_rejected_before_compiling(runner, network, no_compilation):
    with pytest.raises(ValueError, match=r"`xs` must have shape \(time, 6\), got \(24, 5\)"):
        RUNNERS[runner](network, jnp.zeros((STEPS, 5)))


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_batch_axis_is_rejected_with_a_vmap_hint(runner, network, no_compilation):
    with pytest.raises(ValueError, match=r"`xs`.*\(time, 6\).*\(4, 24, 6\).*vmap") as info:
        RUNNERS[runner](network, jnp.zeros((4, STEPS, 6)))
    assert "batch" in str(info.value)


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_missing_time_axis_is_rejected(runner, network, no_compilation):
    with pytest.raises(ValueError, match=r"`xs` must have shape \(time, 6\), got \(6,\)"):
        RUNNERS[runner](network, jnp.zeros(6))


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_integer_input_is_rejected(runner, network, no_compilation):
    # Under the suite's jaxtyping hook the annotation rejects it first (``i32[24,6]``);
    # the library's own message is checked without the hook below.
    with pytest.raises(TypeError, match="xs") as info:
        RUNNERS[runner](network, jnp.zeros((STEPS, 6), jnp.int32))
    assert "int32" in str(info.value) or "i32[24,6]" in str(info.value)


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_non_neuron_model_is_rejected(runner, no_compilation):
    linear = eqx.nn.Linear(6, 3, key=jax.random.key(0))
    with pytest.raises(TypeError, match="model") as info:
        RUNNERS[runner](linear, jnp.zeros((STEPS, 6)))
    assert "Linear" in str(info.value)


_WITHOUT_HOOK = """
import jax, jax.numpy as jnp, equinox as eqx
import eqslax

def scan(*args, **kwargs):
    raise AssertionError("scan reached")

jax.lax.scan = scan
model = eqslax.LIF(6)
cases = {
    "integer": (model, jnp.zeros((24, 6), jnp.int32)),
    "model": (eqx.nn.Linear(6, 3, key=jax.random.key(0)), jnp.zeros((24, 6))),
}
for name, (m, xs) in cases.items():
    try:
        eqslax.simulate(m, xs)
    except (TypeError, ValueError) as error:
        print(f"{name}|{type(error).__name__}|{error}")
"""


def test_library_messages_without_the_typecheck_hook():
    """What users see: the library's own checks, not jaxtyping's."""
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_HOOK],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=pathlib.Path(__file__).parent.parent,
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("|", 1) for line in result.stdout.strip().splitlines())
    assert set(lines) == {"integer", "model"}, result.stdout
    assert lines["integer"].startswith("TypeError|simulate: `xs` must have a floating dtype")
    assert "int32" in lines["integer"]
    assert lines["model"].startswith("TypeError|simulate: `model` must be an eqslax neuron")
    assert "got Linear" in lines["model"]


def test_checks_run_before_compilation_for_a_valid_input(network, xs, no_compilation):
    """Sanity check of the fixture: a valid, not yet compiled input reaches the scan."""
    with pytest.raises(AssertionError, match="not checked"):
        eqslax.simulate(network, xs[:7])


def _astype(tree, dtype):
    return jtu.tree_map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, tree)


@pytest.mark.parametrize("name", list(MODELS))
def test_float32_model_with_float64_data(name, xs):
    """The carry is cast to the dtype one step produces, so the scan accepts it."""
    model = MODELS[name]
    model32 = _astype(model, jnp.float32)
    inputs = 1.5 * xs
    assert inputs.dtype == jnp.float64
    final, ys = eqslax.simulate(model32, inputs)
    _, ys64 = eqslax.simulate(model, inputs)
    assert ys.shape == ys64.shape
    # Spikes can differ only where a membrane sits within float32 rounding of threshold.
    assert float(jnp.mean(jnp.abs(ys - ys64))) < 0.05
    for leaf, leaf64 in zip(jtu.tree_leaves(final), jtu.tree_leaves(model.init_state())):
        assert leaf.shape == leaf64.shape
    _, recording = eqslax.record(model32, inputs)
    np.testing.assert_array_equal(recording.outputs, ys)
    # And the other way round: a float64 model with float32 data.
    _, ys_mixed = eqslax.simulate(model, inputs.astype(jnp.float32))
    assert ys_mixed.shape == ys64.shape
