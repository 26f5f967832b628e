"""``eqslax compare``: train the same model with several learning rules and report how
they differ (accuracy, time, memory, gradient similarity to BPTT, loss landscape)."""

from ._registry import RULES as RULES, make_rule as make_rule
from ._run import CompareConfig as CompareConfig, run_comparison as run_comparison
