"""Figures: each plot returns its Figure, draws one artist per thing it shows (a point per
spike, a line per layer, neuron or run), draws into given axes, and saves atomically."""

import os
import subprocess
import sys

import jax
import matplotlib.pyplot as plt
import numpy as np
import pytest
from helpers import feedforward, random_spikes
from matplotlib.figure import Figure

import eqslax
from eqslax import plot


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def line_count(ax):
    return len(ax.get_lines())


def test_import_eqslax_does_not_load_matplotlib_and_plot_picks_agg_headless():
    code = (
        "import sys, eqslax; print('matplotlib' in sys.modules, 'eqslax.plot' in sys.modules); "
        "import eqslax.plot, matplotlib; print(matplotlib.get_backend().lower())"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.split() == ["False", "False", "agg"]


def test_raster_draws_one_point_per_spike():
    spikes = np.asarray(random_spikes(jax.random.key(0), (20, 7)))
    fig = plot.raster(spikes)
    assert isinstance(fig, Figure)
    (points,) = fig.axes[0].collections
    offsets = points.get_offsets()
    assert len(offsets) == spikes.sum() > 0
    # Each point is a spike at (time, neuron).
    assert np.all(spikes[offsets[:, 0].astype(int), offsets[:, 1].astype(int)] == 1)


def test_raster_draws_into_a_given_axes():
    fig, (left, right) = plt.subplots(1, 2)
    spikes = np.zeros((5, 3))
    spikes[[0, 4], [1, 2]] = 1
    assert plot.raster(spikes, ax=right, dt=0.5) is fig
    assert not left.collections
    np.testing.assert_array_equal(right.collections[0].get_offsets(), [[0.0, 1.0], [2.0, 2.0]])
    with pytest.raises(TypeError, match="ax"):
        plot.raster(spikes, ax="right")


@pytest.fixture(scope="module")
def run():
    model = feedforward(jax.random.key(1), (4, 6, 3))
    xs = random_spikes(jax.random.key(2), (15, 4), rate=0.5)
    _, recording = eqslax.record(model, xs)
    return model, xs, recording


def test_network_raster_has_input_and_each_spiking_layer(run):
    model, xs, recording = run
    fig = plot.network_raster(recording.layers, xs)
    # Input, then the two LIF layers; the Linear outputs are currents, not spikes.
    assert [ax.get_ylabel() for ax in fig.axes] == ["input", "layer 1", "layer 3"]
    counts = [len(ax.collections[0].get_offsets()) for ax in fig.axes]
    expected = [xs.sum(), recording.layers[1].sum(), recording.layers[3].sum()]
    assert counts == [int(c) for c in expected]
    explicit = plot.network_raster(recording, spiking=eqslax.spiking_layers(model))
    assert [ax.get_ylabel() for ax in explicit.axes] == ["layer 1", "layer 3"]


def test_network_raster_uses_given_axes(run):
    _, xs, recording = run
    fig, axes = plt.subplots(3, 1)
    assert plot.network_raster(recording, xs, axes=axes) is fig
    with pytest.raises(ValueError, match="3 matplotlib Axes"):
        plot.network_raster(recording, xs, axes=axes[:2])


def test_membrane_draws_a_line_per_neuron_and_thresholds():
    trace = np.cumsum(np.ones((20, 5)), axis=0) / 20
    ax = plot.membrane(trace, threshold=0.8).axes[0]
    assert line_count(ax) == 5 + 1
    fig, ax = plt.subplots()
    plot.membrane(trace, threshold=np.array([0.5, 0.6, 0.7, 0.8, 0.9]), neurons=[0, 2], ax=ax)
    lines = ax.get_lines()
    assert len(lines) == 2 + 2
    np.testing.assert_array_equal(lines[1].get_ydata(), trace[:, 2])
    assert lines[3].get_ydata()[0] == 0.7 and lines[3].get_color() == lines[1].get_color()
    with pytest.raises(ValueError, match="threshold"):
        plot.membrane(trace, threshold=np.ones(3))


def test_landscape_contours_and_trajectories():
    alphas, betas = np.linspace(-1, 1, 7), np.linspace(-2, 2, 5)
    # A surface that varies only with alpha has vertical contour lines.
    surface = np.repeat(alphas[:, None] ** 3, betas.size, axis=1)
    paths = {
        "BPTT": np.array([[0.5, 1.0], [0.0, 0.0]]),
        "OTTT": np.array([[-0.5, 1.0], [0.1, 0.2], [0.0, 0.0]]),
    }
    fig = plot.landscape(alphas, betas, surface, paths, explained_variance=[0.8712, 0.1])
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the contour axes and its colour bar
    assert [line.get_label() for line in ax.get_lines()] == ["BPTT", "OTTT"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_xydata(), paths["OTTT"])
    assert ax.get_xlabel() == "1st PC: 87.12 %" and ax.get_ylabel() == "2nd PC: 10.00 %"
    segments = [p.vertices for p in ax.collections[0].get_paths() if len(p.vertices)]
    assert segments and all(np.ptp(v[:, 0]) < 1e-12 for v in segments)


def test_landscape_into_given_axes_and_shape_check():
    fig, ax = plt.subplots()
    surface = np.random.default_rng(0).random((4, 3))
    assert plot.landscape(np.arange(4.0), np.arange(3.0), surface, ax=ax, colorbar=False) is fig
    assert len(fig.axes) == 1 and ax.get_xlabel() == "direction 1"
    with pytest.raises(ValueError, match=r"\(len\(alphas\), len\(betas\)\) = \(3, 4\)"):
        plot.landscape(np.arange(3.0), np.arange(4.0), surface)


def test_similarity_curves_one_line_per_layer():
    steps = np.arange(0, 50, 10)
    curves = {".layers[0]": np.linspace(0.5, 0.9, 5), ".layers[2]": np.ones(5)}
    ax = plot.similarity_curves(steps, curves).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == list(curves)
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), steps)
    # Several rules: a colour per layer, a line style per rule.
    fig, ax = plt.subplots()
    plot.similarity_curves(steps, {"OTTT": curves, "OSTL": curves}, ax=ax)
    lines = ax.get_lines()
    assert len(lines) == 4
    assert lines[0].get_color() == lines[2].get_color() != lines[1].get_color()
    assert lines[0].get_linestyle() != lines[2].get_linestyle()
    with pytest.raises(ValueError, match="one value per step"):
        plot.similarity_curves(steps[:3], curves)


