r"""SnAp-$n$ (`RTRL(snap=n)`, Menick et al. 2021): $M_t = S_n \odot (D_t M_{t-1} + I_t)$.

SnAp-1 on one recurrent layer is the hand-written per-unit recursion (the same one
`RTRL(diagonal=True)` is pinned to); the pattern grows with $n$ until it holds every
entry exact RTRL can reach, and from there SnAp-$n$ is RTRL, hence BPTT."""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose, feedforward
from test_rtrl import data, masked_recursion, recursion_order

import eqslax

LOSS = eqslax.PerStep()


def one_recurrent_layer(key):
    k = jax.random.split(key, 3)
    linear = eqx.nn.Linear(4, 5, key=k[0])
    linear = eqx.tree_at(lambda m: m.weight, linear, linear.weight * 3)
    model = eqslax.Connect(
        [
            linear,
            eqslax.Recurrent(eqslax.LIF(5, decay=0.8), key=k[1]),
            eqx.nn.Linear(5, 3, key=k[2]),
        ]
    )
    return eqx.tree_at(lambda m: m.layers[1].weight, model, model.layers[1].weight * 2)


def two_recurrent_layers(key):
    """Linear -> Recurrent(LIF) -> Linear -> Recurrent(ALIF) -> Linear."""
    k = jax.random.split(key, 5)
    layers = [
        eqx.nn.Linear(4, 5, key=k[0]),
        eqslax.Recurrent(eqslax.LIF(5, decay=0.8), key=k[1]),
        eqx.nn.Linear(5, 4, key=k[2]),
        eqslax.Recurrent(eqslax.ALIF(4, adaptation=0.3), key=k[3]),
        eqx.nn.Linear(4, 3, key=k[4]),
    ]
    model = eqslax.Connect(layers)
    return jax.tree_util.tree_map(
        lambda w: w * 3 if eqx.is_inexact_array(w) and w.ndim == 2 else w, model
    )


def test_snap1_on_one_recurrent_layer_is_the_per_unit_recursion():
    k = jax.random.split(jax.random.key(21), 5)
    model = one_recurrent_layer(k[0])
    xs, ys = data(k[3], 4)
    snap = eqslax.RTRL(snap=1).grad(model, LOSS, xs, ys)
    for g, want in zip(recursion_order(snap), masked_recursion(model, xs, ys)):
        np.testing.assert_allclose(g, want, rtol=1e-10, atol=1e-13)
    diagonal = eqslax.RTRL(diagonal=True).grad(model, LOSS, xs, ys)
    assert_tree_allclose(snap, diagonal, rtol=1e-10, atol=1e-13)


def test_pattern_of_a_recurrent_layer_is_its_unit_then_everything():
    """$S_1$ of $W_{rec,ij}$ is unit $i$ (its membrane and carried spike); one more step
    through the dense $W_{rec}$ reaches every unit."""
    model = one_recurrent_layer(jax.random.key(0))
    x = jnp.zeros(4)
    s1 = eqslax.RTRL(snap=1).influence_pattern(model, x)
    s2 = eqslax.RTRL(snap=2).influence_pattern(model, x)
    n_state, n_params = s1.shape
    assert n_state == 2 * 5  # membrane and carried spikes of 5 units
    assert n_params == 4 * 5 + 5 + 5 * 5 + 5 * 3 + 3
    # every parameter of the first two layers touches exactly its own unit's 2 entries
    assert (s1.sum(axis=0)[: 4 * 5 + 5 + 5 * 5] == 2).all()
    assert not s1[:, -(5 * 3 + 3) :].any()  # the stateless readout reaches no state
    assert s2[:, : 4 * 5 + 5 + 5 * 5].all()
    assert (s1 <= s2).all()


def test_snap_n_grows_to_rtrl_and_then_equals_bptt():
    """Two recurrent layers: $S_1$ keeps each parameter's own unit and the layers above
    within the step; one step through the dense $W_{rec}$ fills the rest, so $S_2$ is
    final and SnAp-2 is exact, while SnAp-1 is not."""
    k = jax.random.split(jax.random.key(3), 2)
    model = two_recurrent_layers(k[0])
    xs, ys = data(k[1], 4)
    x = xs[0, 0]
    sizes = [int(eqslax.RTRL(snap=n).influence_pattern(model, x).sum()) for n in (1, 2, 3, 8)]
    assert sizes[0] < sizes[1] == sizes[2] == sizes[3]
    full = eqslax.BPTT().grad(model, LOSS, xs, ys)
    assert_tree_allclose(
        eqslax.RTRL(snap=2).grad(model, LOSS, xs, ys), full, rtol=1e-10, atol=1e-13
    )
    snap1 = jax.flatten_util.ravel_pytree(eqslax.RTRL(snap=1).grad(model, LOSS, xs, ys))[0]
    reference = jax.flatten_util.ravel_pytree(full)[0]
    assert jnp.linalg.norm(snap1 - reference) > 1e-3 * jnp.linalg.norm(reference)


def test_snap1_on_feedforward_layers_is_exact():
    """Elementwise neurons, no recurrence: every entry exact RTRL can reach is reached in
    the first step, so $S_1$ is already final."""
    k = jax.random.split(jax.random.key(4), 2)
    model = feedforward(k[0], (4, 5, 3))
    xs, ys = data(k[1], 4)
    grads = eqslax.RTRL(snap=1).grad(model, LOSS, xs, ys)
    assert_tree_allclose(grads, eqslax.BPTT().grad(model, LOSS, xs, ys), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("snap", [0, -1, True])
def test_bad_snap_is_refused(snap):
    with pytest.raises(ValueError, match=r"RTRL: `snap` must be a positive integer"):
        eqslax.RTRL(snap=snap)
    with pytest.raises(ValueError, match=r"not both"):
        eqslax.RTRL(snap=2, diagonal=True)


def test_snap_in_compare_trains_like_rtrl_where_its_pattern_is_complete():
    """`eqslax.compare` selects SnAp by name with its `n`; on one layer with a `cat`
    self-edge $S_2$ is complete, so SnAp-2 trains the same models as RTRL."""
    data = eqslax.data.randman(
        jax.random.key(0), n_classes=2, n_units=4, n_steps=6, samples_per_class=6
    )
    k = jax.random.split(jax.random.key(1), 3)
    layers = [eqx.nn.Linear(4, 5, key=k[0]), eqslax.LIF(5), eqx.nn.Linear(5, 2, key=k[1])]
    model = eqslax.Connect(layers + [eqslax.LI(2)], cat={1: [1]}, key=k[2])
    rules = [eqslax.compare.rule("snap", options={"n": 2}), "rtrl"]
    result = eqslax.compare(
        model, rules, data, LOSS, seeds=1, epochs=1, batch_size=4, progress=False
    )
    snap, rtrl = (result.runs[name].seeds[0] for name in ("snap", "rtrl"))
    assert_tree_allclose(
        eqx.filter(snap.model, eqx.is_inexact_array),
        eqx.filter(rtrl.model, eqx.is_inexact_array),
        rtol=1e-5,
        atol=1e-7,
    )
    assert result.runs["snap"].updates == result.runs["rtrl"].updates > 0
