"""Loaders: `fit` and `evaluate` take batches from a loader as they take arrays, with the
same model for the same key, exact resumption mid-epoch, and each batch checked by name."""

import functools
import threading
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import eqslax
from eqslax.data import AbstractLoader, ArrayLoader, Loaders, randman


@pytest.fixture(scope="module")
def data():
    return randman(jax.random.key(0), n_classes=2, n_units=6, n_steps=6, samples_per_class=10)


@functools.cache
def make():
    model = eqslax.feedforward((6, 7, 2), key=jax.random.key(1), readout="li")
    return model, eqslax.train_offline(model, eqslax.Accumulated(reduce="mean"), optax.adam(5e-2))


def fit(data, **kwargs):
    model, step = make()
    options = dict(epochs=2, key=jax.random.key(2), progress=False) | kwargs
    return eqslax.fit(model, step, data, **options)


def leaves(tree):
    return jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))


def same(a, b):
    (ma, ha), (mb, hb) = a, b
    assert all(np.array_equal(x, y) for x, y in zip(leaves(ma), leaves(mb)))
    for name in ha:
        if name != "epoch_time":
            assert ha[name] == hb[name], name


class HostLoader(AbstractLoader):
    """What a user writes for data on the host: samples in a list, gathered per batch."""

    def __init__(self, samples, labels, batch_size):
        self.samples, self.labels = list(samples), list(labels)
        self.n_samples, self.batch_size = len(self.samples), batch_size

    def batch(self, key, index, *, drop_last=True):
        order = (
            np.arange(self.n_samples)
            if key is None
            else jax.random.permutation(key, self.n_samples)
        )
        picked = np.asarray(order)[index * self.batch_size : (index + 1) * self.batch_size]
        xs = np.stack([self.samples[i] for i in picked])
        return jnp.asarray(xs), jnp.asarray([self.labels[i] for i in picked])


def loaders(data, kind="array", batch_size=4):
    if kind == "host":
        train = HostLoader(np.asarray(data.train_x), np.asarray(data.train_y), batch_size)
        return Loaders(train, HostLoader(np.asarray(data.test_x), np.asarray(data.test_y), 256))
    if kind == "host-prefetched":
        train = HostLoader(np.asarray(data.train_x), np.asarray(data.train_y), batch_size)
        train.prefetch = 3
        return Loaders(train, HostLoader(np.asarray(data.test_x), np.asarray(data.test_y), 256))
    prestage = kind == "array"
    depth = 2 if kind == "prefetched" else 0
    return Loaders(
        ArrayLoader(data.train_x, data.train_y, batch_size, prestage=prestage, prefetch=depth),
        ArrayLoader(data.test_x, data.test_y, 256, prestage=prestage, prefetch=depth),
    )


@pytest.mark.parametrize("kind", ["array", "host-staged", "prefetched", "host", "host-prefetched"])
def test_a_loader_gives_the_model_and_history_of_the_arrays(data, kind):
    same(fit(data, batch_size=4), fit(loaders(data, kind)))


@pytest.mark.parametrize("kind", ["host", "host-prefetched"])
def test_resuming_mid_epoch_from_a_loader_is_exact(data, tmp_path, kind):
    straight = fit(loaders(data, "host"))
    source = loaders(data, kind)
    for stop in (3, 5, 7):  # 4 batches per epoch: stops inside both epochs
        fit(source, checkpoint_dir=str(tmp_path), checkpoint_every=1, max_steps=stop, resume=True)
    same(fit(source, checkpoint_dir=str(tmp_path), resume=True), straight)


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "eqslax-prefetch"]


class Failing(HostLoader):
    """Prepares batches on the prefetch thread and fails at batch `bad`."""

    prefetch = 2

    def batch(self, key, index, *, drop_last=True):
        if index == 2 and key is not None:
            raise RuntimeError("the disk went away at batch 2")
        return super().batch(key, index, drop_last=drop_last)


def test_an_error_on_the_prefetch_thread_is_raised_in_fit_and_the_thread_ends(data):
    x, y = np.asarray(data.train_x), np.asarray(data.train_y)
    test = HostLoader(np.asarray(data.test_x), np.asarray(data.test_y), 256)
    with pytest.raises(RuntimeError, match="the disk went away at batch 2"):
        fit(Loaders(Failing(x, y, 4), test))
    assert not prefetch_threads()


