"""`eqslax compare --config experiment.toml`: a tiny experiment end to end, and bad files
rejected before any work with the file and the key named."""

import json
import pathlib

import jax
import pytest

import eqslax
from eqslax._cli import main

TINY = """
[experiment]
seeds = [4, 7]
epochs = 1
batch_size = 4
grid = 3
description = "tiny recurrent experiment"

[data]
name = "randman"
n_classes = 2
n_units = 4
n_steps = 5
samples_per_class = 5
seed = 3

[network]
hidden = [5]
neuron = "cubalif"
readout = "li"
cat = { "1" = [1] }

[loss]
name = "per_step"

[[rules]]
name = "bptt"
lr = 0.05
optimizer = "sgd"

[[rules]]
name = "rtrl"
label = "rtrl_fast"
lr = 0.01

[[rules]]
name = "fptt"
options = { segments = 5 }
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "experiment.toml"
    path.write_text(text)
    return str(path)


def test_tiny_toml_experiment_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--config", write(tmp_path, TINY), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [4, 7]
    assert list(results["rules"]) == ["bptt", "rtrl_fast", "fptt"]
    bptt, rtrl, fptt = (results["rules"][k] for k in ("bptt", "rtrl_fast", "fptt"))
    assert (bptt["lr"], rtrl["lr"], fptt["lr"]) == (0.05, 0.01, 1e-2)
    assert rtrl["driver"] == "online" and fptt["driver"] == "fptt"
    # 8 training samples, batch 4: 2 batches of 5 steps; RTRL updates every step and
    # FPTT once per segment (5 segments of one step)
    assert (bptt["updates"], rtrl["updates"], fptt["updates"]) == (2, 10, 10)
    assert [len(r["seeds"]) for r in results["rules"].values()] == [2, 2, 2]
    # RTRL is exact through the recurrent CuBaLIF layer: its first gradient is BPTT's
    cosine = rtrl["initial_similarity"]["global"]["cosine"]
    assert cosine == pytest.approx(1.0, abs=1e-5)
    assert results["config"]["network"]["cat"] == {"1": [1]}
    report = (out / "report.md").read_text()
    assert "tiny recurrent experiment" in report and "| rtrl_fast |" in report
    # report.html: the same content in one file, every figure embedded
    page = (out / "report.html").read_text()
    assert "tiny recurrent experiment" in page and "<td>rtrl_fast</td>" in page
    assert page.count("<table>") == report.count("\n|---") and page.count("<table>") >= 2
    embedded = page.count('src="data:image/png;base64,')
    assert embedded == len(results["figures"]) > 0
    assert page.count("<img ") == embedded  # no image refers to a file beside it


@pytest.mark.parametrize(
    "edit, key",
    [
        (("hidden = [5]", "hiden = [5]"), "network.hiden"),
        (("epochs = 1", "epochs = 0"), "experiment.epochs"),
        (('neuron = "cubalif"', 'neuron = "lif2"'), "network.neuron"),
        (("lr = 0.05", 'lr = "fast"'), "rules[0].lr"),
        (('optimizer = "sgd"', 'optimizer = "adamm"'), "rules[0].optimizer"),
        (('name = "rtrl"', 'name = "rtrl9"'), "rules[1].name"),
        (("n_units = 4", "units = 4"), "data.units"),
        (('cat = { "1" = [1] }', 'cat = { "9" = [1] }'), "network.cat.9"),
        (("[loss]", "[losses]"), "losses"),
        (('name = "per_step"', 'name = "per_step"\nreduce = "sum"'), "loss.reduce"),
    ],
)
def test_bad_toml_names_the_key_and_file(tmp_path, capsys, edit, key):
    old, new = edit
    assert old in TINY
    path = write(tmp_path, TINY.replace(old, new, 1))
    out = tmp_path / "out"
    assert main(["compare", "--config", path, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert path in err and f"`{key}`" in err, err
    assert not out.exists()  # nothing written


def test_recurrent_layers_are_built(tmp_path):
    text = TINY.replace('cat = { "1" = [1] }', "recurrent = [true]")
    experiment = eqslax.compare.load_experiment(write(tmp_path, text))
    model = experiment.model(jax.random.key(0))
    assert isinstance(model.layers[1], eqslax.Recurrent) and not model.edges
    assert model.layers[1].weight.shape == (5, 5)
    assert isinstance(model.layers[1].neuron, eqslax.CuBaLIF)


def test_bad_neuron_option_and_missing_file(tmp_path, capsys):
    text = TINY.replace('readout = "li"', 'readout = "li"\nneuron_options = { tau = 2 }')
    assert main(["compare", "--config", write(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert "`network.neuron_options`" in err and "tau" in err
    missing = str(pathlib.Path(tmp_path) / "nope.toml")
    assert main(["compare", "--config", missing]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_a_rule_that_cannot_train_the_network_fails_before_any_training(tmp_path, capsys):
    # OSTL cannot follow a `cat` edge; BPTT, listed first, must not have trained
    text = TINY.replace('name = "rtrl"', 'name = "ostl"')
    out = tmp_path / "out"
    assert main(["compare", "--config", write(tmp_path, text), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "OSTL" in err and "cat" in err and "Recurrent" in err
    assert not out.exists()


REGRESSION = """
[experiment]
seeds = 2
epochs = 2
batch_size = 8
grid = 3

[data]
name = "mackey_glass"
n_points = 300
window = 12
stride = 6

[network]
hidden = [16]
readout = "li"

[loss]
name = "mse"

[[rules]]
name = "bptt"
lr = 1e-2

[[rules]]
name = "ottt"
lr = 1e-3
"""


def test_regression_toml_experiment_is_ranked_by_r2(tmp_path, capsys):
    """Mackey-Glass forecasting from TOML: real targets give one output unit, the MSE
    loss, and a report ranked by test R^2 with the MSE beside it."""
    experiment = eqslax.compare.load_experiment(write(tmp_path, REGRESSION))
    assert experiment.model(jax.random.key(0)).out_shape == (1,)
    assert experiment.data.train_y.shape[1:] == (12, 1)
    out = tmp_path / "out"
    code = main(["compare", "--config", write(tmp_path, REGRESSION), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "r2"
    assert results["config"]["data"]["name"] == "mackey_glass"
    for name in ("bptt", "ottt"):
        rule = results["rules"][name]
        assert set(rule) >= {"final_test_r2", "test_r2", "test_mse"}
        assert rule["test_mse"]["mean"] > 0 and rule["test_mse"]["n"] == 2
        assert rule["final_test_r2"] == pytest.approx(rule["test_r2"]["mean"])
    assert "R" in (out / "report.md").read_text()


def test_unknown_mackey_glass_option_is_named(tmp_path, capsys):
    text = REGRESSION.replace("stride = 6", "strides = 6")
    assert main(["compare", "--config", write(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert "`data.strides` is not an option of forecasting_windows" in err


@pytest.mark.parametrize(
    "name",
    [
        "compare_recurrent.toml",
        "compare_mackey_glass.toml",
        "compare_influence_rules.toml",
        "compare_osttp.toml",
    ],
)
def test_shipped_examples_parse(name):
    path = pathlib.Path(__file__).parent.parent / "examples" / name
    experiment = eqslax.compare.load_experiment(str(path))
    assert experiment.rules and experiment.data.train_x.ndim == 3
