"""Event binning against a per-event Python loop on random events."""

import numpy as np
import pytest

from eqslax.data import NMNIST_SENSOR, bin_events, read_nmnist, read_nmnist_split

DTYPE = [("t", np.int64), ("x", np.int16), ("y", np.int16), ("p", np.int8)]


def _random_events(rng, n, size=(7, 5, 2), t_max=10_000, dtype=DTYPE):
    events = np.zeros(n, dtype=dtype)
    events["t"] = np.sort(rng.integers(3, t_max, n))
    for name, limit in zip(("x", "y", "p"), size):
        if name in events.dtype.names:
            events[name] = rng.integers(0, limit, n)
    return events


def _naive(events, size, dt=None, n_bins=None, t_start=None):
    fields = [name for name in ("x", "y", "p") if name in events.dtype.names]
    t0 = min(int(e["t"]) for e in events) if t_start is None else t_start
    span = max(int(e["t"]) for e in events) - t0
    bins = []
    for event in events:
        offset = int(event["t"]) - t0
        bins.append(offset // dt if dt is not None else min(offset * n_bins // span, n_bins - 1))
    frames = np.zeros((max(bins) + 1 if dt is not None else n_bins, *reversed(size)), np.int32)
    for b, event in zip(bins, events):
        frames[(b, *(int(event[name]) for name in reversed(fields)))] += 1
    return frames


@pytest.mark.parametrize("seed", [0, 1])
def test_dt_matches_the_loop(seed):
    events = _random_events(np.random.default_rng(seed), 3000)
    frames = bin_events(events, (7, 5, 2), dt=700)
    np.testing.assert_array_equal(frames, _naive(events, (7, 5, 2), dt=700))
    assert frames.shape[1:] == (2, 5, 7) and frames.sum() == len(events)


def test_n_bins_matches_the_loop_and_keeps_the_last_event():
    events = _random_events(np.random.default_rng(2), 2000)
    frames = bin_events(events, (7, 5, 2), n_bins=13)
    np.testing.assert_array_equal(frames, _naive(events, (7, 5, 2), n_bins=13))
    assert frames.shape == (13, 2, 5, 7) and frames[-1].sum() >= 1


def test_t_start_and_one_dimensional_sensor():
    dtype = [("t", np.float64), ("x", np.int32)]
    events = _random_events(np.random.default_rng(3), 500, size=(11,), dtype=dtype)
    frames = bin_events(events, (11,), dt=250.0, t_start=0.0)
    np.testing.assert_array_equal(frames, _naive(events, (11,), dt=250, t_start=0))


def test_hand_made_events():
    events = np.array([(0, 1, 0, 1), (5, 1, 0, 1), (10, 0, 1, 0), (19, 1, 1, 1)], dtype=DTYPE)
    frames = bin_events(events, (2, 2, 2), dt=10)
    assert frames.shape == (2, 2, 2, 2)
    assert frames[0, 1, 0, 1] == 2 and frames[1, 0, 1, 0] == 1 and frames[1, 1, 1, 1] == 1
    assert frames.sum() == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sensor_size": (7, 5), "dt": 10}, "sensor_size"),
        ({"sensor_size": (6, 5, 2), "dt": 10}, "field `x`"),
        ({"sensor_size": (7, 5, 2)}, "exactly one"),
        ({"sensor_size": (7, 5, 2), "dt": 10, "n_bins": 3}, "exactly one"),
        ({"sensor_size": (7, 5, 2), "dt": -1}, "dt"),
        ({"sensor_size": (7, 5, 2), "n_bins": 0}, "n_bins"),
        ({"sensor_size": (7, 5, 2), "dt": 10, "t_start": 10**6}, "t_start"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    events = _random_events(np.random.default_rng(4), 50)
    events["x"][0] = 6
    with pytest.raises(ValueError, match=match):
        bin_events(events, **kwargs)


def test_plain_array_is_refused():
    with pytest.raises(TypeError, match="structured"):
        bin_events(np.zeros((4, 3)), (2,), dt=1)


def test_benchmark_runs_and_agrees_with_the_loop():
    from benchmarks import data

    results = data.main(["--events", "2000", "--loop-events", "300", "--repeats", "1"])
    assert results["agrees_with_loop"] and results["bin_events_per_s"] > 0


def _write_nmnist(path, events):
    """Encode events in N-MNIST's 5-byte layout, independently of the reader."""
    raw = bytearray()
    for x, y, p, t in events:
        word = (p << 23) | t
        raw += bytes([x, y, word >> 16, (word >> 8) & 0xFF, word & 0xFF])
    path.write_bytes(bytes(raw))


NMNIST_EVENTS = [(0, 0, 0, 0), (33, 5, 1, 1), (7, 33, 1, 2**23 - 1), (12, 20, 0, 300_017)]


def test_read_nmnist_decodes_a_generated_file(tmp_path):
    path = tmp_path / "00001.bin"
    _write_nmnist(path, NMNIST_EVENTS)
    events = read_nmnist(path)
    assert [tuple(int(v) for v in e) for e in events[["x", "y", "p", "t"]]] == NMNIST_EVENTS
    frames = bin_events(events, NMNIST_SENSOR, n_bins=2)
    assert frames.shape == (2, 2, 34, 34) and frames.sum() == 4 and frames[1, 1, 33, 7] == 1


def test_read_nmnist_split_and_errors(tmp_path):
    for digit, name in [(3, "b.bin"), (3, "a.bin"), (0, "z.bin")]:
        (tmp_path / "Train" / str(digit)).mkdir(parents=True, exist_ok=True)
        _write_nmnist(tmp_path / "Train" / str(digit) / name, NMNIST_EVENTS[: digit + 1])
    samples = read_nmnist_split(tmp_path, "train")
    assert [label for _, label in samples] == [0, 3, 3]
    assert [len(events) for events, _ in samples] == [1, 4, 4]
    with pytest.raises(FileNotFoundError, match="Test.*garrickorchard"):
        read_nmnist_split(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="missing.bin.*garrickorchard"):
        read_nmnist(tmp_path / "missing.bin")
    with pytest.raises(ValueError, match="split"):
        read_nmnist_split(tmp_path, "valid")
    (tmp_path / "short.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match="short.bin.*multiple of the 5 bytes"):
        read_nmnist(tmp_path / "short.bin")
