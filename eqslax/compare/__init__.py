"""`eqslax compare`: train the same model with several learning rules over several
seeds and report how they differ (accuracy with confidence intervals, updates, time,
memory, gradient similarity to BPTT, loss landscape).

The package is callable: `eqslax.compare(model, rules, data, loss, ...)` is
[`eqslax.compare.compare`][]."""

import sys
import types

from ._api import (
    SCHEMA_VERSION as SCHEMA_VERSION,
    CompareResult as CompareResult,
    compare as compare,
)
from ._loop import RuleRun as RuleRun, SeedRun as SeedRun
from ._registry import (
    DRIVERS as DRIVERS,
    RULES as RULES,
    Rule as Rule,
    make_rule as make_rule,
    register_rule as register_rule,
    rule as rule,
)
from ._report import write_report as write_report
from ._run import CompareConfig as CompareConfig, run_comparison as run_comparison
from ._stats import Interval as Interval, mean_ci as mean_ci, paired_difference as paired_difference
from ._toml import (
    ConfigError as ConfigError,
    Experiment as Experiment,
    load_experiment as load_experiment,
)


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs) -> CompareResult:
        return compare(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
