"""Shared pieces of the benchmark scripts: timing, device notes, tables, atomic files.

Timing follows three rules. Every call is closed with ``jax.block_until_ready``, since
JAX dispatches asynchronously. The first call of a compiled function (trace, compile
and one run) is reported apart from the steady state. And the variants being compared
are timed *interleaved*, one call of each per round, so that load from other processes
on a shared machine slows all of them alike instead of whichever ran last. Both wall
time and process CPU time are kept: on a busy machine the CPU time is the steadier of
the two.
"""

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax


def parse_ints(text: str, name: str) -> tuple[int, ...]:
    """``"128,256"`` -> ``(128, 256)``; every entry a positive integer."""
    try:
        values = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"`{name}` must be comma-separated positive integers such as 128,256, got {text!r}."
        ) from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"`{name}` must hold positive integers, got {text!r}.")
    return values


def parse_names(text: str, name: str, choices: Sequence[str]) -> tuple[str, ...]:
    """``"bptt,ostl"`` -> ``("bptt", "ostl")``, each one of ``choices``."""
    values = tuple(part.strip() for part in str(text).split(",") if part.strip())
    unknown = [v for v in values if v not in choices]
    if not values or unknown:
        raise ValueError(
            f"`{name}` must be a comma-separated subset of {', '.join(choices)}; got {text!r}."
        )
    return values


def device_note() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "x64": bool(jax.config.jax_enable_x64),
        # other jobs on the machine move wall-clock times: say how busy it was
        "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
    }


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(fn())
    return time.perf_counter() - wall, time.process_time() - cpu


def first_call(call: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time and result of one call (for a fresh jitted function: trace, compile, run)."""
    start = time.perf_counter()
    out = jax.block_until_ready(call())
    return time.perf_counter() - start, out


def compile_seconds(jitted: Any, *args: Any) -> dict[str, float]:
    """Ahead-of-time cost of a jitted function on ``args``: tracing and lowering to
    XLA (``lower_s``) and XLA's compilation (``compile_s``), wall-clock seconds."""
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    lowered_at = time.perf_counter()
    lowered.compile()
    return {"lower_s": lowered_at - start, "compile_s": time.perf_counter() - lowered_at}


def time_interleaved(
    calls: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    first_s: Mapping[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time each zero-argument ``call`` after compiling it.

    Each call is made once (``first_s``: trace, compile and run; pass it for calls
    already made), ``warmup`` more times untimed, then ``repeats`` rounds of one call
    each in turn. Returns, per name, the wall-clock median ``median_s``, the CPU-time
    median ``cpu_s``, the fastest run ``min_s``, every run ``runs_s`` (round by round),
    ``first_s`` and ``compile_s = first_s - median_s`` (the one-off cost of tracing and
    compiling).
    """
    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1, got {repeats}.")
    first = dict(first_s or {})
    for name, call in calls.items():
        if name not in first:
            first[name] = first_call(call)[0]
    for _ in range(warmup):
        for call in calls.values():
            jax.block_until_ready(call())
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            w, c = _timed(call)
            wall[name].append(w)
            cpu[name].append(c)
    out = {}
    for name in calls:
        median = statistics.median(wall[name])
        out[name] = {
            "median_s": median,
            "min_s": min(wall[name]),
            "cpu_s": statistics.median(cpu[name]),
            "first_s": first[name],
            "compile_s": max(first[name] - median, 0.0),
            "runs_s": wall[name],
        }
    return out


def paired_ratio(timings: Mapping[str, Mapping[str, Any]], a: str, b: str) -> float:
    """Median over rounds of ``a``'s time over ``b``'s in the same round: the two ran
    back to back, under the same load, so this is the steadiest comparison."""
    return statistics.median(x / y for x, y in zip(timings[a]["runs_s"], timings[b]["runs_s"]))


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats printed to 4 significant digits."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _replace_into(path: str, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the target folder, then rename it into place,
    so that a reader never sees a half-written file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)  # mkstemp makes the file private
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_json(path: str, data: Any) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w") as file:
            json.dump(data, file, indent=2, sort_keys=True, default=str)
            file.write("\n")

    _replace_into(path, write)


def write_text(path: str, text: str) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w") as file:
            file.write(text)

    _replace_into(path, write)


def save_figure(figure, path: str) -> None:
    """Save a matplotlib figure as PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    try:
        _replace_into(path, lambda temporary: figure.savefig(temporary, format="png", dpi=120))
    finally:
        plt.close(figure)


def new_figure(ncols: int = 1):
    """A figure on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.2), squeeze=False)
