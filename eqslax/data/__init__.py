"""Datasets: spiking random-manifold (Randman) classification tasks."""

from ._manifold import (
    RandomManifold as RandomManifold,
    frequency_cutoff as frequency_cutoff,
    make_manifold as make_manifold,
)
from ._randman import RandmanSplit as RandmanSplit, randman as randman
