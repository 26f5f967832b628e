"""An initial state that depends on a trainable parameter: Izhikevich starts at v0 = c,
u0 = b c. Every exact rule keeps the gradient through h0 as BPTT does."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest
from helpers import assert_tree_allclose, random_spikes

import eqslax

STEPS = 8


@pytest.fixture(scope="module")
def problem():
    k = jax.random.split(jax.random.key(11), 4)
    first = eqx.nn.Linear(6, 4, key=k[0])
    first = eqx.tree_at(lambda m: m.weight, first, 40.0 * jnp.abs(first.weight))
    model = eqslax.Connect(
        [
            first,
            eqslax.Izhikevich(4, c=np.array([-65.0, -60.0, -55.0, -50.0]), train_parameters=True),
            eqx.nn.Linear(4, 3, key=k[1]),
            eqslax.LI(3),
        ]
    )
    xs = random_spikes(k[2], (3, STEPS, 6), 0.5)
    ys = jnp.array([0, 1, 2])
    return model, xs, ys


def bptt(problem):
    model, xs, ys = problem
    return eqslax.BPTT().grad(model, eqslax.PerStep(), xs, ys)


def test_the_initial_state_path_is_not_vacuous(problem):
    """BPTT's d/db and d/dc differ from those with h0 detached: the identities below test
    the seeding, not only the dynamics."""
    model, xs, ys = problem
    _, recording = jax.vmap(lambda x: eqslax.record(model, x))(xs)
    assert float(recording.layers[1].sum()) > 0, "the Izhikevich layer never fires"
    full = bptt(problem)
    params, static = eqx.partition(model, eqslax.trainable_mask(model))
    h0 = jax.lax.stop_gradient(model.init_state())

    def objective(params):
        current = eqx.combine(params, static)

        def one(x, y):
            _, outputs = eqslax.simulate(current, x, state=h0)
            return eqslax.PerStep()(outputs, y)

        return jnp.mean(jax.vmap(one)(xs, ys))

    constant_start = jax.grad(objective)(params)
    neuron, neuron_const = full.layers[1], constant_start.layers[1]
    for name in ("b", "c"):
        gap = jnp.abs(getattr(neuron, name) - getattr(neuron_const, name))
        assert float(gap.max()) > 1e-3 * float(jnp.abs(getattr(neuron, name)).max()), name


def test_rtrl_seeds_its_influence_with_the_initial_state_jacobian(problem):
    model, xs, ys = problem
    rtrl = eqslax.RTRL().grad(model, eqslax.PerStep(), xs, ys)
    assert_tree_allclose(rtrl, bptt(problem), rtol=1e-10, atol=1e-13)


def test_truncated_bptt_over_the_whole_sequence_keeps_the_initial_state(problem):
    model, xs, ys = problem
    truncated = eqslax.TruncatedBPTT(STEPS).grad(model, eqslax.PerStep(), xs, ys)
    assert_tree_allclose(truncated, bptt(problem), rtol=1e-10, atol=1e-13)


def test_fptt_with_one_segment_keeps_the_initial_state(problem):
    model, xs, ys = problem
    lr = 1.0  # the update is then -g, up to one rounding of p - g
    step = eqslax.train_fptt(model, eqslax.FPTT(segments=1), eqslax.PerStep(), optax.sgd(lr))
    new, _, _, _ = step(model, step.init(model), xs, ys)
    params = eqslax.trainable(model)
    implied = jtu.tree_map(lambda p, q: (p - q) / lr, params, eqslax.trainable(new))
    assert_tree_allclose(implied, bptt(problem), rtol=1e-9, atol=1e-11)


def test_fptt_with_rtrl_keeps_the_initial_state(problem):
    model, xs, ys = problem
    lr = 1.0  # the update is then -g, up to one rounding of p - g
    fptt = eqslax.FPTT(segments=1, rule=eqslax.RTRL())
    step = eqslax.train_fptt(model, fptt, eqslax.PerStep(), optax.sgd(lr))
    new, _, _, _ = step(model, step.init(model), xs, ys)
    params = eqslax.trainable(model)
    implied = jtu.tree_map(lambda p, q: (p - q) / lr, params, eqslax.trainable(new))
    assert_tree_allclose(implied, bptt(problem), rtol=1e-9, atol=1e-11)


def test_ostl_seeds_its_eligibility_with_the_initial_state_jacobian(problem):
    """One Izhikevich layer (OSTL's exact setting): OSTL == BPTT, and the seed is what
    makes it so (OTPE with leak 0 is OSTL and seeds the same way)."""
    model, xs, ys = problem
    one = eqslax.Connect(list(model.layers[:2]))
    loss = eqslax.PerStep()
    reference = eqslax.BPTT().grad(one, loss, xs, ys)
    ostl = eqslax.OSTL().grad(one, loss, xs, ys)
    assert_tree_allclose(ostl, reference, rtol=1e-10, atol=1e-13)
    assert float(jnp.abs(reference.layers[1].c).max()) > 0
