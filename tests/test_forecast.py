r"""`eqslax.data.forecasting_windows`: window $j$ holds $x_{s_j + t}$ and targets
$x_{s_j + t + h}$; the split is in time, and standardisation uses the training part."""

import jax.numpy as jnp
import numpy as np
import pytest

import eqslax


def test_windows_follow_the_definition():
    series = np.arange(100, dtype=np.float64) ** 1.5
    data = eqslax.data.forecasting_windows(
        series,
        window=6,
        stride=3,
        horizon=2,
        test_fraction=0.25,
        standardize=False,
        dtype=jnp.float64,
    )
    train, test = series[:75], series[75:]
    assert data.train_x.shape == ((75 - 8) // 3 + 1, 6, 1)
    assert data.test_x.shape == ((25 - 8) // 3 + 1, 6, 1)
    for j in range(data.train_x.shape[0]):
        s = 3 * j
        np.testing.assert_array_equal(data.train_x[j, :, 0], train[s : s + 6])
        np.testing.assert_array_equal(data.train_y[j, :, 0], train[s + 2 : s + 8])
    np.testing.assert_array_equal(data.test_x[0, :, 0], test[:6])
    # no training window reaches into the held-out part
    assert float(data.train_y.max()) <= train[-1]


def test_standardised_with_training_statistics_and_channels_kept():
    rng = np.random.default_rng(0)
    series = rng.normal(3.0, 2.0, (200, 2))
    data = eqslax.data.forecasting_windows(series, window=10, stride=1, dtype=jnp.float64)
    train = series[:160]
    expected = (train[:10] - train.mean(0)) / train.std(0)
    np.testing.assert_allclose(data.train_x[0], expected, rtol=1e-12)
    expected_test = (series[160:170] - train.mean(0)) / train.std(0)
    np.testing.assert_allclose(data.test_x[0], expected_test, rtol=1e-12)
    assert data.train_y.shape[-1] == 2 and data.train_x.dtype == jnp.float64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 0}, r"`window` must be a positive integer, got 0"),
        ({"stride": -1}, r"`stride` must be a positive integer, got -1"),
        ({"test_fraction": 1.0}, r"`test_fraction` must lie in \(0, 1\), got 1.0"),
        ({"window": 30}, r"test part holds 20 points, fewer than `window` \+ `horizon` = 31"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        eqslax.data.forecasting_windows(np.sin(np.arange(100.0)), **kwargs)


def test_non_finite_and_badly_shaped_series_are_refused():
    series = np.sin(np.arange(100.0))
    series[37] = np.nan
    with pytest.raises(ValueError, match=r"`series` has a non-finite value at point 37"):
        eqslax.data.forecasting_windows(series)
    with pytest.raises(ValueError, match=r"`series` must be \(n_points,\).*got shape \(4, 5, 5\)"):
        eqslax.data.forecasting_windows(np.zeros((4, 5, 5)))
