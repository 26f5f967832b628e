"""Second derivatives through surrogate spikes: scan against the unrolled loop.

JAX's reverse mode partially evaluates a scan body and replaces each custom-JVP spike
in its forward part by the Heaviside step, so reverse-over-reverse Hessians through a
scan lose the surrogate's second-order terms. ``eqslax.hessian`` / ``eqslax.hvp`` use
reverse-over-forward and must equal every AD order of the same loop written out.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import eqslax

XS = np.array([0.3, 0.5, 0.2, 0.7, 0.4])


def _step(w, v, x, spike):
    v = 0.9 * v + w * x
    s = spike(v - 1.0)
    return v - s, s


def _unrolled(w, spike):
    v, total = jnp.zeros(()), jnp.zeros(())
    for x in XS:
        v, s = _step(w, v, x, spike)
        total = total + s
    return total


def _scanned(w, spike):
    _, s = jax.lax.scan(lambda v, x: _step(w, v, x, spike), jnp.zeros(()), jnp.asarray(XS))
    return jnp.sum(s)


def test_minimal_reproducer_one_weight_five_steps():
    """The issue's reproducer: every order of the unrolled loop agrees, and so does
    eqslax.hessian through the scan (jax.hessian through the scan does not)."""
    spike = eqslax.FastSigmoid(25.0)
    w = jnp.asarray(1.3)
    reference = jax.grad(jax.grad(_unrolled))(w, spike)
    for order in (jax.jacfwd(jax.jacfwd(_unrolled)), jax.hessian(_unrolled)):
        np.testing.assert_allclose(order(w, spike), reference, rtol=1e-12)
    assert abs(float(reference)) > 1.0  # the surrogate's curvature matters here
    np.testing.assert_allclose(eqslax.hessian(_scanned)(w, spike), reference, rtol=1e-12)
    hv = eqslax.hvp(lambda w: _scanned(w, spike), w, jnp.asarray(1.0))
    np.testing.assert_allclose(hv, reference, rtol=1e-12)


def test_reverse_over_reverse_through_scan_is_the_frozen_spike_derivative():
    """The pitfall itself, pinned so that a JAX release that changes it is noticed (then
    update the surrogate module's docstring). ``grad(grad)`` through the scan differs
    from the unrolled loop, equals the finite-difference derivative of the first-order
    surrogate gradient (spike pattern frozen), and a plain ``jax.custom_jvp`` spike does
    the same: the scan's partial evaluation, not eqslax's rule, drops the terms."""
    spike = eqslax.FastSigmoid(25.0)
    w, h = jnp.asarray(1.3), 1e-5
    consistent = jax.jacfwd(jax.jacfwd(_unrolled))(w, spike)
    reverse_twice = jax.grad(jax.grad(_scanned))(w, spike)
    assert abs(float(reverse_twice - consistent)) > 1e-3 * abs(float(consistent))
    first = jax.grad(_scanned)
    frozen = (first(w + h, spike) - first(w - h, spike)) / (2 * h)
    np.testing.assert_allclose(reverse_twice, frozen, rtol=1e-6)

    @jax.custom_jvp
    def plain(x):
        return jnp.where(x >= 0, 1.0, 0.0)

    plain.defjvp(lambda p, t: (plain(p[0]), spike.derivative(p[0]) * t[0]))
    for order in (jax.grad(jax.grad(_scanned)), jax.jacfwd(jax.jacfwd(_scanned))):
        np.testing.assert_allclose(order(w, plain), order(w, spike), rtol=1e-12)


SURROGATES = [
    eqslax.FastSigmoid(),
    eqslax.Arctan(),
    eqslax.Sigmoid(),
    eqslax.Triangle(),
    eqslax.Boxcar(3.0),  # wide enough that the membranes fall inside it
    eqslax.Gaussian(),
    eqslax.MultiGaussian(),
    eqslax.StraightThrough(),
    eqslax.Exponential(),
]


def _lif_loss(weight, xs, neuron, run):
    return jnp.sum(run(neuron, xs @ weight.T) ** 2)


def _by_simulate(neuron, currents):
    return eqslax.simulate(neuron, currents)[1]


def _by_loop(neuron, currents):
    state, outs = neuron.init_state(), []
    for current in currents:
        state, out = neuron(state, current)
        outs.append(out)
    return jnp.stack(outs)


# every surrogate with a subtractive reset, every reset mode with FastSigmoid
CASES = [(s, "subtract") for s in SURROGATES] + [(SURROGATES[0], r) for r in ("zero", "none")]


@pytest.mark.parametrize(
    "surrogate,reset", CASES, ids=[f"{type(s).__name__}-{r}" for s, r in CASES]
)
def test_hessian_through_simulate_equals_the_unrolled_loop(surrogate, reset):
    k0, k1 = jax.random.split(jax.random.key(3))
    weight = 0.8 * jax.random.normal(k0, (2, 3))
    xs = jax.random.uniform(k1, (6, 3))
    neuron = eqslax.LIF(2, decay=0.8, threshold=0.5, surrogate=surrogate, reset=reset)
    reference = jax.hessian(_lif_loss)(weight, xs, neuron, _by_loop)
    ours = eqslax.hessian(_lif_loss)(weight, xs, neuron, _by_simulate)
    scale = float(jnp.max(jnp.abs(reference)))
    assert scale > 0.0
    np.testing.assert_allclose(ours, reference, rtol=1e-10, atol=1e-12 * scale)
    tangent = jax.random.normal(jax.random.key(5), weight.shape)
    hv = eqslax.hvp(lambda w: _lif_loss(w, xs, neuron, _by_simulate), weight, tangent)
    expected = jnp.einsum("ijkl,kl->ij", reference, tangent)
    np.testing.assert_allclose(hv, expected, rtol=1e-10, atol=1e-12 * scale)


def test_hvp_rejects_mismatched_tangents():
    with pytest.raises(ValueError, match="`tangents`"):
        eqslax.hvp(lambda p: jnp.sum(p[0] ** 2), (jnp.ones(2),), jnp.ones(2))
