"""N-MNIST (Orchard et al. 2015): its binary event files, read with NumPy."""

import os
import pathlib

import numpy as np

NMNIST_SENSOR = (34, 34, 2)
"""N-MNIST's `sensor_size` for `bin_events`: width, height, polarities."""

_WHERE = (
    "N-MNIST (Orchard et al. 2015) is published at https://www.garrickorchard.com/datasets/"
    "n-mnist; unpack its train and test archives so that <root>/Train/<digit>/*.bin and "
    "<root>/Test/<digit>/*.bin exist"
)
# The record layout `read_nmnist` returns (and `bin_events` accepts).
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])


def _missing(path: pathlib.Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"N-MNIST {what} not found: {path}. {_WHERE}.")


def read_nmnist(path: str | os.PathLike) -> np.ndarray:
    r"""Read one N-MNIST sample file into a structured event array.

    Each event is 5 bytes, big-endian: byte 0 is $x$, byte 1 is $y$, and the remaining
    24 bits hold the polarity in the top bit and the timestamp in microseconds in the low
    23 bits, $t = (b_2 \mathbin{\&} 7\mathrm{F}_{16})\, 2^{16} + b_3\, 2^8 + b_4$.

    **Arguments:**

    - `path`: a `.bin` file of the data set.

    **Returns:** events with fields `x`, `y`, `p` (0 off, 1 on) and `t` (µs), in file
    order; bin them with `bin_events(events, NMNIST_SENSOR, ...)`.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise _missing(path, "file")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise ValueError(
            f"N-MNIST file {path} holds {raw.size} bytes, not a multiple of the 5 bytes of "
            "an event: truncated or not an N-MNIST file"
        )
    raw = raw.reshape(-1, 5).astype(np.int64)
    events = np.empty(len(raw), dtype=EVENT_DTYPE)
    events["x"], events["y"] = raw[:, 0], raw[:, 1]
    events["p"] = raw[:, 2] >> 7
    events["t"] = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return events


def read_nmnist_split(root: str | os.PathLike, split: str) -> list[tuple[np.ndarray, int]]:
    r"""Read every sample of one split from an unpacked N-MNIST folder.

    **Arguments:**

    - `root`: the folder holding `Train/` and `Test/`, each with one folder per digit
      `0` to `9` of `.bin` files.
    - `split`: `"train"` or `"test"`.

    **Returns:** `(events, label)` pairs, sorted by digit then file name.
    """
    if split not in ("train", "test"):
        raise ValueError(f"read_nmnist_split: `split` must be 'train' or 'test', got {split!r}")
    folder = pathlib.Path(root) / split.capitalize()
    if not folder.is_dir():
        raise _missing(folder, "folder")
    samples = []
    for digit in range(10):
        for path in sorted((folder / str(digit)).glob("*.bin")):
            samples.append((read_nmnist(path), digit))
    if not samples:
        raise _missing(folder / "<digit>" / "*.bin", "sample files")
    return samples
