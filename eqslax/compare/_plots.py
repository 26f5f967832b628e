"""The report's figures: curves over seeds with confidence bands, raster, membrane,
gradient similarity and the loss landscape."""

import os

import numpy as np

from .._neurons import AbstractSpikingPopulation
from ._run import landscape_of, recording_of
from ._stats import mean_ci


def _band(ax, x, rows, label, color):
    rows = np.asarray(rows, dtype=np.float64)
    intervals = [mean_ci(rows[:, j]) for j in range(rows.shape[1])]
    mean = np.array([i.mean for i in intervals])
    ax.plot(x, mean, label=label, color=color)
    if rows.shape[0] > 1:
        half = np.array([i.half_width for i in intervals])
        ax.fill_between(x, mean - half, mean + half, color=color, alpha=0.2)


def training_bands(results):
    """The test metric (accuracy or $R^2$) and the training loss over epochs: mean over
    seeds, 95 % band."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, run) in enumerate(results.runs.items()):
        color = colors[k % len(colors)]
        x = run.seeds[0].history["epoch"]
        _band(axes[0], x, [s.history[results.key] for s in run.seeds], name, color)
        _band(axes[1], x, [s.history["train_loss"] for s in run.seeds], name, color)
    axes[0].set(xlabel="epoch", ylabel=f"test {results.metric}")
    axes[1].set(xlabel="epoch", ylabel="training loss")
    axes[0].legend()
    fig.suptitle(f"mean over {len(results.seeds)} seed(s), 95 % confidence band")
    fig.tight_layout()
    return fig


def similarity_bands(results):
    """Global-over-layers mean cosine similarity to BPTT during training, per rule."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = False
    for k, (name, run) in enumerate(results.runs.items()):
        if not run.seeds[0].similarity_curves:
            continue
        rows = [np.mean(list(s.similarity_curves.values()), axis=0) for s in run.seeds]
        _band(ax, run.seeds[0].similarity_steps, rows, name, colors[k % len(colors)])
        drawn = True
    if not drawn:  # BPTT alone: nothing to compare with
        plt.close(fig)
        return None
    ax.set(xlabel="batch", ylabel="mean layer cosine to BPTT")
    ax.legend()
    fig.tight_layout()
    return fig


def write_figures(results, out: str, grid: int) -> tuple[dict[str, str], dict]:
    """Save every figure as PNG into `out`; returns `{figure: file}` and the landscape."""
    import matplotlib.pyplot as plt

    from .. import plot

    files = {}

    def save(fig, name):
        plot.save_figure(fig, os.path.join(out, name), dpi=110)
        plt.close(fig)
        files[name.removesuffix(".png")] = name

    sample, rec, model = recording_of(results)
    layers = getattr(model, "layers", (model,))
    spiking = [isinstance(layer, AbstractSpikingPopulation) for layer in layers]
    if hasattr(model, "layers"):
        save(plot.network_raster(rec, input=sample, spiking=spiking), "raster.png")
        hidden = next((k for k, s in enumerate(spiking) if s), None)
        if hidden is not None and hasattr(rec.states.layers[hidden], "v"):
            threshold = float(np.max(np.asarray(model.layers[hidden].threshold)))
            v = rec.states.layers[hidden].v
            save(plot.membrane(v, threshold, neurons=slice(0, 8)), "membrane.png")
    save(training_bands(results), "training.png")
    figure = similarity_bands(results)
    if figure is not None:
        save(figure, "similarity.png")
    land = landscape_of(results, grid=grid)
    save(
        plot.landscape(
            land["alphas"],
            land["betas"],
            land["surface"],
            land["coordinates"],
            explained_variance=land["explained_variance"],
        ),
        "landscape.png",
    )
    return files, land