HISTORY = {
    "epoch": [1, 2, 3],
    "train_loss": [1.0, 0.7, 0.5],
    "test_loss": [1.1, 0.8, 0.6],
    "train_accuracy": [0.4, 0.6, 0.8],
    "test_accuracy": [0.35, 0.55, 0.7],
}


def test_training_curves_accuracy_and_loss_per_rule():
    histories = {
        "BPTT": HISTORY,
        "OTTT": {k: HISTORY[k] for k in ("epoch", "test_accuracy", "train_loss")},
    }
    fig = plot.training_curves(histories)
    accuracy, loss = fig.axes
    assert line_count(accuracy) == 2 + 1 and line_count(loss) == 2 + 1
    np.testing.assert_array_equal(accuracy.get_lines()[0].get_ydata(), HISTORY["test_accuracy"])
    assert accuracy.get_ylabel() == "accuracy" and loss.get_xlabel() == "epoch"
    fig, axes = plt.subplots(2, 1)
    assert plot.training_curves({"BPTT": HISTORY}, axes=axes) is fig
    assert [line_count(ax) for ax in axes] == [2, 2]
    with pytest.raises(ValueError, match="history 'x'"):
        plot.training_curves({"x": {"epoch": [1]}})


def test_save_figure_writes_a_png_atomically(tmp_path):
    fig = plot.raster(np.eye(4))
    path = tmp_path / "raster.png"
    path.write_bytes(b"old")
    plot.save_figure(fig, path)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert os.listdir(tmp_path) == ["raster.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="format"):
        plot.save_figure(fig, tmp_path / "raster.unknown")
    assert os.listdir(tmp_path) == ["raster.png"]
