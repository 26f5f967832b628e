"""fit: history, evaluation, atomic checkpoints and bit-identical resumption; the CLI."""

import json
import os
import pathlib

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
    return randman(jax.random.key(0), n_classes=3, n_units=8, n_steps=12, samples_per_class=24)


def make(hidden=16):
    model = eqslax.feedforward((8, hidden, 3), key=jax.random.key(1), readout="li")
    return model, eqslax.train_offline(model, eqslax.Accumulated(reduce="mean"), optax.adam(1e-2))


def leaves(model):
    return jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))


def test_fit_returns_one_history_row_per_epoch(data):
    model, step = make()
    trained, history = eqslax.fit(
        model, step, data, epochs=3, batch_size=8, key=jax.random.key(2), progress=False
    )
    assert history["epoch"] == [1, 2, 3]
    assert history["step"] == [7, 14, 21]  # 57 training samples // 8
    for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_time"):
        assert len(history[name]) == 3 and all(np.isfinite(history[name]))
    scores = eqslax.evaluate(trained, step.loss, data.test_x, data.test_y)
    assert scores["accuracy"] == pytest.approx(history["test_accuracy"][-1])


def test_resuming_from_a_checkpoint_is_bit_identical(data, tmp_path):
    model, step = make()
    straight, _ = eqslax.fit(
        model, step, data, epochs=3, batch_size=8, key=jax.random.key(2), progress=False
    )
    eqslax.fit(
        model,
        step,
        data,
        epochs=3,
        batch_size=8,
        key=jax.random.key(2),
        progress=False,
        checkpoint_dir=str(tmp_path),
        checkpoint_every=5,
        max_steps=10,
    )
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.eqx", "history.json"]  # no temp files
    resumed, history = eqslax.fit(
        model,
        step,
        data,
        epochs=3,
        batch_size=8,
        key=jax.random.key(2),
        progress=False,
        checkpoint_dir=str(tmp_path),
        resume=True,
    )
    assert all(np.array_equal(a, b) for a, b in zip(leaves(straight), leaves(resumed)))
    assert history["epoch"] == [1, 2, 3]


def test_checkpoint_round_trip_and_structure_errors(tmp_path):
    model, step = make()
    state = step.init(model)
    path = str(tmp_path / "c.eqx")
    checkpoint = eqslax.Checkpoint(model, state, jnp.asarray(7), jax.random.key(3))
    eqslax.save_checkpoint(path, checkpoint)
    loaded = eqslax.load_checkpoint(path, checkpoint)
    assert int(loaded.step) == 7
    assert jnp.array_equal(jax.random.key_data(loaded.key), jax.random.key_data(checkpoint.key))
    assert all(np.array_equal(a, b) for a, b in zip(leaves(loaded.model), leaves(model)))
    other, other_step = make(hidden=5)
    like = eqslax.Checkpoint(other, other_step.init(other), jnp.asarray(0), jax.random.key(0))
    with pytest.raises(ValueError, match=r"different model.*\[16, 8\]"):
        eqslax.load_checkpoint(path, like)


def test_a_failed_write_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    model, step = make()
    path = str(tmp_path / "c.eqx")
    good = eqslax.Checkpoint(model, step.init(model), jnp.asarray(1), jax.random.key(0))
    eqslax.save_checkpoint(path, good)
    before = pathlib.Path(path).read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        eqslax.save_checkpoint(path, eqx.tree_at(lambda c: c.step, good, jnp.asarray(2)))
    assert pathlib.Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["c.eqx"]


def test_fit_checks_its_arguments(data):
    model, step = make()
    with pytest.raises(ValueError, match="batch_size"):
        eqslax.fit(model, step, data, epochs=1, batch_size=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="checkpoint_dir"):
        eqslax.fit(model, step, data, epochs=1, key=jax.random.key(0), checkpoint_every=3)


def test_cli_train_writes_a_summary_and_checkpoint(tmp_path, capsys):
    from eqslax._cli import main

    out = str(tmp_path / "run")
    code = main(
        [
            "train",
            "--epochs",
            "1",
            "--classes",
            "3",
            "--units",
            "8",
            "--steps",
            "10",
            "--samples",
            "16",
            "--hidden",
            "8",
            "--batch-size",
            "8",
            "--out",
            out,
        ]
    )
    assert code == 0
    summary = json.loads(pathlib.Path(os.path.join(out, "summary.json")).read_text())
    assert summary["rule"] == "bptt" and 0.0 <= summary["final_test_accuracy"] <= 1.0
    assert os.path.exists(os.path.join(out, "checkpoint.eqx"))
    assert main(["train", "--rule", "nope", "--out", out]) == 2
    assert "valid rules" in capsys.readouterr().err
