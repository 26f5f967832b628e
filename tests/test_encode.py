"""Spike encoders against their definitions: rate (binomial bound on the mean), latency
(exact spike times) and delta (exact events of a hand-made signal)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqslax import encode


def test_rate_mean_within_binomial_bound():
    x = jnp.array([0.0, 0.05, 0.2, 0.5, 0.9, 1.0, 1.7, -0.3])
    gain = 0.8
    n = 20000
    spikes = encode.rate(x, n, key=jax.random.key(0), gain=gain)
    assert spikes.shape == (n, 8) and spikes.dtype == x.dtype
    assert set(np.unique(np.asarray(spikes))) <= {0.0, 1.0}
    p = np.clip(gain * np.asarray(x), 0, 1)
    mean = np.asarray(spikes).mean(axis=0)
    bound = 5 * np.sqrt(p * (1 - p) / n)  # five binomial standard deviations
    assert np.all(np.abs(mean - p) <= bound), (mean, p, bound)
    assert mean[0] == 0 and mean[-1] == 0  # p = 0 exactly
    assert mean[6] == 1  # clipped to p = 1


def test_rate_is_independent_across_steps_and_keyed():
    x = jnp.full((4, 3), 0.5)
    a = encode.rate(x, 50, key=jax.random.key(1))
    b = encode.rate(x, 50, key=jax.random.key(1))
    c = encode.rate(x, 50, key=jax.random.key(2))
    assert a.shape == (50, 4, 3)
    assert bool((a == b).all()) and not bool((a == c).all())
    assert not bool((a[0] == a[1:]).all())


def test_latency_linear_exact_times():
    x = jnp.array([1.0, 0.5, 0.25, 0.0, 0.1, 1.3])
    spikes = np.asarray(encode.latency(x, 9, threshold=0.05))
    # t = 8 (1 - x): 0, 4, 6, (x = 0 below threshold), floor(7.2) = 7, clip(1.3) -> 0
    expected = {0: 0, 1: 4, 2: 6, 4: 7, 5: 0}
    assert spikes.shape == (9, 6)
    for i in range(6):
        times = np.flatnonzero(spikes[:, i])
        assert list(times) == ([expected[i]] if i in expected else []), (i, times)


def test_latency_log_exact_times():
    tau, theta = 2.0, 0.2
    x = jnp.array([0.9, 0.3, 0.21, 0.2, 0.1], dtype=jnp.float64)
    spikes = np.asarray(encode.latency(x, 5, method="log", threshold=theta, tau=tau))
    for i, value in enumerate(np.asarray(x)):
        times = np.flatnonzero(spikes[:, i])
        if value <= theta:
            assert times.size == 0
        else:
            t = min(math.floor(tau * math.log(value / (value - theta))), 4)
            assert list(times) == [t], (value, times, t)
    # 0.9 -> floor(0.503) = 0, 0.3 -> floor(2.197) = 2, 0.21 -> 6.09 clipped to 4
    assert [int(np.flatnonzero(spikes[:, i])[0]) for i in range(3)] == [0, 2, 4]


def test_delta_exact_events():
    signal = jnp.array([0.0, 0.4, 0.6, 1.2, 1.0, 0.5, 0.55, -0.1])
    # reference: 0 | 0.4: +0.4 no | 0.6: +0.6 on, r=.6 | 1.2: +.6 on, r=1.2 | 1.0: -.2 no
    # | 0.5: -.7 off, r=.5 | 0.55: +.05 no | -0.1: -.65 off
    on = [0, 0, 1, 1, 0, 0, 0, 0]
    off = [0, 0, 0, 0, 0, 1, 0, 1]
    x = jnp.stack([signal, -signal], axis=1)  # the negated signal swaps the channels
    events = np.asarray(encode.delta(x, 0.5, off=True))
    assert events.shape == (8, 2, 2)
    np.testing.assert_array_equal(events[:, 0, 0], on)
    np.testing.assert_array_equal(events[:, 1, 0], off)
    np.testing.assert_array_equal(events[:, 0, 1], off)
    np.testing.assert_array_equal(events[:, 1, 1], on)
    np.testing.assert_array_equal(np.asarray(encode.delta(x, 0.5))[:, 0], on)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: encode.rate(jnp.ones(3), 0, key=jax.random.key(0)), "n_steps"),
        (lambda: encode.rate(jnp.ones(3), 4, key=jax.random.key(0), gain=-1.0), "gain"),
        (lambda: encode.latency(jnp.ones(3), 4, method="exp"), "method"),
        (lambda: encode.latency(jnp.ones(3), 4, method="log"), "threshold"),
        (lambda: encode.latency(jnp.ones(3), 4, method="log", threshold=0.1, tau=0.0), "tau"),
        (lambda: encode.delta(jnp.ones((3, 2)), float("nan")), "threshold"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
