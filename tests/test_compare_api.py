"""`eqslax.compare(model, rules, data, loss, ...)`: user-built models, user rules, seeds,
the vmapped-seeds path, update budgets and the Student-t intervals."""

import json
import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import pytest
from helpers import assert_tree_allclose

import eqslax
from eqslax.data import randman

CLASSES, UNITS, STEPS, HIDDEN, BATCH = 3, 6, 10, 6, 6


@pytest.fixture(scope="module")
def data():
    return randman(
        jax.random.key(0), n_classes=CLASSES, n_units=UNITS, n_steps=STEPS, samples_per_class=8
    )


def feedforward(key):
    return eqslax.feedforward((UNITS, HIDDEN, CLASSES), key=key, readout="li")


def recurrent(key):
    """Linear -> LIF with a `cat` self-edge (W_rec y_{t-1}) -> Linear -> LI."""
    k = jax.random.split(key, 3)
    layers = [
        eqx.nn.Linear(UNITS, HIDDEN, key=k[0]),
        eqslax.LIF(HIDDEN),
        eqx.nn.Linear(HIDDEN, CLASSES, key=k[1]),
        eqslax.LI(CLASSES),
    ]
    model = eqslax.Connect(layers, cat={1: [1]}, key=k[2])
    return eqx.tree_at(lambda m: m.layers[0].weight, model, 3.0 * model.layers[0].weight)


def run(model, rules, data, **options):
    options = {"seeds": 2, "epochs": 1, "batch_size": BATCH, "progress": False} | options
    return eqslax.compare(model, rules, data, eqslax.PerStep(), **options)


def params(model):
    return eqx.filter(eqslax.trainable(model), eqx.is_array)


def test_compare_user_recurrent_model(data):
    result = run(recurrent, ["bptt", "rtrl"], data, seeds=1)
    per_epoch = data.train_x.shape[0] // BATCH
    assert result.rules == ("bptt", "rtrl") and result.seeds == (0,)
    assert isinstance(result.initial_models[0], eqslax.Connect)
    assert result.initial_models[0].projections[0].weight.shape == (HIDDEN, HIDDEN)
    bptt, rtrl = result.runs["bptt"], result.runs["rtrl"]
    assert bptt.updates == per_epoch and rtrl.updates == per_epoch * STEPS
    for seed_run in bptt.seeds + rtrl.seeds:
        assert seed_run.history["epoch"] == [1]
        test = eqslax.evaluate(seed_run.model, eqslax.PerStep(), data.test_x, data.test_y)
        assert seed_run.final["test_accuracy"] == pytest.approx(test["accuracy"])
    # RTRL is exact through the recurrent edge: its first gradient is BPTT's
    for seed_run in rtrl.seeds:
        assert float(seed_run.initial_similarity.global_cosine) == pytest.approx(1.0, abs=1e-9)
        assert float(seed_run.initial_similarity.global_ratio) == pytest.approx(1.0, abs=1e-9)
    # training moved the recurrent weight
    for s, seed_run in enumerate(rtrl.seeds):
        start = result.initial_models[s].projections[0].weight
        assert float(jnp.abs(seed_run.model.projections[0].weight - start).max()) > 1e-4


class SignBPTT(eqslax.AbstractLearningRule):
    """A user rule: the sign of BPTT's gradient (signSGD with an SGD optimiser)."""

    def update(self, model, rule_state, loss, xs, ys):
        grads, rule_state, aux = eqslax.BPTT().update(model, rule_state, loss, xs, ys)
        return jtu.tree_map(jnp.sign, grads), rule_state, aux


