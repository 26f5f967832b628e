"""Datasets: spiking random-manifold (Randman) tasks and event-stream binning."""

from ._events import bin_events as bin_events
from ._manifold import (
    RandomManifold as RandomManifold,
    frequency_cutoff as frequency_cutoff,
    make_manifold as make_manifold,
)
from ._randman import RandmanSplit as RandmanSplit, randman as randman