def test_prefetch_keeps_the_order_bounds_the_queue_and_stops_when_closed():
    made = []

    def slow_source():
        for i in range(100):
            made.append(i)
            yield np.full(3, i)

    batches = eqslax.data.prefetch(slow_source(), depth=3)
    assert [int(next(batches)[0]) for _ in range(5)] == [0, 1, 2, 3, 4]
    time.sleep(0.3)  # the producer fills the queue, then waits
    assert len(made) <= 5 + 3 + 1  # taken + queued + the one being put
    batches.close()
    assert not prefetch_threads()
    assert list(eqslax.data.prefetch(iter(range(4)), depth=0)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"prefetch: `depth` must be an int >= 0"):
        eqslax.data.prefetch([], depth=-1)


def test_array_loader_prestages_up_to_its_bound_and_prefetches_above_it(data):
    xs, ys = np.asarray(data.train_x), np.asarray(data.train_y)
    small = ArrayLoader(xs, ys, 4)
    assert small.prestaged and small.prefetch == 0
    large = ArrayLoader(xs, ys, 4, prestage_limit=xs.nbytes // 2, prefetch=3)
    assert not large.prestaged and large.prefetch == 3 and isinstance(large.xs, np.ndarray)
    assert ArrayLoader(data.train_x, data.train_y, 4, prestage_limit=0).prestaged  # on device
    key = jax.random.key(5)
    for index in range(len(small)):
        for a, b in zip(small.batch(key, index), large.batch(key, index)):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match=r"prestage"):
        ArrayLoader(xs, ys, 4, prestage="yes")


def test_evaluate_on_a_loader_equals_evaluate_on_arrays(data):
    model, step = make()
    direct = eqslax.evaluate(model, step.loss, data.test_x, data.test_y, batch_size=3)
    loaded = eqslax.evaluate(model, step.loss, ArrayLoader(data.test_x, data.test_y, 3))
    assert loaded == pytest.approx(direct, rel=1e-12)


class Poisoned(HostLoader):
    def __init__(self, *args, bad_batch, what):
        super().__init__(*args)
        self.bad_batch, self.what = bad_batch, what

    def batch(self, key, index, *, drop_last=True):
        xs, ys = super().batch(key, index, drop_last=drop_last)
        if index == self.bad_batch and key is not None:
            if self.what == "nan":
                xs = xs.at[0, 0, 0].set(jnp.nan)
            else:
                ys = ys.at[0].set(5)
        return xs, ys


@pytest.mark.parametrize(
    "what, pattern",
    [
        ("nan", r"`xs \(epoch 1, batch 2\)` holds 1 non-finite"),
        ("label", r"`ys \(epoch 1, batch 2\)` must hold class labels in 0\.\.1"),
    ],
)
def test_a_bad_batch_from_a_loader_is_named(data, what, pattern):
    x, y = np.asarray(data.train_x), np.asarray(data.train_y)
    train = Poisoned(x, y, 4, bad_batch=2, what=what)
    test = HostLoader(np.asarray(data.test_x), np.asarray(data.test_y), 256)
    with pytest.raises(ValueError, match=pattern):
        fit(Loaders(train, test))


def test_loader_arguments_are_checked(data):
    with pytest.raises(
        ValueError, match=r"`batch_size` = 8 but the training loader has batch_size 4"
    ):
        fit(loaders(data), batch_size=8)
    with pytest.raises(TypeError, match=r"[`']train[`']"):
        Loaders((data.train_x, data.train_y), ArrayLoader(data.test_x, data.test_y, 4))
    with pytest.raises(ValueError, match=r"ArrayLoader: `xs` has 16 samples but `ys` has 15"):
        ArrayLoader(data.train_x, data.train_y[:-1], 4)
    with pytest.raises(ValueError, match=r"ArrayLoader: `batch_size` must be an int >= 1"):
        ArrayLoader(data.train_x, data.train_y, 0)
    with pytest.raises(IndexError, match=r"batch 4 does not exist; an epoch has 4 batches"):
        ArrayLoader(data.train_x, data.train_y, 4).batch(None, 4)


