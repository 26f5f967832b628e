"""Surrogate spike functions: Heaviside forward, closed-form derivative under every transform.

Each registry entry pairs a surrogate with its derivative written out here from the
formula in its docstring, independently of the library's ``derivative`` method.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_tree_allclose

import eqslax


def _normal(x, mean, std):
    return np.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def _logistic(z):
    return 1.0 / (1.0 + np.exp(-z))


def _multi_gaussian(x, gamma=0.5, lens=0.3, scale=6.0, height=0.15):
    return gamma * (
        (1 + height) * _normal(x, 0.0, lens)
        - height * _normal(x, lens, scale * lens)
        - height * _normal(x, -lens, scale * lens)
    )


# (id, surrogate, closed-form sigma'(x) in numpy, integral of sigma' over the real line)
SURROGATES = [
    ("FastSigmoid", eqslax.FastSigmoid(), lambda x: 1 / (1 + 25 * np.abs(x)) ** 2, 2 / 25),
    (
        "FastSigmoid-slope4",
        eqslax.FastSigmoid(4.0),
        lambda x: 1 / (1 + 4 * np.abs(x)) ** 2,
        2 / 4,
    ),
    ("Arctan", eqslax.Arctan(), lambda x: 1 / (1 + (math.pi * x) ** 2), 1.0),
    (
        "Arctan-alpha5",
        eqslax.Arctan(5.0),
        lambda x: 2.5 / (1 + (2.5 * math.pi * x) ** 2),
        1.0,
    ),
    (
        "Sigmoid",
        eqslax.Sigmoid(),
        lambda x: 5 * _logistic(5 * x) * (1 - _logistic(5 * x)),
        1.0,
    ),
    ("Triangle", eqslax.Triangle(), lambda x: 0.3 * np.maximum(0, 1 - np.abs(x)), 0.3),
    (
        "Triangle-narrow",
        eqslax.Triangle(0.7, 0.4),
        lambda x: 0.7 * np.maximum(0, 1 - np.abs(x) / 0.4),
        0.7 * 0.4,
    ),
    ("Boxcar", eqslax.Boxcar(), lambda x: np.where(np.abs(x) < 0.5, 1.0, 0.0), 1.0),
    (
        "Boxcar-width3",
        eqslax.Boxcar(3.0),
        lambda x: np.where(np.abs(x) < 1.5, 1 / 3, 0.0),
        1.0,
    ),
    (
        "Gaussian",
        eqslax.Gaussian(),
        lambda x: np.exp(-2 * x**2) / (0.5 * math.sqrt(2 * math.pi)),
        1.0,
    ),
    ("MultiGaussian", eqslax.MultiGaussian(), _multi_gaussian, 0.5 * (1 - 0.15)),
    ("StraightThrough", eqslax.StraightThrough(), lambda x: np.ones_like(x), None),
    ("Exponential", eqslax.Exponential(), lambda x: 2.5 * np.exp(-5 * np.abs(x)), 1.0),
    (
        "Custom",
        eqslax.CustomSurrogate(lambda x: 1 / (1 + x**2)),
        lambda x: 1 / (1 + x**2),
        math.pi,
    ),
]
IDS = [name for name, *_ in SURROGATES]
PAIRS = [(surrogate, closed) for _, surrogate, closed, _ in SURROGATES]

# Many points on both sides of threshold, far from the Boxcar's edges at +-w/2 and the
# Triangle's kink at +-w.
POINTS = np.concatenate(
    [np.linspace(-3.0, 3.0, 61) + 0.0123, [-1e-3, 1e-3, 1e-6, -1e-6, 0.1, -0.5]]
)


def _away_from_kinks(surrogate, x):
    """Drop points within 1e-2 of a discontinuity (Boxcar) or kink (Triangle)."""
    edges = []
    if isinstance(surrogate, eqslax.Boxcar):
        edges = [float(surrogate.width) / 2]
    if isinstance(surrogate, eqslax.Triangle):
        edges = [float(surrogate.width), 0.0]
    keep = np.ones_like(x, dtype=bool)
    for e in edges:
        keep &= np.abs(np.abs(x) - e) > 1e-2
    return x[keep]


# Transforms are jitted: compiling one program is much cheaper than dispatching each
# primitive eagerly. ``test_jit_invariance`` checks that jit changes nothing.
@eqx.filter_jit
def _grad(surrogate, x):
    """sigma'(x) at each point of ``x`` by reverse mode."""
    return jax.vmap(jax.grad(surrogate))(x)


