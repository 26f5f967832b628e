r"""DVS128 Gesture (Amir et al. 2017): AEDAT 3.1 recordings, read and framed with tonic.

The data set is one AEDAT 3.1 file per recording (`user01_fluorescent.aedat`: one
subject, one lighting condition, the eleven gestures one after another) and a CSV of
where each gesture lies in it (`user01_fluorescent_labels.csv`: `class, startTime_usec,
endTime_usec`, classes 1 to 11); `trials_to_train.txt` and `trials_to_test.txt` list
the recordings of each split. tonic reads the AEDAT format (the header and the event
packets, `tonic.io`) and transforms the events (`Denoise`, `Downsample`, `ToFrame`);
eqslax splits the 32-bit addresses into $x$, $y$ and polarity, reads the label files,
cuts the recordings into gestures and stacks the frames. Needs `tonic`
(`pip install eqslax[data]`).
"""

import csv
import os
import pathlib

import numpy as np
from jax.typing import DTypeLike

from .._preflight import check_int

DVS_GESTURE_SENSOR = (128, 128, 2)
"""DVS128's `sensor_size` for `bin_events` and tonic: width, height, polarities."""

DVS_GESTURE_CLASSES = 11

_WHERE = (
    "DVS128 Gesture (Amir et al. 2017) is published by IBM Research "
    "(research.ibm.com/dvsgesture); unpack DvsGesture.tar.gz so that <root>/trials_to_train.txt, "
    "<root>/trials_to_test.txt and every recording's .aedat file with its _labels.csv exist"
)
_SPLITS = ("train", "test")


def _tonic():
    try:
        import tonic.io
        import tonic.transforms
    except ImportError:
        raise ImportError(
            "eqslax.data's DVS Gesture reader uses tonic for the AEDAT format and its event "
            "transforms: pip install eqslax[data] (or pip install tonic)"
        ) from None
    return tonic


def _missing(path, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"DVS Gesture {what} not found: {path}. {_WHERE}.")


