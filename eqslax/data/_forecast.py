r"""Time-series forecasting as sequences: windows of a series, each step's target the
value `horizon` steps later (per-step regression, e.g. NeuroBench's Mackey-Glass task)."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from ._splits import Splits


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"forecasting_windows: `{name}` must be a positive integer, got {value!r}."
        )
    return int(value)


def forecasting_windows(
    series: ArrayLike,
    *,
    window: int = 40,
    stride: int = 4,
    horizon: int = 1,
    test_fraction: float = 0.2,
    standardize: bool = True,
    dtype=jnp.float32,
) -> Splits:
    r"""Cut a series $x_1..x_N$ into windows for per-step forecasting.

    Window $j$ starts at $s_j = j \cdot$ `stride`; its input at step $t$ is
    $x_{s_j + t}$ and its target $x_{s_j + t + h}$ with $h$ = `horizon`, for
    $t = 1..$ `window`. The series is split in time before windowing: the first
    $1 - $ `test_fraction` of it gives the training windows and the rest the test
    windows, so no test value is ever seen in training (windows do not cross the cut).
    With `standardize`, both splits are shifted and scaled by the training part's mean
    and standard deviation.

    **Arguments:**

    - `series`: `(n_points,)` or `(n_points, channels)`, finite.
    - `window`, `stride`, `horizon`: steps per sequence, steps between window starts,
      and how far ahead the target lies.
    - `test_fraction`: the share of the series held out, in $(0, 1)$.

    **Returns:** `Splits` with inputs and targets both `(windows, window, channels)`;
    train with a regression loss such as `PerStep(optax.l2_loss)`.
    """
    window, stride, horizon = (
        _positive(v, n) for v, n in ((window, "window"), (stride, "stride"), (horizon, "horizon"))
    )
    values = np.asarray(series, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(
            f"forecasting_windows: `series` must be (n_points,) or (n_points, channels), "
            f"got shape {values.shape}."
        )
    if not np.all(np.isfinite(values)):
        bad = int(np.argmax(~np.all(np.isfinite(values), axis=1)))
        raise ValueError(f"forecasting_windows: `series` has a non-finite value at point {bad}.")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(
            f"forecasting_windows: `test_fraction` must lie in (0, 1), got {test_fraction!r}."
        )
    cut = int(round(len(values) * (1.0 - float(test_fraction))))
    parts = values[:cut], values[cut:]
    span = window + horizon
    for part, name in zip(parts, ("training", "test")):
        if len(part) < span:
            raise ValueError(
                f"forecasting_windows: the {name} part holds {len(part)} points, fewer than "
                f"`window` + `horizon` = {span}; give a longer `series` or change "
                f"`test_fraction` ({test_fraction})."
            )
    if standardize:
        mean, scale = parts[0].mean(axis=0), parts[0].std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        parts = tuple((p - mean) / scale for p in parts)

    def cut_windows(part):
        starts = np.arange(0, len(part) - span + 1, stride)
        steps = starts[:, None] + np.arange(window)[None, :]
        return jnp.asarray(part[steps], dtype), jnp.asarray(part[steps + horizon], dtype)

    (train_x, train_y), (test_x, test_y) = (cut_windows(p) for p in parts)
    return Splits(train_x, train_y, test_x, test_y)
