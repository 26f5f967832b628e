"""Shared test utilities: tree comparison, random models and registries."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

import eqslax


def tree_allclose(a, b, rtol=1e-10, atol=1e-12) -> bool:
    """Same structure and every array leaf close."""
    la, ta = jtu.tree_flatten(eqx.filter(a, eqx.is_array))
    lb, tb = jtu.tree_flatten(eqx.filter(b, eqx.is_array))
    if ta != tb:
        return False
    return all(np.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(la, lb))


def assert_tree_allclose(a, b, rtol=1e-10, atol=1e-12):
    la = jtu.tree_leaves_with_path(eqx.filter(a, eqx.is_array))
    lb = jtu.tree_leaves(eqx.filter(b, eqx.is_array))
    assert len(la) == len(lb), "different tree structures"
    for (path, x), y in zip(la, lb):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"leaf {jtu.keystr(path)}")


def random_spikes(key, shape, rate=0.3):
    return jax.random.bernoulli(key, rate, shape).astype(jnp.float64)


def feedforward(key, sizes, neuron=eqslax.LIF, **neuron_kwargs):
    """Linear -> neuron for each consecutive pair of ``sizes``; weights scaled up so
    that the random network actually spikes."""
    keys = jax.random.split(key, len(sizes))
    layers = []
    for k, (n_in, n_out) in zip(keys, zip(sizes[:-1], sizes[1:])):
        linear = eqx.nn.Linear(n_in, n_out, key=k)
        linear = eqx.tree_at(lambda m: m.weight, linear, linear.weight * 3.0)
        layers += [linear, neuron(n_out, **neuron_kwargs)]
    return eqslax.Connect(layers)


# Neuron registry: every neuron eqslax ships, with each of its discrete-time forms.
# A factory takes a PRNG key (used by the neurons with weights) and returns a neuron of
# NEURON_SIZE units. Decays and thresholds are per neuron, so broadcasting is exercised.

NEURON_SIZE = 3
DECAYS = np.array([0.5, 0.8, 0.95])
THRESHOLDS = np.array([0.8, 1.0, 1.2])


def _lif(reset, reset_decay, detach_reset):
    name = "LIF-{}-{}{}".format(
        reset, "decayed" if reset_decay else "undecayed", "-detached" if detach_reset else ""
    )

    def make(key):
        return eqslax.LIF(
            NEURON_SIZE,
            DECAYS,
            THRESHOLDS,
            reset=reset,
            reset_decay=reset_decay,
            detach_reset=detach_reset,
        )

    return name, make


NEURONS = [
    ("IF", lambda key: eqslax.IF(NEURON_SIZE, THRESHOLDS)),
    *(
        _lif(reset, reset_decay, detach_reset)
        for reset_decay in (True, False)
        for reset in ("subtract", "zero", "none")
        for detach_reset in (False, True)
    ),
    ("LI", lambda key: eqslax.LI(NEURON_SIZE, DECAYS)),
    ("CuBaLIF", lambda key: eqslax.CuBaLIF(NEURON_SIZE, 0.6, DECAYS, THRESHOLDS)),
    ("ALIF-decayed", lambda key: eqslax.ALIF(NEURON_SIZE, DECAYS, THRESHOLDS, 0.9, 0.5)),
    (
        "ALIF-undecayed",
        lambda key: eqslax.ALIF(NEURON_SIZE, DECAYS, THRESHOLDS, 0.9, 0.5, reset_decay=False),
    ),
    ("RLIF", lambda key: eqslax.RLIF(NEURON_SIZE, DECAYS, THRESHOLDS, key=key)),
    (
        "Recurrent-LIF",
        lambda key: eqslax.Recurrent(eqslax.LIF(NEURON_SIZE, DECAYS, THRESHOLDS), key=key),
    ),
    (
        "Recurrent-ALIF",
        lambda key: eqslax.Recurrent(
            eqslax.ALIF(NEURON_SIZE, DECAYS, THRESHOLDS, 0.9, 0.5, reset_decay=False), key=key
        ),
    ),
    (
        "Recurrent-CuBaLIF",
        lambda key: eqslax.Recurrent(eqslax.CuBaLIF(NEURON_SIZE, 0.6, DECAYS, THRESHOLDS), key=key),
    ),
    ("LTC", lambda key: eqslax.LTC(NEURON_SIZE, key=key)),
    ("LTC-subtract", lambda key: eqslax.LTC(NEURON_SIZE, key=key, reset="subtract")),
    ("Izhikevich", lambda key: eqslax.Izhikevich(NEURON_SIZE)),
    (
        # Regular spiking, fast spiking and chattering cells side by side.
        "Izhikevich-mixed-detached",
        lambda key: eqslax.Izhikevich(
            NEURON_SIZE,
            a=np.array([0.02, 0.1, 0.02]),
            b=0.2,
            c=np.array([-65.0, -65.0, -50.0]),
            d=np.array([8.0, 2.0, 2.0]),
            dt=0.5,
            detach_reset=True,
        ),
    ),
]
NEURON_IDS = [name for name, _ in NEURONS]
NEURON_FACTORIES = [make for _, make in NEURONS]


def neuron_input(key, neuron, steps):
    """Non-negative random input, ``(steps, *shape)``, strong enough to make it spike.

    Izhikevich's input is a current in the model's units, where about 100 makes a resting
    cell fire within one millisecond; the other neurons have thresholds near 1.
    """
    scale = 120.0 if isinstance(neuron, eqslax.Izhikevich) else 1.5
    return scale * jax.random.uniform(key, (steps, *neuron.in_shape), jnp.float64)


def unroll(neuron, state, xs):
    """Run ``neuron`` over the leading (time) axis of ``xs``: ``(final state, outputs)``."""

    def step(state, x):
        return neuron(state, x)

    return jax.lax.scan(step, state, xs)
