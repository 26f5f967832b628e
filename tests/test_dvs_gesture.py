"""DVS Gesture: tiny recordings written in the AEDAT 3.1 format of the real files (text
header, 28-byte packet headers, 8-byte polarity events), with labels CSVs and trials
lists, read back through tonic and cut into gestures; framed with tonic's transforms.

Needs tonic (the `data` extra, which `make test` installs).
"""

import struct

import numpy as np
import pytest

from eqslax.data import (
    DVS_GESTURE_SENSOR,
    bin_events,
    load_dvs_gesture,
    read_aedat31,
    read_dvs_gesture,
)

pytest.importorskip("tonic", reason="the DVS Gesture reader needs tonic: pip install eqslax[data]")

HEADER = (
    b"#!AER-DAT3.1\r\n"
    b"#Format: RAW\r\n"
    b"#Source 1: DVS128\r\n"
    b"#Start-Time: 2017-01-01 12:00:00 (TZ+0000)\r\n"
    b"#!END-HEADER\r\n"
)
POLARITY_EVENT, SOURCE = 1, 1


def write_aedat31(path, x, y, p, t, packet_size=50):
    """Events in AEDAT 3.1: polarity packets of at most `packet_size` events, each event
    a uint32 address (x << 17 | y << 2 | p << 1 | valid) and a uint32 timestamp."""
    with open(path, "wb") as file:
        file.write(HEADER)
        for start in range(0, len(t), packet_size):
            stop = min(start + packet_size, len(t))
            count = stop - start
            file.write(
                struct.pack("<hhiiiiii", POLARITY_EVENT, SOURCE, 8, 4, 0, count, count, count)
            )
            address = (
                (x[start:stop].astype(np.uint32) << 17)
                | (y[start:stop].astype(np.uint32) << 2)
                | (p[start:stop].astype(np.uint32) << 1)
                | 1
            )
            events = np.empty(count, dtype=[("address", "<u4"), ("t", "<u4")])
            events["address"], events["t"] = address, t[start:stop]
            file.write(events.tobytes())


def random_recording(rng, n):
    t = np.sort(rng.integers(1_000, 3_000_000, n)).astype(np.uint32)
    x, y = rng.integers(0, 128, n), rng.integers(0, 128, n)
    return x, y, rng.integers(0, 2, n), t


@pytest.fixture
def gesture_root(tmp_path):
    rng = np.random.default_rng(0)
    recordings = {}
    for name in ("user01_fluorescent", "user02_led", "user03_natural"):
        x, y, p, t = random_recording(rng, 400)
        write_aedat31(tmp_path / f"{name}.aedat", x, y, p, t)
        rows = ["class,startTime_usec,endTime_usec", "3,100000,900000", "11,1200000,2800000"]
        (tmp_path / f"{name}_labels.csv").write_text("\n".join(rows) + "\n")
        recordings[name] = (x, y, p, t)
    (tmp_path / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser02_led.aedat\n")
    (tmp_path / "trials_to_test.txt").write_text("user03_natural.aedat\n")
    return tmp_path, recordings


def test_aedat31_reads_back_the_events_written(gesture_root):
    root, recordings = gesture_root
    events = read_aedat31(root / "user02_led.aedat")
    x, y, p, t = recordings["user02_led"]
    assert len(events) == len(t)  # 8 packets, the last one short
    np.testing.assert_array_equal(events["x"], x)
    np.testing.assert_array_equal(events["y"], y)
    np.testing.assert_array_equal(events["p"].astype(int), p)
    np.testing.assert_array_equal(events["t"], t)


def test_gestures_are_cut_at_their_labels_and_framed(gesture_root):
    root, recordings = gesture_root
    train = read_dvs_gesture(root, "train")
    assert [label for _, label in train] == [2, 10, 2, 10]
    x, y, p, t = recordings["user01_fluorescent"]
    first = (t >= 100_000) & (t < 900_000)
    np.testing.assert_array_equal(train[0][0]["t"], t[first])
    frames, labels = load_dvs_gesture(root, "test", 6, spatial_factor=0.25)
    assert frames.shape == (2, 6, 2, 32, 32) and frames.dtype == np.float32
    np.testing.assert_array_equal(labels, [2, 10])
    (events, _), _ = read_dvs_gesture(root, "test")
    # tonic's ToFrame(n_time_bins=n): bins of w = (t_last - t_0) // n from t_0, so the
    # events from t_0 + n w on (the last one at least) fall in no frame
    t0, width = int(events["t"][0]), int(events["t"][-1] - events["t"][0]) // 6
    small = events.copy()
    small["x"], small["y"] = events["x"] // 4, events["y"] // 4
    expected = bin_events(small, (32, 32, 2), dt=width, t_start=t0)[:6]
    np.testing.assert_array_equal(frames[0], expected)
    assert frames[0].sum() == np.sum(events["t"] < t0 + 6 * width) < len(events)
    denoised, _ = load_dvs_gesture(root, "test", 6, denoise_us=20_000)
    assert denoised.shape == frames.shape and denoised.sum() < frames.sum()  # isolated events
    assert DVS_GESTURE_SENSOR == (128, 128, 2)


def test_missing_files_and_bad_labels_are_named(gesture_root, tmp_path_factory):
    root, _ = gesture_root
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match=r"trials_to_train\.txt.*research\.ibm\.com"):
        read_dvs_gesture(empty, "train")
    with pytest.raises(FileNotFoundError, match=r"recording not found: .*missing\.aedat"):
        read_aedat31(root / "missing.aedat")
    (root / "user01_fluorescent_labels.csv").write_text(
        "class,startTime_usec,endTime_usec\n12,0,10\n"
    )
    with pytest.raises(ValueError, match=r"class 12 is not in 1\.\.11"):
        read_dvs_gesture(root, "train")
    with pytest.raises(ValueError, match=r"`split` must be 'train' or 'test'"):
        read_dvs_gesture(root, "validation")
