r"""The Mackey-Glass series (Mackey & Glass 1977) of NeuroBench's chaotic forecasting task.

$$
\dot x(t) = \beta\,\frac{x(t-\tau)}{1 + x(t-\tau)^n} - \gamma\,x(t),
\qquad x(t) = x_0 \text{ for } t \le 0
$$

with NeuroBench's $\tau = 17$, $\beta = 0.2$, $\gamma = 0.1$,
$n = 10$, $x_0 = 0.7206597$. Its equilibrium is $x^* = 1$ (where
$1 + x^n = \beta/\gamma$); it is stable for $\tau$ below about 4.7 and the
orbit is chaotic at $\tau = 17$.

**Integration scheme.** Classical fourth-order Runge-Kutta with a fixed step
$h = \tau/m$ (`steps_per_delay` $m$, default 1700, so $h = 0.01$ at
$\tau = 17$). The step divides the delay, so the delayed values at the first and last
stage of a step are grid values, and the breaks in smoothness of the solution (at
multiples of $\tau$) fall on grid points. The delayed value at a step's midpoint is
the cubic Hermite interpolant from the two neighbouring grid values and slopes,
$\tfrac12(x_j + x_{j+1}) + \tfrac h8(\dot x_j - \dot x_{j+1})$, which keeps the
scheme fourth order. Because the delayed term is known one delay ahead, each window
$[k\tau, (k+1)\tau]$ is a linear recurrence $x_{j+1} = A x_j + B_j$ (method of
steps), solved with cumulative sums in float64 NumPy. Samples between grid points are
cubic Hermite interpolants too.

The generated series is *not* bitwise NeuroBench's (theirs comes from `jitcdde`, and
chaos amplifies any difference between solvers); pass `file=` to use the official
`.npy` series instead.
"""

import math
import os

import beartype
import equinox as eqx
import numpy as np
from jaxtyping import Float, jaxtyped

HISTORY = 0.7206597


def _forcing(d, beta, exponent):
    return beta * d / (1.0 + d**exponent)


def _window(x0, delayed, delayed_slope, h, beta, gamma, exponent):
    """RK4 over one delay window, given the solution one delay back on the same grid."""
    middle = 0.5 * (delayed[:-1] + delayed[1:]) + h / 8.0 * (delayed_slope[:-1] - delayed_slope[1:])
    g, g_mid = _forcing(delayed, beta, exponent), _forcing(middle, beta, exponent)
    g0, g1 = g[:-1], g[1:]
    # RK4 on x' = -gamma x + g(t) is x_{j+1} = A x_j + B_j: A from x alone, B from g alone.
    z = -gamma * h
    a = 1.0 + z + z**2 / 2.0 + z**3 / 6.0 + z**4 / 24.0
    k1 = g0
    k2 = -gamma * h / 2.0 * k1 + g_mid
    k3 = -gamma * h / 2.0 * k2 + g_mid
    k4 = -gamma * h * k3 + g1
    b = h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    # x_j = A^j (x_0 + sum_{i<j} A^{-i-1} B_i); A^{-m} = e^{gamma tau} stays moderate.
    powers = a ** np.arange(len(b) + 1)
    x = powers * (x0 + np.concatenate([[0.0], np.cumsum(b / powers[1:])]))
    return x, -gamma * x + g


@jaxtyped(typechecker=beartype.beartype)
def mackey_glass_series(
    n_points: int,
    *,
    tau: float | int = 17.0,
    beta: float | int = 0.2,
    gamma: float | int = 0.1,
    exponent: float | int = 10.0,
    history: float | int = HISTORY,
    sample_every: float | int = 197.0 / 75.0,
    start: float | int = 0.0,
    steps_per_delay: int = 1700,
) -> Float[np.ndarray, " n_points"]:
    r"""The Mackey-Glass solution sampled at $t_i = \text{start} + i\,\Delta$,
    $i = 0..$ `n_points` - 1, in float64 (scheme in the module docstring).

    `sample_every` $\Delta$ defaults to NeuroBench's 75 points per Lyapunov time
    of 197 time units. `exponent` is $n$, `history` the constant past
    $x_0$.
    """
    if n_points <= 0 or steps_per_delay < 2:
        raise ValueError(
            f"mackey_glass_series: `n_points` must be positive and `steps_per_delay` at "
            f"least 2, got {n_points} and {steps_per_delay}."
        )
    if not (tau > 0 and sample_every > 0 and start >= 0):
        raise ValueError(
            f"mackey_glass_series: `tau` and `sample_every` must be positive and `start` "
            f">= 0, got {tau}, {sample_every}, {start}."
        )
    m = steps_per_delay
    h = tau / m
    t_last = start + (n_points - 1) * sample_every
    windows = math.floor(t_last / tau) + 1
    delayed = np.full(m + 1, float(history))
    slope = np.zeros(m + 1)  # the constant past has zero slope, also at t = 0
    grid, slopes = [np.array([float(history)])], []
    x0 = float(history)
    for _ in range(windows):
        x, f = _window(x0, delayed, slope, h, beta, gamma, exponent)
        grid.append(x[1:])
        slopes.append(f[:-1])
        delayed, slope, x0 = x, f, x[-1]
    slopes.append(f[-1:])
    grid, slopes = np.concatenate(grid), np.concatenate(slopes)
    times = start + sample_every * np.arange(n_points)
    k = np.minimum(np.floor(times / h).astype(np.int64), len(grid) - 2)
    s = times / h - k
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * grid[k] + h10 * h * slopes[k] + h01 * grid[k + 1] + h11 * h * slopes[k + 1]


