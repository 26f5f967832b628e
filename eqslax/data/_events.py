"""Event streams to dense frames: time binning on the host with NumPy."""

import numpy as np

_SPATIAL = ("x", "y", "p")


def _fields(events: np.ndarray) -> tuple[str, ...]:
    names = getattr(events.dtype, "names", None)
    if names is None or "t" not in names or "x" not in names:
        raise TypeError(
            "bin_events: `events` must be a structured array with fields t, x[, y][, p], "
            f"got dtype {events.dtype}"
        )
    return tuple(name for name in _SPATIAL if name in names)


def _check_sensor(events, fields, sensor_size) -> tuple[int, ...]:
    sensor = tuple(sensor_size)
    if len(sensor) != len(fields) or any(
        isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 for n in sensor
    ):
        raise ValueError(
            f"bin_events: `sensor_size` must be {len(fields)} positive ints, one per field "
            f"{fields}, got {sensor_size!r}"
        )
    for name, size in zip(fields, sensor):
        values = events[name]
        if values.size and (values.min() < 0 or values.max() >= size):
            raise ValueError(
                f"bin_events: field `{name}` must lie in [0, {size}) (`sensor_size`), got "
                f"values in [{values.min()}, {values.max()}]"
            )
    return tuple(int(n) for n in sensor)


def _bin_index(t: np.ndarray, t_start, dt, n_bins) -> tuple[np.ndarray, int]:
    """Bin of every event and the number of bins."""
    integer = np.issubdtype(t.dtype, np.integer)
    offset = (t.astype(np.int64) if integer else t.astype(np.float64)) - t_start
    if dt is not None:
        if integer and float(dt).is_integer():
            index = offset // int(dt)
        else:
            index = np.floor(offset / dt).astype(np.int64)
        count = int(index.max()) + 1 if index.size else 0
        return index, count
    span = offset.max() if offset.size else 0
    if span == 0:
        return np.zeros(offset.shape, np.int64), n_bins
    if integer:
        index = (offset * n_bins) // int(span)
    else:
        index = np.floor(offset * n_bins / span).astype(np.int64)
    return np.minimum(index, n_bins - 1), n_bins


def bin_events(
    events: np.ndarray,
    sensor_size: tuple[int, ...],
    *,
    dt: int | float | None = None,
    n_bins: int | None = None,
    t_start: int | float | None = None,
) -> np.ndarray:
    r"""Count events per time bin and sensor position, vectorised on the host.

    With $t_0$ = `t_start` (default: the earliest event), an event at time $t$ falls into bin

    - `dt` given: $b = \lfloor (t - t_0) / \Delta t \rfloor$, with as many bins as the
      latest event needs;
    - `n_bins` given: $b = \min\big(\lfloor N (t - t_0) / (t_{max} - t_0) \rfloor,
      N - 1\big)$, so the window $[t_0, t_{max}]$ is split into $N$ equal bins and the
      latest event lands in the last one (all in bin 0 when $t_{max} = t_0$).

    Integer timestamps with an integer `dt` are binned in exact integer arithmetic.

    **Arguments:**

    - `events`: a NumPy structured array with fields `t`, `x` and optionally `y` and `p`
      (polarity), as read from event files.
    - `sensor_size`: the size of each spatial field present, in the order `(x, y, p)`
      (tonic's `(width, height, polarities)`), e.g. `(34, 34, 2)` for N-MNIST or `(700,)`
      for SHD's channels.
    - `dt`, `n_bins`: exactly one of them: the bin width in the unit of `t`, or the number
      of bins.
    - `t_start`: $t_0$; events before it are an error.

    **Returns:** int32 counts of shape `(bins, *reversed(sensor_size))`, i.e.
    `(bins, p, y, x)` for fields present, the layout of tonic's `ToFrame`.
    """
    if not isinstance(events, np.ndarray):
        raise TypeError(f"bin_events: `events` must be a NumPy array, got {type(events)}")
    fields = _fields(events)
    sensor = _check_sensor(events, fields, sensor_size)
    if (dt is None) == (n_bins is None):
        raise ValueError(f"bin_events: give exactly one of `dt` and `n_bins`, got {dt=}, {n_bins=}")
    if dt is not None and not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"bin_events: `dt` must be a finite number > 0, got {dt!r}")
    if n_bins is not None and (
        isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1
    ):
        raise ValueError(f"bin_events: `n_bins` must be a positive int, got {n_bins!r}")
    t = events["t"]
    if t_start is None:
        t_start = t.min() if t.size else 0
    elif t.size and t.min() < t_start:
        raise ValueError(f"bin_events: events at t = {t.min()} precede `t_start` = {t_start}")
    index, count = _bin_index(t, t_start, dt, n_bins)
    shape = (count, *reversed(sensor))
    axes = (index, *(events[name].astype(np.int64) for name in reversed(fields)))
    flat = np.ravel_multi_index(axes, shape) if index.size else np.zeros(0, np.int64)
    counts = np.bincount(flat, minlength=int(np.prod(shape)))
    return counts.astype(np.int32).reshape(shape)
