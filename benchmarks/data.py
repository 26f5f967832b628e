r"""Throughput of event binning (:func:`eqslax.data.bin_events`), in events per second.

Random N-MNIST-like events (a 34 x 34 sensor, two polarities, microsecond timestamps) are
binned into frames of width ``--dt``. In the same process and interleaved round by round,
the script also times a floor, one ``np.bincount`` of the x coordinates alone (the least
work any histogram of the events does), and a per-event Python loop on a prefix of the
events; the paired ratios against the floor are steadier than raw times on a shared
machine.

Run ``python -m benchmarks.data --help`` for the options.
"""

import argparse

import numpy as np

from eqslax.data import bin_events

from ._common import paired_ratio, time_interleaved

SENSOR = (34, 34, 2)
DTYPE = [("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)]


def random_events(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=DTYPE)
    events["t"] = np.sort(rng.integers(0, 300_000, n))
    for name, size in zip(("x", "y", "p"), SENSOR):
        events[name] = rng.integers(0, size, n)
    return events


def loop_binning(events: np.ndarray, dt: int) -> np.ndarray:
    """The per-event Python loop that `bin_events` replaces."""
    t0 = int(events["t"].min())
    frames = np.zeros((int(events["t"].max() - t0) // dt + 1, 2, 34, 34), np.int32)
    for event in events:
        frames[(int(event["t"]) - t0) // dt, event["p"], event["y"], event["x"]] += 1
    return frames


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--loop-events", type=int, default=20_000)
    parser.add_argument("--dt", type=int, default=1000, help="bin width in microseconds")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.events < 1 or args.loop_events < 1 or args.dt < 1:
        parser.error("--events, --loop-events and --dt must be positive")
    events = random_events(args.events, args.seed)
    prefix = events[: args.loop_events]
    same = np.array_equal(bin_events(prefix, SENSOR, dt=args.dt), loop_binning(prefix, args.dt))
    timings = time_interleaved(
        {
            "bin_events": lambda: bin_events(events, SENSOR, dt=args.dt),
            "floor": lambda: np.bincount(events["x"], minlength=SENSOR[0]),
            "loop": lambda: loop_binning(prefix, args.dt),
        },
        repeats=args.repeats,
    )
    results = {
        "events": args.events,
        "loop_events": args.loop_events,
        "agrees_with_loop": bool(same),
        "bin_events_per_s": args.events / timings["bin_events"]["median_s"],
        "floor_per_s": args.events / timings["floor"]["median_s"],
        "loop_per_s": args.loop_events / timings["loop"]["median_s"],
        "bin_over_floor": paired_ratio(timings, "bin_events", "floor"),
    }
    results["speedup_over_loop"] = results["bin_events_per_s"] / results["loop_per_s"]
    for name, value in results.items():
        print(f"{name}: {value:.4g}" if isinstance(value, float) else f"{name}: {value}")
    return results


if __name__ == "__main__":
    main()