@eqx.filter_jit
def _second(surrogate, x):
    """sigma''(x) at each point of ``x``, as ``grad(grad)``."""
    return jax.vmap(jax.grad(jax.grad(surrogate)))(x)


@eqx.filter_jit
def _jvp(surrogate, x, tangent):
    return jax.jvp(surrogate, (x,), (tangent,))


@eqx.filter_jit
def _jacfwd(surrogate, x):
    return jax.jacfwd(surrogate)(x)


@eqx.filter_jit
def _jacrev(surrogate, x):
    return jax.jacrev(surrogate)(x)


@eqx.filter_jit
def _hessian(surrogate, x):
    return jax.hessian(lambda z: jnp.sum(surrogate(z)))(x)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("surrogate", [s for _, s, *_ in SURROGATES], ids=IDS)
def test_forward_is_heaviside_with_h0_equal_one(surrogate, dtype):
    x = jnp.asarray([-2.0, -1e-7, -0.0, 0.0, 1e-7, 0.5, 3.0], dtype)
    out = surrogate(x)
    assert out.dtype == dtype, f"forward changed dtype {dtype} to {out.dtype}"
    np.testing.assert_array_equal(out, [0, 0, 1, 1, 1, 1, 1])


@pytest.mark.parametrize("surrogate,closed", PAIRS, ids=IDS)
def test_reverse_mode_equals_closed_form(surrogate, closed):
    x = _away_from_kinks(surrogate, POINTS)
    grads = _grad(surrogate, jnp.asarray(x))
    np.testing.assert_allclose(grads, closed(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads, surrogate.derivative(jnp.asarray(x)), rtol=1e-14)


@pytest.mark.parametrize("surrogate,closed", PAIRS, ids=IDS)
def test_forward_mode_equals_closed_form(surrogate, closed):
    x = jnp.asarray(_away_from_kinks(surrogate, POINTS))
    out, tangent = _jvp(surrogate, x, jnp.full_like(x, 2.0))
    np.testing.assert_array_equal(out, surrogate(x))
    np.testing.assert_allclose(tangent, 2.0 * closed(np.asarray(x)), rtol=1e-12, atol=1e-14)
    jac = _jacfwd(surrogate, x)
    np.testing.assert_allclose(jac, np.diag(closed(np.asarray(x))), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("surrogate", [s for _, s, *_ in SURROGATES], ids=IDS)
def test_jacfwd_equals_jacrev(surrogate):
    x = jax.random.normal(jax.random.key(0), (7,), jnp.float64)
    assert_tree_allclose(_jacfwd(surrogate, x), _jacrev(surrogate, x))


@pytest.mark.parametrize("surrogate", [s for _, s, *_ in SURROGATES], ids=IDS)
def test_second_derivative_exists_and_is_finite(surrogate):
    x = jnp.asarray(_away_from_kinks(surrogate, POINTS))
    hessian = _hessian(surrogate, x)
    second = _second(surrogate, x)
    assert np.all(np.isfinite(hessian)) and np.all(np.isfinite(second))
    # The function is elementwise: its Hessian is diagonal, with sigma'' on the diagonal.
    np.testing.assert_allclose(hessian, np.diag(second), rtol=1e-12, atol=1e-14)


def _fast_sigmoid_second(x, k=25.0):
    return -2 * k * np.sign(x) / (1 + k * np.abs(x)) ** 3


def _arctan_second(x, alpha=2.0):
    c = math.pi * alpha / 2
    return -(alpha / 2) * 2 * c**2 * x / (1 + (c * x) ** 2) ** 2


@pytest.mark.parametrize(
    "surrogate,second",
    [(eqslax.FastSigmoid(), _fast_sigmoid_second), (eqslax.Arctan(), _arctan_second)],
    ids=["FastSigmoid", "Arctan"],
)
def test_second_derivative_equals_closed_form(surrogate, second):
    x = POINTS[np.abs(POINTS) > 1e-4]
    got = _second(surrogate, jnp.asarray(x))
    np.testing.assert_allclose(got, second(x), rtol=1e-10, atol=1e-12)
    hessian = _hessian(surrogate, jnp.asarray(x))
    np.testing.assert_allclose(np.diag(hessian), second(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "surrogate,closed",
    [(s, c) for name, s, c, _ in SURROGATES if name in ("Sigmoid", "Gaussian", "MultiGaussian")],
    ids=["Sigmoid", "Gaussian", "MultiGaussian"],
)
def test_second_derivative_matches_finite_differences_of_closed_form(surrogate, closed):
    x = POINTS
    h = 1e-5
    expected = (closed(x + h) - closed(x - h)) / (2 * h)
    got = _second(surrogate, jnp.asarray(x))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


# One array-valued hyperparameter per parametric surrogate, to stack and vmap over.
HYPER = [
    ("FastSigmoid", lambda p: eqslax.FastSigmoid(p), [2.0, 25.0, 100.0]),
    ("Arctan", lambda p: eqslax.Arctan(p), [0.5, 2.0, 7.0]),
    ("Sigmoid", lambda p: eqslax.Sigmoid(p), [1.0, 5.0, 20.0]),
    ("Triangle", lambda p: eqslax.Triangle(0.3, p), [0.3, 1.0, 2.5]),
    ("Boxcar", lambda p: eqslax.Boxcar(p), [0.3, 1.0, 2.5]),
    ("Gaussian", lambda p: eqslax.Gaussian(p), [0.1, 0.5, 2.0]),
    ("MultiGaussian", lambda p: eqslax.MultiGaussian(lens=p), [0.1, 0.3, 0.8]),
    ("Exponential", lambda p: eqslax.Exponential(p), [1.0, 5.0, 30.0]),
]


@pytest.mark.parametrize("make,values", [(m, v) for _, m, v in HYPER], ids=[n for n, *_ in HYPER])
def test_vmap_over_a_stacked_batch_of_surrogates_equals_a_loop(make, values):
    values = jnp.asarray(values)
    stacked = eqx.filter_vmap(make)(values)
    x = jnp.asarray([-0.77, -0.2, 0.04, 0.13, 0.61])

    batched = eqx.filter_jit(eqx.filter_vmap(_grad, in_axes=(eqx.if_array(0), None)))(stacked, x)
    looped = jnp.stack([_grad(make(v), x) for v in values])
    np.testing.assert_allclose(batched, looped, rtol=1e-14)
    # The hyperparameter actually changes the derivative (the stack is not one copy).
    assert not np.allclose(looped[0], looped[-1])


@pytest.mark.parametrize("make,values", [(m, v) for _, m, v in HYPER], ids=[n for n, *_ in HYPER])
def test_per_neuron_hyperparameters_broadcast(make, values):
    surrogate = make(jnp.asarray(values))
    x = jnp.asarray([0.11, -0.23, 0.37])
    got = eqx.filter_jit(lambda s, x: jax.grad(lambda z: jnp.sum(s(z)))(x))(surrogate, x)
    expected = [_grad(make(v), xi[None])[0] for v, xi in zip(values, x)]
    np.testing.assert_allclose(got, expected, rtol=1e-14)


@pytest.mark.parametrize("surrogate", [s for _, s, *_ in SURROGATES], ids=IDS)
def test_jit_invariance(surrogate):
    x = jax.random.normal(jax.random.key(1), (9,), jnp.float64)

    def value_and_grads(surrogate, x):
        g = jax.grad(lambda z: jnp.sum(surrogate(z)))(x)
        gg = jax.grad(lambda z: jnp.sum(jax.grad(lambda w: jnp.sum(surrogate(w)))(z)))(x)
        return surrogate(x), g, gg

    assert_tree_allclose(
        eqx.filter_jit(value_and_grads)(surrogate, x), value_and_grads(surrogate, x)
    )


def test_hyperparameters_receive_no_gradient():
    """The step does not depend on the surrogate: d H / d slope = 0."""
    x = jnp.asarray([0.3, -0.1])
    grads = eqx.filter_grad(lambda s: jnp.sum(s(x)))(eqslax.FastSigmoid(25.0))
    assert grads.slope == 0.0


# Values of Slax's surrogates with their default hyperparameters (4 decimals).
@pytest.mark.parametrize(
    "surrogate,x,expected",
    [
        (eqslax.FastSigmoid(), 0.1, 0.0816),
        (eqslax.Arctan(), 0.1, 0.9102),
        (eqslax.MultiGaussian(), 0.1, 0.6906),
        (eqslax.FastSigmoid(), -0.5, 0.00549),
        (eqslax.Arctan(), -0.5, 0.2884),
        (eqslax.MultiGaussian(), -0.5, 0.1591),
        (eqslax.MultiGaussian(), 0.0, 0.7319),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, eqx.Module) else str(v),
)
def test_slax_oracle_values(surrogate, x, expected):
    assert float(_grad(surrogate, jnp.asarray([x]))[0]) == pytest.approx(expected, abs=5e-5)


def _integral(derivative, n=400_001):
    """Trapezoid rule for the integral of ``derivative`` over the real line, after the
    substitution x = tan(theta), which makes the heavy tails of Arctan finite."""
    theta = np.linspace(-math.pi / 2, math.pi / 2, n)[1:-1]
    x = np.tan(theta)
    return np.trapezoid(derivative(jnp.asarray(x)) / np.cos(theta) ** 2, theta)


@pytest.mark.parametrize(
    "surrogate,expected",
    [(s, integral) for _, s, _, integral in SURROGATES if integral is not None],
    ids=[name for name, *_, integral in SURROGATES if integral is not None],
)
def test_integral_of_the_derivative(surrogate, expected):
    # Integral-normalised surrogates give 1; the others give their documented integral.
    area = _integral(lambda x: _grad(surrogate, x))
    assert area == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(
    "surrogate,peak",
    [
        (eqslax.FastSigmoid(), 1.0),
        (eqslax.FastSigmoid(3.0), 1.0),
        (eqslax.Triangle(), 0.3),
        (eqslax.Triangle(0.8, 2.0), 0.8),
        (eqslax.StraightThrough(), 1.0),
        (eqslax.MultiGaussian(), 0.7319),
        (eqslax.Arctan(3.0), 1.5),
        (eqslax.Sigmoid(8.0), 2.0),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, eqx.Module) else str(v),
)
def test_peak_value_at_threshold(surrogate, peak):
    x = jnp.linspace(-2.0, 2.0, 4001)  # includes 0 exactly
    derivative = _grad(surrogate, x)
    assert float(jnp.max(derivative)) == pytest.approx(peak, abs=5e-5)
    assert float(derivative[2000]) == pytest.approx(peak, abs=5e-5), "peak is not at x = 0"


@pytest.mark.parametrize("bad", [3.0, "fast", None])
def test_custom_surrogate_rejects_a_non_callable(bad):
    with pytest.raises(TypeError, match="derivative_fn"):
        eqslax.CustomSurrogate(bad)
