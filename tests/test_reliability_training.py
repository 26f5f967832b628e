"""Reliability of training: no silent NaN, checked arguments, checksummed checkpoints,
resumption that keeps the model and the history exactly, a CLI that fails up front."""

import functools
import os
import pathlib
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import eqslax
from eqslax.data import randman


@pytest.fixture(scope="module")
def data():
    return randman(jax.random.key(0), n_classes=3, n_units=8, n_steps=10, samples_per_class=12)


@functools.cache
def make(lr=1e-2):
    """One model and step per learning rate, shared by the tests (each new step compiles)."""
    model = eqslax.feedforward((8, 12, 3), key=jax.random.key(1), readout="li")
    return model, eqslax.train_offline(model, eqslax.Accumulated(reduce="mean"), optax.adam(lr))


def leaves(tree):
    return jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))


def named(argument: str) -> str:
    """A message naming ``argument``: ours quote it in backticks, the type checker the
    tests run under (jaxtyping + beartype on every eqslax signature) in single quotes."""
    return rf"[`']{re.escape(argument)}[`']"


def fit(model, step, data, **kwargs):
    options = dict(epochs=1, batch_size=8, key=jax.random.key(2), progress=False)
    return eqslax.fit(model, step, data, **(options | kwargs))


# ---------------------------------------------------------------- non-finite detection


def test_the_step_reports_nonfinite_and_keeps_its_unpacking(data):
    model, step = make()
    state = step.init(model)
    model2, state2, outputs, loss = step(model, state, data.train_x[:4], data.train_y[:4])
    assert not bool(state2.nonfinite) and np.isfinite(float(loss))
    _, bad_step = make(lr=float("nan"))
    _, bad_state, _, bad_loss = bad_step(model, state, data.train_x[:4], data.train_y[:4])
    assert bool(bad_state.nonfinite) and np.isfinite(float(bad_loss))  # the loss hides it


def test_online_and_fptt_steps_report_nonfinite(data):
    model = eqslax.feedforward((8, 6, 3), key=jax.random.key(1), readout="li")
    poisoned = eqx.tree_at(
        lambda m: m.layers[0].weight, model, model.layers[0].weight.at[0, 0].set(jnp.nan)
    )
    loss, xs, ys = eqslax.PerStep(), data.train_x[:2], data.train_y[:2]
    for step in (
        eqslax.train_online(model, eqslax.OSTL(), loss, optax.sgd(1e-2)),
        eqslax.train_fptt(model, eqslax.FPTT(segments=2), loss, optax.sgd(1e-2)),
    ):
        state = step.init(model)
        assert not bool(step(model, state, xs, ys)[1].nonfinite)
        assert bool(step(poisoned, state, xs, ys)[1].nonfinite)


