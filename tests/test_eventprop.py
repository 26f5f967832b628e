r"""EventProp (Wunderlich & Pehle 2021) on `ContinuousTime` CuBa LIF networks, float64:

- the adjoint gradient equals central finite differences of the same continuous-time
  loss, $|g - g_{FD}| \le 10^{-6} \max|g|$, on random small networks where no spike
  appears, disappears or changes step under the perturbations (checked);
- it equals autodiff through the forward (crossing times by the implicit function
  theorem), a second, independent route;
- spike times do not depend on the step length when the inputs lie on every grid; the
  max-membrane gradient, read at the ends of steps, converges at first order in $dt$;
- it trains on Randman.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_spikes
from jax.flatten_util import ravel_pytree

import eqslax

MAX_MEMBRANE = eqslax.Accumulated(reduce="max")
TTFS = eqslax.FirstSpikeTime(temperature=2.0)


def network(key, sizes, readout="spiking", scale=3.0, bias=True, decays=(0.9, 0.8)):
    """`Linear -> CuBaLIF` pairs (the last one `Linear -> LI` for a readout)."""
    keys = jax.random.split(key, len(sizes))
    layers = []
    for n, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = eqx.nn.Linear(n_in, n_out, use_bias=bias, key=keys[n])
        linear = eqx.tree_at(lambda m: m.weight, linear, linear.weight * scale)
        if bias:  # a jump at every step: a small one, or the units saturate
            linear = eqx.tree_at(lambda m: m.bias, linear, linear.bias * 0.1)
        if n == len(sizes) - 2 and readout == "li":
            layers += [linear, eqslax.LI(n_out, decays[0])]
        else:
            layers += [linear, eqslax.CuBaLIF(n_out, decay=decays[0], synapse_decay=decays[1])]
    return eqslax.ContinuousTime(eqslax.Connect(layers))


CASES = {  # key, sizes, readout, loss, weight scale (most spikes cross inside a step)
    "ttfs-2-layers": (jax.random.key(0), (3, 6, 3), "spiking", TTFS, 1.0),
    "ttfs-3-layers": (jax.random.key(1), (4, 6, 5, 3), "spiking", TTFS, 2.0),
    "max-membrane": (jax.random.key(2), (3, 6, 3), "li", MAX_MEMBRANE, 1.0),
    "per-step-membrane": (jax.random.key(3), (3, 5, 4, 2), "li", eqslax.PerStep(), 1.0),
}


def problem(name):
    key, sizes, readout, loss, scale = CASES[name]
    k_model, k_x = jax.random.split(key)
    model = network(k_model, sizes, readout, scale)
    xs = random_spikes(k_x, (3, 14, sizes[0]), 0.4)
    ys = jnp.arange(3) % sizes[-1]
    return model, loss, xs, ys


def batch_loss(model, loss, xs, ys):
    outputs = jax.vmap(lambda x: eqslax.simulate(model, x)[1])(xs)
    return jnp.mean(jax.vmap(loss)(outputs, ys))


def spike_pattern(model, xs):
    """Which unit fires in which step, every spiking layer, every sample."""
    return tuple(s > 0 for s in jax.vmap(model.spikes)(xs))


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_is_central_finite_differences(name):
    model, loss, xs, ys = problem(name)
    grads = ravel_pytree(eqslax.EventProp().grad(model, loss, xs, ys))[0]
    params, static = eqx.partition(model, eqslax.trainable_mask(model))
    flat, unravel = ravel_pytree(params)
    eps = 1e-6

    @jax.jit
    def shifted(direction):
        model = eqx.combine(unravel(flat + eps * direction), static)
        return batch_loss(model, loss, xs, ys), spike_pattern(model, xs)

    base = spike_pattern(model, xs)
    assert sum(int(jnp.sum(p)) for p in base) > 10  # the network spikes
    eye = np.eye(flat.size)
    differences = []
    for k in range(flat.size):
        up, up_pattern = shifted(eye[k])
        down, down_pattern = shifted(-eye[k])
        for a, b, c in zip(base, up_pattern, down_pattern):
            assert jnp.array_equal(a, b) and jnp.array_equal(a, c), f"parameter {k}"
        differences.append((up - down) / (2 * eps))
    fd = np.array(differences)
    error = np.max(np.abs(grads - fd)) / np.max(np.abs(fd))
    print(f"{name}: FD relative error {error:.3g}")
    assert np.max(np.abs(fd)) > 1e-3
    assert error < 1e-6, error


@pytest.mark.parametrize("name", list(CASES))
def test_adjoint_equals_autodiff_through_the_crossing_times(name):
    model, loss, xs, ys = problem(name)
    adjoint = ravel_pytree(eqslax.EventProp().grad(model, loss, xs, ys))[0]
    autodiff = ravel_pytree(eqslax.BPTT().grad(model, loss, xs, ys))[0]
    np.testing.assert_allclose(adjoint, autodiff, rtol=1e-9, atol=1e-12 * np.max(np.abs(autodiff)))


# The same continuous-time network at steps dt = 1/n of a base unit: decays e^{-dt/tau},
# the weights scaled by dt (the current is in units of the membrane per step), inputs at
# whole base units (on every grid).
TAU_M, TAU_S, BASE_STEPS = 6.0, 3.0, 16


def at_resolution(weights, n, readout):
    dt = 1.0 / n
    decay, synapse = float(np.exp(-dt / TAU_M)), float(np.exp(-dt / TAU_S))
    layers = []
    for k, w in enumerate(weights):
        linear = eqx.nn.Linear(w.shape[1], w.shape[0], use_bias=False, key=jax.random.key(0))
        last = k == len(weights) - 1
        layers.append(eqx.tree_at(lambda m: m.weight, linear, w * dt))
        if last and readout == "li":
            layers.append(eqslax.LI(w.shape[0], decay))
        else:
            layers.append(eqslax.CuBaLIF(w.shape[0], decay=decay, synapse_decay=synapse))
    return eqslax.ContinuousTime(eqslax.Connect(layers), readout_synapse_decay=synapse)


def refined(xs, n):
    """Inputs at whole base units on a grid n times finer."""
    fine = jnp.zeros((xs.shape[0], xs.shape[1] * n, xs.shape[2]), xs.dtype)
    return fine.at[:, ::n].set(xs)


def base_problem(readout):
    k = jax.random.split(jax.random.key(5), 3)
    weights = [
        0.5 * jax.random.uniform(k[0], (6, 3), minval=-0.3, maxval=1.0),
        0.5 * jax.random.uniform(k[1], (2, 6), minval=-0.5, maxval=1.0),
    ]
    xs = random_spikes(k[2], (4, BASE_STEPS, 3), 0.3)
    return weights, xs


def spike_times(model, xs, n):
    """Every spike's time in base units, per layer, sorted (one sample)."""
    out = []
    for layer in model.spikes(xs):
        steps, units = np.nonzero(np.asarray(layer))
        times = (steps + 1.0 - np.asarray(layer)[steps, units]) / n
        out.append(np.sort(times + 1000.0 * units))  # grouped by unit
    return out


