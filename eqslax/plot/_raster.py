"""Activity over time: spike rasters, a whole network's rasters, membrane traces."""

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._figure import many_axes, one_axes


def _as_time_major(values, name: str, owner: str) -> np.ndarray:
    """`(time, *neurons)` as a `(time, neurons)` NumPy array."""
    array = np.asarray(values)
    if array.ndim < 1 or array.size == 0:
        raise ValueError(
            f"{owner}: `{name}` must be a (time, neurons) array, got shape {array.shape}."
        )
    if array.ndim == 1:
        array = array[:, None]
    return array.reshape(array.shape[0], -1)


def _is_binary(array: np.ndarray) -> bool:
    return bool(np.all((array == 0) | (array == 1)))


def _draw_raster(ax: Axes, spikes: np.ndarray, dt: float, color, marker_size: float) -> None:
    times, neurons = np.nonzero(spikes)
    ax.scatter(times * dt, neurons, s=marker_size, c=color, marker="|", linewidths=1.0)
    ax.set_xlim(-0.5 * dt, (spikes.shape[0] - 0.5) * dt)
    ax.set_ylim(-0.5, spikes.shape[1] - 0.5)


def raster(
    spikes,
    ax: Axes | None = None,
    *,
    dt: float = 1.0,
    color: str = "black",
    marker_size: float = 30.0,
    title: str | None = None,
) -> Figure:
    """Spike raster: a tick at `(t·dt, i)` for every nonzero `spikes[t, i]`.

    **Arguments:** `spikes` `(time, *neurons)` (neurons flattened, e.g. one sample of
    `eqslax.record(...)[1].outputs`); `ax` to draw into (default a new figure);
    `dt` the step length for the time axis; `color`, `marker_size`, `title`.

    **Returns:** the figure.
    """
    array = _as_time_major(spikes, "spikes", "raster")
    fig, ax = one_axes(ax, "raster")
    _draw_raster(ax, array, dt, color, marker_size)
    ax.set_xlabel("time" if dt == 1.0 else "time (dt units)")
    ax.set_ylabel("neuron")
    if title is not None:
        ax.set_title(title)
    return fig


def network_raster(
    layers,
    input=None,
    *,
    axes: Sequence[Axes] | np.ndarray | None = None,
    spiking: Sequence[bool] | None = None,
    dt: float = 1.0,
    marker_size: float = 30.0,
) -> Figure:
    """The input and every spiking layer of one run, stacked on a shared time axis.

    **Arguments:**

    - `layers`: an `eqslax.Recording` of one sample or its `.layers` (one
      `(time, *shape)` array per layer of a `Connect`).
    - `input`: the `(time, *in)` input; a raster when it is binary, else a heat map.
    - `axes`: one Axes per panel (input first), default a new figure.
    - `spiking`: which layers to show, one bool each (e.g.
      `eqslax.spiking_layers(model)`); default the layers whose values are all 0 or 1.

    **Returns:** the figure.
    """
    owner = "network_raster"
    if hasattr(layers, "layers"):
        layers = layers.layers
    arrays = [_as_time_major(y, f"layers[{k}]", owner) for k, y in enumerate(layers)]
    if spiking is None:
        spiking = [_is_binary(a) for a in arrays]
    elif len(spiking) != len(arrays):
        raise ValueError(
            f"{owner}: `spiking` needs one bool per layer ({len(arrays)}), got {len(spiking)}."
        )
    panels = [(f"layer {k}", a, True) for k, (a, keep) in enumerate(zip(arrays, spiking)) if keep]
    if input is not None:
        x = _as_time_major(input, "input", owner)
        panels.insert(0, ("input", x, _is_binary(x)))
    if not panels:
        raise ValueError(f"{owner}: nothing to draw: no input and no spiking layer.")
    heights = [max(a.shape[1], 4) for _, a, _ in panels]
    fig, axes = many_axes(
        axes,
        (len(panels), 1),
        owner,
        sharex=True,
        figsize=(7, 1.5 + 0.02 * sum(heights) + 0.6 * len(panels)),
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (name, array, binary) in zip(axes, panels):
        if binary:
            _draw_raster(ax, array, dt, "black", marker_size)
        else:
            extent = (-0.5 * dt, (array.shape[0] - 0.5) * dt, array.shape[1] - 0.5, -0.5)
            ax.imshow(
                array.T, aspect="auto", interpolation="nearest", extent=extent, cmap="viridis"
            )
        ax.set_ylabel(name)
    axes[-1].set_xlabel("time")
    return fig


def membrane(
    trace,
    threshold=None,
    *,
    neurons: slice | Sequence[int] | None = None,
    ax: Axes | None = None,
    dt: float = 1.0,
) -> Figure:
    """Membrane potentials over time, one line per neuron, with the threshold dashed.

    **Arguments:** `trace` `(time, *neurons)` (e.g.
    `recording.states.layers[k].v` for one sample); `threshold` a scalar or one
    value per neuron; `neurons` a slice or indices of the neurons to draw (default
    all); `ax`; `dt`.

    **Returns:** the figure.
    """
    owner = "membrane"
    array = _as_time_major(trace, "trace", owner)
    index = np.arange(array.shape[1])
    try:
        chosen = index[neurons if neurons is not None else slice(None)]
    except IndexError as error:
        raise ValueError(
            f"{owner}: `neurons` must select among {array.shape[1]} neurons, got {neurons!r}."
        ) from error
    chosen = np.atleast_1d(chosen)
    theta = None if threshold is None else np.asarray(threshold, dtype=float)
    if theta is not None and theta.ndim > 0 and theta.size != array.shape[1]:
        raise ValueError(
            f"{owner}: `threshold` must be a scalar or one value per neuron "
            f"({array.shape[1]}), got shape {theta.shape}."
        )
    fig, ax = one_axes(ax, owner)
    times = np.arange(array.shape[0]) * dt
    lines = ax.plot(times, array[:, chosen])
    for line, i in zip(lines, chosen):
        line.set_label(f"neuron {i}")
    if theta is not None and theta.ndim == 0:
        ax.axhline(float(theta), color="gray", linestyle="--", linewidth=1.0)
    elif theta is not None:
        for line, i in zip(lines, chosen):
            ax.axhline(theta.reshape(-1)[i], color=line.get_color(), linestyle="--", linewidth=1.0)
    if len(lines) <= 10:
        ax.legend(handles=lines)
    ax.set_xlabel("time")
    ax.set_ylabel("membrane potential")
    return fig