def read_aedat31(path: str | os.PathLike) -> np.ndarray:
    r"""The polarity events of one DVS128 recording in AEDAT 3.1, read by tonic.

    An AEDAT 3.1 file is a text header of lines starting with `#` (the first
    `#!AER-DAT3.1`), then packets: a 28-byte header (event type, source, event size, time
    offset, overflow, capacity, count, valid count) and `capacity` polarity events of 8
    bytes, a little-endian `uint32` address and a `uint32` timestamp in µs. The address
    holds $x$ in bits 17 to 31, $y$ in bits 2 to 16 and the polarity in bit 1.

    **Returns:** events with fields `x`, `y`, `t` (µs) and `p` (tonic's layout, which
    `bin_events` and tonic's transforms take).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise _missing(path, "recording")
    io = _tonic().io
    # tonic reads the header and the packets; its read_dvs_ibm, which would also split
    # the addresses, fails on tonic 1.7's three-valued header, so that is done here.
    version, start = io.read_aedat_header_from_file(str(path))[:2]
    if not 3 <= version < 4:
        raise ValueError(f"read_aedat31: {path} is AEDAT {version}, not AEDAT 3.x.")
    raw = io.get_aer_events_from_file(str(path), version, start)
    address = raw["address"]
    return io.make_structured_array(
        (address >> 17) & 0x7FFF, (address >> 2) & 0x7FFF, raw["timeStamp"], (address >> 1) & 1
    )


def _segments(path: pathlib.Path) -> list[tuple[int, int, int]]:
    """`(label 0..10, start µs, end µs)` of every gesture in a labels CSV."""
    if not path.is_file():
        raise _missing(path, "labels file")
    with open(path, newline="") as file:
        rows = [row for row in csv.reader(file) if row and row[0].strip()]
    if not rows or rows[0][0].strip() != "class":
        raise ValueError(
            f"DVS Gesture labels file {path} must start with the header "
            f"class,startTime_usec,endTime_usec; got {rows[0] if rows else 'nothing'}."
        )
    segments = []
    for row in rows[1:]:
        label, start, end = (int(float(value)) for value in row[:3])
        if not 1 <= label <= DVS_GESTURE_CLASSES:
            raise ValueError(f"DVS Gesture labels file {path}: class {label} is not in 1..11.")
        segments.append((label - 1, start, end))
    return segments


def read_dvs_gesture(root: str | os.PathLike, split: str) -> list[tuple[np.ndarray, int]]:
    r"""Every gesture of one split of an unpacked DVS Gesture folder, as events.

    The recordings listed in `trials_to_<split>.txt` are read with `read_aedat31` and cut
    at their labels: a gesture of class $c$ from $t_0$ to $t_1$ is the events with
    $t_0 \le t < t_1$, labelled $c - 1$ (0 to 10).

    **Arguments:**

    - `root`: the folder holding `trials_to_train.txt`, `trials_to_test.txt` and the
      recordings.
    - `split`: `"train"` or `"test"`.

    **Returns:** `(events, label)` pairs, in the order of the trials file and of each
    labels file.
    """
    if split not in _SPLITS:
        raise ValueError(f"read_dvs_gesture: `split` must be 'train' or 'test', got {split!r}")
    root = pathlib.Path(root)
    trials = root / f"trials_to_{split}.txt"
    if not trials.is_file():
        raise _missing(trials, "trials file")
    names = [line.strip() for line in trials.read_text().splitlines() if line.strip()]
    samples = []
    for name in names:
        events = read_aedat31(root / name)
        for label, start, end in _segments(root / f"{pathlib.Path(name).stem}_labels.csv"):
            t = events["t"]
            samples.append((events[(t >= start) & (t < end)], label))
    if not samples:
        raise _missing(trials, "gestures (the trials file lists none)")
    return samples


def load_dvs_gesture(
    root: str | os.PathLike,
    split: str,
    n_bins: int,
    *,
    spatial_factor: float = 0.25,
    denoise_us: int | None = None,
    dtype: DTypeLike = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    r"""DVS Gesture as frames `(samples, n_bins, 2, H, W)` and labels `(samples,)`.

    Each gesture of `read_dvs_gesture` goes through tonic's transforms: `Denoise`
    (with `denoise_us`: an event is kept only if a neighbouring pixel had one within
    `denoise_us` µs), `Downsample` (coordinates scaled by `spatial_factor` and floored,
    $H = W = \lfloor 128 f \rfloor$), and `ToFrame(n_time_bins=n_bins)` (the gesture's
    own duration split into `n_bins` bins of event counts per polarity and pixel). Give
    the result to `ArrayLoader`; flatten the last three axes for a dense network.

    **Arguments:** `root`, `split` as in `read_dvs_gesture`; `n_bins`; `spatial_factor`
    in $(0, 1]$ (default 1/4: 32 x 32 pixels); `denoise_us` (default: no denoising);
    `dtype` of the frames.
    """
    check_int(n_bins, "n_bins", "load_dvs_gesture")
    if not 0 < spatial_factor <= 1:
        raise ValueError(
            f"load_dvs_gesture: `spatial_factor` must be in (0, 1], got {spatial_factor!r}."
        )
    if denoise_us is not None:
        check_int(denoise_us, "denoise_us", "load_dvs_gesture")
    transforms = _tonic().transforms
    size = int(DVS_GESTURE_SENSOR[0] * spatial_factor)
    steps = [] if denoise_us is None else [transforms.Denoise(filter_time=denoise_us)]
    steps.append(transforms.Downsample(spatial_factor=spatial_factor))
    steps.append(transforms.ToFrame(sensor_size=(size, size, 2), n_time_bins=n_bins))
    framing = transforms.Compose(steps)
    samples = read_dvs_gesture(root, split)
    frames = np.zeros((len(samples), n_bins, 2, size, size), dtype)
    for row, (events, _) in enumerate(samples):
        framed = framing(events)
        if framed.dtype.names is None:  # not events: Compose stops early once none are left
            frames[row, : len(framed)] = framed
    return frames, np.array([label for _, label in samples], np.int32)