def test_compare_cubalif_with_a_user_rule(data):
    def cubalif(key):
        return eqslax.feedforward((UNITS, HIDDEN, CLASSES), key=key, neuron="cubalif", readout="li")

    lr = 1e-2
    eqslax.compare.register_rule(
        "sign_bptt", SignBPTT, driver="offline", lr=lr, optimizer=optax.sgd
    )
    try:
        result = run(cubalif, ["sign_bptt"], data, seeds=1)
    finally:
        eqslax.compare.RULES.pop("sign_bptt")
    assert "sign_bptt" not in eqslax.compare.RULES
    signed = result.runs["sign_bptt"]
    assert signed.driver == "offline" and signed.updates == data.train_x.shape[0] // BATCH
    # every step of signSGD moves each parameter by -lr, 0 or +lr: the change is a whole
    # multiple of lr no larger than the number of updates
    moved = jtu.tree_map(
        lambda a, b: (a - b) / lr, params(signed.seeds[0].model), params(result.initial_models[0])
    )
    steps = np.concatenate([np.ravel(x) for x in jtu.tree_leaves(moved)])
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)
    assert 1 <= np.round(np.abs(steps)).max() <= signed.updates


@pytest.fixture(scope="module")
def seeded(data):
    """The same seeds three times: vmapped twice (OSTL only the second time), sequential."""
    rules = ["bptt", "ostl"]
    return (
        run(feedforward, rules, data, seeds=(3, 5)),
        run(feedforward, ["ostl"], data, seeds=(3, 5)),
        run(feedforward, rules, data, seeds=(3, 5), vmap_seeds=False),
    )


def test_identical_seeds_give_identical_results(seeded):
    first, again, _ = seeded
    a, b = first.runs["ostl"].seeds, again.runs["ostl"].seeds
    for x, y in zip(a, b):
        assert x.history["test_loss"] == y.history["test_loss"]
        assert x.history["train_loss"] == y.history["train_loss"]
        assert_tree_allclose(params(x.model), params(y.model), rtol=0, atol=0)
    # different seeds: different initial models and different training
    assert a[0].history["train_loss"] != a[1].history["train_loss"]
    w3, w5 = (m.layers[0].weight for m in first.initial_models)
    assert not np.allclose(w3, w5)