class MackeyGlassSplit(eqx.Module):
    """NeuroBench's Mackey-Glass task: one-step-ahead forecasting of a series.

    **Fields:** `series` (points,); `train_x`/`test_x` (batch, window, 1), the
    `window` points up to each index (zero-padded before the series starts);
    `train_y`/`test_y` (batch, 1), the next point; `source`, where the series came
    from.
    """

    series: Float[np.ndarray, " points"]
    train_x: Float[np.ndarray, "train window 1"]
    train_y: Float[np.ndarray, "train 1"]
    test_x: Float[np.ndarray, "test window 1"]
    test_y: Float[np.ndarray, "test 1"]
    source: str = eqx.field(static=True)


@jaxtyped(typechecker=beartype.beartype)
def mackey_glass(
    *,
    tau: float | int = 17.0,
    lyapunov_time: float | int = 197.0,
    points_per_lyapunov_time: int = 75,
    train_lyapunov_times: float | int = 10.0,
    test_lyapunov_times: float | int = 10.0,
    start_offset: int = 0,
    window: int = 1,
    file: str | os.PathLike | None = None,
    steps_per_delay: int = 1700,
) -> MackeyGlassSplit:
    """NeuroBench's Mackey-Glass split: `round(10 * 75) = 750` training and 750 test
    points by default, from a series of 1501 points (one past the end).

    Sample $i$ is the `window` points ending at index $i$ and its target is
    point $i + 1$; training indices are `0..749`, test `750..1499`. With `file`
    (an official NeuroBench `.npy`), the series is points `start_offset ..` of that
    file; otherwise it is generated (`mackey_glass_series`, starting
    `start_offset` sample intervals after $t = 0$). The usual protocol trains
    teacher-forced on the training split, then forecasts the test split
    autoregressively and scores `SMAPE`.
    """
    if window <= 0 or start_offset < 0:
        raise ValueError(
            f"mackey_glass: `window` must be positive and `start_offset` >= 0, got "
            f"{window} and {start_offset}."
        )
    train = round(train_lyapunov_times * points_per_lyapunov_time)
    test = round(test_lyapunov_times * points_per_lyapunov_time)
    n_points = train + test + 1
    every = lyapunov_time / points_per_lyapunov_time
    if file is not None:
        if not os.path.isfile(file):
            raise FileNotFoundError(f"mackey_glass: no file at {file!r}.")
        series = np.asarray(np.load(file), np.float64).reshape(-1)[start_offset:][:n_points]
        if series.size != n_points:
            raise ValueError(
                f"mackey_glass: {file!r} holds {series.size} points from offset "
                f"{start_offset}; {n_points} are needed."
            )
        source = f"file {os.path.basename(file)}"
    else:
        series = mackey_glass_series(
            n_points,
            tau=tau,
            sample_every=every,
            start=start_offset * every,
            steps_per_delay=steps_per_delay,
        )
        source = "generated (RK4, h = tau/steps_per_delay), not bitwise the NeuroBench series"
    padded = np.concatenate([np.zeros(window - 1), series])
    index = np.arange(n_points - 1)
    x = np.stack([padded[i : i + window] for i in index])[..., None]
    y = series[index + 1][:, None]
    return MackeyGlassSplit(
        series=series,
        train_x=x[:train],
        train_y=y[:train],
        test_x=x[train:],
        test_y=y[train:],
        source=source,
    )
