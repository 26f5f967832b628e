"""Curves over training: gradient similarity per layer, accuracy and loss per rule."""

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._figure import many_axes, one_axes

_STYLES = ("-", "--", ":", "-.")


def _series(values, length: int, name: str, owner: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.shape != (length,):
        raise ValueError(
            f"{owner}: {name} must have one value per step ({length}), got shape {array.shape}."
        )
    return array


def similarity_curves(steps, curves: Mapping, ax: Axes | None = None) -> Figure:
    """Cosine similarity against training step, one line per layer.

    **Arguments:**

    - `steps`: the recorded steps, 1-D.
    - `curves`: `{layer: cosines}` or, to compare rules, `{rule: {layer:
      cosines}}` (a colour per layer, a line style per rule). `SimilarityRecorder`'s
      `steps` and `layer_curves()` fit directly.
    - `ax`.

    **Returns:** the figure.
    """
    owner = "similarity_curves"
    x = np.asarray(steps, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"{owner}: `steps` must be 1-D, got shape {x.shape}.")
    if not isinstance(curves, Mapping) or not curves:
        raise TypeError(f"{owner}: `curves` must be a non-empty dict, got {curves!r}.")
    nested = all(isinstance(v, Mapping) for v in curves.values())
    groups = curves if nested else {None: curves}
    series = {
        (rule, str(layer)): _series(values, x.size, f"curve {rule!r}/{layer!r}", owner)
        for rule, layers in groups.items()
        for layer, values in layers.items()
    }
    fig, ax = one_axes(ax, owner)
    layer_names = list(dict.fromkeys(layer for _, layer in series))
    colors = {layer: f"C{k % 10}" for k, layer in enumerate(layer_names)}
    styles = {rule: _STYLES[k % len(_STYLES)] for k, rule in enumerate(groups)}
    for (rule, layer), values in series.items():
        label = layer if rule is None else f"{rule} {layer}"
        ax.plot(x, values, color=colors[layer], linestyle=styles[rule], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("cosine similarity")
    ax.set_ylim(min(-0.05, float(np.min(list(series.values()))) - 0.05), 1.05)
    ax.legend()
    return fig


def training_curves(
    histories: Mapping[str, Mapping],
    axes: Sequence[Axes] | np.ndarray | None = None,
    *,
    x: str = "epoch",
) -> Figure:
    """Accuracy (left) and loss (right) of several runs over training.

    **Arguments:** `histories` `{rule: history}` with the lists of
    `eqslax.fit` (`epoch`, `test_accuracy`, `train_accuracy`, `train_loss`,
    `test_loss`); test curves are solid, training curves dashed, a colour per rule;
    `axes` two Axes; `x` the history key of the horizontal axis (its absence means
    1, 2, ...).

    **Returns:** the figure.
    """
    owner = "training_curves"
    if not isinstance(histories, Mapping) or not histories:
        raise TypeError(f"{owner}: `histories` must be a non-empty dict {{rule: history}}.")
    panels = (
        ("accuracy", ("test_accuracy", "train_accuracy")),
        ("loss", ("test_loss", "train_loss")),
    )
    known = {key for _, keys in panels for key in keys}
    for rule, history in histories.items():
        if not isinstance(history, Mapping) or not known & set(history):
            raise ValueError(
                f"{owner}: history {rule!r} must be a dict with some of {sorted(known)}, got "
                f"{sorted(history) if isinstance(history, Mapping) else type(history).__name__}."
            )
    fig, axes = many_axes(axes, (1, 2), owner, figsize=(10, 4))
    for k, (rule, history) in enumerate(histories.items()):
        length = max(len(history[key]) for key in known & set(history))
        steps = np.asarray(history.get(x, np.arange(1, length + 1)), dtype=float)
        for ax, (_, keys) in zip(axes, panels):
            for key, style in zip(keys, ("-", "--")):
                if key in history:
                    values = _series(history[key], steps.size, f"{rule!r} {key!r}", owner)
                    ax.plot(
                        steps,
                        values,
                        color=f"C{k % 10}",
                        linestyle=style,
                        label=f"{rule} {key.split('_')[0]}",
                    )
    for ax, (quantity, _) in zip(axes, panels):
        ax.set_xlabel(x)
        ax.set_ylabel(quantity)
        ax.legend()
    return fig