def test_vmapped_seeds_equal_sequential_runs(seeded):
    vmapped, _, sequential = seeded
    assert jnp.result_type(vmapped.initial_models[0].layers[0].weight) == jnp.float64
    for name in ("bptt", "ostl"):
        assert vmapped.runs[name].vmapped and not sequential.runs[name].vmapped
        for x, y in zip(vmapped.runs[name].seeds, sequential.runs[name].seeds):
            assert x.seed == y.seed
            assert_tree_allclose(params(x.model), params(y.model), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(x.history["train_loss"], y.history["train_loss"], rtol=1e-10)
            np.testing.assert_allclose(x.history["test_loss"], y.history["test_loss"], rtol=1e-10)
            assert x.history["test_accuracy"] == y.history["test_accuracy"]


def counting(lr):
    """An 'optimiser' that adds `lr` to every parameter at every update, so that the
    change of any parameter divided by `lr` counts the updates made."""

    def update(grads, state, params=None):
        return jtu.tree_map(lambda g: jnp.full_like(g, lr), grads), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def test_budget_updates_gives_every_rule_the_same_update_count(data):
    lr = 1e-3
    rules = [
        eqslax.compare.Rule("bptt", eqslax.BPTT(), "offline", lr, optimizer=counting),
        eqslax.compare.Rule("ostl", eqslax.OSTL(), "online", lr, optimizer=counting),
        eqslax.compare.Rule("fptt", eqslax.FPTT(5), "fptt", lr, optimizer=counting),
    ]
    result = run(feedforward, rules, data, seeds=1, epochs=2, budget="updates", updates=20)
    batches = {"bptt": 20, "ostl": 2, "fptt": 4}
    for name, rule_run in result.runs.items():
        assert rule_run.updates == 20 and rule_run.batches == batches[name]
        assert rule_run.seeds[0].history["updates"][-1] == 20
        moved = jtu.tree_map(
            lambda a, b: (a - b) / lr,
            params(rule_run.seeds[0].model),
            params(result.initial_models[0]),
        )
        for leaf in jtu.tree_leaves(moved):
            np.testing.assert_allclose(leaf, 20.0, rtol=1e-9, err_msg=name)
    with pytest.raises(ValueError, match=r"`updates`=7 .*bptt: 1, ostl: 10, fptt: 5"):
        run(feedforward, rules, data, seeds=1, budget="updates", updates=7)


def test_student_t_interval_by_hand():
    values = [0.5, 0.7, 0.9]
    interval = eqslax.compare.mean_ci(values)
    half = 4.303 * 0.2 / math.sqrt(3)  # t_{0.975, 2} s / sqrt(n), s = 0.2
    assert interval.mean == pytest.approx(0.7, rel=1e-12) and interval.n == 3
    assert interval.half_width == pytest.approx(half, rel=1e-4)
    assert interval.low == pytest.approx(0.7 - half, abs=1e-4) and not interval.contains_zero()
    difference = eqslax.compare.paired_difference([0.6, 0.8, 1.0], [0.1, 0.3, 0.2])
    # differences 0.5, 0.5, 0.8: mean 0.6, s = sqrt(0.03)
    assert difference.mean == pytest.approx(0.6, rel=1e-12)
    assert difference.half_width == pytest.approx(4.303 * math.sqrt(0.03 / 3), rel=1e-4)
    tie = eqslax.compare.paired_difference([0.5, 0.7, 0.6], [0.6, 0.6, 0.6])
    assert tie.contains_zero()
    assert math.isnan(eqslax.compare.mean_ci([0.4]).half_width)


def test_rule_order_does_not_change_epoch_times(data):
    """Compilation is done before the timed epochs: BPTT's median epoch time is the same
    (within noise) whether it runs first or after OSTL. Were its compilation (seconds,
    against milliseconds per epoch) counted in an epoch, the median over 5 epochs of the
    first run would not change, but the ratio to the compile time below would fail."""
    big = randman(
        jax.random.key(1), n_classes=CLASSES, n_units=UNITS, n_steps=20, samples_per_class=40
    )
    options = {"seeds": 1, "epochs": 5, "batch_size": 4, "similarity_every": 10**6}
    first = run(feedforward, ["bptt", "ostl"], big, **options).runs["bptt"]
    second = run(feedforward, ["ostl", "bptt"], big, **options).runs["bptt"]
    ratio = first.time_per_epoch_s / second.time_per_epoch_s
    assert 1 / 5 < ratio < 5, (first.time_per_epoch_s, second.time_per_epoch_s)
    for bptt in (first, second):
        # every epoch's time is the steps alone: none holds a compilation
        assert max(bptt.seeds[0].history["epoch_time"]) < 0.5 * bptt.compile_time_s


def regression_data(key, n=24):
    r"""Targets $y_t = \sum_{s \le t} 0.7^{t-s} x_s$: a leaky integral of the input, which
    a leaky readout can learn."""
    kx, ky = jax.random.split(key)
    xs = jax.random.normal(kx, (n, STEPS, UNITS))

    def integrate(x):
        def step(y, x_t):
            y = 0.7 * y + x_t[:2]
            return y, y

        return jax.lax.scan(step, jnp.zeros(2), x)[1]

    ys = jax.vmap(integrate)(xs)
    cut = 2 * n // 3
    return eqslax.data.Splits(xs[:cut], ys[:cut], xs[cut:], ys[cut:])


def test_compare_ranks_a_regression_loss_by_test_r2(tmp_path):
    data = regression_data(jax.random.key(3))
    loss = eqslax.PerStep(optax.l2_loss)

    def model(key):
        return eqslax.feedforward((UNITS, HIDDEN, 2), key=key, readout="li")

    rules = [eqslax.compare.rule("bptt", lr=3e-2), eqslax.compare.rule("ostl", lr=3e-3)]
    result = eqslax.compare(
        model, rules, data, loss, seeds=2, epochs=3, batch_size=4, progress=False
    )
    assert result.metric == "r2" and result.key == "test_r2"
    for name in result.rules:
        for s, seed_run in enumerate(result.runs[name].seeds):
            history = seed_run.history
            assert "test_accuracy" not in history and "train_accuracy" not in history
            assert len(history["test_r2"]) == len(history["train_mse"]) == 3
            test = eqslax.evaluate(seed_run.model, loss, data.test_x, data.test_y)
            assert seed_run.final["test_r2"] == pytest.approx(test["r2"], rel=1e-6)
            assert seed_run.final["test_mse"] == pytest.approx(test["mse"], rel=1e-6)
            start = eqslax.evaluate(result.initial_models[s], loss, data.test_x, data.test_y)
            assert seed_run.final["test_mse"] < start["mse"]  # training fits the targets
    np.testing.assert_array_equal(
        result.values("bptt"), [r.final["test_r2"] for r in result.runs["bptt"].seeds]
    )
    path = eqslax.compare.write_report(result, str(tmp_path), grid=3)
    numbers = json.loads((tmp_path / "results.json").read_text())
    bptt = numbers["rules"]["bptt"]
    assert numbers["metric"] == "r2" and numbers["schema_version"] == 3
    assert bptt["final_test_r2"] == pytest.approx(float(np.mean(result.values("bptt"))))
    assert bptt["test_mse"]["n"] == 2 and bptt["neurobench"] is None
    report = (tmp_path / "report.md").read_text()
    assert path == str(tmp_path / "report.md")
    assert "| test r2 |" in report and "| test mse |" in report


def test_tune_lr_picks_the_best_validation_r2():
    data = regression_data(jax.random.key(4), n=30)
    loss = eqslax.PerStep(optax.l2_loss)
    model = eqslax.feedforward((UNITS, HIDDEN, 2), key=jax.random.key(5), readout="li")
    grid = (1e-3, 1.0)
    result = eqslax.compare(
        model,
        [eqslax.compare.rule("bptt", lr=3e-2)],
        data,
        loss,
        epochs=2,
        batch_size=4,
        tune_lr_grid=grid,
        progress=False,
    )
    tuned = result.tuned_lr["bptt"]
    assert tuned["metric"] == "r2" and tuned["grid"] == pytest.approx([3e-5, 3e-2])
    assert tuned["validation"][1] > tuned["validation"][0]  # a 1000x smaller lr barely moves
    assert tuned["chosen"] == pytest.approx(3e-2) and result.runs["bptt"].lr == tuned["chosen"]


def loaders_of(data, batch_size=BATCH, prefetch=0):
    """The same splits as `eqslax.data.Loaders` of `ArrayLoader`s (test batches of 4);
    with `prefetch` the arrays stay on the host and batches are prefetched."""
    ArrayLoader = eqslax.data.ArrayLoader
    where = dict(prestage=False, prefetch=prefetch) if prefetch else {}
    return eqslax.data.Loaders(
        ArrayLoader(np.asarray(data.train_x), np.asarray(data.train_y), batch_size, **where),
        ArrayLoader(np.asarray(data.test_x), np.asarray(data.test_y), 4, **where),
    )


@pytest.mark.parametrize("vmap_seeds, prefetch", [(True, 0), (False, 0), (True, 2)])
def test_compare_from_loaders_equals_compare_from_arrays(data, vmap_seeds, prefetch):
    """An `ArrayLoader` draws each epoch's order as compare does for arrays: the same
    batches, so the same models and train losses, also when a background thread
    prefetches them; the test metrics are the same sums over other chunks (batches of 4
    against one chunk)."""
    rules, options = ["bptt", "ottt"], {"epochs": 2, "vmap_seeds": vmap_seeds}
    arrays = run(feedforward, rules, data, **options)
    loaders = run(feedforward, rules, loaders_of(data, prefetch=prefetch), **options)
    for name in rules:
        for x, y in zip(arrays.runs[name].seeds, loaders.runs[name].seeds):
            assert_tree_allclose(params(y.model), params(x.model), rtol=0, atol=0)
            assert y.history["train_loss"] == x.history["train_loss"]
            assert y.history["test_accuracy"] == x.history["test_accuracy"]
            np.testing.assert_allclose(y.history["test_loss"], x.history["test_loss"], rtol=1e-6)
        assert loaders.runs[name].updates == arrays.runs[name].updates
    assert len(set(map(str, (s.history["train_loss"] for s in loaders.runs["ottt"].seeds)))) == 2


def padded_loaders(data, extra: int, batch_size: int = BATCH):
    """`ArrayLoader`s of the samples padded with `extra` silent steps, and their masks."""

    def pad(xs):
        xs = np.asarray(xs)
        zeros = np.zeros((xs.shape[0], extra, *xs.shape[2:]), xs.dtype)
        mask = np.arange(xs.shape[1] + extra) < xs.shape[1]
        return np.concatenate([xs, zeros], axis=1), np.broadcast_to(mask, (xs.shape[0], mask.size))

    (train_x, train_mask), (test_x, test_mask) = pad(data.train_x), pad(data.test_x)
    ArrayLoader = eqslax.data.ArrayLoader
    return eqslax.data.Loaders(
        ArrayLoader(train_x, data.train_y, batch_size, mask=train_mask.copy()),
        ArrayLoader(test_x, data.test_y, 4, mask=test_mask.copy()),
    )


@pytest.mark.parametrize("vmap_seeds", [True, False])
def test_compare_honours_the_masks_of_padded_loaders(data, vmap_seeds, tmp_path):
    """Samples padded with 4 silent steps and masked train (BPTT offline, OSTL and OTTT
    at every step) and are scored as the unpadded samples: padded steps give no loss, no
    update and no metric."""
    rules, options = ["bptt", "ostl", "ottt"], {"epochs": 1, "vmap_seeds": vmap_seeds}
    plain = run(feedforward, rules, loaders_of(data, batch_size=BATCH), **options)
    masked = run(feedforward, rules, padded_loaders(data, 4), **options)
    for name in rules:
        for x, y in zip(plain.runs[name].seeds, masked.runs[name].seeds):
            assert_tree_allclose(params(y.model), params(x.model), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(y.history["train_loss"], x.history["train_loss"], rtol=1e-10)
            assert y.history["test_accuracy"] == x.history["test_accuracy"]
            assert y.history["train_accuracy"] == x.history["train_accuracy"]
            np.testing.assert_allclose(y.history["test_loss"], x.history["test_loss"], rtol=1e-10)
    if vmap_seeds:  # the report reads the masked loaders too (no similarity recorded)
        eqslax.compare.write_report(masked, str(tmp_path), grid=3)
        assert (tmp_path / "report.html").is_file()
    unmasked = padded_loaders(data, 4)
    unmasked.train.mask = None  # the same padded steps, counted as real
    other = run(feedforward, ["bptt"], unmasked, **options)
    assert (
        other.runs["bptt"].seeds[0].history["train_loss"]
        != (masked.runs["bptt"].seeds[0].history["train_loss"])
    )


def test_compare_takes_the_loader_batch_size_and_refuses_what_it_cannot_do(data, tmp_path):
    loaders = loaders_of(data, batch_size=4)
    result = eqslax.compare(
        feedforward,
        ["bptt", "ottt"],
        loaders,
        eqslax.PerStep(),
        epochs=1,
        progress=False,
        trajectory_every=1,
    )
    assert result.batch_size == 4
    n_train = data.train_x.shape[0]
    assert result.runs["bptt"].batches == n_train // 4
    eqslax.compare.write_report(result, str(tmp_path), grid=3)  # plots read the loaders
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["batch_size"] == 4 and (tmp_path / "report.html").is_file()
    with pytest.raises(ValueError, match=r"`batch_size`=6 differs from the train loader's"):
        run(feedforward, ["bptt"], loaders)
    with pytest.raises(ValueError, match=r"`tune_lr_grid`.*in-memory training arrays"):
        eqslax.compare(
            feedforward,
            ["bptt"],
            loaders,
            eqslax.PerStep(),
            tune_lr_grid=(1.0, 2.0),
            progress=False,
        )
    with pytest.raises(TypeError, match=r"`data` is one loader.*Loaders\(train, test\)"):
        run(feedforward, ["bptt"], loaders.train)


def test_progress_prints_each_epochs_ranking_metric(data, capsys):
    """The line closing an epoch gives the mean over seeds of that epoch's test metric."""
    result = run(feedforward, ["bptt"], data, epochs=2, progress=True)
    printed = capsys.readouterr()
    text = printed.err + printed.out
    shown = [float(v) for v in re.findall(r"done: test metric ([0-9.]+)", text)]
    seeds = result.runs["bptt"].seeds
    expected = [np.mean([s.history["test_accuracy"][e] for s in seeds]) for e in range(2)]
    assert shown == pytest.approx(expected, abs=5e-4)