def test_spike_times_do_not_depend_on_the_step():
    """Refining the grid moves no spike (measured: within 1e-12 of a base unit); from dt = 1/2
    on no unit of this network fires twice within a step."""
    weights, xs = base_problem("spiking")
    reference = [spike_times(at_resolution(weights, 2, "spiking"), x, 2) for x in refined(xs, 2)]
    assert sum(len(t) for r in reference for t in r) > 100
    for n in (4, 16):
        model = at_resolution(weights, n, "spiking")
        for x, expected in zip(refined(xs, n), reference):
            for got, want in zip(spike_times(model, x, n), expected):
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


MEAN_MEMBRANE = eqslax.Accumulated(reduce="mean")


def membrane_gradient(weights, xs, n, loss=MEAN_MEMBRANE):
    """d L / d W in base units (the chain rule through the dt scaling), L a loss on the
    readout membrane read at the ends of steps."""
    ys = jnp.arange(xs.shape[0]) % 2

    model = at_resolution(weights, n, "li")
    grads = eqslax.EventProp().grad(model, loss, refined(xs, n), ys)
    hidden, readout = grads.network.layers[0].weight, grads.network.layers[2].weight
    return np.concatenate([np.ravel(hidden), np.ravel(readout)]) / n


def test_membrane_gradient_converges_at_first_order():
    """The readout is read at the ends of steps: the mean-membrane loss is a Riemann sum,
    its gradient first order in dt (measured: order 1.14 over dt = 1/4..1/32, relative
    errors 0.200, 0.107, 0.053, 0.018 against the dt = 1/512 gradient)."""
    weights, xs = base_problem("li")
    reference = membrane_gradient(weights, xs, 512)
    resolutions = np.array([4, 8, 16, 32])
    errors = np.array(
        [np.linalg.norm(membrane_gradient(weights, xs, n) - reference) for n in resolutions]
    )
    order = -np.polyfit(np.log(resolutions), np.log(errors), 1)[0]
    assert 0.7 < order < 1.5, (order, errors)


