"""Low precision made explicit: bfloat16 models train (gradients close to float32 in
direction), float16 parameters and mismatched data are refused by name before any work."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import eqslax
from eqslax.analysis import cosine_similarity

LOSS = eqslax.PerStep()


@pytest.fixture(scope="module")
def setup():
    kx, ky, km = jax.random.split(jax.random.key(0), 3)
    xs = jax.random.bernoulli(kx, 0.3, (8, 16, 8)).astype(jnp.float32)
    ys = jax.random.randint(ky, (8,), 0, 3)
    return eqslax.feedforward((8, 16, 3), key=km, readout="li"), xs, ys


def cast(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, tree)


@pytest.mark.parametrize("rule", [eqslax.BPTT(), eqslax.OSTL(), eqslax.EProp()], ids=repr)
def test_bfloat16_gradients_point_where_float32_ones_do(setup, rule):
    model, xs, ys = setup
    g32 = rule.grad(model, LOSS, xs, ys)
    g16 = rule.grad(cast(model, jnp.bfloat16), LOSS, xs.astype(jnp.bfloat16), ys)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(g16))
    # measured 0.998 (BPTT), 0.9999 (OSTL), 0.997 (e-prop) with these sizes
    assert float(cosine_similarity(cast(g16, jnp.float32), g32).global_cosine) > 0.99


def test_a_bfloat16_model_trains_and_stays_bfloat16(setup):
    model, xs, ys = setup
    model, xs = cast(model, jnp.bfloat16), xs.astype(jnp.bfloat16)
    step = eqslax.train_online(model, eqslax.OSTL(), LOSS, optax.adam(3e-2))
    state = step.init(model)
    losses = []
    for _ in range(8):
        model, state, outputs, loss = step(model, state, xs, ys)
        assert not bool(state.nonfinite)
        losses.append(float(loss))
    assert outputs.dtype == jnp.bfloat16
    assert all(
        leaf.dtype == jnp.bfloat16
        for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))
    )
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize(
    "make",
    [
        lambda m: eqslax.train_offline(m, LOSS, optax.adam(1e-3)),
        lambda m: eqslax.train_online(m, eqslax.OSTL(), LOSS, optax.adam(1e-3)),
        lambda m: eqslax.train_fptt(m, eqslax.FPTT(segments=2), LOSS, optax.adam(1e-3)),
    ],
    ids=["train_offline", "train_online", "train_fptt"],
)
def test_float16_parameters_are_refused_by_every_training_step(setup, make):
    model, _, _ = setup
    with pytest.raises(TypeError, match=r"parameter `\.layers\[0\]\.weight` is float16.*bfloat16"):
        make(cast(model, jnp.float16))


def test_float16_models_still_simulate(setup):
    model, xs, _ = setup
    _, out = eqslax.simulate(cast(model, jnp.float16), xs[0].astype(jnp.float16))
    assert out.dtype == jnp.float16 and np.isfinite(np.asarray(out, np.float32)).all()


def test_a_bfloat16_model_refuses_float32_data_by_name(setup):
    model, xs, ys = setup
    low = cast(model, jnp.bfloat16)
    with pytest.raises(TypeError, match=r"`xs` is float32 but the model's parameters are bfloat16"):
        eqslax.OSTL().grad(low, LOSS, xs, ys)
    step = eqslax.train_offline(low, LOSS, optax.sgd(1e-2))
    with pytest.raises(TypeError, match=r"`xs` is float32"):
        step(low, step.init(low), xs, ys)


def test_bfloat16_mixed_with_float32_is_refused(setup):
    model, _, _ = setup
    mixed = eqx.tree_at(
        lambda m: m.layers[0].weight, model, model.layers[0].weight.astype(jnp.bfloat16)
    )
    with pytest.raises(TypeError, match=r"mix bfloat16 \(e\.g\. `\.layers\[0\]\.weight`\)"):
        eqslax.train_offline(mixed, LOSS, optax.sgd(1e-2))


@pytest.mark.parametrize("rule", [eqslax.OSTL(), eqslax.OTTT(), eqslax.EProp()], ids=repr)
def test_layerwise_rules_refuse_parameters_of_two_float_dtypes(setup, rule):
    model, xs, ys = setup
    first = model.layers[0]
    mixed = eqx.tree_at(
        lambda m: (m.layers[0].weight, m.layers[0].bias),
        model,
        (first.weight.astype(jnp.float32), first.bias.astype(jnp.float32)),
    )
    if mixed.layers[2].weight.dtype == jnp.float32:
        mixed = cast(mixed, jnp.float32)
        mixed = eqx.tree_at(
            lambda m: m.layers[2].weight, mixed, mixed.layers[2].weight.astype(jnp.float64)
        )
    with pytest.raises(TypeError, match=r"parameters mix float32 \(e\.g\. `\.layers\[0\]"):
        rule.grad(mixed, LOSS, xs, ys)
