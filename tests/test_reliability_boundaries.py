"""Bad data at the other entry points (NeuroBench harness, compare, gradient comparison):
an error naming the argument, what was expected and what was given, before any work."""

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import pytest

import eqslax
import eqslax.neurobench as nb
from eqslax.data import randman


@pytest.fixture(scope="module")
def setup():
    data = randman(jax.random.key(0), n_classes=3, n_units=6, n_steps=5, samples_per_class=4)
    model = eqslax.feedforward((6, 5, 3), key=jax.random.key(1))
    return data, model


@pytest.mark.parametrize("label, shown", [(-1, "from -1 to"), (3, "to 3")])
def test_neurobench_refuses_labels_outside_the_classes(setup, label, shown):
    data, model = setup
    ys = data.test_y.at[0].set(label)
    bench = nb.Benchmark(model, [(data.test_x, ys)], metrics=[[], [nb.ClassificationAccuracy]])
    with pytest.raises(
        ValueError, match=rf"`ys` \(batch 0\) must hold class labels in 0\.\.2.*{shown}"
    ):
        bench.run(quiet=True)


def test_neurobench_refuses_nonfinite_inputs(setup):
    data, model = setup
    xs = data.test_x.at[1, 2, 3].set(jnp.nan)
    bench = nb.Benchmark(model, [(xs, data.test_y)], metrics=[[], [nb.ClassificationAccuracy]])
    with pytest.raises(ValueError, match=r"`xs \(batch 0\)`.*index \(1, 2, 3\)"):
        bench.run(quiet=True)


@pytest.mark.parametrize("field", ["train_x", "test_x"])
def test_compare_refuses_nonfinite_data_before_training(setup, field):
    data, model = setup
    bad = getattr(data, field).at[0, 0, 0].set(jnp.inf)
    data = eqx.tree_at(lambda d: getattr(d, field), data, bad)
    with pytest.raises(ValueError, match=rf"`data\.{field}`.*index \(0, 0, 0\)"):
        eqslax.compare.compare(model, ["bptt"], data, eqslax.PerStep(), epochs=1, progress=False)


@pytest.mark.parametrize("label", [-1, 3])
def test_compare_grads_refuses_labels_outside_the_classes(setup, label):
    data, model = setup
    ys = data.train_y[:4].at[0].set(label)
    with pytest.raises(ValueError, match=r"`ys` must hold class labels in 0\.\.2"):
        eqslax.compare_grads(
            eqslax.OSTL(), eqslax.BPTT(), model, eqslax.PerStep(), data.train_x[:4], ys
        )


def test_evaluate_refuses_an_empty_set(setup):
    data, model = setup
    with pytest.raises(ValueError, match=r"`xs` holds no samples"):
        eqslax.evaluate(model, eqslax.PerStep(), data.test_x[:0], data.test_y[:0])


def test_a_nan_learning_rate_is_reported_by_the_step(setup):
    data, model = setup
    step = eqslax.train_offline(model, eqslax.PerStep(), optax.sgd(float("nan")))
    _, state, _, _ = step(model, step.init(model), data.train_x[:4], data.train_y[:4])
    assert bool(state.nonfinite)


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--grid", "0"),
        ("--epochs", "0"),
        ("--hidden", "0"),
        ("--classes", "1"),
        ("--seeds", "0"),
        ("--updates", "0"),
        ("--lr", "-1"),
        ("--online-lr", "nan"),
        ("--batch-size", "0"),
        ("--steps", "0"),
    ],
)
def test_cli_compare_rejects_bad_numbers_before_training(tmp_path, capsys, flag, value):
    from eqslax._cli import main

    code = main(["compare", "--quiet", "--out", str(tmp_path / "report"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and f"`{flag}`" in err and "Traceback" not in err
    assert not (tmp_path / "report").exists()


def test_cli_compare_probes_out_before_training(tmp_path, capsys):
    from eqslax._cli import main

    (tmp_path / "file").write_text("")
    code = main(["compare", "--quiet", "--epochs", "1", "--out", str(tmp_path / "file" / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "`--out`" in err and "is a file" in err


def test_a_slax_style_cat_edge_is_explained():
    """Slax's `cat={1: [1]}` concatenates LIF 1's output onto itself for layer 2, so a
    Slax user sizes layer 2 for 5 + 5 inputs; eqslax names the convention and the fix."""
    keys = jax.random.split(jax.random.key(0), 3)
    layers = [
        eqx.nn.Linear(4, 5, key=keys[0]),
        eqslax.LIF(5),
        eqx.nn.Linear(10, 3, key=keys[1]),
        eqslax.LIF(3),
    ]
    with pytest.raises(ValueError, match=r"as in Slax.*write `cat=\{2: \[1\]\}`.*input size 5"):
        eqslax.Connect(layers, cat={1: [1]}, key=keys[2])