@pytest.fixture
def shd_files(tmp_path):
    """A tiny training and test file in the SHD layout (vlen times/units, labels)."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    paths = []
    for name, count in (("shd_train.h5", 12), ("shd_test.h5", 5)):
        path = tmp_path / name
        with h5py.File(path, "w") as file:
            vlen_t, vlen_u = h5py.vlen_dtype(np.float32), h5py.vlen_dtype(np.uint16)
            times = file.create_dataset("spikes/times", (count,), dtype=vlen_t)
            units = file.create_dataset("spikes/units", (count,), dtype=vlen_u)
            for i in range(count):
                n = int(rng.integers(0, 30))
                times[i] = np.sort(rng.uniform(0, 1.4, n)).astype(np.float32)
                units[i] = rng.integers(0, 700, n).astype(np.uint16)
            file.create_dataset("labels", data=(np.arange(count) % 3).astype(np.uint8))
        paths.append(path)
    return paths


def test_shd_loader_masks_the_steps_after_each_utterance(shd_files):
    train_path, test_path = shd_files
    loader = eqslax.data.SHDLoader(train_path, 5, 4, mask=True, max_time=1.4)
    xs, ys = eqslax.data.load_shd(train_path, 5, max_time=1.4)
    with h5py_file(train_path) as file:
        last = [float(t.max()) if t.size else 0.0 for t in file["spikes/times"]]
    lengths = np.minimum(np.floor(np.array(last) * 5 / 1.4).astype(int), 4) + 1
    mask = np.arange(5) < lengths[:, None]
    assert not np.all(mask) and not np.any(xs[~mask])  # padding holds no event
    bx, by, bm = loader.batch(None, 1)
    np.testing.assert_array_equal(bm, mask[4:8])
    np.testing.assert_array_equal(bx, xs[4:8])
    model = eqslax.feedforward((700, 4, 3), key=jax.random.key(1), readout="li")
    step = eqslax.train_offline(model, eqslax.Accumulated(reduce="mean"), optax.adam(1e-2))
    options = dict(epochs=1, key=jax.random.key(2), progress=False)
    test = eqslax.data.SHDLoader(test_path, 5, 256, mask=True)
    streamed = eqslax.fit(model, step, Loaders(loader, test), **options)
    tx, ty = eqslax.data.load_shd(test_path, 5)
    test_mask = next(iter(test))[2]
    split = Loaders(ArrayLoader(xs, ys, 4, mask=mask), ArrayLoader(tx, ty, 256, mask=test_mask))
    same(streamed, eqslax.fit(model, step, split, **options))


def h5py_file(path):
    return pytest.importorskip("h5py").File(path, "r")


def test_shd_loader_reads_what_load_shd_reads_and_trains_like_the_arrays(shd_files):
    train_path, test_path = shd_files
    loader = eqslax.data.SHDLoader(train_path, 5, 4, max_time=1.4)
    assert (loader.n_samples, len(loader), loader.n_classes, loader.in_shape) == (12, 3, 3, (700,))
    xs, ys = eqslax.data.load_shd(train_path, 5, max_time=1.4)
    key = jax.random.key(3)
    order = np.asarray(jax.random.permutation(key, 12))
    bx, by = loader.batch(key, 1)
    np.testing.assert_array_equal(bx, xs[order[4:8]])
    np.testing.assert_array_equal(by, ys[order[4:8]])
    tx, ty = eqslax.data.load_shd(test_path, 5, max_time=1.4)
    model = eqslax.feedforward((700, 4, 3), key=jax.random.key(1), readout="li")
    step = eqslax.train_offline(model, eqslax.Accumulated(reduce="mean"), optax.adam(1e-2))
    options = dict(epochs=2, key=jax.random.key(2), progress=False)
    streamed = eqslax.fit(
        model, step, Loaders(loader, eqslax.data.SHDLoader(test_path, 5, 256)), **options
    )
    split = Loaders(ArrayLoader(xs, ys, 4), ArrayLoader(tx, ty, 256))
    same(streamed, eqslax.fit(model, step, split, **options))