def test_fit_stops_at_the_first_nonfinite_update_and_keeps_the_good_checkpoint(data, tmp_path):
    model, step = make()
    fit(model, step, data, checkpoint_dir=str(tmp_path), checkpoint_every=2, max_steps=2)
    good = pathlib.Path(tmp_path / "checkpoint.eqx").read_bytes()
    _, nan_step = make(lr=float("nan"))
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 1 .*first in parameter `[^`]+`"):
        fit(model, nan_step, data, checkpoint_dir=str(tmp_path), checkpoint_every=1)
    assert pathlib.Path(tmp_path / "checkpoint.eqx").read_bytes() == good


def test_on_nonfinite_skip_and_ignore(data):
    model, step = make(lr=float("nan"))
    skipped, history = fit(model, step, data, on_nonfinite="skip")
    assert history["nonfinite_steps"] == [3]  # 36 samples * 0.8 // 8 batches, all dropped
    assert all(np.array_equal(a, b) for a, b in zip(leaves(skipped), leaves(model)))
    ignored, _ = fit(model, step, data, on_nonfinite="ignore")
    assert not all(np.isfinite(np.asarray(x)).all() for x in leaves(ignored))


# ---------------------------------------------------------------- argument catalogue

BAD_FIT = [
    ("batch_size", dict(batch_size=2.5), TypeError),
    ("batch_size", dict(batch_size=0), ValueError),
    ("batch_size", dict(batch_size=True), TypeError),
    ("batch_size", dict(batch_size=10_000), ValueError),
    ("epochs", dict(epochs=0), ValueError),
    ("epochs", dict(epochs=1.0), TypeError),
    ("key", dict(key=0), TypeError),
    ("key", dict(key=jax.random.split(jax.random.key(0), 2)), TypeError),
    ("checkpoint_every", dict(checkpoint_every=0, checkpoint_dir="unused-dir"), ValueError),
    ("checkpoint_every", dict(checkpoint_every=-3, checkpoint_dir="unused-dir"), ValueError),
    ("checkpoint_dir", dict(checkpoint_every=3), ValueError),
    ("checkpoint_dir", dict(resume=True), ValueError),
    ("max_steps", dict(max_steps=-1), ValueError),
    ("on_nonfinite", dict(on_nonfinite="warn"), ValueError),
]


@pytest.mark.parametrize("name, kwargs, error", BAD_FIT)
def test_fit_rejects_bad_arguments(data, name, kwargs, error):
    model, step = make()
    with pytest.raises(error, match=named(name)):
        fit(model, step, data, **kwargs)


def test_fit_rejects_bad_model_step_and_data(data):
    model, step = make()
    with pytest.raises(TypeError, match=named("model")):
        fit("lif", step, data)
    with pytest.raises(TypeError, match=named("step")):
        fit(model, lambda *a: None, data)
    with pytest.raises(TypeError, match=named("data")):
        fit(model, step, (data.train_x, data.train_y, data.test_x, data.test_y))
    short = eqx.tree_at(lambda d: d.train_y, data, data.train_y[:-1])
    with pytest.raises(ValueError, match=r"`data.train_y` must have shape \(29,\).*got \(28,\)"):
        fit(model, step, short)


@pytest.mark.parametrize("field, value", [("train_x", jnp.nan), ("test_x", jnp.inf)])
def test_nonfinite_data_is_named_with_its_first_index(data, field, value):
    model, step = make()
    x = getattr(data, field).at[3, 4, 5].set(value)
    with pytest.raises(ValueError, match=rf"`data.{field}`.*index \(3, 4, 5\)"):
        fit(model, step, eqx.tree_at(lambda d: getattr(d, field), data, x))


def test_evaluate_rejects_bad_arguments(data):
    model, step = make()
    with pytest.raises(TypeError, match=named("batch_size")):
        eqslax.evaluate(model, step.loss, data.test_x, data.test_y, batch_size=2.5)
    with pytest.raises(TypeError, match=named("loss")):
        eqslax.evaluate(model, "mse", data.test_x, data.test_y)
    with pytest.raises(ValueError, match=r"`ys` must have shape \(7,\).*got \(6,\)"):
        eqslax.evaluate(model, step.loss, data.test_x, data.test_y[:-1])


def test_rule_given_as_a_string_is_refused_at_construction():
    model, _ = make()
    with pytest.raises(TypeError, match=named("rule")):
        eqslax.train_offline(model, eqslax.Accumulated(), optax.sgd(0.1), "bptt")


def test_unwritable_checkpoint_dir_fails_before_training(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    model, step = make()
    calls = []
    with pytest.raises(NotADirectoryError, match="`checkpoint_dir`.*is a file"):
        fit(
            model,
            step,
            data,
            checkpoint_dir=str(blocker / "sub"),
            on_step=lambda *a: calls.append(1),
        )
    assert calls == []


# ---------------------------------------------------------------- checkpoint integrity


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, step = make()
    checkpoint = eqslax.Checkpoint(model, step.init(model), jnp.asarray(3), jax.random.key(4))
    path = str(tmp_path_factory.mktemp("ck") / "c.eqx")
    eqslax.save_checkpoint(path, checkpoint)
    return checkpoint, pathlib.Path(path).read_bytes()


def _flip(b):
    b = bytearray(b)
    b[len(b) - 7] ^= 0x10
    return bytes(b)


def _flip_header(b):
    b = bytearray(b)
    b[70] ^= 0x01
    return bytes(b)


CORRUPTIONS = {
    "flipped payload byte": _flip,
    "flipped header byte": _flip_header,
    "appended garbage": lambda b: b + b"garbage",
    "truncated": lambda b: b[: len(b) // 2],
    "truncated in signature": lambda b: b[:5],
    "empty": lambda b: b"",
    "random bytes": lambda b: bytes(np.random.default_rng(0).integers(0, 256, 500, np.uint8)),
    "foreign json": lambda b: b'{"format": "something else"}',
    "numpy file": lambda b: b"\x93NUMPY\x01\x00" + b" " * 100,
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_damaged_checkpoint_is_refused_by_name(saved, tmp_path, corruption):
    checkpoint, good = saved
    path = tmp_path / "damaged.eqx"
    path.write_bytes(CORRUPTIONS[corruption](good))
    with pytest.raises(eqslax.CheckpointError, match="damaged.eqx.*not a valid or complete"):
        eqslax.load_checkpoint(str(path), checkpoint)


def test_an_intact_checkpoint_loads(saved, tmp_path):
    checkpoint, good = saved
    path = tmp_path / "ok.eqx"
    path.write_bytes(good)
    loaded = eqslax.load_checkpoint(str(path), checkpoint)
    assert all(np.array_equal(a, b) for a, b in zip(leaves(loaded.model), leaves(checkpoint.model)))
    assert int(loaded.step) == 3


# ---------------------------------------------------------------- resume


def test_mid_epoch_resume_gives_the_same_model_and_history(data, tmp_path):
    model, step = make()
    straight, expected = fit(model, step, data, epochs=2)
    # stop twice: once mid-epoch (step 2 of 3), once just after the first epoch ended
    for stop in (2, 4):
        fit(
            model,
            step,
            data,
            epochs=2,
            checkpoint_dir=str(tmp_path),
            checkpoint_every=1,
            max_steps=stop,
            resume=True,
        )
    resumed, history = fit(model, step, data, epochs=2, checkpoint_dir=str(tmp_path), resume=True)
    assert all(np.array_equal(a, b) for a, b in zip(leaves(resumed), leaves(straight)))
    for name in expected:
        if name != "epoch_time":
            assert history[name] == expected[name], name
    assert [p for p in os.listdir(tmp_path) if p.endswith(".part")] == []


def test_mid_run_checkpoint_holds_the_finished_epoch_row(data, tmp_path):
    model, step = make()
    fit(model, step, data, epochs=2, checkpoint_dir=str(tmp_path), checkpoint_every=1, max_steps=3)
    loaded = eqslax.load_checkpoint(
        str(tmp_path / "checkpoint.eqx"),
        eqslax.Checkpoint(model, step.init(model), jnp.asarray(0, jnp.int32), jax.random.key(2)),
    )
    assert loaded.metadata["fit"]["history"]["epoch"] == [1]


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(batch_size=4), "batch_size = 8"),
        ("data", "number of training samples"),
        (dict(key=jax.random.key(9)), "different `key`"),
    ],
)
def test_resume_refuses_a_different_setup(data, tmp_path, change, match):
    model, step = make()
    fit(model, step, data, epochs=2, checkpoint_dir=str(tmp_path), checkpoint_every=1, max_steps=2)
    kwargs = dict(epochs=2, checkpoint_dir=str(tmp_path), resume=True)
    other = data
    if change == "data":
        other = eqx.tree_at(
            lambda d: (d.train_x, d.train_y), data, (data.train_x[:-4], data.train_y[:-4])
        )
    else:
        kwargs |= change
    with pytest.raises(ValueError, match=match):
        fit(model, step, other, **kwargs)


# ---------------------------------------------------------------- CLI

SMALL = [
    "--classes",
    "3",
    "--units",
    "8",
    "--steps",
    "6",
    "--samples",
    "8",
    "--hidden",
    "6",
    "--batch-size",
    "4",
    "--epochs",
    "1",
]


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--epochs", "0"),
        ("--batch-size", "0"),
        ("--steps", "0"),
        ("--classes", "1"),
        ("--hidden", "0"),
        ("--checkpoint-every", "0"),
        ("--lr", "nan"),
        ("--lr", "-1"),
        ("--lr", "inf"),
        ("--p", "1.5"),
        ("--samples", "0"),
        ("--units", "-2"),
    ],
)
def test_cli_train_rejects_bad_numbers_up_front(tmp_path, capsys, flag, value):
    from eqslax._cli import main

    code = main(["train", *SMALL, "--out", str(tmp_path / "run"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and f"`{flag}`" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_cli_train_probes_out_before_training(tmp_path, capsys):
    from eqslax._cli import main

    (tmp_path / "file").write_text("")
    code = main(["train", *SMALL, "--out", str(tmp_path / "file" / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "`--out`" in err and "is a file" in err
