"""Spike encoders: dense inputs to spike trains (rate, latency and delta coding)."""

from ._delta import delta as delta
from ._latency import latency as latency
from ._rate import rate as rate