def test_padded_batch_is_the_samples_one_by_one():
    model, loss, xs, ys = problem("ttfs-2-layers")
    lengths = jnp.array([14, 9, 11])
    mask = jnp.arange(14)[None, :] < lengths[:, None]
    padded = ravel_pytree(eqslax.EventProp().grad(model, loss, xs, ys, mask=mask))[0]
    one_by_one = [
        ravel_pytree(eqslax.EventProp().grad(model, loss, x[None, :n], y[None]))[0]
        for x, y, n in zip(xs, ys, lengths.tolist())
    ]
    np.testing.assert_allclose(padded, np.mean(one_by_one, axis=0), rtol=1e-10, atol=1e-14)


def test_other_models_are_refused_naming_the_argument():
    discrete = eqslax.Connect([eqx.nn.Linear(3, 4, key=jax.random.key(0)), eqslax.CuBaLIF(4)])
    xs, ys = jnp.zeros((1, 4, 3)), jnp.zeros((1,), jnp.int32)
    with pytest.raises(TypeError, match=r"EventProp: `model` must be an eqslax.ContinuousTime"):
        eqslax.EventProp().grad(discrete, TTFS, xs, ys)
    linear = eqx.nn.Linear(3, 4, key=jax.random.key(0))
    refusals = {
        "LIF": ([linear, eqslax.LIF(4)], r"layer 1 must be a CuBaLIF .* got LIF"),
        "reset": ([linear, eqslax.CuBaLIF(4, reset="none")], r"reset=.none."),
        "trained": (
            [linear, eqslax.CuBaLIF(4, train_decay=True)],
            r"layer 1 \(CuBaLIF\) trains 'decay', 'synapse_decay'",
        ),
        "equal taus": ([linear, eqslax.CuBaLIF(4, decay=0.8)], r"`decay` != `synapse_decay`"),
        "LI inside": (
            [linear, eqslax.LI(4), eqx.nn.Linear(4, 2, key=jax.random.key(1)), eqslax.CuBaLIF(2)],
            r"layer 1 \(LI\) must be the last layer",
        ),
    }
    for layers, message in refusals.values():
        with pytest.raises(ValueError, match=r"ContinuousTime: .*" + message):
            eqslax.ContinuousTime(eqslax.Connect(layers))
    recurrent = eqslax.Connect([linear, eqslax.CuBaLIF(4)], cat={1: [1]}, key=jax.random.key(2))
    with pytest.raises(ValueError, match=r"must be feed-forward \(no `cat` edges\)"):
        eqslax.ContinuousTime(recurrent)


def test_trains_on_randman_beside_bptt():
    """`eqslax compare` by name: EventProp and BPTT from the same initial models (zero
    biases: a bias is a jump at every step and saturates units). On the same model their
    gradients are equal, so they train alike (measured, three seeds: EventProp test
    accuracy 0.50, 0.58, 0.63; chance 1/3)."""
    data = eqslax.data.randman(
        jax.random.key(0), n_classes=3, n_units=10, n_steps=30, samples_per_class=40
    )

    def model(key):
        network = eqslax.feedforward(
            (10, 24, 3), key=key, neuron="cubalif", readout="li", weight_scale=1.0
        )
        layers = [
            eqx.tree_at(lambda m: m.bias, layer, jnp.zeros_like(layer.bias))
            if isinstance(layer, eqx.nn.Linear)
            else layer
            for layer in network.layers
        ]
        return eqslax.ContinuousTime(eqslax.Connect(layers))

    rules = [eqslax.compare.rule(name, lr=5e-3) for name in ("eventprop", "bptt")]
    result = eqslax.compare(
        model, rules, data, MAX_MEMBRANE, epochs=20, batch_size=16, seeds=3, progress=False
    )
    eventprop, bptt = result.values("eventprop"), result.values("bptt")
    assert np.mean(eventprop) > 0.45, eventprop
    assert abs(np.mean(eventprop) - np.mean(bptt)) < 0.15, (eventprop, bptt)
