"""Randman datasets (Zenke & Vogels 2021)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eqslax.data import RandmanSplit, RandomManifold, frequency_cutoff, make_manifold, randman

KEY = jax.random.PRNGKey(0)
SMALL = dict(n_classes=4, n_units=12, n_steps=20, samples_per_class=60)
T = SMALL["n_steps"]


@pytest.fixture(scope="module")
def time_split() -> RandmanSplit:
    return randman(KEY, encoding="time", **SMALL)


@pytest.fixture(scope="module")
def rate_split() -> RandmanSplit:
    return randman(KEY, encoding="rate", **SMALL)


@pytest.fixture(scope="module")
def mixed_split() -> RandmanSplit:
    return randman(KEY, encoding="mixed", p=0.5, **SMALL)


def _all(split: RandmanSplit, field: str) -> np.ndarray:
    return np.concatenate(
        [np.asarray(getattr(split, "train_" + field)), np.asarray(getattr(split, "test_" + field))]
    )


def _expected_step(y: np.ndarray, n_steps: int) -> np.ndarray:
    """floor(y T) in float32 arithmetic, in {0..T-1}."""
    y32 = jnp.asarray(y, jnp.float32)
    return np.asarray(jnp.minimum(jnp.floor(y32 * n_steps), n_steps - 1)).astype(int)


def _one_nn_accuracy(train_x, train_y, test_x, test_y) -> float:
    """1-nearest-neighbour classifier (Euclidean), ties broken by the first train sample."""
    train_x = jnp.asarray(train_x, jnp.float32)
    test_x = jnp.asarray(test_x, jnp.float32)
    distance = jnp.sum((test_x[:, None, :] - train_x[None, :, :]) ** 2, axis=-1)
    predicted = jnp.asarray(train_y)[jnp.argmin(distance, axis=1)]
    return float(jnp.mean(predicted == jnp.asarray(test_y)))


# ----------------------------------------------------------------------------- manifold


@pytest.mark.parametrize(
    "alpha, cutoff", [(0.5, 1000), (1.0, 1000), (1.5, 100), (2.0, 32), (3.0, 10), (4.0, 6)]
)
def test_frequency_cutoff_table(alpha, cutoff):
    assert frequency_cutoff(alpha) == cutoff
    manifold = jax.eval_shape(
        lambda key: make_manifold(key, embedding_dim=2, manifold_dim=1, alpha=alpha), KEY
    )
    assert manifold.params.shape == (2, 1, 3, cutoff)
    assert manifold.spectrum.shape == (cutoff,)


def test_frequency_cutoff_respects_bounds():
    assert frequency_cutoff(2.0, prec=1e-2) == 10
    assert frequency_cutoff(0.5, max_f_cutoff=7) == 7


@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("spectrum", ["jax", "numpy"])
def test_manifold_matches_equation(use_bias, spectrum):
    """M_e(x) = prod_d sum_k theta[e,d,0,k] s_k sin(2pi (k x_d theta[e,d,1,k] + theta[e,d,2,k]))."""
    alpha = 3.0
    manifold = make_manifold(
        jax.random.PRNGKey(3),
        embedding_dim=3,
        manifold_dim=2,
        alpha=alpha,
        use_bias=use_bias,
        spectrum=spectrum,
    )
    assert isinstance(manifold, RandomManifold)
    theta = np.asarray(manifold.params, np.float64)
    n_freq = frequency_cutoff(alpha)
    k1 = np.arange(1, n_freq + 1, dtype=np.float64)
    s = 1.0 / (k1**alpha + 1.0) if spectrum == "jax" else k1**-alpha
    np.testing.assert_allclose(np.asarray(manifold.spectrum), s, rtol=1e-6)
    assert np.all((theta >= 0) & (theta < 1))
    assert np.all(theta[:, :, 0, 0] == 0) != use_bias

    # 300 samples: more than one evaluation chunk, with a remainder.
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(4), (300, 2)), np.float64)
    expected = np.ones((300, 3))
    for e in range(3):
        for d in range(2):
            g = np.zeros(300)
            for k in range(n_freq):
                g += (
                    theta[e, d, 0, k]
                    * s[k]
                    * np.sin(2 * np.pi * (k * x[:, d] * theta[e, d, 1, k] + theta[e, d, 2, k]))
                )
            expected[:, e] *= g
    got = manifold(jnp.asarray(x, jnp.float32))
    assert got.shape == (300, 3)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=1e-6)
    jitted = eqx.filter_jit(lambda m, points: m(points))(manifold, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(got), rtol=1e-6, atol=1e-7)


def test_manifold_rejects_wrong_dim():
    manifold = make_manifold(KEY, embedding_dim=3, manifold_dim=2)
    with pytest.raises(ValueError, match=r"manifold_dim=2.*got shape \(5, 3\)"):
        manifold(jnp.zeros((5, 3)))


# ----------------------------------------------------------------------------- structure


def test_default_shapes_and_dtypes():
    split = jax.eval_shape(lambda key: randman(key), KEY)  # shapes only: no compile
    assert split.train_x.shape == (1600, 50, 20)
    assert split.test_x.shape == (400, 50, 20)
    assert split.train_x.dtype == jnp.float32
    assert split.train_y.shape == (1600,) and split.train_y.dtype == jnp.int32
    assert split.test_y.shape == (400,) and split.test_y.dtype == jnp.int32
    assert split.roles.shape == (20,) and split.roles.dtype == jnp.bool_
    assert split.train_values.shape == (1600, 20)
    assert split.train_latents.shape == (1600, 1)
    assert split.p_effective == 0.0 and split.n_classes == 10


def test_classes_are_balanced(time_split):
    assert np.array_equal(np.bincount(_all(time_split, "y")), np.full(4, 60))


@pytest.mark.parametrize("name", ["time_split", "rate_split", "mixed_split"])
def test_values_are_binary(name, request):
    split = request.getfixturevalue(name)
    x = _all(split, "x")
    assert x.shape == (4 * 60, T, 12)
    assert np.all((x == 0) | (x == 1))


def test_dtype_argument():
    split = randman(KEY, encoding="time", dtype=jnp.bfloat16, **SMALL)
    assert split.train_x.dtype == jnp.bfloat16


def test_samples_are_shuffled_across_classes(time_split):
    labels = _all(time_split, "y")
    assert not np.all(np.diff(labels) >= 0)
    assert set(np.unique(time_split.test_y)) == set(range(4))


# ----------------------------------------------------------------------------- encodings


def test_time_encoding_one_spike_at_floor_yT(time_split):
    x, y = _all(time_split, "x"), _all(time_split, "values")
    assert np.all(x.sum(axis=1) == 1)
    assert np.array_equal(x.argmax(axis=1), _expected_step(y, T))
    assert not time_split.roles.any() and time_split.p_effective == 0.0


def test_rate_encoding_counts(rate_split):
    x, y = _all(rate_split, "x"), _all(rate_split, "values")
    counts = x.sum(axis=1).astype(int)
    assert np.array_equal(counts, _expected_step(y, T) + 1)
    assert counts.min() >= 1 and counts.max() <= T
    assert counts.min() == 1 and counts.max() == T
    assert rate_split.roles.all() and rate_split.p_effective == 1.0


def _patterns_by_count(x: np.ndarray) -> dict[int, set[bytes]]:
    """Distinct spike-time patterns among (sample, unit) columns, grouped by spike count."""
    columns = np.moveaxis(x, 1, -1).reshape(-1, x.shape[1]).astype(bool)
    counts = columns.sum(axis=1)
    return {int(k): {c.tobytes() for c in columns[counts == k]} for k in np.unique(counts)}


def test_rate_permutations_are_independent(rate_split):
    x = _all(rate_split, "x")
    groups = _patterns_by_count(x)
    columns = np.moveaxis(x, 1, -1).reshape(-1, T)
    counts = columns.sum(axis=1)
    for k, patterns in groups.items():
        n_columns = int(np.sum(counts == k))
        if 2 <= k <= T - 2 and n_columns >= 10:
            # C(T, k) >= 190 possible subsets: equal patterns should be rare.
            assert len(patterns) > 0.5 * n_columns, (k, len(patterns), n_columns)


def test_shared_permutation_reuses_one_order():
    split = randman(KEY, encoding="rate", shared_permutation=True, **SMALL)
    x = _all(split, "x")
    groups = _patterns_by_count(x)
    assert all(len(patterns) == 1 for patterns in groups.values())
    # One order for everything: the k-spike pattern is contained in the (k+1)-spike one.
    ordered = sorted(groups)
    for k, k_next in zip(ordered, ordered[1:]):
        small = np.frombuffer(next(iter(groups[k])), dtype=bool)
        large = np.frombuffer(next(iter(groups[k_next])), dtype=bool)
        assert np.all(large[small])
    counts = x.sum(axis=1).astype(int)
    assert np.array_equal(counts, _expected_step(_all(split, "values"), T) + 1)


def test_mixed_limits_are_time_and_rate(time_split, rate_split):
    p0 = randman(KEY, encoding="mixed", p=0.0, **SMALL)
    p1 = randman(KEY, encoding="mixed", p=1.0, **SMALL)
    for mixed, pure in ((p0, time_split), (p1, rate_split)):
        for field in ("train_x", "test_x", "train_y", "test_y", "train_values", "roles"):
            assert np.array_equal(
                np.asarray(getattr(mixed, field)), np.asarray(getattr(pure, field))
            ), field
        assert mixed.p_effective == pure.p_effective


def test_mixed_unit_split(mixed_split):
    x, y = _all(mixed_split, "x"), _all(mixed_split, "values")
    roles = np.asarray(mixed_split.roles)
    assert roles.sum() == 6 and mixed_split.p_effective == 0.5
    counts = x.sum(axis=1).astype(int)
    steps = _expected_step(y, T)
    assert np.all(counts[:, ~roles] == 1)
    assert np.array_equal(x.argmax(axis=1)[:, ~roles], steps[:, ~roles])
    assert np.array_equal(counts[:, roles], steps[:, roles] + 1)


@pytest.mark.parametrize("p, n_rate", [(0.33, 4), (0.01, 0), (0.96, 12)])
def test_mixed_rounds_rate_units(p, n_rate):
    split = randman(KEY, encoding="mixed", p=p, **SMALL)
    assert int(split.roles.sum()) == n_rate
    assert split.p_effective == n_rate / 12


def test_bernoulli_rates_follow_values():
    split = randman(KEY, encoding="rate", rate_mode="bernoulli", rate_range=(0.1, 0.9), **SMALL)
    x, y = _all(split, "x"), _all(split, "values")
    assert np.all((x == 0) | (x == 1))
    rate = x.mean(axis=1)
    expected = 0.1 + 0.8 * y
    assert abs(np.mean(rate - expected)) < 0.01
    assert np.corrcoef(rate.ravel(), expected.ravel())[0, 1] > 0.9


# ----------------------------------------------------------------------------- keys


def test_same_key_same_data_different_key_different_data(time_split):
    again = randman(KEY, encoding="time", **SMALL)
    other = randman(jax.random.PRNGKey(1), encoding="time", **SMALL)
    assert np.array_equal(np.asarray(again.train_x), np.asarray(time_split.train_x))
    assert np.array_equal(np.asarray(again.test_y), np.asarray(time_split.test_y))
    assert not np.array_equal(np.asarray(other.train_x), np.asarray(time_split.train_x))
    assert not np.allclose(_all(other, "values"), _all(time_split, "values"))


def test_each_class_draws_its_own_latents(time_split):
    latents, labels = _all(time_split, "latents"), _all(time_split, "y")
    by_class = [np.sort(latents[labels == c, 0]) for c in range(4)]
    assert not np.allclose(by_class[0], by_class[1])
    # Slax parity; also checks that new-style typed keys are accepted.
    shared = randman(jax.random.key(0), encoding="time", shared_latents=True, **SMALL)
    assert shared.train_x.shape == time_split.train_x.shape
    latents, labels = _all(shared, "latents"), _all(shared, "y")
    by_class = [np.sort(latents[labels == c, 0]) for c in range(4)]
    for c in range(1, 4):
        assert np.array_equal(by_class[0], by_class[c])


# ----------------------------------------------------------------------------- statistics


def test_per_class_per_unit_standardisation(time_split):
    x, y, labels = _all(time_split, "x"), _all(time_split, "values"), _all(time_split, "y")
    for c in range(4):
        yc = y[labels == c]
        assert np.all(yc.min(axis=0) == 0.0)
        assert np.all(yc.max(axis=0) < 1.0) and np.all(yc.max(axis=0) > 0.999)
        # So every unit of every class has a sample firing at t = 0 and one at t = T - 1.
        first_steps = x[labels == c].argmax(axis=1)
        assert np.all((first_steps == 0).any(axis=0))
        assert np.all((first_steps == T - 1).any(axis=0))


def test_classes_separable_on_manifold_values(time_split):
    """D = 1, alpha = 2, 4 classes: a 1-NN classifier is far above chance (0.25)."""
    accuracy = _one_nn_accuracy(
        time_split.train_values, time_split.train_y, time_split.test_values, time_split.test_y
    )
    assert accuracy > 0.8


def test_count_decoder_at_chance_for_time_code_and_not_for_rate(time_split, rate_split):
    def count_accuracy(split: RandmanSplit) -> float:
        train_counts = np.asarray(split.train_x).sum(axis=1)
        test_counts = np.asarray(split.test_x).sum(axis=1)
        return _one_nn_accuracy(train_counts, split.train_y, test_counts, split.test_y)

    # p = 0: every count is 1, so the decoder sees identical inputs and predicts one class.
    majority = np.bincount(np.asarray(time_split.test_y), minlength=4).max() / 48
    assert count_accuracy(time_split) <= majority
    assert count_accuracy(rate_split) > 0.8


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_classes=1), r"`n_classes` must be an integer >= 2, got 1"),
        (dict(n_units=0), r"`n_units` must be a positive integer.*got 0"),
        (dict(n_steps=-3), r"`n_steps` must be a positive integer.*got -3"),
        (dict(manifold_dim=0), r"`manifold_dim` must be a positive integer.*got 0"),
        (dict(samples_per_class=0), r"`samples_per_class` must be a positive integer.*got 0"),
        (dict(alpha=0.0), r"`alpha` must be > 0.*got 0.0"),
        (dict(encoding="latency"), r"`encoding` must be one of .*'time'.*got 'latency'"),
        (dict(p=1.5), r"`p` .*must lie in \[0, 1\], got 1.5"),
        (dict(p=-0.1), r"`p` .*must lie in \[0, 1\], got -0.1"),
        (dict(test_fraction=0.0), r"`test_fraction` must lie in .*\(0, 1\), got 0.0"),
        (dict(test_fraction=1), r"`test_fraction` must lie in .*\(0, 1\), got 1"),
        (dict(test_fraction=1e-4), r"`test_fraction=0.0001` gives 0 of 2000 samples"),
        (dict(rate_mode="poisson"), r"`rate_mode` must be one of .*got 'poisson'"),
        (dict(rate_range=(0.5, 0.2)), r"`rate_range` must be .*got \(0.5, 0.2\)"),
        (
            dict(rate_mode="bernoulli", shared_permutation=True),
            r"`shared_permutation=True` only applies to `rate_mode='shuffle'`",
        ),
        (dict(spectrum="torch"), r"`spectrum` must be 'jax' or 'numpy', got 'torch'"),
        (dict(dtype=jnp.int32), r"`dtype` must be a floating dtype.*got"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        randman(KEY, **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(embedding_dim=0, manifold_dim=1), r"`embedding_dim` must be an integer >= 1, got 0"),
        (dict(embedding_dim=2, manifold_dim=0), r"`manifold_dim` must be an integer >= 1, got 0"),
        (dict(embedding_dim=2, manifold_dim=1, alpha=-1.0), r"`alpha` must be > 0.*got -1.0"),
        (dict(embedding_dim=2, manifold_dim=1, prec=2.0), r"`prec` must lie in \(0, 1\), got 2.0"),
        (dict(embedding_dim=2, manifold_dim=1, max_f_cutoff=0), r"`max_f_cutoff`.*>= 1, got 0"),
        (dict(embedding_dim=2, manifold_dim=1, spectrum="x"), r"`spectrum` must be.*got 'x'"),
    ],
)
def test_make_manifold_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_manifold(KEY, **kwargs)
