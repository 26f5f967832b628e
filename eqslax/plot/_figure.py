"""Figure plumbing shared by every plot: a headless backend, new or given axes, and
atomic saving."""

import io
import os
import sys
from collections.abc import Sequence

import matplotlib
import numpy as np

# A plain `python script.py` on a machine without a display must not fail or hang on a
# GUI backend. Only choose when nobody has: no MPLBACKEND, no display, pyplot not loaded.
if (
    sys.platform.startswith("linux")
    and not os.environ.get("MPLBACKEND")
    and not os.environ.get("DISPLAY")
    and not os.environ.get("WAYLAND_DISPLAY")
    and "matplotlib.pyplot" not in sys.modules
):
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .._checkpoint import atomic_write  # noqa: E402


def one_axes(ax: Axes | None, owner: str, **figure_options) -> tuple[Figure, Axes]:
    """`ax` and its figure, or a new figure with one axes."""
    if ax is None:
        fig, ax = plt.subplots(**figure_options)
        return fig, ax
    if not isinstance(ax, Axes):
        raise TypeError(
            f"{owner}: `ax` must be a matplotlib Axes or None, got {type(ax).__name__}."
        )
    return ax.figure, ax


def many_axes(
    axes: Sequence[Axes] | np.ndarray | None, shape: tuple[int, int], owner: str, **figure_options
) -> tuple[Figure, list[Axes]]:
    """`axes` (exactly `rows × cols` of them) and their figure, or a new figure with a
    `shape = (rows, cols)` grid."""
    count = shape[0] * shape[1]
    if axes is None:
        fig, created = plt.subplots(*shape, squeeze=False, **figure_options)
        return fig, list(created.ravel())
    axes = list(axes.ravel()) if hasattr(axes, "ravel") else list(axes)
    if len(axes) != count or not all(isinstance(a, Axes) for a in axes):
        raise ValueError(
            f"{owner}: `axes` must be {count} matplotlib Axes, got "
            f"{[type(a).__name__ for a in axes]}."
        )
    return axes[0].figure, axes


def save_figure(
    fig: Figure, path: str | os.PathLike, *, dpi: float | int | None = None, **options
) -> None:
    """Save `fig` to `path` atomically: render to memory, write a temporary file in
    the same directory, then `os.replace` it into place, so `path` is never left
    half written. The format comes from the extension (`.png`, `.pdf`, `.svg`);
    `options` go to `Figure.savefig`."""
    if not isinstance(fig, Figure):
        raise TypeError(
            f"save_figure: `fig` must be a matplotlib Figure, got {type(fig).__name__}."
        )
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lstrip(".").lower()
    formats = fig.canvas.get_supported_filetypes()
    if extension not in formats:
        raise ValueError(
            f"save_figure: cannot tell the format of {path!r}; end it with one of "
            f"{', '.join('.' + f for f in sorted(formats))}."
        )
    buffer = io.BytesIO()
    fig.savefig(buffer, format=extension, dpi=dpi if dpi is not None else "figure", **options)
    atomic_write(path, buffer.getvalue())
