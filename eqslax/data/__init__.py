"""Datasets: spiking random-manifold (Randman) tasks (and Delay-Randman, whose classes
differ only in relative delays), event files (SHD, SSC, N-MNIST, DVS Gesture),
event-stream binning, loaders (with prefetching on a background thread) and forecasting
windows of a time series."""

from ._delay_randman import delay_randman as delay_randman
from ._dvs_gesture import (
    DVS_GESTURE_CLASSES as DVS_GESTURE_CLASSES,
    DVS_GESTURE_SENSOR as DVS_GESTURE_SENSOR,
    load_dvs_gesture as load_dvs_gesture,
    read_aedat31 as read_aedat31,
    read_dvs_gesture as read_dvs_gesture,
)
from ._events import bin_events as bin_events
from ._forecast import forecasting_windows as forecasting_windows
from ._loader import (
    PRESTAGE_LIMIT as PRESTAGE_LIMIT,
    AbstractLoader as AbstractLoader,
    ArrayLoader as ArrayLoader,
    Loaders as Loaders,
)
from ._manifold import (
    RandomManifold as RandomManifold,
    frequency_cutoff as frequency_cutoff,
    make_manifold as make_manifold,
)
from ._nmnist import (
    EVENT_DTYPE as EVENT_DTYPE,
    NMNIST_SENSOR as NMNIST_SENSOR,
    read_nmnist as read_nmnist,
    read_nmnist_split as read_nmnist_split,
)
from ._padding import pad_sequences as pad_sequences
from ._prefetch import prefetch as prefetch
from ._randman import RandmanSplit as RandmanSplit, randman as randman
from ._shd import (
    SHDBatches as SHDBatches,
    SHDLoader as SHDLoader,
    load_shd as load_shd,
)
from ._splits import Splits as Splits
