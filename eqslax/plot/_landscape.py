"""A 2-D loss landscape as contours, with training trajectories on it."""

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._figure import one_axes


def _trajectories(trajectories, owner: str) -> dict[str, np.ndarray]:
    if trajectories is None:
        return {}
    if not isinstance(trajectories, Mapping):
        trajectories = {"trajectory": trajectories}
    out = {}
    for name, coordinates in trajectories.items():
        array = np.asarray(coordinates, dtype=float)
        if array.ndim != 2 or array.shape[1] != 2:
            raise ValueError(
                f"{owner}: trajectory {name!r} must be (steps, 2) coordinates, got shape "
                f"{array.shape}."
            )
        out[str(name)] = array
    return out


def landscape(
    alphas,
    betas,
    surface,
    trajectories=None,
    explained_variance=None,
    ax: Axes | None = None,
    *,
    levels: int = 30,
    filled: bool = False,
    colorbar: bool = True,
) -> Figure:
    """Contours of a loss surface, with each trajectory drawn as a line of checkpoints.

    **Arguments:**

    - `alphas`, `betas`, `surface`: the grid and the values of
      `eqslax.analysis.loss_surface`, `surface[i, j]` at `(alphas[i], betas[j])`.
    - `trajectories`: `{name: (steps, 2) coordinates}` (e.g. one rule each, from
      `eqslax.analysis.trajectory_pca`), or one `(steps, 2)` array.
    - `explained_variance`: the two ratios of the PCA plane; the axes are then
      labelled "1st PC: r₁ %" and "2nd PC: r₂ %".
    - `ax`; `levels` the number of contour levels; `filled` for `contourf`;
      `colorbar`.

    **Returns:** the figure.
    """
    owner = "landscape"
    alphas = np.asarray(alphas, dtype=float)
    betas = np.asarray(betas, dtype=float)
    values = np.asarray(surface, dtype=float)
    if alphas.ndim != 1 or betas.ndim != 1 or values.shape != (alphas.size, betas.size):
        raise ValueError(
            f"{owner}: `surface` must have shape (len(alphas), len(betas)) = "
            f"({alphas.size}, {betas.size}) for 1-D `alphas` and `betas`, got "
            f"{values.shape} with alphas {alphas.shape} and betas {betas.shape}."
        )
    paths = _trajectories(trajectories, owner)
    ratios = None if explained_variance is None else np.asarray(explained_variance, dtype=float)
    if ratios is not None and ratios.shape != (2,):
        raise ValueError(
            f"{owner}: `explained_variance` must hold two ratios, got shape {ratios.shape}."
        )
    fig, ax = one_axes(ax, owner)
    draw = ax.contourf if filled else ax.contour
    contours = draw(alphas, betas, values.T, levels=levels, cmap="viridis")
    if colorbar:
        fig.colorbar(contours, ax=ax, label="loss")
    for name, coordinates in paths.items():
        ax.plot(coordinates[:, 0], coordinates[:, 1], marker=".", label=name)
    if paths:
        ax.legend()
    if ratios is None:
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
    else:
        ax.set_xlabel(f"1st PC: {100 * ratios[0]:.2f} %")
        ax.set_ylabel(f"2nd PC: {100 * ratios[1]:.2f} %")
    return fig
